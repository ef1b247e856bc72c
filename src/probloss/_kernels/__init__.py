"""Per-sample loss kernels: pure array-API math, ``xp`` keyword-only, no validation.

Importing this package registers every kernel in :mod:`probloss._dispatch`.
Each kernel's contract is documented on the public function of the same name in
:mod:`probloss._functional`; kernels trust their inputs (already cast, smoothed,
with a canonical non-negative axis).
"""

from . import _crossentropy, _ctc, _divergence, _focal

__all__ = ["_crossentropy", "_ctc", "_divergence", "_focal"]
