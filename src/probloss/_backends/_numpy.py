"""NumPy fast paths: blocked execution, and ``take_along_axis`` for sparse labels."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._dispatch import Kernel, executor, fast_path
from .._kernels._crossentropy import mark_invalid_labels
from .._numerics import neg_log_picked, neg_log_softmax

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


@fast_path("sparse_categorical_crossentropy", backend="numpy")
def sparse_categorical_crossentropy(y_true: Any, y_pred: Any, *, from_logits: bool, axis: int,
                                    epsilon: float, xp: Any) -> Any:
    num_classes = y_pred.shape[axis]
    # Clamp the index so that invalid labels can be gathered; they become NaN below.
    index = np.expand_dims(np.clip(y_true, 0, max(num_classes - 1, 0)), axis)
    if from_logits:
        nll = neg_log_softmax(y_pred, axis=axis, xp=xp)
        loss = np.squeeze(np.take_along_axis(nll, index, axis=axis), axis=axis)
    else:
        picked = np.squeeze(np.take_along_axis(y_pred, index, axis=axis), axis=axis)
        # The sum without the label's entry (not sum - picked, which cancels near p = 1).
        others = y_pred.copy()
        np.put_along_axis(others, index, 0, axis=axis)
        loss = neg_log_picked(picked, np.sum(others, axis=axis), epsilon, 1.0 - epsilon, xp=xp)
    return mark_invalid_labels(loss, y_true, num_classes, xp=xp)
