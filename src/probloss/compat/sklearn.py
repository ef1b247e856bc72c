"""``sklearn.metrics.log_loss`` with scikit-learn 1.9's signature and definition, on any array library.

scikit-learn 1.9 clips the probabilities to ``[eps, 1 - eps]`` with ``eps`` the
machine epsilon of their dtype (float64 unless given float32), no longer
renormalises the rows (it warns when they do not sum to 1), reads a 1-D
``y_proba`` as the probability of the positive (larger) class, and encodes the
labels in sorted order (``LabelBinarizer``). This function does the same; the
class labels are read on the host (as scikit-learn does), the probabilities
stay in their library and on their device. It returns a Python float.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from .._namespace import as_arrays, device_of, is_floating

__all__ = ["log_loss"]


def _host(x: Any) -> np.ndarray:
    if hasattr(x, "compute"):  # Dask
        x = x.compute()
    if hasattr(x, "detach"):  # PyTorch
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _encode(y_true: Any, labels: Any, num_columns: int) -> tuple[np.ndarray, np.ndarray]:
    """Return the one-hot (indicator) labels on the host, and the sorted classes."""
    y = _host(y_true)
    if y.ndim == 2 and y.shape[1] > 1:  # an indicator matrix, read as is
        return y.astype(np.float64), np.arange(y.shape[1])
    y = y.reshape(-1)
    if labels is not None:
        classes = np.unique(_host(labels))
        if not np.all(np.isin(y, classes)):
            undeclared = set(y.tolist()) - set(classes.tolist())
            msg = f"y_true contains values {undeclared} not belonging to the passed labels {labels}."
            raise ValueError(msg)
    else:
        classes = np.unique(y)
    if classes.shape[0] == 1:
        msg = (f"y_true contains only one label ({classes[0]}). Please provide the list of all expected class labels "
               "explicitly through the labels argument.")
        raise ValueError(msg)
    if classes.shape[0] != num_columns:
        msg = (f"y_true and y_proba contain different number of classes: {classes.shape[0]} vs {num_columns}. "
               "Please provide the true labels explicitly through the labels argument.")
        raise ValueError(msg)
    onehot = (y[:, None] == classes[None, :]).astype(np.float64)
    return onehot, classes


def log_loss(y_true: Any, y_proba: Any = None, *, normalize: bool = True, sample_weight: Any = None,
             labels: Any = None, y_pred: Any = "deprecated") -> float:
    """``sklearn.metrics.log_loss``: ``-Σ_c y_c·log(clip(p_c, eps, 1 - eps))``, averaged or summed.

    With ``normalize`` the mean over samples (weighted by ``sample_weight``:
    ``Σ s_i·l_i / Σ s_i``), else the (weighted) sum. ``eps`` is
    ``finfo(y_proba.dtype).eps``.

    Examples:
        >>> import numpy as np
        >>> from probloss.compat.sklearn import log_loss
        >>> round(log_loss(["spam", "ham", "ham", "spam"], np.array([[.1, .9], [.9, .1], [.8, .2], [.35, .65]])), 4)
        0.2162
    """
    if not (isinstance(y_pred, str) and y_pred == "deprecated"):
        if y_proba is not None:
            msg = "Cannot use both `y_pred` and `y_proba`. `y_pred` is deprecated, use `y_proba` instead."
            raise ValueError(msg)
        warnings.warn("`y_pred` was renamed to `y_proba` in version 1.9 and will be removed in 1.11. "
                      "Use `y_proba` instead.", FutureWarning, stacklevel=2)
        y_proba = y_pred
    # scikit-learn reads lists as float64 (probloss elsewhere reads them as Keras's float32).
    if not hasattr(y_proba, "shape"):
        y_proba = np.asarray(y_proba, dtype=np.float64)
    if sample_weight is not None and not hasattr(sample_weight, "shape"):
        sample_weight = np.asarray(sample_weight, dtype=np.float64)
    xp, arrays = as_arrays({"y_proba": y_proba, "sample_weight": sample_weight})
    p = arrays["y_proba"]
    if not is_floating(xp, p.dtype):
        p = xp.astype(p, xp.float64)
    if p.ndim == 1:
        p = xp.reshape(p, (p.shape[0], 1))
    if p.shape[1] == 1:
        p = xp.concat([1 - p, p], axis=1)
    low, high = float(xp.min(p)), float(xp.max(p))
    if high > 1:
        msg = f"y_prob contains values greater than 1: {high}"
        raise ValueError(msg)
    if low < 0:
        msg = f"y_prob contains values lower than 0: {low}"
        raise ValueError(msg)
    onehot, _ = _encode(y_true, labels, p.shape[1])
    if onehot.shape[0] != p.shape[0]:
        msg = f"Found input variables with inconsistent numbers of samples: {[onehot.shape[0], p.shape[0]]}"
        raise ValueError(msg)
    eps = float(xp.finfo(p.dtype).eps)
    sums = _host(xp.sum(p, axis=1))
    if not np.allclose(sums, 1.0, rtol=np.sqrt(eps), atol=0.0):
        warnings.warn("The y_prob values do not sum to one. Make sure to pass probabilities.",
                      UserWarning, stacklevel=2)
    y = xp.asarray(onehot, dtype=p.dtype, device=device_of(p))
    clipped = xp.clip(p, eps, 1 - eps)
    # Σ_c y_c·log p_c with 0·log p = 0 (scikit-learn's xlogy).
    loss = -xp.sum(xp.where(y == 0, xp.zeros_like(clipped), y * xp.log(clipped)), axis=1)
    w = arrays["sample_weight"]
    if w is None:
        total = xp.sum(loss)
        return float(total / loss.shape[0] if normalize else total)
    w = xp.astype(w, p.dtype)
    total = xp.sum(w * loss)
    return float(total / xp.sum(w) if normalize else total)
