"""What a ``Loss`` will do with the per-sample values: a hint for fused gradients.

A fast path that computes the gradient in its forward pass (PyTorch's compiled
softmax kernels) can fold the factor that the reduction will later apply to
each sample's gradient -- ``1/N`` for a mean, the sample weights -- into that
pass, so that backward has nothing left to do but check it. The ``Loss``
classes publish their reduction and weights here while they compute the
values; a fast path reads them with :func:`current`.

The hint is only ever a guess: the backward pass compares the gradient that
actually arrives with the one assumed and recomputes on a mismatch, so a wrong
or stale hint (another thread, a loss scaled by the caller) costs time, never
accuracy. A plain module attribute rather than a ``ContextVar``, so that
``torch.compile`` traces it without a graph break.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["ReductionHint", "current", "publish"]


@dataclass(frozen=True)
class ReductionHint:
    """The reduction a ``Loss`` applies to the values being computed, and its sample weight (or None)."""

    reduction: str | None
    sample_weight: Any
    out_dtype: Any


_current: ReductionHint | None = None


def current() -> ReductionHint | None:
    """Return the hint of the ``Loss`` call in progress, or None."""
    return _current


def publish(hint: ReductionHint | None) -> ReductionHint | None:
    """Make ``hint`` current; return the previous one (to restore with ``publish(previous)``)."""
    global _current
    previous, _current = _current, hint
    return previous
