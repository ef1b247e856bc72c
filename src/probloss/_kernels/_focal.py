"""Binary and categorical focal cross-entropy kernels."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .._dispatch import kernel
from .._namespace import device_of
from .._numerics import neg_log_normalized, neg_log_softmax, pow_nonnegative, sigmoid, zero_safe_multiply
from ._crossentropy import binary_elementwise

Array = Any


@kernel
def binary_focal_crossentropy(y_true: Array, y_pred: Array, *, apply_class_balancing: bool,
                              alpha: float, gamma: float, from_logits: bool, axis: int,
                              epsilon: float, xp: Any) -> Array:
    # See probloss.binary_focal_crossentropy for the contract.
    bce = binary_elementwise(y_true, y_pred, from_logits=from_logits, epsilon=epsilon, xp=xp)
    if from_logits:
        # 1 - p_t = y·σ(-x) + (1-y)·σ(x): no 1 - (something close to 1).
        one_minus_pt = y_true * sigmoid(-y_pred, xp=xp) + (1 - y_true) * sigmoid(y_pred, xp=xp)
    else:
        # Keras takes p_t from the unclipped probability.
        one_minus_pt = y_true * (1 - y_pred) + (1 - y_true) * y_pred
    focal = pow_nonnegative(one_minus_pt, gamma, xp=xp) * bce
    if apply_class_balancing:
        focal = (y_true * alpha + (1 - y_true) * (1 - alpha)) * focal
    return xp.mean(focal, axis=axis)


@kernel
def categorical_focal_crossentropy(y_true: Array, y_pred: Array, *,
                                   alpha: float | Sequence[float], gamma: float,
                                   from_logits: bool, axis: int, epsilon: float,
                                   xp: Any) -> Array:
    # See probloss.categorical_focal_crossentropy for the contract.
    if from_logits:
        # -log p and 1 - p = -expm1(log p) straight from the logits: exact even
        # where softmax would round to 0 or 1 (Keras clips those to [ε, 1-ε]).
        nll = neg_log_softmax(y_pred, axis=axis, xp=xp)
        ce = zero_safe_multiply(y_true, nll, xp=xp)
        one_minus_p = -xp.expm1(-nll)
    else:
        # Renormalised and clipped as Keras; -log p and 1 - p = -expm1(-(-log p))
        # stay exact for p near 1.
        nll = neg_log_normalized(y_pred, epsilon, 1.0 - epsilon, axis=axis, xp=xp)
        ce = y_true * nll
        one_minus_p = -xp.expm1(-nll)
    weight = pow_nonnegative(one_minus_p, gamma, xp=xp)
    if isinstance(alpha, Sequence):
        # Keras broadcasts a per-class alpha against the last axis.
        weight = weight * xp.asarray(alpha, dtype=y_pred.dtype, device=device_of(y_pred))
    else:
        weight = weight * alpha
    return xp.sum(weight * ce, axis=axis)

