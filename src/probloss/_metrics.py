"""Streaming metrics: Keras 3's ``keras.metrics`` probabilistic metrics, in float64.

A metric keeps two numbers, a weighted sum of per-sample losses (``total``) and
the sum of the weights (``count``), both as Python floats (float64). Each
``update_state`` computes the batch's per-sample losses with the loss function,
in the inputs' own library and dtype, moves them to the host and adds them up
in float64. So any split of a data set into batches gives, within float64
rounding, the value of one call over the concatenation, and two metrics merge
by adding their state (``merge_state``), for example across processes.

Keras 3 semantics (``MeanMetricWrapper``), with the two pitfalls of Keras 3
fixed as tf.keras and the math do (docs/differences.md):

* a loss with a mask (``SparseCategoricalCrossentropy(ignore_class=k)``)
  leaves the ignored entries out of the count always; Keras 3 does so only
  when a ``sample_weight`` is given;
* integer ``y_pred`` is computed in float32 (Keras 3 gives NaN for
  ``Poisson`` on integer lists);
* a scalar ``sample_weight`` weights every sample (``count += s * batch``);
  Keras 3 adds ``s`` once per batch, so a scalar weights whole batches.

Per-timestep losses ``(B, T)`` are averaged per sample before they are
counted, as in Keras 3: each sample counts once, with its weight.

The state lives on the host, so ``update_state`` runs eagerly: under
``jax.jit`` or ``torch.compile`` compute :meth:`probloss.Loss.partial` inside
the compiled function and add its two numbers to the metric outside
(:meth:`Metric.update_from_partial`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from ._functional import (
    SPECS,
    binary_crossentropy,
    binary_focal_crossentropy,
    categorical_crossentropy,
    categorical_focal_crossentropy,
    kl_divergence,
    poisson,
    prepare,
    sparse_categorical_crossentropy,
)
from ._loss import _plain, _standardize_dtype
from ._validation import (
    check_alpha,
    check_axis,
    check_flag,
    check_gamma,
    check_ignore_class,
    check_label_smoothing,
)

__all__ = [
    "BinaryCrossentropy",
    "BinaryFocalCrossentropy",
    "CategoricalCrossentropy",
    "CategoricalFocalCrossentropy",
    "KLDivergence",
    "MeanMetricWrapper",
    "Metric",
    "Poisson",
    "SparseCategoricalCrossentropy",
    "to_host",
]

Array = Any


def to_host(x: Any) -> np.ndarray:
    """Return ``x`` (an array of any supported library) as a NumPy array, detached."""
    if isinstance(x, np.ndarray):
        return x
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch
        return x.detach().cpu().numpy()
    if type(x).__module__.startswith("cupy"):
        return x.get()
    try:
        return np.asarray(x)
    except (TypeError, ValueError, RuntimeError):  # array-api-strict and other DLPack producers
        return np.from_dlpack(x)


def sample_sums(values: Any, weight: Any = None, mask: Any = None) -> tuple[float, float, np.ndarray,
                                                                              np.ndarray]:
    """Weighted per-sample losses of one batch, in float64, on the host.

    Args:
        values: the loss function's output, ``(B, ...)`` (a scalar counts as one sample).
        weight: None, a scalar, ``(B,)`` per sample, or the values' full shape.
        mask: None or a boolean array of the values' shape; False entries count 0.

    Returns:
        ``(total, count, per_sample_total, per_sample_count)``: the weighted sum,
        the sum of weights, and the same two per sample (for per-class summaries).
    """
    v = np.asarray(to_host(values), dtype=np.float64)
    if v.ndim == 0:
        v = v.reshape(1)
        mask = None if mask is None else np.asarray(to_host(mask)).reshape(1)
    w = np.ones((), np.float64) if weight is None else np.asarray(to_host(weight), np.float64)
    if w.ndim == v.ndim + 1 and w.shape[-1] == 1:
        w = w[..., 0]
    if 0 < w.ndim < v.ndim and w.shape == v.shape[:w.ndim]:
        w = w.reshape(w.shape + (1,) * (v.ndim - w.ndim))  # one weight per sample
    try:
        w = np.broadcast_to(w, v.shape)
    except ValueError:
        msg = (f"`sample_weight` of shape {w.shape} does not match the per-sample losses of shape "
               f"{v.shape}. Pass one weight per sample, a scalar, or the losses' full shape.")
        raise ValueError(msg) from None
    if mask is not None:
        w = w * np.asarray(to_host(mask), dtype=np.float64)
    # A zero weight drops its value even when the value is inf or NaN (ignored rows).
    weighted = np.where(w == 0.0, 0.0, v * w)
    axes = tuple(range(1, v.ndim))
    per_total = np.mean(weighted, axis=axes) if axes else weighted
    per_count = np.mean(w, axis=axes) if axes else w
    return float(np.sum(per_total)), float(np.sum(per_count)), per_total, per_count


class Metric:
    """A streaming mean of per-sample values, Keras 3's ``Metric`` API.

    Args:
        name: the metric's name.
        dtype: the dtype of :meth:`result` (default ``"float32"``, Keras's
            ``floatx``); the state is float64 whatever this is.
    """

    def __init__(self, name: str | None = None, dtype: Any = None) -> None:
        self.name = name if name is not None else type(self).__name__
        self._dtype = _standardize_dtype(dtype) or "float32"
        self.total = 0.0
        self.count = 0.0

    @property
    def dtype(self) -> str:
        """The dtype name of :meth:`result`."""
        return self._dtype

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        """Add one batch; implemented by subclasses."""
        raise NotImplementedError

    def update_from_partial(self, numerator: Any, denominator: Any) -> None:
        """Add a weighted sum and a weight sum computed elsewhere (e.g. inside ``jax.jit``).

        For one loss value per sample, a loss with
        ``reduction="mean_with_sample_weight"`` gives, through
        :meth:`probloss.Loss.partial`, exactly the two numbers ``update_state``
        adds (the weighted sum and the weight sum of the kept samples).
        """
        self.total += float(to_host(numerator))
        self.count += float(to_host(denominator))

    def result(self) -> np.ndarray:
        """Return ``total / count`` (0 when nothing was counted) as a 0-d array of ``dtype``."""
        value = self.total / self.count if self.count else 0.0
        return np.asarray(value, dtype=self._dtype)

    def reset_state(self) -> None:
        """Forget every batch."""
        self.total = 0.0
        self.count = 0.0

    def merge_state(self, metrics: Iterable[Metric]) -> None:
        """Add the state of other metrics of the same class and options (e.g. other ranks')."""
        for other in metrics:
            if type(other) is not type(self) or _options(other) != _options(self):
                msg = (f"merge_state needs metrics of the same class and options as {self!r}. "
                       f"Received: {other!r}")
                raise ValueError(msg)
            self.total += other.total
            self.count += other.count

    def __call__(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> np.ndarray:
        """Update with one batch and return the running result."""
        self.update_state(y_true, y_pred, sample_weight=sample_weight)
        return self.result()

    def get_config(self) -> dict[str, Any]:
        """Return ``{"name", "dtype", ...options}``, Keras 3's keys."""
        config: dict[str, Any] = {"name": self.name, "dtype": self._dtype}
        for parameter in inspect.signature(type(self).__init__).parameters.values():
            if parameter.name not in ("self", "name", "dtype") and hasattr(self, parameter.name):
                config[parameter.name] = _plain(getattr(self, parameter.name))
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Metric:
        """Build a metric from :meth:`get_config`'s output."""
        return cls(**config)

    def __repr__(self) -> str:
        arguments = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({arguments})"


def _options(metric: Metric) -> dict[str, Any]:
    config = metric.get_config()
    config.pop("name")
    return config


class MeanMetricWrapper(Metric):
    """The streaming weighted mean of a probloss loss function's per-sample values.

    Args:
        fn: a probloss loss function (``probloss.binary_crossentropy``, ...).
        name, dtype: see :class:`Metric`.
        **kwargs: the function's options.

    Examples:
        >>> import probloss
        >>> from probloss import metrics
        >>> m = metrics.MeanMetricWrapper(probloss.poisson, name="poisson")
        >>> m.update_state([[0.0, 1.0]], [[1.0, 1.0]])
        >>> m.update_state([[2.0, 0.0]], [[1.0, 0.5]])
        >>> float(m.result()).__round__(4)
        0.875
    """

    def __init__(self, fn: Callable[..., Any], name: str | None = None, dtype: Any = None,
                 **kwargs: Any) -> None:
        super().__init__(name=name if name is not None else fn.__name__, dtype=dtype)
        self._fn = fn
        self._spec = SPECS[fn]
        self._kwargs = kwargs

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        """Add one batch: its per-sample losses, weighted, and the sum of the weights.

        Args:
            y_true: the labels, as the loss function takes them.
            y_pred: the predictions.
            sample_weight: None, a scalar, one weight per sample, or one per value.
        """
        total, count, _, _ = self.batch_sums(y_true, y_pred, sample_weight)
        self.total += total
        self.count += count

    def batch_sums(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> tuple[
            float, float, np.ndarray, np.ndarray]:
        """One batch's ``(total, count, per-sample totals, per-sample counts)``; no state change."""
        inputs, weight = prepare(y_true, y_pred, dtype=None, validate=None,
                                 sparse=self._spec.sparse, sample_weight=sample_weight)
        values, mask = self._spec.values(inputs, **self._kwargs)
        if weight is not None:
            inputs.checker.in_range(weight, "sample_weight", 0.0, float("inf"),
                                    hint=" Sample weights must be non-negative.")
        # The caller's weights, not their cast to the compute dtype: the state is float64.
        return sample_sums(values, None if weight is None else sample_weight, mask)


class BinaryCrossentropy(MeanMetricWrapper):
    """Streaming binary cross-entropy; ``keras.metrics.BinaryCrossentropy``.

    Examples:
        >>> from probloss import metrics
        >>> m = metrics.BinaryCrossentropy()
        >>> m.update_state([[0, 1], [0, 0]], [[0.6, 0.4], [0.4, 0.6]])
        >>> float(m.result()).__round__(4)
        0.8149
    """

    def __init__(self, name: str = "binary_crossentropy", dtype: Any = None,
                 from_logits: bool = False, label_smoothing: float = 0) -> None:
        self.from_logits = check_flag(from_logits, "from_logits")
        check_label_smoothing(label_smoothing)
        self.label_smoothing = label_smoothing
        super().__init__(binary_crossentropy, name=name, dtype=dtype, from_logits=self.from_logits,
                         label_smoothing=label_smoothing, axis=-1)


class CategoricalCrossentropy(MeanMetricWrapper):
    """Streaming categorical cross-entropy; ``keras.metrics.CategoricalCrossentropy``.

    Examples:
        >>> from probloss import metrics
        >>> m = metrics.CategoricalCrossentropy()
        >>> m.update_state([[0, 1, 0], [0, 0, 1]], [[0.05, 0.95, 0], [0.1, 0.8, 0.1]])
        >>> float(m.result()).__round__(4)
        1.1769
    """

    def __init__(self, name: str = "categorical_crossentropy", dtype: Any = None,
                 from_logits: bool = False, label_smoothing: float = 0, axis: int = -1) -> None:
        self.from_logits = check_flag(from_logits, "from_logits")
        check_label_smoothing(label_smoothing)
        self.label_smoothing = label_smoothing
        self.axis = check_axis(axis)
        super().__init__(categorical_crossentropy, name=name, dtype=dtype,
                         from_logits=self.from_logits, label_smoothing=label_smoothing,
                         axis=self.axis)


class SparseCategoricalCrossentropy(MeanMetricWrapper):
    """Streaming sparse categorical cross-entropy; ``keras.metrics.SparseCategoricalCrossentropy``.

    Labels equal to ``ignore_class`` are left out of both the sum and the count
    (with or without ``sample_weight``; Keras 3 counts them when no weight is given).

    Examples:
        >>> from probloss import metrics
        >>> m = metrics.SparseCategoricalCrossentropy(ignore_class=-1)
        >>> m.update_state([-1, 2], [[0.05, 0.95, 0], [0.1, 0.8, 0.1]])
        >>> float(m.result()).__round__(4), m.count
        (2.3026, 1.0)
    """

    def __init__(self, name: str = "sparse_categorical_crossentropy", dtype: Any = None,
                 from_logits: bool = False, ignore_class: int | None = None,
                 axis: int = -1) -> None:
        self.from_logits = check_flag(from_logits, "from_logits")
        self.ignore_class = check_ignore_class(ignore_class)
        self.axis = check_axis(axis)
        super().__init__(sparse_categorical_crossentropy, name=name, dtype=dtype,
                         from_logits=self.from_logits, ignore_class=self.ignore_class,
                         axis=self.axis)


class Poisson(MeanMetricWrapper):
    """Streaming Poisson loss; ``keras.metrics.Poisson``.

    Examples:
        >>> from probloss import metrics
        >>> m = metrics.Poisson()
        >>> m.update_state([[0, 1], [0, 0]], [[1, 1], [0, 0]])
        >>> float(m.result()).__round__(4)
        0.5
    """

    def __init__(self, name: str = "poisson", dtype: Any = None) -> None:
        super().__init__(poisson, name=name, dtype=dtype)


class KLDivergence(MeanMetricWrapper):
    """Streaming Kullback-Leibler divergence; ``keras.metrics.KLDivergence``.

    Examples:
        >>> from probloss import metrics
        >>> m = metrics.KLDivergence()
        >>> m.update_state([[0, 1], [0, 0]], [[0.6, 0.4], [0.4, 0.6]])
        >>> float(m.result()).__round__(4)
        0.4581
    """

    def __init__(self, name: str = "kl_divergence", dtype: Any = None) -> None:
        super().__init__(kl_divergence, name=name, dtype=dtype)


class BinaryFocalCrossentropy(MeanMetricWrapper):
    """Streaming binary focal cross-entropy (no Keras metric; the loss's options).

    Examples:
        >>> from probloss import metrics
        >>> m = metrics.BinaryFocalCrossentropy(gamma=2.0)
        >>> m.update_state([[0, 1], [0, 0]], [[0.6, 0.4], [0.4, 0.6]])
        >>> float(m.result()).__round__(3)
        0.268
    """

    def __init__(self, name: str = "binary_focal_crossentropy", dtype: Any = None,
                 apply_class_balancing: bool = False, alpha: float = 0.25, gamma: float = 2.0,
                 from_logits: bool = False, label_smoothing: float = 0.0, axis: int = -1) -> None:
        self.apply_class_balancing = check_flag(apply_class_balancing, "apply_class_balancing")
        self.alpha = check_alpha(alpha, per_class=False)
        self.gamma = check_gamma(gamma)
        self.from_logits = check_flag(from_logits, "from_logits")
        self.label_smoothing = check_label_smoothing(label_smoothing)
        self.axis = check_axis(axis)
        super().__init__(binary_focal_crossentropy, name=name, dtype=dtype,
                         apply_class_balancing=self.apply_class_balancing, alpha=self.alpha,
                         gamma=self.gamma, from_logits=self.from_logits,
                         label_smoothing=self.label_smoothing, axis=self.axis)


class CategoricalFocalCrossentropy(MeanMetricWrapper):
    """Streaming categorical focal cross-entropy (no Keras metric; the loss's options).

    Examples:
        >>> from probloss import metrics
        >>> m = metrics.CategoricalFocalCrossentropy()
        >>> m.update_state([[0, 1, 0], [0, 0, 1]], [[0.05, 0.95, 0], [0.1, 0.8, 0.1]])
        >>> float(m.result()).__round__(3)
        0.233
    """

    def __init__(self, name: str = "categorical_focal_crossentropy", dtype: Any = None,
                 alpha: float | Sequence[float] = 0.25, gamma: float = 2.0,
                 from_logits: bool = False, label_smoothing: float = 0.0, axis: int = -1) -> None:
        check_alpha(alpha, per_class=True)
        self.alpha = alpha
        self.gamma = check_gamma(gamma)
        self.from_logits = check_flag(from_logits, "from_logits")
        self.label_smoothing = check_label_smoothing(label_smoothing)
        self.axis = check_axis(axis)
        super().__init__(categorical_focal_crossentropy, name=name, dtype=dtype, alpha=alpha,
                         gamma=self.gamma, from_logits=self.from_logits,
                         label_smoothing=self.label_smoothing, axis=self.axis)
