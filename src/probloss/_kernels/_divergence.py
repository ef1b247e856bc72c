"""Poisson and Kullback-Leibler divergence kernels."""

from __future__ import annotations

from typing import Any

from .._dispatch import kernel
from .._numerics import clip, log_ratio

Array = Any


@kernel
def poisson(y_true: Array, y_pred: Array, *, epsilon: float, xp: Any) -> Array:
    # See probloss.poisson for the contract: Keras's mean(p - y·log(p + ε)).
    return xp.mean(y_pred - y_true * xp.log(y_pred + epsilon), axis=-1)


@kernel
def kl_divergence(y_true: Array, y_pred: Array, *, epsilon: float, xp: Any) -> Array:
    # See probloss.kl_divergence for the contract: Keras clips both to [ε, 1].
    t = clip(y_true, epsilon, 1.0, xp=xp)
    p = clip(y_pred, epsilon, 1.0, xp=xp)
    return xp.sum(t * log_ratio(t, p, xp=xp), axis=-1)
