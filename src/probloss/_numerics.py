"""Numerically careful primitives written on the array API standard.

Every function takes the namespace as the keyword-only ``xp`` and never
branches on data in Python, so it runs unchanged under ``jax.jit``, on Dask and
inside ``torch.compile``. The comment on each states the identity it relies on.
"""

from __future__ import annotations

from typing import Any

from ._namespace import device_of

__all__ = [
    "clip",
    "divide_no_nan",
    "log_ratio",
    "neg_log_softmax",
    "one_hot_pick",
    "pow_nonnegative",
    "sigmoid",
    "softplus",
    "zero_safe_multiply",
]

Array = Any


def softplus(x: Array, *, xp: Any) -> Array:
    """Return ``log(1 + exp(x))`` without overflow and with full relative precision."""
    # softplus(x) = max(x, 0) + log1p(exp(-|x|)): both terms are >= 0, so nothing
    # cancels, and exp never sees a positive argument.
    return xp.maximum(x, xp.zeros_like(x)) + xp.log1p(xp.exp(-xp.abs(x)))


def sigmoid(x: Array, *, xp: Any) -> Array:
    """Return ``1 / (1 + exp(-x))`` with full relative precision in both tails."""
    # For x >= 0 use 1/(1+e^-x); for x < 0 use e^x/(1+e^x). With e = exp(-|x|)
    # both are a ratio of positive numbers, so tiny results keep their bits.
    e = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def zero_safe_multiply(weight: Array, value: Array, *, xp: Any) -> Array:
    """Return ``weight * value`` with ``0 * inf`` read as 0 (a zero label ignores its term)."""
    return xp.where(weight == 0, xp.zeros_like(value), weight * value)


def clip(x: Array, low: float, high: float, *, xp: Any) -> Array:
    """Clip to ``[low, high]``, with the bounds made in ``x``'s dtype (NaN stays NaN)."""
    lo = xp.asarray(low, dtype=x.dtype)
    hi = xp.asarray(high, dtype=x.dtype)
    return xp.minimum(xp.maximum(x, lo), hi)


def neg_log_softmax(x: Array, *, axis: int, xp: Any) -> Array:
    """Return ``-log_softmax(x)`` along ``axis``, accurate when one class dominates.

    ``-log_softmax(x)_j = (m - x_j) + log1p(S')`` where ``m`` is the maximum and
    ``S'`` is ``sum(exp(x - m))`` without one maximal entry. Both terms are
    non-negative, so the tiny loss of a confident correct class is not lost to
    ``logsumexp(x) - x_j`` cancelling (which rounds it to 0 in float32).
    """
    m = xp.max(x, axis=axis, keepdims=True)
    # All -inf (or a +inf) maximum would make x - m NaN; shift by 0 there instead.
    m = xp.where(xp.isfinite(m), m, xp.zeros_like(m))
    shifted = x - m
    at_max = shifted == 0
    e = xp.exp(shifted)
    zeros = xp.zeros_like(e)
    others = xp.sum(xp.where(at_max, zeros, e), axis=axis, keepdims=True)
    # Entries at the maximum have e == 1 exactly, so `sum - 1` below is an exact
    # integer (the number of ties beyond one). Keeping them in the graph, rather
    # than as a constant, leaves autodiff the usual softmax gradient.
    ties = xp.sum(xp.where(at_max, e, zeros), axis=axis, keepdims=True) - 1
    rest = others + ties
    return -shifted + xp.log1p(rest)


def one_hot_pick(x: Array, labels: Array, *, axis: int, xp: Any) -> Array:
    """Return ``x`` at index ``labels`` along ``axis`` (which is removed).

    Works on every namespace, Dask included (no ``take_along_axis``): the label's
    entry is selected by comparing with ``arange(num_classes)``. A label outside
    ``[0, num_classes)`` selects nothing and yields 0; callers mark it invalid.
    """
    num_classes = x.shape[axis]
    shape = [1] * x.ndim
    shape[axis] = num_classes
    classes = xp.reshape(xp.arange(num_classes, dtype=labels.dtype, device=device_of(x)),
                         tuple(shape))
    hit = xp.expand_dims(labels, axis=axis) == classes
    return xp.sum(xp.where(hit, x, xp.zeros_like(x)), axis=axis)


def pow_nonnegative(base: Array, exponent: float, *, xp: Any) -> Array:
    """Return ``base ** exponent`` for ``base >= 0`` with a finite gradient at 0.

    For ``0 < exponent < 1`` the derivative of ``u**exponent`` is infinite at
    ``u = 0``; the double ``where`` keeps that branch out of the backward pass.
    """
    if exponent == 0:
        return xp.ones_like(base)
    positive = base > 0
    safe = xp.where(positive, base, xp.ones_like(base))
    return xp.where(positive, safe**exponent, xp.zeros_like(base))


def log_ratio(t: Array, p: Array, *, xp: Any) -> Array:
    """Return ``log(t / p)`` for positive ``t`` and ``p``, accurate when ``t ≈ p``."""
    # log(t/p) = log1p((t - p) / p); t - p is exact near t = p (Sterbenz), so the
    # small difference keeps its relative precision instead of rounding in t/p.
    return xp.log1p((t - p) / p)


def divide_no_nan(numerator: Array, denominator: Array, *, xp: Any) -> Array:
    """Return ``numerator / denominator``, and 0 where the denominator is 0."""
    zero = denominator == 0
    safe = xp.where(zero, xp.ones_like(denominator), denominator)
    return xp.where(zero, xp.zeros_like(numerator), numerator / safe)

