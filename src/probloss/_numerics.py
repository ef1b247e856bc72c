"""Numerically careful primitives written on the array API standard.

Every function takes the namespace as the keyword-only ``xp`` and never
branches on data in Python, so it runs unchanged under ``jax.jit``, on Dask and
inside ``torch.compile``. The comment on each states the identity it relies on.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from ._namespace import device_of, jax_without_x64

__all__ = [
    "LogitParts",
    "class_vector",
    "clip",
    "clip_bounds",
    "divide_no_nan",
    "log_ratio",
    "logit_parts",
    "neg_log_normalized",
    "neg_log_picked",
    "neg_log_softmax",
    "one_hot_pick",
    "one_hot_rest",
    "pow_nonnegative",
    "sigmoid_pair",
    "two_difference",
    "wide_dtype",
    "widen",
    "zero_safe_multiply",
]

Array = Any


class LogitParts(NamedTuple):
    """The pieces of a logit ``x`` that both softplus and sigmoid are made of.

    ``softplus(±x) = relu(±x) + log1p_e`` and ``sigmoid(±x)`` are all built from
    one ``exp`` and one ``log1p``; every piece is >= 0, so sums of them never
    cancel and tiny results keep their relative precision.
    """

    relu: Array  # max(x, 0)
    relu_neg: Array  # max(-x, 0)
    e: Array  # exp(-|x|), in [0, 1]
    log1p_e: Array  # log1p(exp(-|x|))


def logit_parts(x: Array, *, xp: Any) -> LogitParts:
    """Return the :class:`LogitParts` of ``x`` (one ``exp``, one ``log1p``)."""
    zeros = xp.zeros_like(x)
    relu = xp.maximum(x, zeros)
    relu_neg = xp.maximum(-x, zeros)  # not relu - x, which is inf - inf at x = +inf
    e = xp.exp(-(relu + relu_neg))  # relu + relu_neg = |x| exactly
    return LogitParts(relu, relu_neg, e, xp.log1p(e))


def sigmoid_pair(parts: LogitParts, x: Array, *, xp: Any) -> tuple[Array, Array]:
    """Return ``(sigmoid(x), sigmoid(-x))`` with full relative precision in both tails."""
    # With e = exp(-|x|): sigmoid(|x|) = 1/(1+e) and sigmoid(-|x|) = e/(1+e), ratios
    # of positive numbers, so a tiny probability keeps its bits (1 - p never forms).
    near_one = 1.0 / (1.0 + parts.e)
    near_zero = parts.e * near_one
    positive = x >= 0
    return xp.where(positive, near_one, near_zero), xp.where(positive, near_zero, near_one)


def zero_safe_multiply(weight: Array, value: Array, *, xp: Any) -> Array:
    """Return ``weight * value`` with ``0 * inf`` read as 0 (a zero label ignores its term)."""
    # Replace a non-finite value before multiplying where the weight is 0, so that
    # 0 * inf is never evaluated (NumPy warns on it) and its NaN never reaches the
    # gradient. Only non-finite values: a finite one stays, so that the slope with
    # respect to the weight at 0 is the value itself (a soft label's gradient).
    ignored = (weight == 0) & ~xp.isfinite(value)
    return weight * xp.where(ignored, xp.zeros_like(value), value)


def clip(x: Array, low: float, high: float, *, xp: Any) -> Array:
    """Clip to ``[low, high]``, with the bounds made in ``x``'s dtype (NaN stays NaN)."""
    lo = xp.asarray(low, dtype=x.dtype, device=device_of(x))
    hi = xp.asarray(high, dtype=x.dtype, device=device_of(x))
    return xp.minimum(xp.maximum(x, lo), hi)


def two_difference(a: Array, b: Array, *, xp: Any) -> tuple[Array, Array]:
    """Return ``(d, err)`` with ``d = fl(a - b)`` and ``a - b = d + err`` exactly.

    Knuth's TwoSum on ``a + (-b)``: six roundings that are all exact, for any
    magnitudes (no ordering of ``|a|`` and ``|b|`` needed). ``err`` is NaN where
    ``d`` is infinite; callers mask it.
    """
    d = a - b
    a_part = d + b  # the part of d that came from a
    b_part = d - a_part  # ... and from -b
    return d, (a - a_part) - (b + b_part)


def _without_gradient(err: Array, *, xp: Any) -> Array:
    """Return the rounding error ``err`` of ``x - m`` as a value autodiff sees as constant.

    ``err`` is exactly 0 in exact arithmetic, and so is its derivative, but autodiff
    still sends ``±ct·e`` through TwoSum's six steps; where the library flushes
    subnormals to zero (XLA on CPU), their differences vanish and the backward pass
    loses the correction. Rounding to a fixed grid (``round`` has derivative 0)
    cuts that path. The grid, 2⁻⁴⁰ (float32) or 2⁻⁶⁹ (float64), is far below
    ``err``'s own precision needs: only ``exp(d)·(1 + err)`` to 2⁻²⁴ or 2⁻⁵³.
    ``|err| > 2⁻¹⁶`` only for ``|x - m| >= 256`` (float32) or ``2³⁷`` (float64),
    where ``exp`` is 0 anyway; clipping there keeps ``err·grid`` finite.
    """
    if err.dtype == xp.float32:
        scale = 2.0**40
    elif err.dtype == xp.float64:
        scale = 2.0**69
    else:  # float16 / bfloat16 (computed in float32 by the public functions): no correction
        return xp.zeros_like(err)
    bound = 2.0**-16
    return xp.round(xp.clip(err, -bound, bound) * scale) / scale


def neg_log_softmax(x: Array, *, axis: int, xp: Any) -> Array:
    """Return ``-log_softmax(x)`` along ``axis``, accurate when one class dominates.

    ``-log_softmax(x)_j = (m - x_j) + log1p(S')`` where ``m`` is the maximum and
    ``S'`` is ``sum(exp(x - m))`` without one maximal entry. Both terms are
    non-negative, so the tiny loss of a confident correct class is not lost to
    ``logsumexp(x) - x_j`` cancelling (which rounds it to 0 in float32).

    ``S'`` is the whole loss of a confident correct class, so each of its terms
    must keep its relative precision: ``exp`` turns the rounding error ``err`` of
    ``x - m`` (up to ``|x - m|/2`` ulps) into the same relative error of the term.
    The exact ``err`` (TwoSum) restores it: ``exp(d + err) = exp(d)·(1 + err)``
    to first order, as ``|err| <= 2⁻²⁴·|d|``.

    A row whose maximum is not finite (+inf, NaN, or all -inf: no softmax) is NaN.
    """
    top = xp.max(x, axis=axis, keepdims=True)
    row_ok = xp.isfinite(top)
    m = xp.where(row_ok, top, xp.zeros_like(top))
    # TwoSum on finite entries only (inf - inf would be NaN, and NumPy warns);
    # an infinite entry has nothing to refine, and keeps its infinity in `shifted`.
    finite = xp.isfinite(x)
    x_finite = xp.where(finite, x, m)
    d, err = two_difference(x_finite, m, xp=xp)
    shifted = d + (x - x_finite)  # d where finite, x - m (±inf) elsewhere
    at_max = shifted == 0
    # Capped at 0 so that e is in [0, 1] and e·err is never inf·0: only +inf
    # entries exceed 0, in rows already marked NaN.
    e = xp.exp(xp.minimum(shifted, xp.zeros_like(shifted)))
    zeros = xp.zeros_like(e)
    others = xp.sum(xp.where(at_max, zeros, e * (1 + _without_gradient(err, xp=xp))), axis=axis,
                    keepdims=True)
    # Ties at the maximum: their e == 1 exactly, so `sum - 1` below is an exact
    # integer (the number of ties beyond one). Kept in the graph, rather than as a
    # constant, so that autodiff gives tied entries the usual softmax gradient. A
    # unique maximum stays out of it, and its gap m - x_j (0) is a constant:
    # otherwise autodiff of a dominant class's loss would form 1/(1 + S') - 1 from
    # the maximum's paths, which rounds a tiny gradient -S'/(1 + S') to 0.
    at_max_f = xp.astype(at_max, e.dtype)
    tied = xp.sum(at_max_f, axis=axis, keepdims=True) > 1
    ties = xp.sum(xp.where(at_max & tied, e, zeros), axis=axis, keepdims=True) - xp.astype(tied, e.dtype)
    rest = xp.where(row_ok, others + ties, xp.full_like(others, float("nan")))
    gap = xp.where(at_max & ~tied, zeros, -shifted)  # m - x_j
    return gap + xp.log1p(rest)


def _class_hits(x: Array, labels: Array, *, axis: int, xp: Any) -> Array:
    """Return the boolean one-hot of ``labels`` along ``axis``, broadcast against ``x``."""
    shape = [1] * x.ndim
    shape[axis] = x.shape[axis]
    classes = xp.reshape(xp.arange(x.shape[axis], dtype=labels.dtype, device=device_of(x)),
                         tuple(shape))
    return xp.expand_dims(labels, axis=axis) == classes


def one_hot_pick(x: Array, labels: Array, *, axis: int, xp: Any) -> Array:
    """Return ``x`` at index ``labels`` along ``axis`` (which is removed).

    Works on every namespace, Dask included (no ``take_along_axis``): the label's
    entry is selected by comparing with ``arange(num_classes)``. A label outside
    ``[0, num_classes)`` selects nothing and yields 0; callers mark it invalid.
    """
    hit = _class_hits(x, labels, axis=axis, xp=xp)
    return xp.sum(xp.where(hit, x, xp.zeros_like(x)), axis=axis)


def one_hot_rest(x: Array, labels: Array, *, axis: int, xp: Any) -> Array:
    """Return the sum of ``x`` along ``axis`` without the entry at index ``labels``.

    Summed directly rather than as ``sum - picked``, which cancels when the
    picked entry holds nearly all of the sum.
    """
    hit = _class_hits(x, labels, axis=axis, xp=xp)
    return xp.sum(xp.where(hit, xp.zeros_like(x), x), axis=axis)


def class_vector(values: float | tuple[float, ...], like: Array, *, axis: int, xp: Any) -> Array:
    """Return per-class ``values`` as an array of ``like``'s dtype shaped to broadcast along ``axis``.

    A scalar becomes a 0-d array (it broadcasts everywhere).
    """
    vector = xp.asarray(values, dtype=like.dtype, device=device_of(like))
    if vector.ndim == 0:
        return vector
    shape = [1] * like.ndim
    shape[axis] = vector.shape[0]
    return xp.reshape(vector, tuple(shape))


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
    # Far from 1 (t < p/2) log1p near -1 amplifies the rounding of the ratio, so
    # log(t/p) is used there (its condition number 1/|log(t/p)| is < 1.5).
    near = 2 * t >= p
    return xp.where(near, xp.log1p((t - p) / p), xp.log(t / p))


def divide_no_nan(numerator: Array, denominator: Array, *, xp: Any) -> Array:
    """Return ``numerator / denominator``, and 0 where the denominator is 0."""
    zero = denominator == 0
    safe = xp.where(zero, xp.ones_like(denominator), denominator)
    return xp.where(zero, xp.zeros_like(numerator), numerator / safe)


def _nll_bounds(low: float, high: float, like: Array, *, xp: Any) -> tuple[Array, Array]:
    """Return ``(-log(high), -log(low))`` for the bounds made in ``like``'s dtype."""
    lo = xp.asarray(low, dtype=like.dtype, device=device_of(like))
    hi = xp.asarray(high, dtype=like.dtype, device=device_of(like))
    # 1 - hi is exact (Sterbenz), so -log1p(-(1 - hi)) is -log(hi) to the last bit.
    return -xp.log1p(-(1 - hi)), -xp.log(lo)


def neg_log_normalized(y: Array, low: float, high: float, *, axis: int, xp: Any) -> Array:
    """Return ``-log(clip(y / sum(y), low, high))`` along ``axis``, accurate near 1.

    For a maximal entry ``m``, ``-log(m / sum) = log1p(rest / m)`` with ``rest``
    the sum of the other entries, so a probability near 1 keeps its tiny loss
    (``-log`` of the rounded ratio loses it). Clipping ``p`` to ``[low, high]`` is
    clipping ``-log p`` to ``[-log high, -log low]``. Other entries are ``<= 1/2``
    of the sum, where ``-log`` of the ratio is accurate.
    """
    total = xp.sum(y, axis=axis, keepdims=True)
    general = -xp.log(clip(y / total, low, high, xp=xp))
    if 0 in tuple(y.shape):
        return general  # nothing to refine; Dask cannot take the max of an empty array
    m = xp.max(y, axis=axis, keepdims=True)
    # A unique maximum above half the sum (ties give 2m <= total, rounding is monotone).
    top = (y == m) & (2 * m > total)
    rest = xp.sum(xp.where(y == m, xp.zeros_like(y), y), axis=axis, keepdims=True)
    nll_hi, nll_lo = _nll_bounds(low, high, y, xp=xp)
    # One log1p per row (on the reduced arrays), broadcast to the maximal entry.
    near_one = xp.minimum(xp.maximum(xp.log1p(rest / m), nll_hi), nll_lo)
    return xp.where(top, near_one, general)


def neg_log_picked(picked: Array, rest: Array, low: float, high: float, *, xp: Any) -> Array:
    """Return ``-log(clip(picked / (picked + rest), low, high))`` for ``picked, rest >= 0``.

    Where ``picked >= rest`` (a probability >= 1/2) it is ``log1p(rest / picked)``
    clipped to ``[-log high, -log low]``, exact near 1; elsewhere ``-log`` of the
    clipped ratio, as Keras. The safe denominator keeps the unused branch's
    gradient finite where ``picked`` is 0.
    """
    big = picked >= rest
    safe = xp.where(big, picked, xp.ones_like(picked))
    nll_hi, nll_lo = _nll_bounds(low, high, picked, xp=xp)
    near_one = xp.minimum(xp.maximum(xp.log1p(rest / safe), nll_hi), nll_lo)
    general = -xp.log(clip(picked / (picked + rest), low, high, xp=xp))
    return xp.where(big, near_one, general)


def clip_bounds(epsilon: float, dtype: Any, *, xp: Any) -> tuple[float, float]:
    """Return Keras's clip bounds ``(ε, 1 - ε)`` rounded to ``dtype``, as Python floats.

    A float32 loss computed in float64 must clip where float32 clips: 1 - 1e-7 is
    0.99999988 in float32, not 0.9999999. Python floats carry the rounded bounds
    exactly into any wider dtype.
    """
    rounded = np.float32 if dtype == xp.float32 else np.float64
    return float(rounded(epsilon)), float(rounded(1.0 - epsilon))


def widen(y_true: Array, y_pred: Array, *, xp: Any) -> tuple[Array, Array]:
    """Return both arrays in :func:`wide_dtype` of ``y_pred`` (integer labels unchanged)."""
    wide = wide_dtype(y_pred, xp=xp)
    if y_true.dtype == y_pred.dtype:
        y_true = xp.astype(y_true, wide, copy=False)
    return y_true, xp.astype(y_pred, wide, copy=False)


def wide_dtype(x: Array, *, xp: Any) -> Any:
    """Return float64 for float32 ``x`` where the library computes in float64, else ``x.dtype``.

    Used where float32 arithmetic cannot reach a few ulps (terms that cancel):
    the sum runs in float64 and is rounded once. JAX without ``jax_enable_x64``
    and PyTorch on MPS have no float64; they keep float32.
    """
    no_float64 = jax_without_x64(xp) or getattr(device_of(x), "type", None) == "mps"
    return x.dtype if x.dtype != xp.float32 or no_float64 else xp.float64

