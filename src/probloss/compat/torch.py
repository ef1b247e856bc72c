"""``torch.nn.functional``'s probabilistic losses, with PyTorch's signatures, on any array library.

The class axis is axis 1 (axis 0 for an unbatched input), as in PyTorch. The
deprecated ``size_average`` and ``reduce`` arguments are read as PyTorch reads
them. Differences from PyTorch (documented in docs/porting.md), all where
PyTorch's result is NaN or has lost bits:

* ``0·inf`` is read as 0: a zero target next to a ``-inf`` logit, log-target or
  log-rate contributes 0 (PyTorch: NaN), so do a zero class weight or
  ``pos_weight`` next to an infinite loss;
* log-softmax is computed without cancellation (a confident loss keeps its bits
  in float32 where PyTorch rounds it to 0);
* a class index outside ``[0, C)`` (and not ``ignore_index``) gives NaN in its
  slot where PyTorch raises.

Examples:
    >>> import numpy as np
    >>> from probloss.compat import torch as F
    >>> logits = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]])
    >>> float(F.cross_entropy(logits, np.array([0, 2]), weight=np.array([1.0, 1.0, 3.0]))).__round__(4)
    0.1425
"""

from __future__ import annotations

from typing import Any

from .._kernels._crossentropy import binary_from_logit_parts, mark_invalid_labels
from .._kernels._divergence import stirling
from .._numerics import logit_parts, neg_log_softmax, one_hot_pick, zero_safe_multiply
from ._common import legacy_reduction, prepare
from ._common import reduce as apply_reduction

__all__ = [
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "cross_entropy",
    "kl_div",
    "nll_loss",
    "poisson_nll_loss",
]

Array = Any


def _class_axis(x: Array) -> int:
    return 1 if x.ndim >= 2 else 0


def _weight_along(weight: Array | None, like: Array, axis: int, xp: Any) -> Array | None:
    if weight is None:
        return None
    if weight.ndim != 1 or weight.shape[0] != like.shape[axis]:
        msg = (f"weight must be a 1-D tensor with one entry per class ({like.shape[axis]}). "
               f"Received shape {tuple(weight.shape)}")
        raise ValueError(msg)
    shape = [1] * like.ndim
    shape[axis] = like.shape[axis]
    return xp.reshape(weight, tuple(shape))


def _indexed(nll: Array, target: Array, weight: Array | None, ignore_index: int, reduction: str,
             label_smoothing: float, xp: Any) -> Array:
    """PyTorch's class-index loss from per-class ``nll`` (``-log p``), weights and ignored targets."""
    axis = _class_axis(nll)
    num_classes = nll.shape[axis]
    valid = target != ignore_index
    labels = xp.where(valid, target, xp.zeros_like(target))
    w = _weight_along(weight, nll, axis, xp)
    picked = one_hot_pick(nll, labels, axis=axis, xp=xp)
    picked_weight = xp.ones_like(picked) if w is None else one_hot_pick(
        xp.broadcast_to(w, nll.shape), labels, axis=axis, xp=xp)
    loss = zero_safe_multiply(picked_weight, picked, xp=xp)
    if label_smoothing:
        weighted = nll if w is None else zero_safe_multiply(w, nll, xp=xp)
        smooth = xp.sum(weighted, axis=axis)
        loss = (1 - label_smoothing) * loss + (label_smoothing / num_classes) * smooth
    loss = mark_invalid_labels(loss, labels, num_classes, xp=xp)
    zeros = xp.zeros_like(loss)
    loss = xp.where(valid, loss, zeros)
    if reduction == "mean":
        # Divided by the summed weights of the targets not ignored (0/0 = NaN when none is left).
        total = xp.sum(xp.where(valid, picked_weight, zeros))
        empty = total == 0
        mean = xp.sum(loss) / xp.where(empty, xp.ones_like(total), total)
        return xp.where(empty, xp.full_like(mean, float("nan")), mean)
    return apply_reduction(loss, reduction, xp=xp)


def cross_entropy(input: Any, target: Any, weight: Any = None, size_average: bool | None = None,
                  ignore_index: int = -100, reduce: bool | None = None, reduction: str = "mean",
                  label_smoothing: float = 0.0) -> Any:
    """``torch.nn.functional.cross_entropy``: softmax cross-entropy of logits.

    ``target`` holds class indices (``input``'s shape without the class axis) or
    class probabilities (``input``'s shape, floating). With class indices,
    ``l_n = -w[y_n]·log p_n[y_n]`` (with smoothing ``ε``:
    ``(1-ε)·w[y_n]·(-log p_n[y_n]) + ε/C·Σ_c w_c·(-log p_nc)``), 0 where
    ``y_n == ignore_index``, and ``"mean"`` divides by ``Σ w[y_n]`` over the targets
    not ignored. With probabilities, ``l_n = -Σ_c w_c·y'_nc·log p_nc`` with
    ``y' = (1-ε)·y + ε/C``, and ``"mean"`` divides by the number of ``l_n``.

    Examples:
        >>> import numpy as np
        >>> from probloss.compat.torch import cross_entropy
        >>> x = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]])
        >>> float(cross_entropy(x, np.array([0, -100]))).__round__(4)
        0.2413
        >>> cross_entropy(x, np.array([[0.9, 0.1, 0.0], [0.0, 0.0, 1.0]]), reduction="none").round(4)
        array([0.3913, 0.1096])
    """
    reduction = legacy_reduction(size_average, reduce, reduction)
    p = prepare({"input": input, "target": target, "weight": weight}, floats=("input", "weight"),
                reference="input")
    xp, x, t, w = p.xp, p["input"], p["target"], p["weight"]
    axis = _class_axis(x)
    nll = neg_log_softmax(x, axis=axis, xp=xp)
    if tuple(t.shape) == tuple(x.shape) and xp.isdtype(t.dtype, "real floating"):
        t = xp.astype(t, x.dtype, copy=False)
        num_classes = x.shape[axis]
        if label_smoothing:
            t = t * (1 - label_smoothing) + label_smoothing / num_classes
        wt = _weight_along(w, x, axis, xp)
        if wt is not None:
            t = t * wt
        loss = xp.sum(zero_safe_multiply(t, nll, xp=xp), axis=axis)
        return p.out(apply_reduction(loss, reduction, xp=xp))
    return p.out(_indexed(nll, t, w, ignore_index, reduction, label_smoothing, xp))


def nll_loss(input: Any, target: Any, weight: Any = None, size_average: bool | None = None,
             ignore_index: int = -100, reduce: bool | None = None, reduction: str = "mean") -> Any:
    """``torch.nn.functional.nll_loss``: ``l_n = -w[y_n]·input[n, y_n]`` on log-probabilities.

    ``"mean"`` divides by ``Σ w[y_n]`` over the targets not equal to ``ignore_index``.

    Examples:
        >>> import numpy as np
        >>> from probloss.compat.torch import nll_loss
        >>> logp = np.log(np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]]))
        >>> float(nll_loss(logp, np.array([0, 2]), weight=np.array([1.0, 1.0, 2.0]))).__round__(4)
        0.2677
    """
    reduction = legacy_reduction(size_average, reduce, reduction)
    p = prepare({"input": input, "target": target, "weight": weight}, floats=("input", "weight"),
                reference="input")
    return p.out(_indexed(-p["input"], p["target"], p["weight"], ignore_index, reduction, 0.0, p.xp))


def binary_cross_entropy(input: Any, target: Any, weight: Any = None,
                         size_average: bool | None = None, reduce: bool | None = None,
                         reduction: str = "mean") -> Any:
    """``torch.nn.functional.binary_cross_entropy`` of probabilities.

    ``l = -w·[y·max(log p, -100) + (1-y)·max(log(1-p), -100)]``: PyTorch's clamp
    of each log at -100 kept (a probability of 0 or 1 costs at most 100).

    Examples:
        >>> import numpy as np
        >>> from probloss.compat.torch import binary_cross_entropy
        >>> binary_cross_entropy(np.array([0.9, 0.0, 1.0]), np.array([1.0, 1.0, 1.0]), reduction="none").round(4)
        array([  0.1054, 100.    ,   0.    ])
    """
    reduction = legacy_reduction(size_average, reduce, reduction)
    p = prepare({"input": input, "target": target, "weight": weight},
                floats=("input", "target", "weight"), reference="input")
    xp, x, y, w = p.xp, p["input"], p["target"], p["weight"]
    floor = xp.full_like(x, -100.0)
    # log of 0 is -inf before the clamp: taken on a safe input so that no warning is raised.
    positive = x > 0
    log_p = xp.where(positive, xp.log(xp.where(positive, x, xp.ones_like(x))), floor)
    below_one = x < 1
    log_q = xp.where(below_one, xp.log1p(-xp.where(below_one, x, xp.zeros_like(x))), floor)
    loss = -(y * xp.maximum(log_p, floor)) - (1 - y) * xp.maximum(log_q, floor)
    if w is not None:
        loss = loss * w
    return p.out(apply_reduction(loss, reduction, xp=xp))


def binary_cross_entropy_with_logits(input: Any, target: Any, weight: Any = None,
                                     size_average: bool | None = None, reduce: bool | None = None,
                                     reduction: str = "mean", pos_weight: Any = None) -> Any:
    """``torch.nn.functional.binary_cross_entropy_with_logits``.

    ``l = w·[pw·y·softplus(-x) + (1-y)·softplus(x)]``, with ``pos_weight`` ``pw``
    broadcast against ``target`` (one per class on the last axis), computed from
    non-negative terms (a confident correct logit keeps its tiny loss).

    Examples:
        >>> import numpy as np
        >>> from probloss.compat.torch import binary_cross_entropy_with_logits
        >>> x, y = np.array([[3.0, -1.0]]), np.array([[1.0, 0.0]])
        >>> binary_cross_entropy_with_logits(x, y, pos_weight=np.array([2.0, 1.0]), reduction="none").round(4)
        array([[0.0972, 0.3133]])
    """
    reduction = legacy_reduction(size_average, reduce, reduction)
    p = prepare({"input": input, "target": target, "weight": weight, "pos_weight": pos_weight},
                floats=("input", "target", "weight", "pos_weight"), reference="input")
    xp, x, y, w = p.xp, p["input"], p["target"], p["weight"]
    loss = binary_from_logit_parts(y, logit_parts(x, xp=xp), xp=xp, pos_weight=p["pos_weight"])
    if w is not None:
        loss = zero_safe_multiply(w, loss, xp=xp)
    return p.out(apply_reduction(loss, reduction, xp=xp))


def kl_div(input: Any, target: Any, size_average: bool | None = None, reduce: bool | None = None,
           reduction: str = "mean", log_target: bool = False) -> Any:
    """``torch.nn.functional.kl_div``: pointwise ``t·(log t - input)``, ``input`` holding log-probabilities.

    With ``log_target``, ``exp(target)·(target - input)``. A target of 0
    contributes 0. ``"batchmean"`` divides the sum by ``input.shape[0]``;
    ``"mean"`` averages over every element, as PyTorch (which warns about it).

    Examples:
        >>> import numpy as np
        >>> from probloss.compat.torch import kl_div
        >>> logq = np.log(np.array([[0.25, 0.75], [0.5, 0.5]]))
        >>> float(kl_div(logq, np.array([[0.0, 1.0], [0.5, 0.5]]), reduction="batchmean")).__round__(4)
        0.1438
    """
    reduction = legacy_reduction(size_average, reduce, reduction)
    p = prepare({"input": input, "target": target}, floats=("input", "target"), reference="input")
    xp, x, t = p.xp, p["input"], p["target"]
    if log_target:
        present = t > -float("inf")
        safe = xp.where(present, t, xp.zeros_like(t))
        terms = xp.where(present, xp.exp(safe) * (safe - x), xp.zeros_like(t))
    else:
        # 0·log 0 = 0 and 0·input = 0 (even for input = -inf); a negative target gives NaN, as log does.
        zero = t == 0
        safe = xp.where(zero, xp.ones_like(t), t)
        terms = xp.where(zero, xp.zeros_like(t), safe * (xp.log(safe) - x))
    if reduction == "batchmean":
        total = xp.sum(terms)
        return p.out(total / x.shape[0] if x.ndim > 0 else total)
    return p.out(apply_reduction(terms, reduction, xp=xp))


def poisson_nll_loss(input: Any, target: Any, log_input: bool = True, full: bool = False,
                     size_average: bool | None = None, eps: float = 1e-8, reduce: bool | None = None,
                     reduction: str = "mean") -> Any:
    """``torch.nn.functional.poisson_nll_loss``.

    ``exp(x) - y·x`` with ``log_input`` (``x`` a log-rate), else ``x - y·log(x + eps)``;
    ``full`` adds the Stirling term ``y·log y - y + log(2πy)/2`` where ``y > 1``.

    Examples:
        >>> import numpy as np
        >>> from probloss.compat.torch import poisson_nll_loss
        >>> poisson_nll_loss(np.array([0.0, 1.0]), np.array([0.0, 3.0]), full=True, reduction="none").round(4)
        array([1.    , 1.4824])
    """
    reduction = legacy_reduction(size_average, reduce, reduction)
    p = prepare({"input": input, "target": target}, floats=("input", "target"), reference="input")
    xp, x, y = p.xp, p["input"], p["target"]
    # A count of 0 at a log-rate of -inf contributes exp(-inf) = 0 (not 0·inf).
    loss = xp.exp(x) - zero_safe_multiply(y, x, xp=xp) if log_input else x - y * xp.log(x + eps)
    if full:
        loss = loss + stirling(y, xp=xp)
    return p.out(apply_reduction(loss, reduction, xp=xp))

