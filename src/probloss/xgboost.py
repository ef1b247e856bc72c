"""Any probloss loss as an XGBoost custom objective and evaluation metric.

One callable serves both of XGBoost's interfaces: native ``xgb.train(params,
dtrain, obj=..., custom_metric=...)``, where it is called as ``(predt, dtrain)``,
and the scikit-learn wrappers (``XGBClassifier(objective=..., eval_metric=...)``),
where it is called as ``(y_true, y_pred, sample_weight=...)``. Binary losses take
``(n,)`` raw scores; softmax losses take ``(n, k)`` raw scores (XGBoost >= 2; the
row-major flat ``(n·k,)`` layout of XGBoost 1.x is read too) and need
``num_class`` in the parameters (``XGBClassifier`` sets it).

XGBoost is imported only when an adapter is made; without it, a clear
``ImportError`` names the ``xgboost`` extra. See docs/gbdt.md.

Examples:
    >>> import numpy as np
    >>> import probloss
    >>> obj = probloss.xgboost.objective(probloss.BinaryFocalCrossentropy(gamma=2.0, from_logits=True))
    >>> grad, hess = obj(np.array([0.0, 1.0]), np.array([0.5, -0.5]))  # scikit-learn order: (y_true, y_pred)
    >>> grad.shape, bool((hess > 0).all())
    ((2,), True)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._boosting import Adapter, require

__all__ = ["Metric", "Objective", "metric", "objective"]

_EXTRA = "xgboost"


def _native(second: Any) -> bool:
    return hasattr(second, "get_label")  # an xgboost.DMatrix


class Objective:
    """A probloss loss as an XGBoost objective; made by :func:`objective`."""

    def __init__(self, loss: Any, *, hessian_floor: float | None = 1e-16) -> None:
        self._adapter = Adapter(loss, hessian_floor=hessian_floor, flat_order="C")
        self.__name__ = self._adapter.name

    def __call__(self, first: Any, second: Any, sample_weight: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """``(predt, dtrain)`` (native) or ``(y_true, y_pred, sample_weight=None)`` (scikit-learn)."""
        if _native(second):
            return self._adapter.derivatives(second.get_label(), first, second.get_weight())
        return self._adapter.derivatives(first, second, sample_weight)


class Metric:
    """A probloss loss as an XGBoost evaluation metric; made by :func:`metric`."""

    def __init__(self, loss: Any, *, output_margin: bool = True) -> None:
        self._adapter = Adapter(loss, hessian_floor=None, flat_order="C")
        self.output_margin = output_margin
        self.__name__ = self._adapter.name

    def __call__(self, first: Any, second: Any, sample_weight: Any = None) -> Any:
        """``(predt, dtrain) -> (name, value)`` (native) or ``(y_true, y_pred, sample_weight=None) -> value``."""
        if _native(second):
            value = self._adapter.value(second.get_label(), first, second.get_weight(),
                                        output_margin=self.output_margin)
            return self.__name__, value
        return self._adapter.value(first, second, sample_weight, output_margin=self.output_margin)


def objective(loss: Any, *, hessian_floor: float | None = 1e-16) -> Objective:
    """Return an XGBoost custom objective computing ``loss``'s gradient and Hessian.

    Args:
        loss: a probloss loss built with ``from_logits=True`` (see
            :func:`probloss.grad_hess` for the losses and options supported).
        hessian_floor: the smallest Hessian handed to XGBoost (its own
            objectives use 1e-16); None for the exact Hessian, which is
            negative in places for the focal losses.

    Returns:
        A callable for ``xgb.train(obj=...)`` and ``XGBClassifier(objective=...)``.

    Raises:
        ImportError: if XGBoost is not installed.

    Examples:
        >>> import numpy as np
        >>> import probloss
        >>> obj = probloss.xgboost.objective(probloss.SparseCategoricalCrossentropy(from_logits=True))
        >>> grad, hess = obj(np.array([2, 0]), np.zeros((2, 3)))
        >>> grad.round(4)
        array([[ 0.3333,  0.3333, -0.6667],
               [-0.6667,  0.3333,  0.3333]])
    """
    require("xgboost", _EXTRA)
    return Objective(loss, hessian_floor=hessian_floor)


def metric(loss: Any, *, output_margin: bool = True) -> Metric:
    """Return an XGBoost evaluation metric: ``loss``'s weighted mean, lower is better.

    Args:
        loss: a probloss loss built with ``from_logits=True``.
        output_margin: whether XGBoost hands the metric raw scores: true with a
            custom objective (XGBoost passes margins then); pass False to
            evaluate a built-in objective's probabilities (or Poisson rates).

    Returns:
        A callable for ``xgb.train(custom_metric=...)`` (returning
        ``(loss.name, value)``) and ``XGBClassifier(eval_metric=...)`` (returning
        the value; XGBoost names it after ``__name__``, the loss's name).

    Raises:
        ImportError: if XGBoost is not installed.

    Examples:
        >>> import numpy as np
        >>> import probloss
        >>> m = probloss.xgboost.metric(probloss.BinaryCrossentropy(from_logits=True))
        >>> round(m(np.array([0.0, 1.0]), np.array([0.0, 0.0])), 4)  # log 2
        0.6931
    """
    require("xgboost", _EXTRA)
    return Metric(loss, output_margin=output_margin)
