"""Binary, categorical and sparse categorical cross-entropy kernels."""

from __future__ import annotations

from typing import Any

from .._dispatch import kernel
from .._numerics import (
    LogitParts,
    class_vector,
    clip,
    logit_parts,
    neg_log_normalized,
    neg_log_picked,
    neg_log_softmax,
    one_hot_pick,
    one_hot_rest,
    zero_safe_multiply,
)

Array = Any


def binary_elementwise(y_true: Array, y_pred: Array, *, from_logits: bool, low: float, high: float,
                       xp: Any, pos_weight: Array | None = None) -> Array:
    """Elementwise binary cross-entropy (no mean), shared with the focal kernel.

    Probabilities are clipped to ``[low, high]`` (Keras's ``[ε, 1-ε]``).
    ``pos_weight`` (an array that broadcasts, or None) multiplies the positive
    term, as PyTorch's: ``-[w·y·log p + (1-y)·log(1-p)]``.
    """
    if from_logits:
        return binary_from_logit_parts(y_true, logit_parts(y_pred, xp=xp), xp=xp, pos_weight=pos_weight)
    p = clip(y_pred, low, high, xp=xp)
    positive = y_true if pos_weight is None else pos_weight * y_true
    # log1p(-p) rather than log(1 - p): exact for small p.
    return -(positive * xp.log(p) + (1 - y_true) * xp.log1p(-p))


def binary_from_logit_parts(y_true: Array, parts: LogitParts, *, xp: Any,
                            pos_weight: Array | None = None) -> Array:
    """Elementwise binary cross-entropy from the :class:`LogitParts` of the logits."""
    # -[y log σ(x) + (1-y) log σ(-x)] = y·softplus(-x) + (1-y)·softplus(x)
    #                                 = log1p(e^-|x|) + y·relu(-x) + (1-y)·relu(x):
    # non-negative terms for y in [0, 1], so a confident correct logit keeps its
    # tiny loss; one exp and one log1p per element.
    if pos_weight is None:
        return (parts.log1p_e + zero_safe_multiply(y_true, parts.relu_neg, xp=xp)
                + zero_safe_multiply(1 - y_true, parts.relu, xp=xp))
    # With PyTorch's pos_weight w: w·y·softplus(-x) + (1-y)·softplus(x), the same
    # non-negative terms with the positive ones scaled.
    positive = pos_weight * y_true
    return ((positive + (1 - y_true)) * parts.log1p_e + zero_safe_multiply(positive, parts.relu_neg, xp=xp)
            + zero_safe_multiply(1 - y_true, parts.relu, xp=xp))


@kernel
def binary_crossentropy(y_true: Array, y_pred: Array, *, from_logits: bool, axis: int,
                        epsilon: float, xp: Any, pos_weight: float | tuple[float, ...] | None = None) -> Array:
    # See probloss.binary_crossentropy for the contract. Fast paths do not take
    # pos_weight: the functional layer calls this kernel directly when it is set.
    weight = None if pos_weight is None else class_vector(pos_weight, y_pred, axis=axis, xp=xp)
    per_element = binary_elementwise(y_true, y_pred, from_logits=from_logits, low=epsilon,
                                     high=1.0 - epsilon, xp=xp, pos_weight=weight)
    return xp.mean(per_element, axis=axis)


@kernel
def categorical_crossentropy(y_true: Array, y_pred: Array, *, from_logits: bool, axis: int,
                             epsilon: float, xp: Any) -> Array:
    # See probloss.categorical_crossentropy for the contract.
    if from_logits:
        nll = neg_log_softmax(y_pred, axis=axis, xp=xp)
        return xp.sum(zero_safe_multiply(y_true, nll, xp=xp), axis=axis)
    # Keras renormalises the probabilities, then clips to [ε, 1-ε]; -log p is
    # taken as log1p(rest / max) at the maximum, exact for p near 1.
    nll = neg_log_normalized(y_pred, epsilon, 1.0 - epsilon, axis=axis, xp=xp)
    return xp.sum(y_true * nll, axis=axis)


@kernel
def sparse_categorical_crossentropy(y_true: Array, y_pred: Array, *, from_logits: bool,
                                    axis: int, epsilon: float, xp: Any) -> Array:
    # See probloss.sparse_categorical_crossentropy for the contract. A label
    # outside [0, num_classes) gives NaN in its own slot: never a plausible number.
    if from_logits:
        loss = one_hot_pick(neg_log_softmax(y_pred, axis=axis, xp=xp), y_true, axis=axis, xp=xp)
    else:
        # p = picked / (picked + rest), with rest summed without the label's entry
        # so that -log p = log1p(rest / picked) is exact for p near 1.
        picked = one_hot_pick(y_pred, y_true, axis=axis, xp=xp)
        rest = one_hot_rest(y_pred, y_true, axis=axis, xp=xp)
        loss = neg_log_picked(picked, rest, epsilon, 1.0 - epsilon, xp=xp)
    return mark_invalid_labels(loss, y_true, y_pred.shape[axis], xp=xp)


def mark_invalid_labels(loss: Array, labels: Array, num_classes: int, *, xp: Any) -> Array:
    """Put NaN where a label is outside ``[0, num_classes)``."""
    valid = (labels >= 0) & (labels < num_classes)
    return xp.where(valid, loss, xp.full_like(loss, float("nan")))
