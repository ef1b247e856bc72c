"""The ``Loss`` base class and ``LossFunctionWrapper``, as in Keras 3.

``__call__`` resolves the array library, casts the inputs (see the dtype policy
in :mod:`probloss._functional`), computes per-sample values with ``call``,
checks the sample weight, and reduces with :mod:`probloss._reduction`.
``get_config`` is derived once, here, from the constructor's signature: each
concrete class stores every constructor argument under the same attribute name.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from ._config import check_validation_mode
from ._functional import SPECS, Inputs, prepare
from ._grad_hint import ReductionHint, publish
from ._namespace import as_arrays, dtype_name
from ._reduction import (
    combine_partial,
    partial_terms,
    reduce_weighted_values,
    squeeze_or_expand_to_same_rank,
    standardize_reduction,
)

__all__ = ["Loss", "LossFunctionWrapper"]

Array = Any
_BASE_PARAMETERS = ("name", "reduction", "dtype", "validate")
_MEANS = ("sum_over_batch_size", "mean", "mean_with_sample_weight")

#: Constructor options that Keras does not have, with their defaults: left out of
#: ``get_config`` while they hold them, so that Keras 3 can read such configs.
EXTENSION_DEFAULTS: dict[str, Any] = {
    "class_weight": None, "pos_weight": None, "normalize_by": "count",
    "log_input": False, "log_target": False, "full": False,
}
_DTYPE_POLICIES = {"mixed_float16": "float16", "mixed_bfloat16": "bfloat16"}
_DTYPES = ("float16", "bfloat16", "float32", "float64")


def _standardize_dtype(dtype: object) -> str | None:
    if dtype is None:
        return None
    if isinstance(dtype, str):
        name = dtype
    else:
        try:  # NumPy and JAX dtypes and scalar types (jnp.float32, ml_dtypes.bfloat16)
            name = np.dtype(getattr(dtype, "dtype", dtype)).name
        except TypeError:  # torch.float32 and other libraries' dtype objects
            name = dtype_name(dtype)
    name = _DTYPE_POLICIES.get(name, name)
    if name not in _DTYPES:
        msg = f"Invalid value for argument `dtype`. Expected one of {_DTYPES} or None. Received: dtype={dtype!r}"
        raise ValueError(msg)
    return name


def _snake_case(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class Loss:
    """Base class of every loss: reduction, sample weights, dtype and config.

    Args:
        name: the loss's name; defaults to the class name in snake_case.
        reduction: ``"sum_over_batch_size"`` (default; a mean over all elements),
            ``"sum"``, ``"mean"`` (the same as the default),
            ``"mean_with_sample_weight"`` (sum divided by the sum of the weights),
            ``"none"`` or None (no reduction). tf.keras's ``"auto"`` is read as
            ``"sum_over_batch_size"``.
        dtype: the dtype to compute in and return (``"float32"``, ``"float64"``,
            ``"float16"``, ``"bfloat16"``, or Keras's ``"mixed_float16"``).
            None (default) follows ``y_pred``'s floating dtype (float32 for
            integers and Python lists). float16 and bfloat16 are computed in
            float32 and rounded once at the end. Integer labels of the sparse
            loss are never cast to a float.
        validate: data checks on eager arrays: ``"raise"``, ``"warn"`` or
            ``"off"``; None follows :func:`probloss.validation`.

    Subclasses implement ``call(y_true, y_pred)``, returning per-sample losses.

    Examples:
        >>> import numpy as np
        >>> import probloss
        >>> class MeanAbsoluteError(probloss.Loss):
        ...     def call(self, y_true, y_pred):
        ...         return np.mean(np.abs(y_true - y_pred), axis=-1)
        >>> MeanAbsoluteError()(np.array([[1.0, 0.0]]), np.array([[0.5, 0.5]]))
        array(0.5)
    """

    sparse_labels: ClassVar[bool] = False
    # TensorFlow's AutoGraph calls an object carrying this attribute as it is, instead of
    # re-parsing the source of every function it reaches inside a tf.function (seconds per
    # trace, for nothing: probloss never branches on tensor values).
    autograph_info__: ClassVar[None] = None

    def __init__(self, name: str | None = None, reduction: str | None = "sum_over_batch_size",
                 dtype: Any = None, *, validate: str | None = None) -> None:
        self.name = name if name is not None else _snake_case(type(self).__name__)
        self.reduction = standardize_reduction(reduction)
        self._dtype = _standardize_dtype(dtype)
        self.validate = None if validate is None else check_validation_mode(validate)

    @property
    def dtype(self) -> str | None:
        """The dtype name the loss computes in, or None to follow the inputs."""
        return self._dtype

    def __call__(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> Array:
        """Compute the reduced loss.

        Args:
            y_true: the labels.
            y_pred: the predictions.
            sample_weight: None, a scalar, one weight per sample, or a weight
                per element that broadcasts against the per-sample losses.

        Returns:
            A scalar, or the per-sample losses with reduction ``"none"``.
        """
        inputs, weight = prepare(y_true, y_pred, dtype=self._dtype, validate=self.validate,
                                 sparse=self.sparse_labels, sample_weight=sample_weight)
        previous = publish(ReductionHint(self.reduction, weight, inputs.out_dtype))
        try:
            values, mask = self.compute_values(inputs)
        finally:
            publish(previous)
        if weight is not None:
            inputs.checker.in_range(weight, "sample_weight", 0.0, float("inf"),
                                    hint=" Sample weights must be non-negative.")
        xp = inputs.xp
        class_weights = self.per_sample_class_weights(inputs) if self.reduction in _MEANS else None
        if class_weights is not None:
            # normalize_by="weights": sum(s·c·loss) / sum(s·c), masked entries left out of both.
            numerator = reduce_weighted_values(values, sample_weight=weight, mask=mask, reduction="sum", xp=xp)
            denominator = reduce_weighted_values(class_weights, sample_weight=weight, mask=mask,
                                                 reduction="sum", xp=xp)
            return xp.astype(numerator / denominator, inputs.out_dtype, copy=False)
        result = reduce_weighted_values(values, sample_weight=weight, mask=mask,
                                        reduction=self.reduction, xp=xp)
        return xp.astype(result, inputs.out_dtype, copy=False)

    def partial(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> tuple[Array, Array]:
        """The reduction's numerator and denominator, for exact accumulation over splits.

        ``numerator`` is the weighted sum of the per-sample losses (entries masked
        by ``ignore_class`` count 0); ``denominator`` is what the reduction divides
        by: the element count (``"sum_over_batch_size"``, ``"mean"``) or the count
        of entries not ignored, the sum of the weights (``"mean_with_sample_weight"``),
        the element count, unused, for ``"sum"``. Both are additive: sum them over
        gradient-accumulation steps or data-parallel ranks (``all_reduce``,
        ``jax.lax.psum``) and :meth:`combine` gives the loss of the whole batch.
        For gradients, each part's loss is ``combine(numerator, total_denominator)``
        (the denominator carries no gradient), and the parts' gradients add up to
        the whole batch's. Both are arrays of the inputs' library in the compute
        dtype (float32 for float16 inputs), so this works under ``jax.jit``. A
        scalar ``sample_weight`` with ``"mean_with_sample_weight"`` is counted once
        per call, as Keras does, so give per-sample weights to split that case.

        Examples:
            >>> import numpy as np
            >>> import probloss
            >>> loss = probloss.SparseCategoricalCrossentropy(ignore_class=-1)
            >>> y = np.array([1, -1, 2, 0])
            >>> p = np.array([[.1, .8, .1], [.3, .3, .4], [.2, .2, .6], [.7, .2, .1]], np.float32)
            >>> n1, d1 = loss.partial(y[:2], p[:2])
            >>> n2, d2 = loss.partial(y[2:], p[2:])
            >>> float(d1 + d2)
            3.0
            >>> bool(np.isclose(loss.combine(n1 + n2, d1 + d2), loss(y, p)))
            True
        """
        inputs, weight = prepare(y_true, y_pred, dtype=self._dtype, validate=self.validate,
                                 sparse=self.sparse_labels, sample_weight=sample_weight)
        values, mask = self.compute_values(inputs)
        if weight is not None:
            inputs.checker.in_range(weight, "sample_weight", 0.0, float("inf"),
                                    hint=" Sample weights must be non-negative.")
        class_weights = self.per_sample_class_weights(inputs) if self.reduction in _MEANS else None
        if class_weights is not None:
            numerator, _ = partial_terms(values, sample_weight=weight, mask=mask, reduction="sum", xp=inputs.xp)
            denominator, _ = partial_terms(class_weights, sample_weight=weight, mask=mask, reduction="sum",
                                           xp=inputs.xp)
            return numerator, denominator
        return partial_terms(values, sample_weight=weight, mask=mask, reduction=self.reduction,
                             xp=inputs.xp)

    def combine(self, numerator: Any, denominator: Any) -> Array:
        """The loss from :meth:`partial`'s two numbers, each summed over the parts."""
        xp, arrays = as_arrays({"numerator": numerator, "denominator": denominator})
        return combine_partial(arrays["numerator"], arrays["denominator"], self.reduction, xp=xp)

    def compute_values(self, inputs: Inputs) -> tuple[Array, Array | None]:
        """Return ``(per-sample losses, mask or None)`` for prepared inputs."""
        return self.call(inputs.y_true, inputs.y_pred), None

    def per_sample_class_weights(self, inputs: Inputs) -> Array | None:
        """Return each sample's class weight where a mean divides by their sum, else None.

        None (the default) keeps Keras's means: divided by the number of elements.
        """
        return None

    def call(self, y_true: Any, y_pred: Any) -> Array:
        """Return the per-sample losses; implemented by subclasses."""
        msg = f"{type(self).__name__} must implement `call(y_true, y_pred)`."
        raise NotImplementedError(msg)

    def get_config(self) -> dict[str, Any]:
        """Return the constructor arguments as a JSON-friendly dict (Keras 3's keys).

        Each constructor argument stored under its own name is included; ``dtype``
        only when it was set. ``validate`` is a run-time checking policy, not part
        of the loss, and is left out so that Keras 3 can read every probloss config.
        """
        config: dict[str, Any] = {"name": self.name, "reduction": self.reduction}
        for parameter in inspect.signature(type(self).__init__).parameters.values():
            if parameter.name in ("self", *_BASE_PARAMETERS) or parameter.kind in (
                    parameter.VAR_KEYWORD, parameter.VAR_POSITIONAL):
                continue
            if hasattr(self, parameter.name):  # a subclass may keep an argument privately
                value = getattr(self, parameter.name)
                if parameter.name in EXTENSION_DEFAULTS and value == EXTENSION_DEFAULTS[parameter.name]:
                    continue
                config[parameter.name] = _plain(value)
        if self._dtype is not None:
            config["dtype"] = self._dtype
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Loss:
        """Build a loss from :meth:`get_config`'s output."""
        return cls(**config)

    def __repr__(self) -> str:
        arguments = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({arguments})"


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


class LossFunctionWrapper(Loss):
    """A ``Loss`` that calls a function ``fn(y_true, y_pred, **kwargs)``.

    As in Keras, ``y_true`` and ``y_pred`` go through the rank adjustment
    (``(B,)`` against ``(B, 1)``) before ``fn`` is called.

    Args:
        fn: a probloss loss function, or any function of ``(y_true, y_pred)``
            returning per-sample losses.
        reduction, name, dtype, validate: see :class:`Loss`.
        **kwargs: passed to ``fn`` on every call.

    Examples:
        >>> import probloss
        >>> loss = probloss.LossFunctionWrapper(probloss.binary_crossentropy, from_logits=True)
        >>> float(loss([[1.0, 0.0]], [[3.0, -3.0]])).__round__(4)
        0.0486
    """

    def __init__(self, fn: Callable[..., Any], reduction: str | None = "sum_over_batch_size",
                 name: str | None = None, dtype: Any = None, *, validate: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(name=name if name is not None else getattr(fn, "__name__", None),
                         reduction=reduction, dtype=dtype, validate=validate)
        self.fn = fn
        self._fn_kwargs = kwargs
        spec = SPECS.get(fn)
        self._values = None if spec is None else spec.values
        if self._values is not None:
            # Fill the options left out with the function's own defaults, and refuse
            # options the function does not take now rather than at the first call.
            defaults = {
                p.name: p.default for p in inspect.signature(fn).parameters.values()
                if p.default is not p.empty and p.name != "validate"
                and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
            }
            unknown = sorted(set(kwargs) - set(defaults))
            if unknown:
                msg = (f"{fn.__name__} takes no argument(s) {unknown}. "
                       f"Accepted: {sorted(defaults)}")
                raise TypeError(msg)
            self._values_kwargs = {**defaults, **kwargs}
        self.sparse_labels = spec is not None and spec.sparse
        self._class_weights = None if spec is None else spec.class_weights

    def compute_values(self, inputs: Inputs) -> tuple[Array, Array | None]:
        """Rank-adjust ``y_true``/``y_pred`` as Keras does, then compute the values."""
        y_true, y_pred = squeeze_or_expand_to_same_rank(inputs.y_true, inputs.y_pred,
                                                        xp=inputs.xp)
        adjusted = Inputs(inputs.xp, y_true, y_pred, inputs.out_dtype, inputs.checker)
        if self._values is not None:
            return self._values(adjusted, **self._values_kwargs)
        return self.fn(y_true, y_pred, **self._fn_kwargs), None

    def per_sample_class_weights(self, inputs: Inputs) -> Array | None:
        """Each sample's class weight ``c_i`` under ``normalize_by="weights"`` (see the loss classes)."""
        if getattr(self, "normalize_by", "count") != "weights" or self._class_weights is None:
            return None
        y_true, y_pred = squeeze_or_expand_to_same_rank(inputs.y_true, inputs.y_pred, xp=inputs.xp)
        adjusted = Inputs(inputs.xp, y_true, y_pred, inputs.out_dtype, inputs.checker)
        return self._class_weights(adjusted, **self._values_kwargs)

    def call(self, y_true: Any, y_pred: Any) -> Array:
        """Return the unreduced per-sample losses (Keras's ``Loss.call``)."""
        inputs, _ = prepare(y_true, y_pred, dtype=self._dtype, validate=self.validate,
                            sparse=self.sparse_labels)
        values, _mask = self.compute_values(inputs)
        return inputs.xp.astype(values, inputs.out_dtype, copy=False)

    def get_config(self) -> dict[str, Any]:
        """Return the config; a plain wrapper also records ``fn`` by name."""
        config = super().get_config()
        if type(self) is LossFunctionWrapper:
            config.pop("fn", None)
            config["fn"] = getattr(self.fn, "__name__", repr(self.fn))
            config.update(self._fn_kwargs)
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Loss:
        """Build a wrapper from its config; ``fn`` must name a registered function."""
        if cls is LossFunctionWrapper:
            from ._registry import get_function

            config = dict(config)
            config["fn"] = get_function(config["fn"])
        return cls(**config)
