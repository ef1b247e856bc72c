"""NumPy fast path of the CTC loss: the compiled forward-backward kernel (``probloss._native._ctc``).

The kernel threads over the batch (OpenMP), releases the GIL, and computes each
sample in float64 in a fixed order, so the result does not depend on the number
of threads. Without the extension, the generic kernel serves NumPy.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._dispatch import fast_path
from .._native import threads

try:
    from .._native import _ctc as _native
except ImportError:  # pragma: no cover - built from source without the extension
    _native = None

__all__ = ["AVAILABLE", "compiled_ctc", "ctc_loss"]

AVAILABLE = _native is not None


def compiled_ctc(labels: np.ndarray, logits: np.ndarray, label_lengths: np.ndarray, logit_lengths: np.ndarray,
                 blank: int, want_grad: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Return ``(loss float64 (B,), grad (B, T, K) in logits' dtype or None)``."""
    logits = np.ascontiguousarray(logits)
    if logits.dtype not in (np.float32, np.float64):
        logits = logits.astype(np.float32)
    labels = np.ascontiguousarray(labels, dtype=np.int64)
    label_lengths = np.ascontiguousarray(label_lengths, dtype=np.int64)
    logit_lengths = np.ascontiguousarray(logit_lengths, dtype=np.int64)
    loss = np.empty(logits.shape[0], dtype=np.float64)
    grad = np.empty_like(logits) if want_grad else None
    _native.ctc(labels, logits, label_lengths, logit_lengths, int(blank), loss, grad, threads())
    return loss, grad


if AVAILABLE:

    @fast_path("ctc_loss", backend="numpy", whole=True)
    def ctc_loss(labels: np.ndarray, logits: np.ndarray, label_lengths: np.ndarray, logit_lengths: np.ndarray, *,
                 blank_index: int, xp: Any) -> Any:
        if logits.dtype not in (np.float32, np.float64):
            return NotImplemented
        return compiled_ctc(labels, logits, label_lengths, logit_lengths, blank_index, False)[0]
