"""Poisson and Kullback-Leibler divergence kernels."""

from __future__ import annotations

from typing import Any

from .._dispatch import kernel
from .._namespace import device_of
from .._numerics import clip, log_ratio, wide_dtype

Array = Any


@kernel
def poisson(y_true: Array, y_pred: Array, *, axis: int, epsilon: float, xp: Any) -> Array:
    # See probloss.poisson for the contract: Keras's mean(p - y·log(p + ε)).
    # The terms cancel (p ≈ y·log p, and signs mix across the axis), so float32
    # inputs are computed in float64 and rounded once (see docs/accuracy.md).
    wide = wide_dtype(y_pred, xp=xp)
    eps = xp.astype(xp.asarray(epsilon, dtype=y_pred.dtype, device=device_of(y_pred)), wide)
    t = xp.astype(y_true, wide)
    p = xp.astype(y_pred, wide)
    return xp.astype(xp.mean(p - t * xp.log(p + eps), axis=axis), y_pred.dtype)


@kernel
def kl_divergence(y_true: Array, y_pred: Array, *, axis: int, epsilon: float, xp: Any) -> Array:
    # See probloss.kl_divergence for the contract: Keras clips both to [ε, 1].
    # Terms of both signs cancel in the sum (to ~0 for close distributions), so
    # float32 inputs are summed in float64 and rounded once (see docs/accuracy.md).
    wide = wide_dtype(y_pred, xp=xp)
    t = xp.astype(clip(y_true, epsilon, 1.0, xp=xp), wide)
    p = xp.astype(clip(y_pred, epsilon, 1.0, xp=xp), wide)
    return xp.astype(xp.sum(t * log_ratio(t, p, xp=xp), axis=axis), y_pred.dtype)
