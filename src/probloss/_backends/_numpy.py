"""NumPy fast paths: blocked execution, and fused float32 kernels without ``np.where``.

NumPy runs one full pass per ufunc, and ``np.where`` on a random mask costs more
than ``exp``; the generic kernels, written for every library, use both freely.
The paths here take float32 inputs (others fall through to the generic kernel).
The fast paths registered for NumPy are the compiled kernels
(:mod:`probloss._backends._native_binary`, :mod:`probloss._backends._softmax_paths`);
the functions here are what they fall back on where the extension is missing:

- softmax cross-entropy (dense and sparse labels) from logits is computed in
  float64, one cache-sized block of rows at a time: ``x - max`` is then exact (a
  difference of two float32 numbers fits in float64), so the loss keeps its last
  bits with no TwoSum correction, and the few passes (argmax, shift, exp, sum)
  stay in cache;
- categorical focal cross-entropy from logits, the same way;
- categorical cross-entropy from probabilities, binary (focal) cross-entropy
  from logits and KL divergence: the generic formulas with in-place ufuncs and
  no ``where`` (float64 where the generic kernel computes in float64).

Rows whose result comes out non-finite (an infinite logit, a zero label on a
-inf logit, a zero row) are recomputed by the generic kernel, which defines the
behaviour there, so the fast paths never need the guards that cost the time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from .._dispatch import GENERIC, Kernel, executor
from .._kernels._crossentropy import mark_invalid_labels
from .._numerics import neg_log_picked

# Elements per block: the dozen or so temporaries of a block (256 KiB each in float32)
# stay in cache, instead of streaming several full-size temporaries through memory.
BLOCK_ELEMENTS = 1 << 16


@executor("numpy")
def run_in_blocks(implementation: Kernel, arrays: tuple[Any, ...], static: dict[str, Any],
                  xp: Any) -> Any:
    """Run a same-shape kernel block by block along an axis it does not reduce.

    The reduction runs along ``axis`` inside each block, so every per-sample
    value is computed exactly as in one call. Kernels whose arrays differ in
    shape (sparse labels), small inputs, kernels without an ``axis`` and per-class
    ``alpha`` run unblocked.
    """
    if getattr(implementation, "whole_arrays", False):  # compiled: blocks and threads of its own
        return implementation(*arrays, xp=xp, **static)
    first = arrays[0]
    axis = static.get("axis")  # the axis the kernel reduces (canonical, non-negative)
    if (axis is None or first.ndim < 2 or first.size <= 2 * BLOCK_ELEMENTS
            or any(a.shape != first.shape for a in arrays)
            or isinstance(static.get("alpha"), tuple | list)):
        return implementation(*arrays, xp=xp, **static)
    block_axis = 1 if axis == 0 else 0
    step = max(1, BLOCK_ELEMENTS * first.shape[block_axis] // first.size)
    pieces = []
    for start in range(0, first.shape[block_axis], step):
        index = (slice(None),) * block_axis + (slice(start, start + step),)
        piece = implementation(*(a[index] for a in arrays), xp=xp, **static)
        if piece is NotImplemented:  # declines on static arguments: the first block decides
            return NotImplemented
        pieces.append(piece)
    return np.concatenate(pieces, axis=block_axis if block_axis < axis else block_axis - 1)


def _binary_from_logits(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(bce, e)``: elementwise BCE of logits ``x`` and ``e = exp(-|x|)``, in ``x``'s dtype.

    The generic kernel's ``log1p(e) + y·relu(-x) + (1-y)·relu(x)`` with in-place
    ufuncs and no ``where``: ``relu`` is ``(x + |x|)/2``, exact. An infinite
    logit gives NaN (``inf - inf``), which the caller recomputes generically.
    """
    magnitude = np.abs(x)
    e = np.exp(-magnitude)
    bce = np.log1p(e)
    relu = np.add(x, magnitude)
    relu *= 0.5  # max(x, 0)
    relu_neg = np.subtract(relu, x)  # max(-x, 0)
    relu_neg *= y
    bce += relu_neg
    relu *= 1 - y
    bce += relu
    return bce, e


def _power_in_place(base: np.ndarray, gamma: float) -> None:
    """Raise ``base >= 0`` to ``gamma`` in place (``0**0`` is 1, as the generic kernel)."""
    if gamma == 2:
        base *= base
    elif gamma != 1:
        np.power(base, gamma, out=base)


def _finite_or_generic(values: np.ndarray, generic: Callable[[], np.ndarray]) -> np.ndarray:
    """Return ``values``, with its non-finite entries (rare) taken from ``generic()``."""
    finite = np.isfinite(values)
    return values if finite.all() else np.where(finite, values, generic())


def binary_crossentropy(y_true: Any, y_pred: Any, *, from_logits: bool, axis: int, epsilon: float,
                        xp: Any) -> Any:
    """The generic kernel's logits formula in float32, without ``where``.

    ``np.where`` on a random mask (binary labels) costs more than ``exp`` in
    NumPy; the only ``0 * inf`` it guards against (an infinite logit) makes the
    sample NaN here, and such samples are recomputed by the generic kernel.
    """
    if not from_logits or y_pred.dtype != np.float32:
        return NotImplemented
    with np.errstate(invalid="ignore"):
        bce, _ = _binary_from_logits(y_pred, y_true)
    return _finite_or_generic(np.mean(bce, axis=axis), lambda: GENERIC["binary_crossentropy"](
        y_true, y_pred, from_logits=True, axis=axis, epsilon=epsilon, xp=xp))


def binary_focal_crossentropy(y_true: Any, y_pred: Any, *, apply_class_balancing: bool, alpha: float,
                              gamma: float, from_logits: bool, axis: int, epsilon: float, xp: Any) -> Any:
    """The generic kernel's float64 logits formula, with sigmoid's two branches chosen by arithmetic.

    With ``e = exp(-|x|)`` and ``r = 1/(1+e)``, ``sigmoid(x)`` is ``r`` for
    ``x >= 0`` and ``e·r`` below; ``pos·r + (1-pos)·e·r`` with ``pos`` 0 or 1
    selects exactly (all terms finite), without ``np.where``.
    """
    if not from_logits or y_pred.dtype != np.float32:
        return NotImplemented
    x, y = y_pred.astype(np.float64), y_true.astype(np.float64)
    with np.errstate(invalid="ignore"):
        focal, e = _binary_from_logits(x, y)
        near_one = np.add(1.0, e)
        np.divide(1.0, near_one, out=near_one)  # sigmoid(|x|)
        near_zero = e * near_one  # sigmoid(-|x|)
        pos = (x >= 0).astype(np.float64)
        sig_pos = pos * near_one + (1 - pos) * near_zero
        sig_neg = pos * near_zero + (1 - pos) * near_one
        one_minus_pt = y * sig_neg + (1 - y) * sig_pos
        _power_in_place(one_minus_pt, gamma)
        focal *= one_minus_pt
        if apply_class_balancing:
            focal *= y * alpha + (1 - y) * (1 - alpha)
    values = _finite_or_generic(np.mean(focal, axis=axis), lambda: GENERIC["binary_focal_crossentropy"](
        y_true, y_pred, apply_class_balancing=apply_class_balancing, alpha=alpha, gamma=gamma, from_logits=True,
        axis=axis, epsilon=epsilon, xp=xp))
    return values.astype(y_pred.dtype)


def kl_divergence(y_true: Any, y_pred: Any, *, axis: int, epsilon: float, xp: Any) -> Any:
    """``sum(t·log1p((t - p)/p))`` of float32 inputs in float64, with no ``where``.

    ``t - p`` of two float32 numbers is exact in float64, so every term keeps
    ~2⁻⁵² relative precision near ``t = p``, where the terms cancel. Far below
    (``t << p``) the rounding of the ratio near -1 costs at most 2⁻⁵³/(t/p) in
    the log, and ``t/p >= ε`` after clipping: still ~2⁻³⁰. One formula, so the
    generic kernel's ``where`` between ``log1p`` and ``log`` (slow in NumPy) goes.
    """
    if y_pred.dtype != np.float32:
        return NotImplemented
    dtype = y_pred.dtype.type
    low, high = dtype(epsilon), dtype(1.0)  # Keras clips both to [ε, 1] in the input dtype
    t = np.clip(y_true, low, high).astype(np.float64)
    p = np.clip(y_pred, low, high).astype(np.float64)
    terms = np.subtract(t, p)
    terms /= p
    np.log1p(terms, out=terms)
    terms *= t
    return np.sum(terms, axis=axis).astype(y_pred.dtype)


# ------------------------------------------------------------ fused softmax cross-entropy

# (labels block, logits block (rows, classes) float32, shifted = logits - max in float64)
#   -> sum over classes of label * (max - logit), per row, in float64
LabelTerm = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def _classes_last(x: np.ndarray, axis: int) -> np.ndarray:
    """Return ``x`` as a 2-D ``(rows, classes)`` array (a view when ``axis`` is last)."""
    return np.moveaxis(x, axis, -1).reshape(-1, x.shape[axis])


def _softmax_cross_entropy_rows(labels: np.ndarray, logits: np.ndarray, label_term: LabelTerm,
                                label_mass: Callable[[np.ndarray], np.ndarray | float]) -> np.ndarray:
    """Return ``label_term + label_mass · log1p(S')`` per row of float32 ``logits`` (float64 result).

    ``S'`` is the sum of ``exp(x - max)`` without the argmax entry: with the
    label's share of ``max - x`` this is ``sum(label · -log_softmax(x))``.
    Rows that come out non-finite are left NaN for the caller to recompute.
    """
    out = np.empty(logits.shape[0], np.float64)
    # inf - inf (rows without a finite maximum) and 0 * inf (a zero label on a -inf
    # logit) make NaN rows here, which the caller recomputes: no warning for them.
    with np.errstate(invalid="ignore"):
        for rows, block, index, top, shifted in _shifted_row_blocks(logits):
            term = label_term(labels[rows], block, shifted)
            shifted[index, top] = -np.inf  # one maximal entry leaves the sum (ties stay in it as 1s)
            rest = np.exp(shifted, out=shifted).sum(axis=1)
            out[rows] = term + label_mass(labels[rows]) * np.log1p(rest)
    return out


def _shifted_row_blocks(logits: np.ndarray) -> Iterator[tuple[slice, np.ndarray, np.ndarray, np.ndarray,
                                                              np.ndarray]]:
    """Yield ``(rows, block, row index, argmax, block - max in float64)`` per cache-sized block.

    The shift is exact: a difference of two float32 numbers fits in float64.
    """
    step = max(1, BLOCK_ELEMENTS // max(logits.shape[1], 1))
    for start in range(0, logits.shape[0], step):
        rows = slice(start, start + step)
        block = logits[rows]
        index = np.arange(block.shape[0])
        top = np.argmax(block, axis=1)
        shifted = block.astype(np.float64)
        shifted -= shifted[index, top][:, None]
        yield rows, block, index, top, shifted


def _finish(values: np.ndarray, redo: Callable[[np.ndarray], np.ndarray], shape: tuple[int, ...],
            dtype: Any) -> np.ndarray:
    """Recompute the non-finite rows of ``values`` with ``redo(row_mask)``; round once to ``dtype``."""
    bad = ~np.isfinite(values)
    if bad.any():
        values[bad] = redo(bad)
    return values.astype(dtype).reshape(shape)


def _row_dot(labels: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Return ``sum(labels * values)`` per row, accumulated in float64."""
    # A batched matmul is the fastest row-wise dot in NumPy 1.x and 2.x.
    return np.matmul(labels.astype(np.float64)[:, None, :], values.astype(np.float64)[:, :, None])[:, 0, 0]


def _normalized_cross_entropy_rows(labels: np.ndarray, probs: np.ndarray, low: float,
                                   high: float) -> np.ndarray:
    """Return ``sum(label · -log(clip(p / sum(p), low, high)))`` per row of float32 ``probs``.

    As :func:`probloss._numerics.neg_log_normalized`: a unique maximum above half
    the row's sum takes ``log1p(rest / max)``, exact for ``p`` near 1. Rows that
    come out non-finite are left so for the caller to recompute.
    """
    rows, classes = probs.shape
    out = np.empty(rows, np.float64)
    dtype = probs.dtype.type
    lo, hi = dtype(low), dtype(high)
    nll_hi, nll_lo = -np.log1p(-(1 - hi)), -np.log(lo)
    step = max(1, BLOCK_ELEMENTS // max(classes, 1))
    with np.errstate(invalid="ignore", divide="ignore"):  # zero or NaN rows: recomputed by the caller
        for start in range(0, rows, step):
            block = probs[start:start + step]
            index = np.arange(block.shape[0])
            top = np.argmax(block, axis=1)
            m = block[index, top]
            nll = block.copy()
            nll[index, top] = 0
            rest = nll.sum(axis=1)
            total = np.sum(block, axis=1)
            np.divide(block, total[:, None], out=nll)
            np.clip(nll, lo, hi, out=nll)
            np.log(nll, out=nll)
            np.negative(nll, out=nll)
            near_one = np.clip(np.log1p(rest / m), nll_hi, nll_lo)
            # Ties make 2m <= total (rounding is monotone): those rows keep -log of the ratio.
            nll[index, top] = np.where(2 * m > total, near_one, nll[index, top])
            out[start:start + step] = _row_dot(labels[start:start + step], nll)
    return out


def categorical_crossentropy(y_true: Any, y_pred: Any, *, from_logits: bool, axis: int,
                             epsilon: float, xp: Any) -> Any:
    if y_pred.dtype != np.float32 or 0 in y_pred.shape:
        return NotImplemented
    labels, preds = _classes_last(y_true, axis), _classes_last(y_pred, axis)
    if from_logits:

        def label_term(t: np.ndarray, z: np.ndarray, shifted: np.ndarray) -> np.ndarray:
            return -_row_dot(t, shifted)

        values = _softmax_cross_entropy_rows(labels, preds, label_term,
                                             lambda t: t.sum(axis=1, dtype=np.float64))
    else:
        values = _normalized_cross_entropy_rows(labels, preds, epsilon, 1.0 - epsilon)

    def redo(bad: np.ndarray) -> np.ndarray:
        return GENERIC["categorical_crossentropy"](labels[bad], preds[bad], from_logits=from_logits, axis=1,
                                                   epsilon=epsilon, xp=xp)

    shape = y_pred.shape[:axis] + y_pred.shape[axis + 1:]
    return _finish(values, redo, shape, y_pred.dtype)


def _focal_softmax_rows(labels: np.ndarray, logits: np.ndarray, gamma: float,
                        alpha: float | np.ndarray) -> np.ndarray:
    """Return ``sum(alpha · (1 - p)^gamma · label · -log p)`` per row of float32 logits, in float64.

    ``p = e / (1 + S')`` with ``e = exp(x - max)``, so ``1 - p`` is ``1 - p``
    where ``p <= 1/2`` and ``S'/(1 + S')`` at the maximum: no ``expm1`` and no
    ``1 - (something near 1)``. Non-finite rows are left for the caller.
    """
    out = np.empty(logits.shape[0], np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        for rows, _, index, top, shifted in _shifted_row_blocks(logits):
            p = np.exp(shifted)
            p[index, top] = 0
            rest = p.sum(axis=1)
            total = 1 + rest
            nll = np.subtract(np.log1p(rest)[:, None], shifted, out=shifted)  # -log p
            p /= total[:, None]
            weight = np.subtract(1.0, p, out=p)  # 1 - p
            weight[index, top] = rest / total
            _power_in_place(weight, gamma)
            weight *= nll
            out[rows] = _row_dot(labels[rows] * alpha, weight)
    return out


def categorical_focal_crossentropy(y_true: Any, y_pred: Any, *, alpha: float | tuple[float, ...],
                                   gamma: float, from_logits: bool, axis: int, epsilon: float,
                                   xp: Any) -> Any:
    # A per-class alpha broadcasts against the last axis (Keras); handled here only
    # where that is the class axis.
    per_class = isinstance(alpha, tuple | list)
    if (not from_logits or y_pred.dtype != np.float32 or 0 in y_pred.shape
            or (per_class and axis != y_pred.ndim - 1)):
        return NotImplemented
    labels, logits = _classes_last(y_true, axis), _classes_last(y_pred, axis)
    weights = np.asarray(alpha, np.float64) if per_class else float(alpha)
    values = _focal_softmax_rows(labels, logits, gamma, weights)

    def redo(bad: np.ndarray) -> np.ndarray:
        return GENERIC["categorical_focal_crossentropy"](labels[bad], logits[bad], alpha=alpha, gamma=gamma,
                                                         from_logits=True, axis=1, epsilon=epsilon, xp=xp)

    shape = y_pred.shape[:axis] + y_pred.shape[axis + 1:]
    return _finish(values, redo, shape, y_pred.dtype)


def sparse_categorical_crossentropy(y_true: Any, y_pred: Any, *, from_logits: bool, axis: int,
                                    epsilon: float, xp: Any) -> Any:
    num_classes = y_pred.shape[axis]
    # Clamp the index so that invalid labels can be gathered; they become NaN below.
    index = np.expand_dims(np.clip(y_true, 0, max(num_classes - 1, 0)), axis)
    if from_logits:
        if y_pred.dtype != np.float32 or 0 in y_pred.shape:
            return NotImplemented
        logits, labels = _classes_last(y_pred, axis), index.reshape(-1)

        def label_term(k: np.ndarray, z: np.ndarray, shifted: np.ndarray) -> np.ndarray:
            return -shifted[np.arange(k.shape[0]), k]

        values = _softmax_cross_entropy_rows(labels, logits, label_term, lambda k: 1.0)

        def redo(bad: np.ndarray) -> np.ndarray:
            return GENERIC["sparse_categorical_crossentropy"](labels[bad], logits[bad], from_logits=True, axis=1,
                                                              epsilon=epsilon, xp=xp)

        loss = _finish(values, redo, y_true.shape, y_pred.dtype)
    else:
        picked = np.squeeze(np.take_along_axis(y_pred, index, axis=axis), axis=axis)
        # The sum without the label's entry (not sum - picked, which cancels near p = 1).
        others = y_pred.copy()
        np.put_along_axis(others, index, 0, axis=axis)
        loss = neg_log_picked(picked, np.sum(others, axis=axis), epsilon, 1.0 - epsilon, xp=xp)
    return mark_invalid_labels(loss, y_true, num_classes, xp=xp)


# The compiled binary-family and softmax-family kernels; they fall back on the
# functions above where the extension is missing.
from . import _native_binary, _softmax_paths  # noqa: E402, F401 - register their fast paths
