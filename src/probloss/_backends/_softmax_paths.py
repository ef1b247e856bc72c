"""NumPy fast paths of the softmax family through the compiled kernels.

Sparse categorical, categorical and categorical focal cross-entropy (from
logits; the first two from probabilities too) of float32 arrays, any byte
order, strides or class axis: the class axis is moved last (a copy only when it
is not last already, or the layout is not C-contiguous), and
:mod:`probloss._backends._native_softmax` computes one loss per row. Rows the
kernels leave NaN (a NaN or +inf logit, no finite logit, a zero or invalid
probability row) are recomputed by the generic kernel, which defines the
result there; a sparse label outside ``[0, classes)`` stays NaN, as in the
generic kernel. Other dtypes, per-class ``alpha`` on a class axis that is not
last, focal loss from probabilities, and a missing extension fall back on the
pure-NumPy functions of :mod:`probloss._backends._numpy` or the generic kernel.

The kernels' own passes also give what the data checks of ``validate`` read,
reported into ``observe`` (:func:`probloss._dispatch.call_observing`), so that
the checks need no pass of their own over the arrays: the logits' minimum and
maximum; the dense labels' range, and the probabilities' range and whether
every row sums to more than 0. A range is reported only where the kernel saw
every row (a row holding a value it does not vouch for, such as NaN, a negative
number or -0.0, leaves the check to read the array itself, which also names the
first offending position).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .. import _native
from .._dispatch import GENERIC, Observed, fast_path
from .._numerics import clip_bounds
from . import _native_softmax as kernels
from . import _numpy as pure

__all__: list[str] = []


def _usable(y_pred: np.ndarray) -> bool:
    """Whether the compiled kernels take ``y_pred`` (float32 in either byte order, no empty axis)."""
    if not kernels.AVAILABLE:
        _native.warn_unavailable()
        return False
    return y_pred.dtype.kind == "f" and y_pred.dtype.itemsize == 4 and 0 not in y_pred.shape


def _rows(a: np.ndarray, axis: int) -> np.ndarray:
    """``a`` as ``(rows, classes)`` with the class axis last (a view when it is last already)."""
    return np.moveaxis(a, axis, -1).reshape(-1, a.shape[axis])


def _bounds(observe: Observed | None, rows: int) -> np.ndarray | None:
    """A buffer for a kernel's per-row bounds, where they are to be observed."""
    return np.empty((rows, 2), np.float32) if observe is not None and rows else None


def _report(observe: Observed | None, bounds: np.ndarray | None) -> None:
    """Record the logits' minimum and maximum (NaN anywhere makes the minimum NaN)."""
    if observe is not None and bounds is not None:
        observe.bounds[1] = (float(np.min(bounds[:, 0])), float(np.max(bounds[:, 1])))


def _report_range(observe: Observed | None, position: int, ranges: np.ndarray | None) -> bool:
    """Record the range of the input at ``position`` if the kernel vouched for every row (no NaN there)."""
    if observe is None or ranges is None:
        return False
    low, high = float(np.min(ranges[:, 0])), float(np.max(ranges[:, 1]))
    if low != low or high != high:  # NaN: some row is not known
        return False
    observe.bounds[position] = (low, high)
    return True


def _finish(values: np.ndarray, redo: np.ndarray, generic: Callable[[np.ndarray], np.ndarray],
            shape: tuple[int, ...]) -> np.ndarray:
    """Put ``generic(rows)`` into the ``redo`` rows of ``values`` (rare) and give it ``shape``."""
    if redo.any():
        # The generic kernel warns on what it computes NaN for (a zero row): that is
        # the data checks' business, or it was asked not to be (validate="off").
        with np.errstate(all="ignore"):
            values[redo] = generic(redo)
    return values.reshape(shape)


@fast_path("sparse_categorical_crossentropy", backend="numpy", observes=True, whole=True)
def sparse_categorical_crossentropy(y_true: Any, y_pred: Any, *, from_logits: bool, axis: int, epsilon: float,
                                    xp: Any, observe: Observed | None = None) -> Any:
    """Compiled sparse CE: ``(m - x_l) + log1p(S')`` from logits, ``neg_log_picked`` from probabilities."""
    if not _usable(y_pred):
        return NotImplemented if observe is not None else pure.sparse_categorical_crossentropy(
            y_true, y_pred, from_logits=from_logits, axis=axis, epsilon=epsilon, xp=xp)
    num_classes = y_pred.shape[axis]
    preds, labels = _rows(y_pred, axis), y_true.reshape(-1)
    bounds = _bounds(observe, preds.shape[0])
    if from_logits:
        values = kernels.softmax_cross_entropy_sparse(preds, labels, row_bounds=bounds)
        _report(observe, bounds)
    else:
        low, high = clip_bounds(epsilon, np.float32, xp=np)
        values = kernels.normalized_cross_entropy_sparse(preds, labels, low=low, high=high, row_bounds=bounds)
        if _report_range(observe, 1, bounds) and np.isfinite(values).all():
            observe.positive_rows.add(1)  # type: ignore[union-attr]

    def generic(rows: np.ndarray) -> np.ndarray:
        return GENERIC["sparse_categorical_crossentropy"](labels[rows], preds[rows], from_logits=from_logits, axis=1,
                                                          epsilon=epsilon, xp=xp)

    # Invalid labels are NaN already, as the generic kernel makes them.
    redo = ~np.isfinite(values) & (labels >= 0) & (labels < num_classes)
    return _finish(values, redo, generic, y_true.shape)


@fast_path("categorical_crossentropy", backend="numpy", observes=True, whole=True)
def categorical_crossentropy(y_true: Any, y_pred: Any, *, from_logits: bool, axis: int, epsilon: float,
                             xp: Any, observe: Observed | None = None) -> Any:
    """Compiled categorical CE from logits or probabilities."""
    if not _usable(y_pred):
        return NotImplemented if observe is not None else pure.categorical_crossentropy(
            y_true, y_pred, from_logits=from_logits, axis=axis, epsilon=epsilon, xp=xp)
    labels, preds = _rows(y_true, axis), _rows(y_pred, axis)
    bounds, label_bounds = _bounds(observe, preds.shape[0]), _bounds(observe, preds.shape[0])
    if from_logits:
        values = kernels.softmax_cross_entropy(preds, labels, row_bounds=bounds, label_bounds=label_bounds)
        _report(observe, bounds)
    else:
        low, high = clip_bounds(epsilon, np.float32, xp=np)
        values = kernels.normalized_cross_entropy(preds, labels, low=low, high=high, row_bounds=bounds,
                                                  label_bounds=label_bounds)
        if _report_range(observe, 1, bounds) and np.isfinite(values).all():
            observe.positive_rows.add(1)  # type: ignore[union-attr]
    _report_range(observe, 0, label_bounds)

    def generic(rows: np.ndarray) -> np.ndarray:
        return GENERIC["categorical_crossentropy"](labels[rows], preds[rows], from_logits=from_logits, axis=1,
                                                   epsilon=epsilon, xp=xp)

    return _finish(values, ~np.isfinite(values), generic, y_pred.shape[:axis] + y_pred.shape[axis + 1:])


@fast_path("categorical_focal_crossentropy", backend="numpy", observes=True, whole=True)
def categorical_focal_crossentropy(y_true: Any, y_pred: Any, *, alpha: float | tuple[float, ...], gamma: float,
                                   from_logits: bool, axis: int, epsilon: float, xp: Any,
                                   observe: Observed | None = None) -> Any:
    """Compiled categorical focal CE from logits, in float64 per entry."""
    static = {"alpha": alpha, "gamma": gamma, "from_logits": from_logits, "epsilon": epsilon, "xp": xp}
    # Keras broadcasts a per-class alpha against the last axis: the kernels take it
    # only where that is the class axis.
    per_class = isinstance(alpha, tuple | list)
    if not from_logits or not _usable(y_pred) or (per_class and axis != y_pred.ndim - 1):
        return NotImplemented if observe is not None else pure.categorical_focal_crossentropy(
            y_true, y_pred, axis=axis, **static)
    labels, logits = _rows(y_true, axis), _rows(y_pred, axis)
    bounds, label_bounds = _bounds(observe, logits.shape[0]), _bounds(observe, logits.shape[0])
    values = kernels.focal_softmax_cross_entropy(logits, labels, alpha=np.asarray(alpha, np.float64), gamma=gamma,
                                                 row_bounds=bounds, label_bounds=label_bounds)
    _report(observe, bounds)
    _report_range(observe, 0, label_bounds)

    def generic(rows: np.ndarray) -> np.ndarray:
        return GENERIC["categorical_focal_crossentropy"](labels[rows], logits[rows], axis=1, **static)

    return _finish(values, ~np.isfinite(values), generic, y_pred.shape[:axis] + y_pred.shape[axis + 1:])
