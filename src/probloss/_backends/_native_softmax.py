"""Compiled softmax-family cross-entropies on 2-D float32 NumPy arrays.

The functions here are the array-level interface of ``probloss._native._softmax``
(src/probloss/_native/softmax_ce.c documents the math and its error bounds):
each takes ``(rows, classes)`` inputs and returns one float32 loss per row,
computed in one to three passes over each row, multi-threaded over rows (up to
``probloss.get_num_threads()``, one thread in a process forked after parallel
use: :func:`probloss._native.threads`; the results do not depend on the
count), with the GIL released. The NumPy fast paths (:mod:`probloss._backends._numpy`) call
them; so may other glue, such as a PyTorch helper for CPU tensors that wants
the loss and its gradient in one pass.

Rows the kernels leave to the caller come back as NaN (their gradient rows,
where one is asked for, too): a NaN or +inf logit, or no finite logit; a
negative, NaN or infinite probability, or a zero row; a sparse label outside
``[0, classes)``. The generic kernels define the result there; the fast paths
recompute those rows with them. A ``-inf`` logit is handled here.

``AVAILABLE`` is False when the compiled module did not load (or was built
without the kernels, as with MSVC); callers then use their NumPy code.

Inputs are converted as needed: ``np.ascontiguousarray`` to C-contiguous,
native-byte-order float32 (int64 for sparse labels), which is a no-op (no copy)
for the usual case. An output buffer (``grad_out``) must already be a
C-contiguous, writable float32 array of the logits' shape.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _native

_compiled = _native.softmax

__all__ = [
    "AVAILABLE",
    "focal_softmax_cross_entropy",
    "normalized_cross_entropy",
    "normalized_cross_entropy_sparse",
    "softmax_cross_entropy",
    "softmax_cross_entropy_sparse",
]

#: whether the compiled kernels are there (else every function raises RuntimeError)
AVAILABLE: bool = _compiled is not None and bool(getattr(_compiled, "AVAILABLE", 0))

# The kernels index classes with 32-bit lane offsets.
_MAX_CLASSES = 2**31 - 17


def _module() -> Any:
    if not AVAILABLE:
        msg = f"probloss's compiled softmax kernels are not available ({_native.load_error})."
        raise RuntimeError(msg)
    return _compiled


def _matrix(x: Any, name: str, dtype: Any = np.float32) -> np.ndarray:
    """Return ``x`` as a C-contiguous native-order 2-D array of ``dtype`` (a view when it already is)."""
    a = np.ascontiguousarray(x, dtype=dtype)
    if a.ndim != 2:
        msg = f"`{name}` must be 2-D (rows, classes). Received shape {a.shape}."
        raise ValueError(msg)
    if not 1 <= a.shape[1] <= _MAX_CLASSES:
        msg = f"`{name}` must have between 1 and {_MAX_CLASSES} classes. Received shape {a.shape}."
        raise ValueError(msg)
    return a


def _vector(x: Any, name: str, rows: int, dtype: Any) -> np.ndarray:
    a = np.ascontiguousarray(x, dtype=dtype)
    if a.shape != (rows,):
        msg = f"`{name}` must have shape ({rows},). Received shape {a.shape}."
        raise ValueError(msg)
    return a


def _same_shape(labels: Any, like: np.ndarray, name: str) -> np.ndarray:
    a = np.ascontiguousarray(labels, dtype=np.float32)
    if a.shape != like.shape:
        msg = f"`{name}` must have the shape of the predictions, {like.shape}. Received shape {a.shape}."
        raise ValueError(msg)
    return a


def _gradient_buffer(grad_out: Any, like: np.ndarray) -> np.ndarray | None:
    if grad_out is None:
        return None
    if (not isinstance(grad_out, np.ndarray) or grad_out.dtype != np.float32 or grad_out.shape != like.shape
            or not grad_out.flags.c_contiguous or not grad_out.flags.writeable
            or not grad_out.dtype.isnative):
        msg = ("`grad_out` must be a C-contiguous, writable, native-order float32 NumPy array of shape "
               f"{like.shape}.")
        raise ValueError(msg)
    return grad_out


def _row_scale(row_scale: Any, rows: int) -> np.ndarray | None:
    return None if row_scale is None else _vector(row_scale, "row_scale", rows, np.float32)


def _bounds_buffer(row_bounds: Any, rows: int, name: str = "row_bounds") -> np.ndarray | None:
    if row_bounds is None:
        return None
    if (not isinstance(row_bounds, np.ndarray) or row_bounds.dtype != np.float32 or row_bounds.shape != (rows, 2)
            or not row_bounds.flags.c_contiguous or not row_bounds.flags.writeable
            or not row_bounds.dtype.isnative):
        msg = f"`{name}` must be a C-contiguous, writable float32 NumPy array of shape ({rows}, 2)."
        raise ValueError(msg)
    return row_bounds


def softmax_cross_entropy_sparse(logits: Any, labels: Any, *, grad_out: np.ndarray | None = None,
                                 row_scale: Any = None, scale: float = 1.0,
                                 row_bounds: np.ndarray | None = None,
                                 summary: list[Any] | None = None) -> np.ndarray:
    """Sparse softmax cross-entropy per row: ``-log softmax(logits[r])[labels[r]]``.

    Args:
        logits: ``(rows, classes)`` float32 logits (converted if need be).
        labels: ``(rows,)`` integer class indices (converted to int64).
        grad_out: None, or a C-contiguous writable float32 array of the logits'
            shape that receives, in the same pass, the gradient of
            ``scale · row_scale[r] · loss[r]`` with respect to ``logits[r]``:
            ``s_r · (softmax(logits[r]) - onehot(labels[r]))``. The label's entry
            when it is the maximum is ``-s_r·S'/(1 + S')``, exact for a
            confident row (not ``p - 1``, which rounds to 0).
        row_scale: None (1 for every row) or ``(rows,)`` per-row gradient
            factors, e.g. sample weights.
        scale: a factor on every gradient row, e.g. ``1/rows`` for a mean.
        row_bounds: None, or a C-contiguous writable float32 ``(rows, 2)`` array
            that receives each row's minimum (NaN where the row holds a NaN) and
            maximum logit, from the kernel's first pass (for the data checks).
        summary: None, or a list that receives (its contents replaced) the
            call's summary ``[finite, low, high, label_low, label_high]``: whether
            every loss is finite, and ``row_bounds[:, 0].min()`` and
            ``row_bounds[:, 1].max()`` (NaN where that column holds a NaN, or
            without ``row_bounds``; the labels' pair NaN), reduced in C (a NumPy
            reduction right after a kernel that streamed tens of MB costs ~10-20
            us: the interpreter's working set is then out of the caches).

    Returns:
        ``(rows,)`` float32 losses; NaN for the rows the generic kernel must
        compute (see the module docstring) and for invalid labels.

    Examples:
        >>> import numpy as np
        >>> from probloss._backends import _native_softmax as ns
        >>> x = np.array([[2.0, 1.0, 0.1]], np.float32)
        >>> if ns.AVAILABLE:
        ...     g = np.empty_like(x)
        ...     loss = ns.softmax_cross_entropy_sparse(x, np.array([0]), grad_out=g)
        ... else:  # the same numbers from NumPy, where the extension is missing
        ...     p = np.exp(x - x.max()) / np.exp(x - x.max()).sum()
        ...     loss, g = -np.log(p[:, 0]), p - np.float32([[1, 0, 0]])
        >>> print(loss.round(4), g.round(4))
        [0.417] [[-0.341   0.2424  0.0986]]
    """
    x = _matrix(logits, "logits")
    k = _vector(labels, "labels", x.shape[0], np.int64)
    loss = np.empty(x.shape[0], np.float32)
    grad = _gradient_buffer(grad_out, x)
    result = _module().softmax_ce_sparse(x, k, x.shape[1], loss, grad, _row_scale(row_scale, x.shape[0]),
                                         float(scale), _native.threads(), _bounds_buffer(row_bounds, x.shape[0]))
    if summary is not None:
        summary[:] = result
    return loss


def softmax_cross_entropy(logits: Any, labels: Any, *, grad_out: np.ndarray | None = None,
                          row_scale: Any = None, scale: float = 1.0,
                          row_bounds: np.ndarray | None = None,
                          label_bounds: np.ndarray | None = None,
                          summary: list[Any] | None = None) -> np.ndarray:
    """Softmax cross-entropy per row with dense labels: ``sum_j labels[r, j] · -log softmax(logits[r])_j``.

    Args:
        logits: ``(rows, classes)`` float32 logits.
        labels: float32 labels of the same shape (any non-negative weights;
            a zero label on a ``-inf`` logit adds 0).
        grad_out: None, or a C-contiguous writable float32 array of the logits'
            shape that receives ``s_r · (softmax(logits[r]) · sum(labels[r]) - labels[r])``
            (the maximum's entry computed as ``(T - t_a) - T·S'/(1 + S')``, exact
            for a confident row), ``s_r = scale · row_scale[r]``.
        row_scale: None or ``(rows,)`` per-row gradient factors.
        scale: a factor on every gradient row.
        row_bounds: as in :func:`softmax_cross_entropy_sparse`.
        label_bounds: None, or a C-contiguous writable float32 ``(rows, 2)``
            array that receives each row's minimum and maximum label, from the
            kernel's own pass over them (for the data checks); NaN, NaN for a
            row holding a label that is not a finite number >= 0 (or is -0.0):
            not known, to be checked by the caller.
        summary: as in :func:`softmax_cross_entropy_sparse`, with ``label_low``
            and ``label_high`` from ``label_bounds`` (its columns' minimum and
            maximum).

    Returns:
        ``(rows,)`` float32 losses, NaN for rows left to the generic kernel.
    """
    x = _matrix(logits, "logits")
    t = _same_shape(labels, x, "labels")
    loss = np.empty(x.shape[0], np.float32)
    grad = _gradient_buffer(grad_out, x)
    rows = x.shape[0]
    result = _module().softmax_ce(x, t, x.shape[1], loss, grad, _row_scale(row_scale, rows), float(scale),
                                  _native.threads(), _bounds_buffer(row_bounds, rows),
                                  _bounds_buffer(label_bounds, rows, "label_bounds"))
    if summary is not None:
        summary[:] = result
    return loss


def focal_softmax_cross_entropy(logits: Any, labels: Any, *, alpha: float | Any, gamma: float,
                                row_bounds: np.ndarray | None = None,
                                label_bounds: np.ndarray | None = None) -> np.ndarray:
    """Categorical focal cross-entropy per row: ``sum_j alpha_j (1 - p_j)^gamma labels_j · -log p_j``.

    ``p = softmax(logits[r])``; ``alpha`` is one weight or one per class;
    computed in float64 per entry and rounded once. ``row_bounds`` as in
    :func:`softmax_cross_entropy_sparse`, ``label_bounds`` as in
    :func:`softmax_cross_entropy`.
    """
    x = _matrix(logits, "logits")
    t = _same_shape(labels, x, "labels")
    weights = np.ascontiguousarray(np.atleast_1d(np.asarray(alpha, np.float64)))
    if weights.ndim != 1 or weights.size not in (1, x.shape[1]):
        msg = f"`alpha` must be one value or one per class ({x.shape[1]}). Received shape {weights.shape}."
        raise ValueError(msg)
    loss = np.empty(x.shape[0], np.float32)
    _module().focal_softmax_ce(x, t, x.shape[1], weights, float(gamma), loss, _native.threads(),
                               _bounds_buffer(row_bounds, x.shape[0]),
                               _bounds_buffer(label_bounds, x.shape[0], "label_bounds"))
    return loss


def normalized_cross_entropy_sparse(probs: Any, labels: Any, *, low: float, high: float,
                                    row_bounds: np.ndarray | None = None) -> np.ndarray:
    """Sparse cross-entropy from probabilities: ``-log(clip(probs[r, l] / sum(probs[r]), low, high))``.

    ``low`` and ``high`` are Keras's clip bounds, already rounded to float32
    (:func:`probloss._numerics.clip_bounds`). ``row_bounds``: None, or a
    ``(rows, 2)`` float32 buffer for each row's minimum and maximum
    probability, NaN, NaN where one is not a finite number >= 0 (as
    ``label_bounds`` of :func:`softmax_cross_entropy`).
    """
    y = _matrix(probs, "probs")
    k = _vector(labels, "labels", y.shape[0], np.int64)
    loss = np.empty(y.shape[0], np.float32)
    _module().normalized_ce_sparse(y, k, y.shape[1], float(low), float(high), loss, _native.threads(),
                                   _bounds_buffer(row_bounds, y.shape[0]))
    return loss


def normalized_cross_entropy(probs: Any, labels: Any, *, low: float, high: float,
                             row_bounds: np.ndarray | None = None,
                             label_bounds: np.ndarray | None = None) -> np.ndarray:
    """Categorical cross-entropy from probabilities: ``sum_j labels_j · -log(clip(probs_j / sum(probs)))``.

    ``row_bounds`` as in :func:`normalized_cross_entropy_sparse`, ``label_bounds``
    as in :func:`softmax_cross_entropy`: ranges from the kernel's own passes.
    """
    y = _matrix(probs, "probs")
    t = _same_shape(labels, y, "labels")
    loss = np.empty(y.shape[0], np.float32)
    _module().normalized_ce(y, t, y.shape[1], float(low), float(high), loss, _native.threads(),
                            _bounds_buffer(row_bounds, y.shape[0]),
                            _bounds_buffer(label_bounds, y.shape[0], "label_bounds"))
    return loss
