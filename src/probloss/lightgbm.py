"""Any probloss loss as a LightGBM custom objective and evaluation metric.

One callable serves both of LightGBM's interfaces: native ``lgb.train`` (LightGBM
4: ``params={"objective": obj}``, and ``feval=metric``), where it is called as
``(preds, dataset)``, and the scikit-learn wrappers
(``LGBMClassifier(objective=obj)``, ``fit(..., eval_metric=metric)``), where it is
called as ``(y_true, y_pred, weight)``. Binary losses take ``(n,)`` raw scores;
softmax losses take ``(n, k)`` raw scores (LightGBM >= 4; the class-major flat
``(k·n,)`` layout of LightGBM 3.x is read and written too) and need
``num_class`` in the parameters (``LGBMClassifier`` sets it).

With a custom objective LightGBM's ``predict`` returns raw scores (apply a
sigmoid or softmax for probabilities), and training starts from a score of 0
unless an ``init_score`` is given. LightGBM is imported only when an adapter is
made; without it, a clear ``ImportError`` names the ``lightgbm`` extra. See
docs/gbdt.md.

Examples:
    >>> import numpy as np
    >>> import probloss
    >>> obj = probloss.lightgbm.objective(probloss.BinaryCrossentropy(from_logits=True))
    >>> obj(np.array([0.0, 1.0]), np.array([0.0, 0.0]), None)  # scikit-learn order: (y_true, y_pred, weight)
    (array([ 0.5, -0.5]), array([0.25, 0.25]))
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._boosting import Adapter, require

__all__ = ["Metric", "Objective", "metric", "objective"]

_EXTRA = "lightgbm"


def _native(second: Any) -> bool:
    return hasattr(second, "get_label")  # a lightgbm.Dataset


class Objective:
    """A probloss loss as a LightGBM objective; made by :func:`objective`."""

    def __init__(self, loss: Any, *, hessian_floor: float | None = 1e-16) -> None:
        self._adapter = Adapter(loss, hessian_floor=hessian_floor, flat_order="F")
        self.__name__ = self._adapter.name

    def __call__(self, first: Any, second: Any, weight: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """``(preds, dataset)`` (native) or ``(y_true, y_pred, weight)`` (scikit-learn)."""
        if _native(second):
            return self._adapter.derivatives(second.get_label(), first, second.get_weight())
        return self._adapter.derivatives(first, second, weight)


class Metric:
    """A probloss loss as a LightGBM evaluation metric; made by :func:`metric`."""

    def __init__(self, loss: Any, *, output_margin: bool = True) -> None:
        self._adapter = Adapter(loss, hessian_floor=None, flat_order="F")
        self.output_margin = output_margin
        self.__name__ = self._adapter.name

    def __call__(self, first: Any, second: Any, weight: Any = None) -> tuple[str, float, bool]:
        """``(preds, dataset)`` or ``(y_true, y_pred, weight)`` -> ``(name, value, False)``."""
        if _native(second):
            labels, preds, weight = second.get_label(), first, second.get_weight()
        else:
            labels, preds = first, second
        return self.__name__, self._adapter.value(labels, preds, weight, output_margin=self.output_margin), False


def objective(loss: Any, *, hessian_floor: float | None = 1e-16) -> Objective:
    """Return a LightGBM custom objective computing ``loss``'s gradient and Hessian.

    Args:
        loss: a probloss loss built with ``from_logits=True`` (see
            :func:`probloss.grad_hess` for the losses and options supported).
        hessian_floor: the smallest Hessian handed to LightGBM; None for the
            exact Hessian, which is negative in places for the focal losses.

    Returns:
        A callable for ``lgb.train(params={"objective": ...})`` and
        ``LGBMClassifier(objective=...)``.

    Raises:
        ImportError: if LightGBM is not installed.

    Examples:
        >>> import numpy as np
        >>> import probloss
        >>> obj = probloss.lightgbm.objective(probloss.SparseCategoricalCrossentropy(from_logits=True))
        >>> grad, hess = obj(np.array([2, 0]), np.zeros((2, 3)), None)
        >>> hess.round(4)
        array([[0.2222, 0.2222, 0.2222],
               [0.2222, 0.2222, 0.2222]])
    """
    require("lightgbm", _EXTRA)
    return Objective(loss, hessian_floor=hessian_floor)


def metric(loss: Any, *, output_margin: bool = True) -> Metric:
    """Return a LightGBM evaluation metric: ``loss``'s weighted mean, lower is better.

    Args:
        loss: a probloss loss built with ``from_logits=True``.
        output_margin: whether LightGBM hands the metric raw scores: true with a
            custom objective; pass False to evaluate a built-in objective's
            probabilities (or Poisson rates).

    Returns:
        A callable for ``lgb.train(feval=...)`` and ``fit(eval_metric=...)``,
        returning ``(loss.name, value, False)``.

    Raises:
        ImportError: if LightGBM is not installed.

    Examples:
        >>> import numpy as np
        >>> import probloss
        >>> m = probloss.lightgbm.metric(probloss.BinaryCrossentropy(from_logits=True))
        >>> name, value, higher_is_better = m(np.array([0.0, 1.0]), np.array([0.0, 0.0]), None)
        >>> name, round(value, 4), higher_is_better
        ('binary_crossentropy', 0.6931, False)
    """
    require("lightgbm", _EXTRA)
    return Metric(loss, output_margin=output_margin)
