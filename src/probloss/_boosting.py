"""What the XGBoost and LightGBM adapters share: raw-score layouts, labels, metric values.

The boosting libraries hand over NumPy arrays: labels of shape ``(n,)`` (class
indices for multi-class, or ``(n, k)`` soft labels flattened) and raw scores of
shape ``(n,)`` (one output) or ``(n, k)`` (XGBoost >= 2, LightGBM >= 4). Older
releases flatten the ``(n, k)`` scores: row-major in XGBoost 1.x, class-major in
LightGBM 3.x; :class:`Adapter` reads and writes either, given the library's
``flat_order``. The derivatives come back in the layout they came in.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

import numpy as np

from ._functional import poisson, sparse_categorical_crossentropy
from ._grad_hess import _BINARY, grad_hess, loss_options
from ._validation import ProbabilitiesAsLogitsWarning

__all__ = ["Adapter", "require"]


def require(module: str, extra: str) -> Any:
    """Import ``module``, or raise an ImportError that names the probloss extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        msg = (f"probloss.{extra} needs the {module!r} package, which is not installed. "
               f"Install it with `pip install 'probloss[{extra}]'`.")
        raise ImportError(msg) from error


class Adapter:
    """A probloss loss read as a boosting objective: derivatives and metric values on NumPy arrays.

    Args:
        loss: a probloss loss object (see :func:`probloss.grad_hess`).
        hessian_floor: passed to :func:`probloss.grad_hess`.
        flat_order: how the library flattens ``(n, k)`` scores into one
            dimension: ``"C"`` (row-major) or ``"F"`` (class-major).
    """

    def __init__(self, loss: Any, *, hessian_floor: float | None, flat_order: str) -> None:
        self.fn, self.options = loss_options(loss)
        self.loss = loss
        self.hessian_floor = hessian_floor
        self.flat_order = flat_order
        self.softmax = self.fn not in (*_BINARY, poisson)
        self.name = getattr(loss, "name", None) or self.fn.__name__

    def _scores(self, labels: np.ndarray, preds: Any) -> tuple[np.ndarray, tuple[int, ...]]:
        """Return the scores as ``(n,)`` or ``(n, k)`` float64, and the shape they came in."""
        preds = np.asarray(preds, dtype=np.float64)
        if not self.softmax:
            return preds.reshape(-1), preds.shape
        n = _num_samples(labels, preds)
        if preds.ndim == 2:
            return preds, preds.shape
        k = preds.size // max(n, 1)
        if self.flat_order == "F":
            return preds.reshape(k, n).T, preds.shape
        return preds.reshape(n, k), preds.shape

    def _restore(self, x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        if len(shape) == 2 or not self.softmax:
            return x.reshape(shape)
        return x.ravel(order=self.flat_order)  # back to the library's flat layout

    def _labels(self, labels: Any, scores: np.ndarray) -> np.ndarray:
        labels = np.asarray(labels)
        if not self.softmax:
            return labels.astype(np.float64).reshape(-1)
        n, k = scores.shape
        if self.fn is sparse_categorical_crossentropy:
            return labels.reshape(n)
        if labels.size == n * k:  # soft labels (XGBoost's multi-output labels)
            return labels.astype(np.float64).reshape(n, k)
        # Class indices for a one-hot loss: one-hot them.
        indices = labels.reshape(n)
        if not np.array_equal(indices, np.round(indices)) or indices.min(initial=0) < 0 or \
                indices.max(initial=0) >= k:
            msg = f"Labels must be class indices in [0, {k}) for {self.name}. Received values in " \
                  f"[{indices.min()}, {indices.max()}]."
            raise ValueError(msg)
        return (indices[:, None] == np.arange(k)).astype(np.float64)

    @staticmethod
    def _weights(weight: Any) -> np.ndarray | None:
        if weight is None:
            return None
        weight = np.asarray(weight, dtype=np.float64).reshape(-1)
        return weight if weight.size else None

    def derivatives(self, labels: Any, preds: Any, weight: Any) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(grad, hess)`` in ``preds``'s layout."""
        scores, shape = self._scores(np.asarray(labels), preds)
        y = self._labels(labels, scores)
        grad, hess = grad_hess(self.loss, y, scores, self._weights(weight), hessian_floor=self.hessian_floor)
        return self._restore(grad, shape), self._restore(hess, shape)

    def value(self, labels: Any, preds: Any, weight: Any, *, output_margin: bool) -> float:
        """Return the weighted mean of the per-sample losses (``sum(w·loss) / sum(w)``).

        Args:
            labels: the labels.
            preds: raw scores, or (``output_margin=False``) what a built-in
                objective predicts: probabilities, or rates for ``Poisson``.
            weight: sample weights or None.
            output_margin: whether ``preds`` are raw scores.
        """
        scores, _ = self._scores(np.asarray(labels), preds)
        if not output_margin:
            scores = _margins(scores, softmax=self.softmax, rate=self.fn is poisson)
        y = self._labels(labels, scores)
        with warnings.catch_warnings():
            # Raw scores near 0 (early rounds) may all lie in [0, 1]: they are still scores.
            warnings.simplefilter("ignore", ProbabilitiesAsLogitsWarning)
            values = self._values(y, scores)
        w = self._weights(weight)
        w = np.ones_like(values) if w is None else w
        if self.fn is sparse_categorical_crossentropy and self.options["ignore_class"] is not None:
            w = w * (y != self.options["ignore_class"])
        return float(np.sum(w * values) / np.sum(w))

    def _values(self, y: np.ndarray, scores: np.ndarray) -> np.ndarray:
        if self.fn is poisson:
            with np.errstate(over="ignore"):  # a rate beyond the float range is inf, and so is its loss
                rates = np.exp(scores)
            values = poisson(y[:, None], rates[:, None])  # probloss.Poisson takes rates
        elif not self.softmax:  # per element: each sample its own row
            values = self.fn(y[:, None], scores[:, None], **self.options)
        else:
            values = self.fn(y, scores, **self.options)
        return np.asarray(values, dtype=np.float64).reshape(-1)


def _num_samples(labels: np.ndarray, preds: np.ndarray) -> int:
    if preds.ndim == 2:
        return preds.shape[0]
    return labels.shape[0] if labels.ndim else labels.size


def _margins(preds: np.ndarray, *, softmax: bool, rate: bool) -> np.ndarray:
    """Raw scores from a built-in objective's transformed predictions."""
    with np.errstate(divide="ignore"):
        if rate or softmax:  # log-rate; softmax logits up to a constant per row
            return np.log(preds)
        return np.log(preds) - np.log1p(-preds)
