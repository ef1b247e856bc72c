"""The seven loss classes: Keras 3's constructors, in Keras 3's positional order.

Each class is a docstring and an ``__init__`` that checks its options and
forwards them to :class:`~probloss.LossFunctionWrapper`; everything else
(``__call__``, ``call``, ``get_config``) is inherited, except where a class's
``__call__`` first tries a library's short way (the same result by fewer
steps, or None). ``reduction``, ``name``,
``dtype`` and ``validate`` are documented once, on :class:`~probloss.Loss`.
"""

from __future__ import annotations

import importlib
import numbers
import sys
from collections.abc import Sequence
from typing import Any

from ._ctc import ctc
from ._functional import (
    binary_crossentropy,
    binary_focal_crossentropy,
    categorical_crossentropy,
    categorical_focal_crossentropy,
    kl_divergence,
    poisson,
    sparse_categorical_crossentropy,
    sparse_categorical_focal_crossentropy,
)
from ._loss import LossFunctionWrapper
from ._validation import (
    check_alpha,
    check_axis,
    check_choice,
    check_flag,
    check_gamma,
    check_ignore_class,
    check_label_smoothing,
    check_weight_vector,
)

__all__ = [
    "CTC",
    "BinaryCrossentropy",
    "BinaryFocalCrossentropy",
    "CategoricalCrossentropy",
    "CategoricalFocalCrossentropy",
    "KLDivergence",
    "Poisson",
    "SparseCategoricalCrossentropy",
    "SparseCategoricalFocalCrossentropy",
]

_SOBS = "sum_over_batch_size"
_NORMALIZATIONS = ("count", "weights")



class BinaryCrossentropy(LossFunctionWrapper):
    """Binary cross-entropy, reduced over the batch; see :func:`probloss.binary_crossentropy`.

    Args:
        from_logits: whether ``y_pred`` holds logits.
        label_smoothing: float in [0, 1]; labels are squeezed towards 0.5.
        axis: the axis to average over. Defaults to -1.
        pos_weight: None (Keras), or PyTorch's weight of the positive term, a
            number or one per entry along ``axis``: ``-[w·y·log p + (1-y)·log(1-p)]``.
        reduction, name, dtype, validate: see :class:`probloss.Loss`.

    Examples:
        >>> import probloss
        >>> bce = probloss.BinaryCrossentropy(from_logits=True)
        >>> y_true = [[0, 1], [0, 0]]
        >>> y_pred = [[-18.6, 0.51], [2.94, -12.8]]
        >>> float(bce(y_true, y_pred)).__round__(3)
        0.865
        >>> float(bce(y_true, y_pred, sample_weight=[0.8, 0.2])).__round__(4)
        0.2436
        >>> probloss.BinaryCrossentropy(from_logits=True, reduction=None)(y_true, y_pred).round(3)
        array([0.235, 1.496], dtype=float32)
    """

    def __init__(self, from_logits: bool = False, label_smoothing: float = 0.0, axis: int = -1,
                 reduction: str | None = _SOBS, name: str = "binary_crossentropy",
                 dtype: Any = None, *, pos_weight: Any = None, validate: str | None = None) -> None:
        self.from_logits = check_flag(from_logits, "from_logits")
        self.label_smoothing = check_label_smoothing(label_smoothing)
        self.axis = check_axis(axis)
        self.pos_weight = check_weight_vector(pos_weight, "pos_weight", allow_scalar=True)
        super().__init__(binary_crossentropy, reduction=reduction, name=name, dtype=dtype,
                         validate=validate, from_logits=self.from_logits,
                         label_smoothing=self.label_smoothing, axis=self.axis, pos_weight=self.pos_weight)


class BinaryFocalCrossentropy(LossFunctionWrapper):
    """Binary focal cross-entropy; see :func:`probloss.binary_focal_crossentropy`.

    Args:
        apply_class_balancing: whether to weight classes by ``alpha``.
        alpha: the positive-class weight, used only with class balancing.
        gamma: the focusing parameter, ``>= 0``.
        from_logits: whether ``y_pred`` holds logits.
        label_smoothing: float in [0, 1].
        axis: the axis to average over. Defaults to -1.
        pos_weight: None, or the weight of the positive cross-entropy term (as
            :class:`BinaryCrossentropy`).
        reduction, name, dtype, validate: see :class:`probloss.Loss`.

    Examples:
        >>> import probloss
        >>> loss = probloss.BinaryFocalCrossentropy(gamma=2.0, from_logits=True)
        >>> float(loss([0, 1, 0, 0], [-18.6, 0.51, 2.94, -12.8])).__round__(3)
        0.691
    """

    def __init__(self, apply_class_balancing: bool = False, alpha: float = 0.25,
                 gamma: float = 2.0, from_logits: bool = False, label_smoothing: float = 0.0,
                 axis: int = -1, reduction: str | None = _SOBS,
                 name: str = "binary_focal_crossentropy", dtype: Any = None, *,
                 pos_weight: Any = None, validate: str | None = None) -> None:
        self.pos_weight = check_weight_vector(pos_weight, "pos_weight", allow_scalar=True)
        self.apply_class_balancing = check_flag(apply_class_balancing, "apply_class_balancing")
        self.alpha = check_alpha(alpha, per_class=False)
        self.gamma = check_gamma(gamma)
        self.from_logits = check_flag(from_logits, "from_logits")
        self.label_smoothing = check_label_smoothing(label_smoothing)
        self.axis = check_axis(axis)
        super().__init__(binary_focal_crossentropy, reduction=reduction, name=name, dtype=dtype,
                         validate=validate, apply_class_balancing=self.apply_class_balancing,
                         alpha=self.alpha, gamma=self.gamma, from_logits=self.from_logits,
                         label_smoothing=self.label_smoothing, axis=self.axis, pos_weight=self.pos_weight)


def _torch_short_way(loss: Any, cls: type, module: str, function: str, y_true: Any, y_pred: Any,
                     sample_weight: Any) -> Any:
    """The result of a PyTorch short way (``probloss._backends.<module>.<function>``), or None for the general path.

    Only for an instance of ``cls`` itself (a subclass's own ``compute_values``
    or ``call`` the short way would pass by), without sample weights, on a plain
    PyTorch tensor; the function itself declines every other call.
    """
    if sample_weight is not None or type(loss) is not cls:
        return None
    torch = sys.modules.get("torch")  # loaded already wherever y_pred can be a tensor
    if torch is None or not (type(y_pred) is torch.Tensor or type(y_pred) is torch.nn.Parameter):
        return None
    return getattr(importlib.import_module(f"._backends.{module}", __package__), function)(loss, y_true, y_pred)


def _jax_short_way(loss: Any, cls: type, function: str, y_true: Any, y_pred: Any, sample_weight: Any) -> Any:
    """The result of a JAX short way (``probloss._backends._jax_direct.<function>``), or None for the general path.

    Only for an instance of ``cls`` itself, without sample weights, on a JAX
    array or tracer; the function itself declines every other call.
    """
    if sample_weight is not None or type(loss) is not cls:
        return None
    jax = sys.modules.get("jax")  # loaded already wherever y_pred can be a JAX array
    if jax is None or not isinstance(y_pred, jax.Array):
        return None
    return getattr(importlib.import_module("._backends._jax_direct", __package__), function)(loss, y_true, y_pred)


class CategoricalCrossentropy(LossFunctionWrapper):
    """Categorical cross-entropy; see :func:`probloss.categorical_crossentropy`.

    Args:
        from_logits: whether ``y_pred`` holds logits.
        label_smoothing: float in [0, 1].
        axis: the class axis. Defaults to -1.
        class_weight: None (Keras), or one non-negative weight per class
            along ``axis``; a sample's loss is weighted by its class weight
            ``c_i = sum_c class_weight[c]·y_ic`` (``class_weight[y_i]`` for a
            label), as Keras's ``fit(class_weight=...)`` and PyTorch's ``weight``.
        normalize_by: how the mean reductions divide the weighted sum
            ``sum_i s_i·c_i·loss_i`` (``s_i`` the sample weights, 1 without):
            ``"count"`` (default, Keras) by the number of elements, as without
            class weights (``"mean_with_sample_weight"``: by ``sum_i s_i``);
            ``"weights"`` (PyTorch) by ``sum_i s_i·c_i``, so that
            ``sum(c_i·loss_i) / sum(c_i)`` is PyTorch's ``reduction="mean"``.
            Entries masked by ``ignore_class`` count in neither. ``"sum"`` and
            ``"none"`` are unchanged.
        reduction, name, dtype, validate: see :class:`probloss.Loss`.

    Examples:
        >>> import numpy as np
        >>> import probloss
        >>> y_true = [[0, 1, 0], [0, 0, 1]]
        >>> y_pred = [[0.05, 0.95, 0], [0.1, 0.8, 0.1]]
        >>> cce = probloss.CategoricalCrossentropy()
        >>> float(cce(y_true, y_pred)).__round__(3)
        1.177
        >>> float(cce(y_true, y_pred, sample_weight=np.array([0.3, 0.7]))).__round__(3)
        0.814
    """

    def __init__(self, from_logits: bool = False, label_smoothing: float = 0.0, axis: int = -1,
                 reduction: str | None = _SOBS, name: str = "categorical_crossentropy",
                 dtype: Any = None, *, class_weight: Any = None, normalize_by: str = "count",
                 validate: str | None = None) -> None:
        self.from_logits = check_flag(from_logits, "from_logits")
        self.label_smoothing = check_label_smoothing(label_smoothing)
        self.axis = check_axis(axis)
        self.class_weight = check_weight_vector(class_weight, "class_weight")
        self.normalize_by = check_choice(normalize_by, "normalize_by", _NORMALIZATIONS)
        super().__init__(categorical_crossentropy, reduction=reduction, name=name, dtype=dtype,
                         validate=validate, from_logits=self.from_logits,
                         label_smoothing=self.label_smoothing, axis=self.axis, class_weight=self.class_weight)

    def __call__(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> Any:
        """Compute the reduced loss (see :meth:`probloss.Loss.__call__`).

        Plain eager CPU float32 PyTorch tensors from logits take a short way to
        the compiled kernel (:func:`probloss._backends._torch.categorical_loss_direct`),
        with the same result, gradient, errors and warnings.
        """
        result = _torch_short_way(self, CategoricalCrossentropy, "_torch", "categorical_loss_direct",
                                  y_true, y_pred, sample_weight)
        return result if result is not None else super().__call__(y_true, y_pred, sample_weight)


class CategoricalFocalCrossentropy(LossFunctionWrapper):
    """Categorical focal cross-entropy; see :func:`probloss.categorical_focal_crossentropy`.

    Args:
        alpha: a float or one weight per class.
        gamma: the focusing parameter, ``>= 0``.
        from_logits: whether ``y_pred`` holds logits.
        label_smoothing: float in [0, 1].
        axis: the class axis. Defaults to -1.
        class_weight: None (Keras), or one non-negative weight per class
            along ``axis``; a sample's loss is weighted by its class weight
            ``c_i = sum_c class_weight[c]·y_ic`` (``class_weight[y_i]`` for a
            label), as Keras's ``fit(class_weight=...)`` and PyTorch's ``weight``.
        normalize_by: how the mean reductions divide the weighted sum
            ``sum_i s_i·c_i·loss_i`` (``s_i`` the sample weights, 1 without):
            ``"count"`` (default, Keras) by the number of elements, as without
            class weights (``"mean_with_sample_weight"``: by ``sum_i s_i``);
            ``"weights"`` (PyTorch) by ``sum_i s_i·c_i``, so that
            ``sum(c_i·loss_i) / sum(c_i)`` is PyTorch's ``reduction="mean"``.
            Entries masked by ``ignore_class`` count in neither. ``"sum"`` and
            ``"none"`` are unchanged.
        reduction, name, dtype, validate: see :class:`probloss.Loss`.

    Examples:
        >>> import probloss
        >>> loss = probloss.CategoricalFocalCrossentropy()
        >>> float(loss([[0, 1, 0], [0, 0, 1]], [[0.05, 0.95, 0], [0.1, 0.8, 0.1]])).__round__(3)
        0.233
    """

    def __init__(self, alpha: float | Sequence[float] = 0.25, gamma: float = 2.0,
                 from_logits: bool = False, label_smoothing: float = 0.0, axis: int = -1,
                 reduction: str | None = _SOBS, name: str = "categorical_focal_crossentropy",
                 dtype: Any = None, *, class_weight: Any = None, normalize_by: str = "count",
                 validate: str | None = None) -> None:
        self.class_weight = check_weight_vector(class_weight, "class_weight")
        self.normalize_by = check_choice(normalize_by, "normalize_by", _NORMALIZATIONS)
        check_alpha(alpha, per_class=True)
        self.alpha = alpha
        self.gamma = check_gamma(gamma)
        self.from_logits = check_flag(from_logits, "from_logits")
        self.label_smoothing = check_label_smoothing(label_smoothing)
        self.axis = check_axis(axis)
        super().__init__(categorical_focal_crossentropy, reduction=reduction, name=name,
                         dtype=dtype, validate=validate, alpha=alpha, gamma=self.gamma,
                         from_logits=self.from_logits, label_smoothing=self.label_smoothing,
                         axis=self.axis, class_weight=self.class_weight)

    def __call__(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> Any:
        """Compute the reduced loss (see :meth:`probloss.Loss.__call__`).

        Plain eager CPU float32 PyTorch tensors from logits take a short way to
        the compiled kernel (:func:`probloss._backends._torch_focal.categorical_focal_loss_direct`),
        with the same result, gradient, errors and warnings.
        """
        result = _torch_short_way(self, CategoricalFocalCrossentropy, "_torch_focal", "categorical_focal_loss_direct",
                                  y_true, y_pred, sample_weight)
        return result if result is not None else super().__call__(y_true, y_pred, sample_weight)


class SparseCategoricalCrossentropy(LossFunctionWrapper):
    """Sparse categorical cross-entropy; see :func:`probloss.sparse_categorical_crossentropy`.

    Note Keras's positional order: ``reduction`` comes before ``axis``. Labels
    equal to ``ignore_class`` are left out of the mean.

    Args:
        from_logits: whether ``y_pred`` holds logits.
        ignore_class: a label value to ignore, or None.
        reduction: see :class:`probloss.Loss`.
        axis: the class axis. Defaults to -1.
        class_weight: None (Keras), or one non-negative weight per class
            along ``axis``; a sample's loss is weighted by its class weight
            ``c_i = sum_c class_weight[c]·y_ic`` (``class_weight[y_i]`` for a
            label), as Keras's ``fit(class_weight=...)`` and PyTorch's ``weight``.
        normalize_by: how the mean reductions divide the weighted sum
            ``sum_i s_i·c_i·loss_i`` (``s_i`` the sample weights, 1 without):
            ``"count"`` (default, Keras) by the number of elements, as without
            class weights (``"mean_with_sample_weight"``: by ``sum_i s_i``);
            ``"weights"`` (PyTorch) by ``sum_i s_i·c_i``, so that
            ``sum(c_i·loss_i) / sum(c_i)`` is PyTorch's ``reduction="mean"``.
            Entries masked by ``ignore_class`` count in neither. ``"sum"`` and
            ``"none"`` are unchanged.
        name, dtype, validate: see :class:`probloss.Loss`.

    Examples:
        >>> import probloss
        >>> scce = probloss.SparseCategoricalCrossentropy()
        >>> float(scce([1, 2], [[0.05, 0.95, 0], [0.1, 0.8, 0.1]])).__round__(3)
        1.177
        >>> scce = probloss.SparseCategoricalCrossentropy(ignore_class=-1)
        >>> float(scce([-1, 2], [[0.05, 0.95, 0], [0.1, 0.8, 0.1]])).__round__(4)
        2.3026
    """

    def __init__(self, from_logits: bool = False, ignore_class: int | None = None,
                 reduction: str | None = _SOBS, axis: int = -1,
                 name: str = "sparse_categorical_crossentropy", dtype: Any = None, *,
                 class_weight: Any = None, normalize_by: str = "count",
                 validate: str | None = None) -> None:
        self.from_logits = check_flag(from_logits, "from_logits")
        self.ignore_class = check_ignore_class(ignore_class)
        self.axis = check_axis(axis)
        self.class_weight = check_weight_vector(class_weight, "class_weight")
        self.normalize_by = check_choice(normalize_by, "normalize_by", _NORMALIZATIONS)
        super().__init__(sparse_categorical_crossentropy, reduction=reduction, name=name,
                         dtype=dtype, validate=validate, from_logits=self.from_logits,
                         ignore_class=self.ignore_class, axis=self.axis, class_weight=self.class_weight)


class SparseCategoricalFocalCrossentropy(LossFunctionWrapper):
    """Categorical focal cross-entropy with integer labels; see :func:`probloss.sparse_categorical_focal_crossentropy`.

    Not in Keras: :class:`CategoricalFocalCrossentropy` of the one-hot labels,
    with ``ignore_class`` as :class:`SparseCategoricalCrossentropy`.

    Args:
        alpha: a float, or one weight per class (``alpha[y]``).
        gamma: the focusing parameter, ``>= 0``.
        from_logits: whether ``y_pred`` holds logits.
        ignore_class: a label value to ignore, or None.
        axis: the class axis. Defaults to -1.
        class_weight: None (Keras), or one non-negative weight per class
            along ``axis``; a sample's loss is weighted by its class weight
            ``c_i = sum_c class_weight[c]·y_ic`` (``class_weight[y_i]`` for a
            label), as Keras's ``fit(class_weight=...)`` and PyTorch's ``weight``.
        normalize_by: how the mean reductions divide the weighted sum
            ``sum_i s_i·c_i·loss_i`` (``s_i`` the sample weights, 1 without):
            ``"count"`` (default, Keras) by the number of elements, as without
            class weights (``"mean_with_sample_weight"``: by ``sum_i s_i``);
            ``"weights"`` (PyTorch) by ``sum_i s_i·c_i``, so that
            ``sum(c_i·loss_i) / sum(c_i)`` is PyTorch's ``reduction="mean"``.
            Entries masked by ``ignore_class`` count in neither. ``"sum"`` and
            ``"none"`` are unchanged.
        reduction, name, dtype, validate: see :class:`probloss.Loss`.

    Examples:
        >>> import numpy as np
        >>> import probloss
        >>> loss = probloss.SparseCategoricalFocalCrossentropy()
        >>> float(loss(np.array([1, 2]), [[0.05, 0.95, 0], [0.1, 0.8, 0.1]])).__round__(3)
        0.233
    """

    def __init__(self, alpha: float | Sequence[float] = 0.25, gamma: float = 2.0,
                 from_logits: bool = False, ignore_class: int | None = None, axis: int = -1,
                 reduction: str | None = _SOBS, name: str = "sparse_categorical_focal_crossentropy",
                 dtype: Any = None, *, class_weight: Any = None, normalize_by: str = "count",
                 validate: str | None = None) -> None:
        if isinstance(alpha, numbers.Real) and not isinstance(alpha, bool):
            self.alpha: float | tuple[float, ...] = check_alpha(alpha, per_class=False)
        else:
            self.alpha = check_alpha(check_weight_vector(alpha, "alpha"), per_class=True)
        self.gamma = check_gamma(gamma)
        self.from_logits = check_flag(from_logits, "from_logits")
        self.ignore_class = check_ignore_class(ignore_class)
        self.axis = check_axis(axis)
        self.class_weight = check_weight_vector(class_weight, "class_weight")
        self.normalize_by = check_choice(normalize_by, "normalize_by", _NORMALIZATIONS)
        super().__init__(sparse_categorical_focal_crossentropy, reduction=reduction, name=name,
                         dtype=dtype, validate=validate, alpha=self.alpha, gamma=self.gamma,
                         from_logits=self.from_logits, ignore_class=self.ignore_class, axis=self.axis,
                         class_weight=self.class_weight)


class Poisson(LossFunctionWrapper):
    """Poisson loss; see :func:`probloss.poisson`.

    Args:
        reduction, name, dtype: see :class:`probloss.Loss`.
        log_input: whether ``y_pred`` holds log-rates ``z``: ``exp(z) - y·z`` (PyTorch).
        full: whether to add PyTorch's Stirling term ``y·log y - y + log(2πy)/2`` (``y > 1``).
        validate: see :class:`probloss.Loss`.

    Examples:
        >>> import probloss
        >>> loss = probloss.Poisson()
        >>> float(loss([[0.0, 1.0], [2.0, 0.0]], [[1.0, 1.0], [1.0, 0.5]])).__round__(4)
        0.875
    """

    def __init__(self, reduction: str | None = _SOBS, name: str = "poisson", dtype: Any = None,
                 *, log_input: bool = False, full: bool = False, validate: str | None = None) -> None:
        self.log_input = check_flag(log_input, "log_input")
        self.full = check_flag(full, "full")
        super().__init__(poisson, reduction=reduction, name=name, dtype=dtype, validate=validate,
                         log_input=self.log_input, full=self.full)

    def __call__(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> Any:
        """Compute the reduced loss (see :meth:`probloss.Loss.__call__`).

        float32 JAX arrays under ``jit``/``grad``/``vmap`` take a short way
        (:func:`probloss._backends._jax_direct.poisson_loss_direct`) whose
        gradient is the compiled kernel's, the reduction folded in; the same
        value, the same gradient formula.
        """
        result = _jax_short_way(self, Poisson, "poisson_loss_direct", y_true, y_pred, sample_weight)
        return result if result is not None else super().__call__(y_true, y_pred, sample_weight)


class KLDivergence(LossFunctionWrapper):
    """Kullback-Leibler divergence; see :func:`probloss.kl_divergence`.

    Args:
        reduction, name, dtype: see :class:`probloss.Loss`.
        log_input: whether ``y_pred`` holds log-probabilities (taken exactly, as PyTorch).
        log_target: whether ``y_true`` holds log-probabilities (taken exactly).
        validate: see :class:`probloss.Loss`.

    Examples:
        >>> import probloss
        >>> loss = probloss.KLDivergence()
        >>> float(loss([[0.0, 1.0], [0.5, 0.5]], [[0.4, 0.6], [0.5, 0.5]])).__round__(4)
        0.2554
    """

    def __init__(self, reduction: str | None = _SOBS, name: str = "kl_divergence",
                 dtype: Any = None, *, log_input: bool = False, log_target: bool = False,
                 validate: str | None = None) -> None:
        self.log_input = check_flag(log_input, "log_input")
        self.log_target = check_flag(log_target, "log_target")
        super().__init__(kl_divergence, reduction=reduction, name=name, dtype=dtype,
                         validate=validate, log_input=self.log_input, log_target=self.log_target)

    def __call__(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> Any:
        """Compute the reduced loss (see :meth:`probloss.Loss.__call__`).

        float32 JAX arrays under ``jit``/``grad``/``vmap`` take a short way
        (:func:`probloss._backends._jax_direct.kl_divergence_loss_direct`) whose
        gradient is the compiled kernel's, the reduction folded in; the same
        value, the same gradient formula.
        """
        result = _jax_short_way(self, KLDivergence, "kl_divergence_loss_direct", y_true, y_pred, sample_weight)
        return result if result is not None else super().__call__(y_true, y_pred, sample_weight)


class CTC(LossFunctionWrapper):
    """Connectionist temporal classification loss; see :func:`probloss.ctc`.

    Args:
        reduction, name, dtype, validate: see :class:`probloss.Loss`.

    Examples:
        >>> import numpy as np
        >>> import probloss
        >>> y_true = np.array([[1, 2, 0], [2, 0, 0]])
        >>> y_pred = np.log(np.full((2, 4, 3), 1 / 3, dtype=np.float32))
        >>> float(probloss.CTC()(y_true, y_pred)).__round__(4)
        1.8891
    """

    def __init__(self, reduction: str | None = _SOBS, name: str = "ctc", dtype: Any = None, *,
                 validate: str | None = None) -> None:
        super().__init__(ctc, reduction=reduction, name=name, dtype=dtype, validate=validate)
