"""Reductions, masks and sample weights, as Keras 3's ``reduce_weighted_values``.

Pure functions on ``xp``. Two deliberate differences from Keras 3, both what
tf.keras 2.x does and what a user expects:

* a per-sample weight of shape ``(B,)`` against per-timestep losses ``(B, T)``
  weights samples (it is expanded to ``(B, 1)``); Keras 3 broadcasts it along
  the last axis, which fails when ``T != B`` and weights timesteps when
  ``T == B``;
* an empty batch reduces to 0 (as tf.keras, and as Keras 3 for every empty
  shape except ``(0,)``, where it returns the empty array).

Weights that cannot broadcast raise a ``ValueError`` naming ``sample_weight``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._namespace import device_of, element_count
from ._numerics import divide_no_nan

__all__ = [
    "REDUCTIONS",
    "Reduction",
    "apply_mask",
    "combine_partial",
    "partial_terms",
    "reduce_values",
    "reduce_weighted_values",
    "squeeze_or_expand_to_same_rank",
    "standardize_reduction",
]

Array = Any

REDUCTIONS: tuple[str | None, ...] = (
    "sum_over_batch_size",
    "sum",
    "mean",
    "mean_with_sample_weight",
    "none",
    None,
)
# tf.keras 2.x spellings accepted on input and stored as their Keras 3 equivalent.
_LEGACY = {"auto": "sum_over_batch_size"}
_MEANS = ("sum_over_batch_size", "mean", "mean_with_sample_weight")


class Reduction:
    """Reduction names: Keras 3's and tf.keras 2.x's ``tf.keras.losses.Reduction``.

    Examples:
        >>> import probloss
        >>> probloss.BinaryCrossentropy(reduction=probloss.Reduction.AUTO).reduction
        'sum_over_batch_size'
    """

    AUTO = "auto"
    NONE = "none"
    SUM = "sum"
    SUM_OVER_BATCH_SIZE = "sum_over_batch_size"
    MEAN = "mean"
    MEAN_WITH_SAMPLE_WEIGHT = "mean_with_sample_weight"

    @classmethod
    def all(cls) -> tuple[str, ...]:
        """Return every accepted reduction name (tf.keras's four plus Keras 3's)."""
        return (cls.AUTO, cls.NONE, cls.SUM, cls.SUM_OVER_BATCH_SIZE, cls.MEAN,
                cls.MEAN_WITH_SAMPLE_WEIGHT)

    @classmethod
    def validate(cls, key: object) -> None:
        """Raise ``ValueError`` if ``key`` is not an accepted reduction."""
        standardize_reduction(key)


def standardize_reduction(reduction: object) -> str | None:
    """Return the Keras 3 name of ``reduction``, accepting tf.keras's ``"auto"``."""
    if isinstance(reduction, str) and reduction in _LEGACY:
        return _LEGACY[reduction]
    if reduction in REDUCTIONS:
        return reduction  # type: ignore[return-value]
    allowed = ", ".join(repr(r) for r in (*REDUCTIONS, "auto"))
    msg = (
        f"Invalid value for argument `reduction`. Expected one of {{{allowed}}}. "
        f"Received: reduction={reduction!r}"
    )
    raise ValueError(msg)


def squeeze_or_expand_to_same_rank(x1: Array, x2: Array, *, xp: Any,
                                   expand_rank_1: bool = True) -> tuple[Array, Array]:
    """Keras's rank adjustment: fix a rank difference of 1 with a trailing 1."""
    if x1.ndim == x2.ndim:
        return x1, x2
    if x1.ndim == x2.ndim + 1 and x1.shape[-1] == 1:
        if x2.ndim == 1 and expand_rank_1:
            return x1, xp.expand_dims(x2, axis=-1)
        return xp.squeeze(x1, axis=-1), x2
    if x2.ndim == x1.ndim + 1 and x2.shape[-1] == 1:
        if x1.ndim == 1 and expand_rank_1:
            return xp.expand_dims(x1, axis=-1), x2
        return x1, xp.squeeze(x2, axis=-1)
    return x1, x2


def _align_weight(values: Array, weight: Array, *, xp: Any) -> tuple[Array, Array]:
    values, weight = squeeze_or_expand_to_same_rank(values, weight, xp=xp)
    if 0 < weight.ndim < values.ndim and tuple(weight.shape) == tuple(values.shape[:weight.ndim]):
        # Per-sample weights on per-timestep losses weight samples (tf.keras's rule).
        weight = xp.reshape(weight, tuple(weight.shape) + (1,) * (values.ndim - weight.ndim))
    elif 0 < weight.ndim < values.ndim and any(d != 1 for d in weight.shape):
        # A lower-rank weight that is not one per sample, e.g. (T,) against (B, T): plain
        # broadcasting would weight the last axis when T != B but samples when T == B.
        msg = (
            f"`sample_weight` of shape {tuple(weight.shape)} does not match the leading "
            f"dimensions of the per-sample losses of shape {tuple(values.shape)}. Pass one "
            "weight per sample, a scalar, or a weight of the losses' full rank (for example "
            f"shape {(1,) * (values.ndim - weight.ndim) + tuple(weight.shape)}) to weight the "
            "trailing axes."
        )
        raise ValueError(msg)
    if not _broadcastable(tuple(values.shape), tuple(weight.shape)):
        msg = (
            f"`sample_weight` of shape {tuple(weight.shape)} cannot be broadcast to the "
            f"per-sample losses of shape {tuple(values.shape)}. Pass one weight per sample "
            "(the leading dimensions of the losses) or a scalar."
        )
        raise ValueError(msg)
    return values, weight


def _broadcastable(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    for x, y in zip(reversed(a), reversed(b), strict=False):
        if x is None or y is None or (isinstance(x, float) and math.isnan(x)):
            continue
        if x != y and x != 1 and y != 1:
            return False
    return True


def apply_mask(sample_weight: Array | None, mask: Array, *, reduction: str | None,
               xp: Any, dtype: Any) -> Array:
    """Fold a boolean mask into the sample weight, as Keras 3's ``apply_mask``.

    For the mean reductions the kept entries are scaled by ``total / valid``, so
    that the later division by the element count yields a mean over valid ones.
    """
    if reduction in ("mean", "sum_over_batch_size"):
        total = element_count(mask, xp=xp, dtype=dtype)
        valid = xp.sum(xp.astype(mask, dtype))
        scale = divide_no_nan(total, valid, xp=xp)
        float_mask = xp.where(mask, scale, xp.zeros_like(scale))
    else:
        float_mask = xp.astype(mask, dtype)
    if sample_weight is None:
        return float_mask
    float_mask, sample_weight = squeeze_or_expand_to_same_rank(float_mask, sample_weight, xp=xp)
    return sample_weight * float_mask


def reduce_values(values: Array, sample_weight: Array | None, reduction: str | None, *,
                  xp: Any) -> Array:
    """Reduce weighted per-sample losses: ``sum``, or ``sum`` over a divisor."""
    if reduction in (None, "none") or values.ndim == 0:
        return values
    loss = xp.sum(values)
    if reduction in _MEANS:
        if reduction == "mean_with_sample_weight" and sample_weight is not None:
            divisor = xp.sum(sample_weight)
        else:
            count = _known_count(values)
            if count:
                # A count known and nonzero: the same division without divide_no_nan's guard
                # (five ops, and their backward, of ~60 microseconds on PyTorch per call).
                mean = loss / xp.asarray(count, dtype=loss.dtype, device=device_of(loss))
                return np.asarray(mean) if isinstance(mean, np.generic) else mean  # NumPy: a 0-d array
            divisor = element_count(values, xp=xp, dtype=values.dtype)
        loss = divide_no_nan(loss, xp.astype(divisor, loss.dtype), xp=xp)
    return loss


def _known_count(values: Array) -> int:
    """The number of elements from a static shape of Python ints, or 0 (unknown, as in a graph or Dask)."""
    count = 1
    for d in values.shape:  # a loop, not a generator: torch.compile traces it without a graph break
        if type(d) is not int:
            return 0
        count *= d
    return count


def reduce_weighted_values(values: Array, *, sample_weight: Array | None, mask: Array | None,
                           reduction: str | None, xp: Any) -> Array:
    """Apply mask, sample weight and reduction to per-sample losses (Keras 3 §A.5)."""
    reduction = standardize_reduction(reduction)
    if sample_weight is not None:
        # Align first, so that a per-sample weight meets a per-timestep mask as (B, 1).
        values, sample_weight = _align_weight(values, sample_weight, xp=xp)
    if mask is not None:
        sample_weight = apply_mask(sample_weight, mask, reduction=reduction, xp=xp,
                                   dtype=values.dtype)
    if sample_weight is not None:
        values, sample_weight = _align_weight(values, sample_weight, xp=xp)
        values = values * sample_weight
    return reduce_values(values, sample_weight, reduction, xp=xp)



def partial_terms(values: Array, *, sample_weight: Array | None, mask: Array | None,
                  reduction: str | None, xp: Any) -> tuple[Array, Array]:
    """Split a reduction into ``(numerator, denominator)``, both additive over samples.

    The numerator is the weighted sum of the losses (masked entries count 0). The
    denominator is what the reduction divides by: the element count
    (``"sum_over_batch_size"``, ``"mean"``), or the number of unmasked elements when
    there is a mask; the sum of the weights (``"mean_with_sample_weight"``); the
    element count, unused, for ``"sum"``. Summing both over any split of a batch
    (accumulation steps, data-parallel ranks) and calling :func:`combine_partial`
    gives the reduction of the whole batch. Keras's ``total / valid`` rescaling of
    the mask is folded into the denominator, so it too splits exactly.
    """
    reduction = standardize_reduction(reduction)
    if reduction in (None, "none"):
        msg = "A partial result needs a reducing `reduction`; received reduction='none'."
        raise ValueError(msg)
    if values.ndim == 0:
        values = xp.reshape(values, (1,))
    if sample_weight is not None:
        values, sample_weight = _align_weight(values, sample_weight, xp=xp)
    if mask is not None:
        sample_weight = apply_mask(sample_weight, mask, reduction="sum", xp=xp, dtype=values.dtype)
    if sample_weight is not None:
        values, sample_weight = _align_weight(values, sample_weight, xp=xp)
        values = values * sample_weight
    numerator = xp.sum(values)
    if reduction == "mean_with_sample_weight" and sample_weight is not None:
        denominator = xp.sum(sample_weight)
    elif mask is not None and reduction in _MEANS:
        denominator = xp.sum(xp.astype(mask, values.dtype))
    else:
        denominator = element_count(values, xp=xp, dtype=values.dtype)
    return numerator, xp.astype(denominator, numerator.dtype)


def combine_partial(numerator: Array, denominator: Array, reduction: str | None, *,
                    xp: Any) -> Array:
    """The reduced loss from summed :func:`partial_terms` (0 when the denominator is 0)."""
    if standardize_reduction(reduction) == "sum":
        return numerator
    return divide_no_nan(numerator, denominator, xp=xp)
