"""An independent float64 NumPy reference for every probloss loss, with Keras 3 semantics.

Nothing here imports probloss: this module is the yardstick the tests hold
probloss against, written from the behaviour documented in
``/work/shared/reference/keras-semantics.md`` (Parts A and B) plus probloss's
documented deliberate differences. Other test modules may reuse it.

Conventions:

* Every function takes array-likes, computes in float64 and returns float64.
* ``clip_dtype`` names the dtype whose rounding of ``eps`` and ``1 - eps``
  applies to the probability clip. Keras clips in the computation dtype, so a
  float32 computation clips at ``[float32(1e-7), 1 - 2**-23]``; probloss
  computes float16/bfloat16/float32 inputs in float32, so pass ``"float32"``
  for those and ``"float64"`` for float64 inputs.
* Logits paths are exact (no sigmoid/softmax followed by a clip), as probloss
  documents; a zero label ignores its term even where the log is infinite
  (``-inf`` logits are a masking idiom).
* Reductions follow Keras 3's ``reduce_weighted_values`` (keras-semantics.md
  A.5) with probloss's two differences: a ``(B,)`` weight on ``(B, T)`` losses
  weights samples, and an empty batch reduces to 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

EPSILON = 1e-7

__all__ = [
    "EPSILON",
    "LOSSES",
    "binary_crossentropy",
    "binary_focal_crossentropy",
    "categorical_crossentropy",
    "categorical_focal_crossentropy",
    "clip_bounds",
    "kl_divergence",
    "loss_class",
    "poisson",
    "reduce",
    "sparse_categorical_crossentropy",
]


def _f64(x: Any) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def clip_bounds(clip_dtype: str = "float64", eps: float = EPSILON) -> tuple[float, float]:
    """Return ``(eps, 1 - eps)`` as computed in ``clip_dtype``, as float64 numbers."""
    dt = np.dtype(clip_dtype)
    low = dt.type(eps)
    high = dt.type(1) - low
    return float(low), float(high)


def _xlogy_safe(y: np.ndarray, value: np.ndarray) -> np.ndarray:
    """``y * value`` where a zero ``y`` contributes exactly 0 (even for an infinite value)."""
    with np.errstate(invalid="ignore", over="ignore"):
        return np.where(y == 0, 0.0, y * value)


def _softplus(x: np.ndarray) -> np.ndarray:
    """``log(1 + e^x)``, evaluated without overflow."""
    with np.errstate(over="ignore", invalid="ignore"):
        return np.maximum(x, 0.0) + np.log1p(np.exp(-np.abs(x)))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _neg_log_softmax(x: np.ndarray, axis: int) -> np.ndarray:
    """``-log softmax(x)`` in float64, written as ``(m - x) + log(sum exp(x - m))``.

    The sum is split into its maximal term (exactly 1) and the rest, so that
    ``log1p`` keeps the precision of a tiny remainder.
    """
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(invalid="ignore", over="ignore"):
        shifted = x - m
        e = np.exp(shifted)
    at_max = shifted == 0
    n_at_max = np.sum(at_max, axis=axis, keepdims=True)
    rest = np.sum(np.where(at_max, 0.0, e), axis=axis, keepdims=True) + np.maximum(n_at_max - 1, 0)
    with np.errstate(invalid="ignore"):
        return -shifted + np.log1p(rest)


def _smooth_binary(y: np.ndarray, ls: float) -> np.ndarray:
    return y * (1.0 - ls) + 0.5 * ls if ls else y


def _smooth_categorical(y: np.ndarray, ls: float, k: int) -> np.ndarray:
    return y * (1.0 - ls) + ls / k if ls else y


def _binary_elementwise(y: np.ndarray, p: np.ndarray, from_logits: bool, clip_dtype: str) -> np.ndarray:
    if from_logits:
        return _xlogy_safe(y, _softplus(-p)) + _xlogy_safe(1.0 - y, _softplus(p))
    lo, hi = clip_bounds(clip_dtype)
    q = np.clip(p, lo, hi)
    return -(y * np.log(q) + (1.0 - y) * np.log1p(-q))


def binary_crossentropy(y_true: Any, y_pred: Any, from_logits: bool = False, label_smoothing: float = 0.0,
                        axis: int = -1, clip_dtype: str = "float64") -> np.ndarray:
    """Keras's BCE: mean over ``axis`` of the elementwise term."""
    y = _smooth_binary(_f64(y_true), label_smoothing)
    p = _f64(y_pred)
    return np.mean(_binary_elementwise(y, p, from_logits, clip_dtype), axis=axis)


def binary_focal_crossentropy(y_true: Any, y_pred: Any, apply_class_balancing: bool = False,
                              alpha: float = 0.25, gamma: float = 2.0, from_logits: bool = False,
                              label_smoothing: float = 0.0, axis: int = -1,
                              clip_dtype: str = "float64") -> np.ndarray:
    """Keras's BFCE, with the exact-logits cross-entropy term (TF backend)."""
    y = _smooth_binary(_f64(y_true), label_smoothing)
    p = _f64(y_pred)
    bce = _binary_elementwise(y, p, from_logits, clip_dtype)
    one_minus_pt = y * _sigmoid(-p) + (1.0 - y) * _sigmoid(p) if from_logits else y * (1.0 - p) + (1.0 - y) * p
    with np.errstate(invalid="ignore"):
        focal = np.power(one_minus_pt, gamma) * bce
    if apply_class_balancing:
        focal = (y * alpha + (1.0 - y) * (1.0 - alpha)) * focal
    return np.mean(focal, axis=axis)


def categorical_crossentropy(y_true: Any, y_pred: Any, from_logits: bool = False,
                             label_smoothing: float = 0.0, axis: int = -1,
                             clip_dtype: str = "float64") -> np.ndarray:
    """Keras's CCE: renormalise, clip, ``-sum(y log p)``; exact log-softmax for logits."""
    p = _f64(y_pred)
    y = _smooth_categorical(_f64(y_true), label_smoothing, p.shape[axis])
    if from_logits:
        return np.sum(_xlogy_safe(y, _neg_log_softmax(p, axis)), axis=axis)
    lo, hi = clip_bounds(clip_dtype)
    with np.errstate(invalid="ignore", divide="ignore"):
        q = np.clip(p / np.sum(p, axis=axis, keepdims=True), lo, hi)
    return -np.sum(y * np.log(q), axis=axis)


def categorical_focal_crossentropy(y_true: Any, y_pred: Any, alpha: float | Sequence[float] = 0.25,
                                   gamma: float = 2.0, from_logits: bool = False,
                                   label_smoothing: float = 0.0, axis: int = -1,
                                   clip_dtype: str = "float64") -> np.ndarray:
    """Keras's CFCE; the logits path uses the exact log-softmax (probloss difference 3)."""
    p = _f64(y_pred)
    y = _smooth_categorical(_f64(y_true), label_smoothing, p.shape[axis])
    if from_logits:
        nll = _neg_log_softmax(p, axis)
        ce = _xlogy_safe(y, nll)
        one_minus_p = -np.expm1(-nll)
    else:
        lo, hi = clip_bounds(clip_dtype)
        with np.errstate(invalid="ignore", divide="ignore"):
            q = np.clip(p / np.sum(p, axis=axis, keepdims=True), lo, hi)
        ce = -y * np.log(q)
        one_minus_p = 1.0 - q
    weight = np.power(one_minus_p, gamma) * np.asarray(alpha, dtype=np.float64)  # alpha: last axis
    return np.sum(weight * ce, axis=axis)


def sparse_categorical_crossentropy(y_true: Any, y_pred: Any, from_logits: bool = False,
                                    ignore_class: int | None = None, axis: int = -1,
                                    clip_dtype: str = "float64") -> tuple[np.ndarray, np.ndarray | None]:
    """Sparse CE with any class axis; returns ``(values, valid mask or None)``.

    Probabilities are renormalised then clipped (Keras's JAX/NumPy backends). A
    label outside ``[0, C)`` that is not ``ignore_class`` gives NaN; an ignored
    label gives 0.
    """
    p = _f64(y_pred)
    axis = axis % p.ndim
    labels = np.asarray(y_true)
    if labels.ndim == p.ndim and labels.shape[axis] == 1:
        labels = np.squeeze(labels, axis=axis)
    labels = labels.astype(np.int64)
    c = p.shape[axis]
    valid = np.ones(labels.shape, bool) if ignore_class is None else labels != ignore_class
    in_range = (labels >= 0) & (labels < c)
    index = np.expand_dims(np.clip(labels, 0, max(c - 1, 0)), axis)
    if from_logits:
        values = np.squeeze(np.take_along_axis(_neg_log_softmax(p, axis), index, axis=axis), axis=axis)
    else:
        lo, hi = clip_bounds(clip_dtype)
        with np.errstate(invalid="ignore", divide="ignore"):
            picked = np.squeeze(np.take_along_axis(p, index, axis=axis), axis=axis) / np.sum(p, axis=axis)
            values = -np.log(np.clip(picked, lo, hi))
    values = np.where(in_range, values, np.nan)
    values = np.where(valid, values, 0.0)
    return values, (None if ignore_class is None else valid)


def poisson(y_true: Any, y_pred: Any, clip_dtype: str = "float64") -> np.ndarray:
    """``mean(p - y·log(p + eps), axis=-1)`` with eps rounded to ``clip_dtype``."""
    y, p = _f64(y_true), _f64(y_pred)
    eps = clip_bounds(clip_dtype)[0]
    return np.mean(p - y * np.log(p + eps), axis=-1)


def kl_divergence(y_true: Any, y_pred: Any, clip_dtype: str = "float64") -> np.ndarray:
    """``sum(t·log(t/p), axis=-1)`` with both clipped to ``[eps, 1]``."""
    eps = clip_bounds(clip_dtype)[0]
    t = np.clip(_f64(y_true), eps, 1.0)
    p = np.clip(_f64(y_pred), eps, 1.0)
    return np.sum(t * np.log(t / p), axis=-1)


# -------------------------------------------------------------------- reductions


def _same_rank(x1: np.ndarray, x2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keras's ``squeeze_or_expand_to_same_rank`` (keras-semantics.md A.4)."""
    if x1.ndim == x2.ndim:
        return x1, x2
    if x1.ndim == x2.ndim + 1 and x1.shape[-1] == 1:
        return (x1, x2[..., None]) if x2.ndim == 1 else (x1[..., 0], x2)
    if x2.ndim == x1.ndim + 1 and x2.shape[-1] == 1:
        return (x1[..., None], x2) if x1.ndim == 1 else (x1, x2[..., 0])
    return x1, x2


def reduce(values: Any, sample_weight: Any = None, mask: Any = None,
           reduction: str | None = "sum_over_batch_size") -> np.ndarray:
    """Keras 3's ``reduce_weighted_values`` in float64, with probloss's differences.

    Args:
        values: per-sample losses.
        sample_weight: None, a scalar, or weights broadcastable against ``values``.
        mask: boolean array of valid entries (SCCE's ``ignore_class``), or None.
        reduction: ``"sum_over_batch_size"``, ``"mean"``, ``"sum"``,
            ``"mean_with_sample_weight"``, ``"none"``, None or ``"auto"``.
    """
    if reduction == "auto":
        reduction = "sum_over_batch_size"
    values = _f64(values)
    w = None if sample_weight is None else _f64(sample_weight)
    if mask is not None:
        mask = np.asarray(mask, bool)
        if reduction in ("mean", "sum_over_batch_size"):
            valid = float(np.sum(mask))
            scale = mask.size / valid if valid else 0.0
            float_mask = np.where(mask, scale, 0.0)
        else:
            float_mask = mask.astype(np.float64)
        if w is None:
            w = float_mask
        else:
            float_mask, w = _same_rank(float_mask, w)
            w = w * float_mask
    if w is not None:
        values, w = _same_rank(values, w)
        if 0 < w.ndim < values.ndim and w.shape == values.shape[: w.ndim]:
            w = w.reshape(w.shape + (1,) * (values.ndim - w.ndim))  # per-sample weights (tf.keras)
        values = values * w
    if reduction in (None, "none") or values.ndim == 0:
        return values
    total = np.sum(values)
    if reduction == "sum":
        return total
    divisor = np.sum(w) if reduction == "mean_with_sample_weight" and w is not None else values.size
    return total / divisor if divisor != 0 else np.float64(0.0)


LOSSES = {
    "binary_crossentropy": binary_crossentropy,
    "binary_focal_crossentropy": binary_focal_crossentropy,
    "categorical_crossentropy": categorical_crossentropy,
    "categorical_focal_crossentropy": categorical_focal_crossentropy,
    "sparse_categorical_crossentropy": sparse_categorical_crossentropy,
    "poisson": poisson,
    "kl_divergence": kl_divergence,
}


def loss_class(name: str, y_true: Any, y_pred: Any, sample_weight: Any = None,
               reduction: str | None = "sum_over_batch_size", clip_dtype: str = "float64",
               **options: Any) -> np.ndarray:
    """What the loss class ``name`` returns: rank adjustment, values, reduction."""
    yt, yp = np.asarray(y_true), np.asarray(y_pred)
    yt, yp = _same_rank(yt, yp)
    fn = LOSSES[name]
    if name == "sparse_categorical_crossentropy":
        values, mask = fn(yt, yp, clip_dtype=clip_dtype, **options)
    else:
        values, mask = fn(yt, yp, clip_dtype=clip_dtype, **options), None
    return reduce(values, sample_weight, mask, reduction)
