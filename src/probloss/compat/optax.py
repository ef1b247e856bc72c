"""``optax.losses``' probabilistic losses, with optax's signatures, on any array library.

As in optax, every function returns the unreduced loss (no mean over the
batch) and takes logits. optax 0.2.8 has no ``poisson_nll_loss`` (see
:func:`probloss.compat.torch.poisson_nll_loss` or ``probloss.Poisson(log_input=True)``).
Differences from optax (documented in docs/porting.md):

* ``0·inf`` is read as 0: a zero label next to a ``-inf`` logit contributes 0
  in every function (optax: NaN, except in ``safe_softmax_cross_entropy``),
  and a zero target next to a ``-inf`` log-prediction in ``kl_divergence``;
* log-softmax and log-sigmoid are computed without cancellation (a confident
  loss keeps its bits in float32);
* ``axis`` is an int (optax also takes a tuple of axes);
* an integer label outside ``[0, C)`` gives NaN.

Examples:
    >>> import numpy as np
    >>> from probloss.compat import optax
    >>> optax.softmax_cross_entropy_with_integer_labels(np.array([[2.0, 0.5, -1.0]]), np.array([0])).round(4)
    array([0.2413])
"""

from __future__ import annotations

from typing import Any

from .._kernels._crossentropy import binary_from_logit_parts, mark_invalid_labels
from .._numerics import logit_parts, neg_log_softmax, one_hot_pick, pow_nonnegative, sigmoid_pair, zero_safe_multiply
from .._validation import canonical_axis
from ._common import prepare

__all__ = [
    "kl_divergence",
    "safe_softmax_cross_entropy",
    "sigmoid_binary_cross_entropy",
    "sigmoid_focal_loss",
    "softmax_cross_entropy",
    "softmax_cross_entropy_with_integer_labels",
]

Array = Any


def _broadcast(xp: Any, a: Array, b: Array) -> tuple[Array, Array]:
    if tuple(a.shape) == tuple(b.shape):
        return a, b
    a, b = xp.broadcast_arrays(a, b)
    return a, b


def sigmoid_binary_cross_entropy(logits: Any, labels: Any) -> Any:
    """``optax.losses.sigmoid_binary_cross_entropy``: ``-y·log σ(x) - (1-y)·log σ(-x)`` per element.

    Examples:
        >>> import numpy as np
        >>> from probloss.compat.optax import sigmoid_binary_cross_entropy
        >>> sigmoid_binary_cross_entropy(np.array([3.0, -1.0, 40.0]), np.array([1.0, 0.0, 1.0]))
        array([4.85873516e-02, 3.13261688e-01, 4.24835426e-18])
    """
    p = prepare({"logits": logits, "labels": labels}, floats=("logits", "labels"), reference="logits")
    x, y = _broadcast(p.xp, p["logits"], p["labels"])
    return p.out(binary_from_logit_parts(y, logit_parts(x, xp=p.xp), xp=p.xp))


def sigmoid_focal_loss(logits: Any, labels: Any, *, alpha: Any = None, gamma: Any = 2.0) -> Any:
    """``optax.losses.sigmoid_focal_loss``: ``α_t·(1 - p_t)^γ·bce`` per element.

    ``1 - p_t = y·σ(-x) + (1-y)·σ(x)``; ``α_t = α·y + (1-α)·(1-y)`` when
    ``alpha`` is given, else 1.

    Examples:
        >>> import numpy as np
        >>> from probloss.compat.optax import sigmoid_focal_loss
        >>> sigmoid_focal_loss(np.array([3.0, -1.0]), np.array([1.0, 1.0]), alpha=0.25).round(6)
        array([2.70000e-05, 1.75467e-01])
    """
    p = prepare({"logits": logits, "labels": labels}, floats=("logits", "labels"), reference="logits")
    xp = p.xp
    x, y = _broadcast(xp, p["logits"], p["labels"])
    parts = logit_parts(x, xp=xp)
    bce = binary_from_logit_parts(y, parts, xp=xp)
    sig, sig_neg = sigmoid_pair(parts, x, xp=xp)
    loss = pow_nonnegative(y * sig_neg + (1 - y) * sig, float(gamma), xp=xp) * bce
    if alpha is not None:
        loss = (alpha * y + (1.0 - alpha) * (1 - y)) * loss
    return p.out(loss)


def _masked_nll(xp: Any, x: Array, where: Array | None, axis: int) -> tuple[Array, Array | None]:
    """``-log_softmax`` along ``axis`` over the entries in ``where`` (the others are left out)."""
    if where is None:
        return neg_log_softmax(x, axis=axis, xp=xp), None
    if where.ndim != x.ndim:
        where = xp.expand_dims(where, axis=axis)
    where = xp.broadcast_to(xp.astype(where, xp.bool), x.shape)
    # A row with nothing selected keeps finite logits (its result is set to 0 by the caller).
    any_row = xp.any(where, axis=axis, keepdims=True)
    x = xp.where(where, x, xp.where(any_row, xp.full_like(x, -float("inf")), xp.zeros_like(x)))
    return neg_log_softmax(x, axis=axis, xp=xp), where


def softmax_cross_entropy(logits: Any, labels: Any, axis: int = -1, where: Any = None) -> Any:
    """``optax.losses.softmax_cross_entropy``: ``-Σ_c y_c·log_softmax(x)_c`` along ``axis``.

    ``where`` (``logits``' shape, or without ``axis``) selects the entries taken
    into both the softmax and the sum.

    Examples:
        >>> import numpy as np
        >>> from probloss.compat.optax import softmax_cross_entropy
        >>> softmax_cross_entropy(np.array([[2.0, 0.5, -1.0]]), np.array([[0.9, 0.1, 0.0]])).round(4)
        array([0.3913])
    """
    p = prepare({"logits": logits, "labels": labels, "where": where}, floats=("logits", "labels"),
                reference="logits")
    xp, x = p.xp, p["logits"]
    axis = canonical_axis(axis, x.ndim)
    y = xp.broadcast_to(p["labels"], x.shape)
    nll, mask = _masked_nll(xp, x, p["where"], axis)
    terms = zero_safe_multiply(y, nll, xp=xp)
    if mask is not None:
        terms = xp.where(mask, terms, xp.zeros_like(terms))
    return p.out(xp.sum(terms, axis=axis))


def safe_softmax_cross_entropy(logits: Any, labels: Any) -> Any:
    """``optax.losses.safe_softmax_cross_entropy``: as :func:`softmax_cross_entropy`, ``0·log 0 = 0``, last axis.

    Examples:
        >>> import numpy as np
        >>> from probloss.compat.optax import safe_softmax_cross_entropy
        >>> safe_softmax_cross_entropy(np.array([[2.0, -np.inf]]), np.array([[1.0, 0.0]]))
        array([0.])
    """
    return softmax_cross_entropy(logits, labels, axis=-1)


def softmax_cross_entropy_with_integer_labels(logits: Any, labels: Any, axis: int = -1,
                                              where: Any = None) -> Any:
    """``optax.losses.softmax_cross_entropy_with_integer_labels``: ``-log_softmax(x)[label]`` along ``axis``.

    ``where`` selects the entries of the softmax; a row with none selected gives 0.

    Examples:
        >>> import numpy as np
        >>> from probloss.compat.optax import softmax_cross_entropy_with_integer_labels
        >>> x = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]])
        >>> softmax_cross_entropy_with_integer_labels(x, np.array([0, 2])).round(4)
        array([0.2413, 0.1096])
    """
    if not isinstance(axis, int) or isinstance(axis, bool):
        msg = f"probloss.compat.optax takes an int `axis`. Received: axis={axis!r}"
        raise TypeError(msg)
    p = prepare({"logits": logits, "labels": labels, "where": where}, floats=("logits",), reference="logits")
    xp, x, labels_ = p.xp, p["logits"], p["labels"]
    if not xp.isdtype(labels_.dtype, "integral"):
        msg = f"`labels` must hold integers. Received dtype {labels_.dtype}"
        raise TypeError(msg)
    axis = canonical_axis(axis, x.ndim)
    nll, mask = _masked_nll(xp, x, p["where"], axis)
    loss = one_hot_pick(nll, labels_, axis=axis, xp=xp)
    if mask is not None:
        # optax takes the label's logit even where `where` leaves it out of the softmax:
        # logsumexp(selected) - x[label] = (nll at the selected maximum) + (maximum - x[label]).
        selected = xp.where(mask, x, xp.full_like(x, -float("inf")))
        top = xp.max(selected, axis=axis)
        top_nll = xp.min(nll, axis=axis)
        label_in = one_hot_pick(xp.astype(mask, x.dtype), labels_, axis=axis, xp=xp) > 0
        any_row = xp.any(mask, axis=axis)
        safe_top = xp.where(any_row, top, xp.zeros_like(top))
        outside = top_nll + (safe_top - one_hot_pick(x, labels_, axis=axis, xp=xp))
        loss = xp.where(label_in, loss, outside)
        loss = xp.where(any_row, loss, xp.zeros_like(loss))
    loss = mark_invalid_labels(loss, labels_, x.shape[axis], xp=xp)
    return p.out(loss)


def kl_divergence(log_predictions: Any, targets: Any, axis: int | None = -1, where: Any = None) -> Any:
    """``optax.losses.kl_divergence``: ``Σ t·(log t - log q)`` along ``axis`` (all axes for None), ``0·log 0 = 0``.

    Examples:
        >>> import numpy as np
        >>> from probloss.compat.optax import kl_divergence
        >>> float(kl_divergence(np.log(np.array([0.25, 0.75])), np.array([0.0, 1.0]))).__round__(4)
        0.2877
    """
    p = prepare({"log_predictions": log_predictions, "targets": targets, "where": where},
                floats=("log_predictions", "targets"), reference="log_predictions")
    xp, logq, t = p.xp, p["log_predictions"], p["targets"]
    logq, t = _broadcast(xp, logq, t)
    zero = t == 0
    safe = xp.where(zero, xp.ones_like(t), t)
    terms = xp.where(zero, xp.zeros_like(t), safe * (xp.log(safe) - logq))
    if p["where"] is not None:
        terms = xp.where(xp.astype(p["where"], xp.bool), terms, xp.zeros_like(terms))
    return p.out(xp.sum(terms, axis=axis))
