"""Binary and categorical focal cross-entropy kernels.

A focal loss is a product of rounded factors (``(1 - p)^γ``, the cross-entropy,
the weights), each adding up to an ulp in float32; float32 inputs are therefore
computed in float64 where the library has it, and rounded once (docs/accuracy.md).
The probability path clips at the bounds of the input dtype, as Keras.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .._dispatch import kernel
from .._namespace import device_of
from .._numerics import (
    class_vector,
    clip_bounds,
    logit_parts,
    neg_log_normalized,
    neg_log_picked,
    neg_log_softmax,
    one_hot_pick,
    one_hot_rest,
    pow_nonnegative,
    sigmoid_pair,
    widen,
    zero_safe_multiply,
)
from ._crossentropy import binary_elementwise, binary_from_logit_parts, mark_invalid_labels

Array = Any


@kernel
def binary_focal_crossentropy(y_true: Array, y_pred: Array, *, apply_class_balancing: bool,
                              alpha: float, gamma: float, from_logits: bool, axis: int,
                              epsilon: float, xp: Any,
                              pos_weight: float | tuple[float, ...] | None = None) -> Array:
    # See probloss.binary_focal_crossentropy for the contract. Fast paths do not
    # take pos_weight: the functional layer calls this kernel directly when it is set.
    dtype = y_pred.dtype
    low, high = clip_bounds(epsilon, dtype, xp=xp)
    y_true, y_pred = widen(y_true, y_pred, xp=xp)
    weight = None if pos_weight is None else class_vector(pos_weight, y_pred, axis=axis, xp=xp)
    if from_logits:
        parts = logit_parts(y_pred, xp=xp)
        bce = binary_from_logit_parts(y_true, parts, xp=xp, pos_weight=weight)
        # 1 - p_t = y·σ(-x) + (1-y)·σ(x): no 1 - (something close to 1).
        sig_pos, sig_neg = sigmoid_pair(parts, y_pred, xp=xp)
        one_minus_pt = y_true * sig_neg + (1 - y_true) * sig_pos
    else:
        bce = binary_elementwise(y_true, y_pred, from_logits=False, low=low, high=high, xp=xp,
                                 pos_weight=weight)
        # Keras takes p_t from the unclipped probability.
        one_minus_pt = y_true * (1 - y_pred) + (1 - y_true) * y_pred
    focal = pow_nonnegative(one_minus_pt, gamma, xp=xp) * bce
    if apply_class_balancing:
        focal = (y_true * alpha + (1 - y_true) * (1 - alpha)) * focal
    return xp.astype(xp.mean(focal, axis=axis), dtype)


@kernel
def categorical_focal_crossentropy(y_true: Array, y_pred: Array, *,
                                   alpha: float | Sequence[float], gamma: float,
                                   from_logits: bool, axis: int, epsilon: float,
                                   xp: Any) -> Array:
    # See probloss.categorical_focal_crossentropy for the contract.
    dtype = y_pred.dtype
    low, high = clip_bounds(epsilon, dtype, xp=xp)
    y_true, y_pred = widen(y_true, y_pred, xp=xp)
    if from_logits:
        # -log p and 1 - p = -expm1(log p) straight from the logits: exact even
        # where softmax would round to 0 or 1 (Keras clips those to [ε, 1-ε]).
        nll = neg_log_softmax(y_pred, axis=axis, xp=xp)
        ce = zero_safe_multiply(y_true, nll, xp=xp)
    else:
        # Renormalised and clipped as Keras; -log p and 1 - p = -expm1(-(-log p))
        # stay exact for p near 1.
        nll = neg_log_normalized(y_pred, low, high, axis=axis, xp=xp)
        ce = y_true * nll
    weight = pow_nonnegative(-xp.expm1(-nll), gamma, xp=xp)
    if isinstance(alpha, Sequence):
        # Keras broadcasts a per-class alpha against the last axis.
        weight = weight * xp.asarray(alpha, dtype=y_pred.dtype, device=device_of(y_pred))
    else:
        weight = weight * alpha
    return xp.astype(xp.sum(weight * ce, axis=axis), dtype)


@kernel
def sparse_categorical_focal_crossentropy(y_true: Array, y_pred: Array, *,
                                          alpha: float | tuple[float, ...], gamma: float,
                                          from_logits: bool, axis: int, epsilon: float,
                                          xp: Any) -> Array:
    # See probloss.sparse_categorical_focal_crossentropy for the contract: the
    # categorical focal loss of the one-hot labels, alpha[label]·(1 - p)^γ·(-log p)
    # with p the label's probability, clipped on the probability path as there.
    dtype = y_pred.dtype
    low, high = clip_bounds(epsilon, dtype, xp=xp)
    y_true, y_pred = widen(y_true, y_pred, xp=xp)
    if from_logits:
        nll = one_hot_pick(neg_log_softmax(y_pred, axis=axis, xp=xp), y_true, axis=axis, xp=xp)
    else:
        picked = one_hot_pick(y_pred, y_true, axis=axis, xp=xp)
        rest = one_hot_rest(y_pred, y_true, axis=axis, xp=xp)
        nll = neg_log_picked(picked, rest, low, high, xp=xp)
    loss = pow_nonnegative(-xp.expm1(-nll), gamma, xp=xp) * nll
    if isinstance(alpha, tuple):
        loss = pick_class_weight(alpha, y_true, y_pred, axis=axis, xp=xp) * loss
    else:
        loss = alpha * loss
    return xp.astype(mark_invalid_labels(loss, y_true, y_pred.shape[axis], xp=xp), dtype)


def pick_class_weight(weights: tuple[float, ...], labels: Array, like: Array, *, axis: int,
                      xp: Any) -> Array:
    """Return ``weights[labels]`` in ``like``'s dtype (0 for a label outside the classes)."""
    return one_hot_pick(class_vector(weights, like, axis=axis, xp=xp), labels, axis=axis, xp=xp)
