"""NumPy fast paths: ``take_along_axis`` instead of a one-hot comparison."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._dispatch import fast_path
from .._kernels._crossentropy import mark_invalid_labels
from .._numerics import neg_log_picked, neg_log_softmax


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
