"""The seven loss functions, with Keras 3's signatures and semantics.

This layer owns the contract: it resolves the array namespace, device and dtype,
checks arguments and (on eager arrays) data, smooths labels, canonicalises the
axis, and hands clean arrays to the kernels through :mod:`probloss._dispatch`.
It returns the unreduced loss (one value per sample); the ``Loss`` classes
reduce it.

Dtype policy: the result has ``y_pred``'s floating dtype (float32 for integer
predictions and Python floats, as Keras's ``floatx``); float16 and bfloat16
are computed in float32 inside and rounded once at the end. Integer labels are
never cast to a float dtype.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from . import _kernels  # noqa: F401 - registers the kernels
from ._config import epsilon
from ._dispatch import Observed, call, call_observing
from ._grad_hint import publish
from ._namespace import FLOATX, as_arrays, compute_dtype, index_dtype, is_floating, is_integer, resolve_dtype
from ._validation import (
    DataChecker,
    canonical_axis,
    check_alpha,
    check_flag,
    check_gamma,
    check_ignore_class,
    check_label_smoothing,
    check_same_shape,
    shapes_match,
)

__all__ = [
    "binary_crossentropy",
    "binary_focal_crossentropy",
    "categorical_crossentropy",
    "categorical_focal_crossentropy",
    "kl_divergence",
    "poisson",
    "sparse_categorical_crossentropy",
]

Array = Any
_PROBABILITY_HINT = " If `y_pred` holds logits, pass `from_logits=True`."
_LABEL_HINT = " Labels (after any smoothing) are probabilities of the positive class."


@dataclass(frozen=True)
class Inputs:
    """Arrays of one call, cast for computation, with the call's data checker."""

    xp: Any
    y_true: Array
    y_pred: Array
    out_dtype: Any
    checker: DataChecker


ValuesFn = Callable[..., tuple[Array, Array | None]]


def prepare(y_true: Any, y_pred: Any, *, dtype: str | None, validate: str | None,
            sparse: bool = False, sample_weight: Any = None) -> tuple[Inputs, Array | None]:
    """Resolve namespace and dtypes for one call; see the module docstring.

    Returns:
        The prepared inputs and ``sample_weight`` as an array of the same
        namespace (or None).
    """
    xp, arrays = as_arrays({"y_true": y_true, "y_pred": y_pred, "sample_weight": sample_weight})
    y_true, y_pred, sample_weight = arrays["y_true"], arrays["y_pred"], arrays["sample_weight"]
    if dtype is not None:
        out_dtype = resolve_dtype(xp, dtype)
    elif is_floating(xp, y_pred.dtype):
        out_dtype = y_pred.dtype
    else:
        out_dtype = resolve_dtype(xp, FLOATX)
    work = compute_dtype(xp, out_dtype)
    _check_numeric(xp, y_pred, "y_pred")
    _check_numeric(xp, y_true, "y_true")
    checker = DataChecker(validate, xp, y_true, y_pred, sample_weight)
    y_pred = xp.astype(y_pred, work, copy=False)
    if not sparse:
        y_true = xp.astype(y_true, work, copy=False)
    else:
        if not is_integer(xp, y_true.dtype):
            # Float labels: refuse fractions (Keras truncates 1.7 to class 1).
            checker.integral(y_true)
        # One wide index type: a uint8 label cannot represent class 300, and the
        # class comparisons would wrap around in a narrow dtype.
        y_true = xp.astype(y_true, index_dtype(xp), copy=False)
    if sample_weight is not None:
        _check_numeric(xp, sample_weight, "sample_weight")
        sample_weight = xp.astype(sample_weight, work, copy=False)
    return Inputs(xp, y_true, y_pred, out_dtype, checker), sample_weight


def _check_numeric(xp: Any, x: Array, argument: str) -> None:
    if not (is_floating(xp, x.dtype) or is_integer(xp, x.dtype) or str(x.dtype).endswith("bool")):
        msg = f"Argument `{argument}` must hold real numbers. Received dtype {x.dtype}."
        raise TypeError(msg)


@dataclass(frozen=True)
class LossSpec:
    """How a public loss function computes: its values function, and its label kind."""

    values: ValuesFn
    sparse: bool = False


#: public loss function -> its spec; the classes look their function up here.
SPECS: dict[Callable[..., Any], LossSpec] = {}


def implemented_by(values: ValuesFn, *, sparse: bool = False) -> Callable[[Callable[..., Any]],
                                                                          Callable[..., Any]]:
    """Register ``values`` as the computation behind a public loss function."""

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        SPECS[fn] = LossSpec(values, sparse)
        fn.autograph_info__ = None  # type: ignore[attr-defined]  # AutoGraph: call as is (see Loss)
        return fn

    return register


def evaluate(fn: Callable[..., Any], y_true: Any, y_pred: Any, *, validate: str | None,
             **options: Any) -> Array:
    """Compute the public loss function ``fn`` and return its result in the output dtype."""
    spec = SPECS[fn]
    inputs, _ = prepare(y_true, y_pred, dtype=None, validate=validate, sparse=spec.sparse)
    result, _mask = spec.values(inputs, **options)
    return inputs.xp.astype(result, inputs.out_dtype, copy=False)


# ------------------------------------------------------------ values functions
# Each takes prepared Inputs and the loss's options and returns (values, mask):
# values in the compute dtype, mask a boolean array of valid entries or None.


def _checked_call(x: Inputs, name: str, y_true: Array, check: Callable[[], None], **static: Any) -> Array:
    """Run the data checks ``check()`` and the kernel ``name`` on ``(y_true, x.y_pred)``.

    Where a fast path can report its inputs' bounds from its own pass (the
    compiled NumPy kernels), the kernel runs first and the checks then read
    those bounds instead of making passes of their own; only a failing check
    reads the data again, to name the first offending position, and it still
    raises (or warns) before any result is returned. Elsewhere the checks run
    first, as always.
    """
    if x.checker.active:
        observed = Observed()
        values = call_observing(name, y_true, x.y_pred, xp=x.xp, observe=observed, **static)
        if values is not NotImplemented:
            if 1 in observed.bounds:
                x.checker.learn_bounds(x.y_pred, *observed.bounds[1])
            if 0 in observed.bounds and y_true is x.y_true:  # smoothed labels are not the ones checked
                x.checker.learn_bounds(x.y_true, *observed.bounds[0])
            if 1 in observed.positive_rows:
                x.checker.learn_positive_sums(x.y_pred)
            check()
            return values
    check()
    return call(name, y_true, x.y_pred, xp=x.xp, **static)


def _check_binary_data(x: Inputs, from_logits: bool) -> None:
    x.checker.in_range(x.y_true, "y_true", 0.0, 1.0, hint=_LABEL_HINT)
    if from_logits:
        x.checker.in_range(x.y_pred, "y_pred", -math.inf, math.inf, allow_neg_inf=True)
        x.checker.probabilities_as_logits(x.y_pred)
    else:
        x.checker.in_range(x.y_pred, "y_pred", 0.0, 1.0, hint=_PROBABILITY_HINT)


def _smooth_binary(y_true: Array, label_smoothing: float) -> Array:
    if not label_smoothing:
        return y_true
    # A target of 1 becomes 1 - ls/2 and a target of 0 becomes ls/2.
    return y_true * (1.0 - label_smoothing) + 0.5 * label_smoothing


def _smooth_categorical(y_true: Array, label_smoothing: float, num_classes: int) -> Array:
    if not label_smoothing:
        return y_true
    return y_true * (1.0 - label_smoothing) + label_smoothing / num_classes


def _warn_single_class(loss_name: str, y_pred: Array, axis: int) -> None:
    if y_pred.shape[axis] == 1:
        warnings.warn(
            f"In loss {loss_name}, expected y_pred.shape to be (batch_size, num_classes) with "
            f"num_classes > 1. Received: y_pred.shape={tuple(y_pred.shape)}. Consider using "
            "'binary_crossentropy' if you only have 2 classes.",
            SyntaxWarning,
            stacklevel=5,
        )


def _binary_crossentropy(x: Inputs, *, from_logits: bool, label_smoothing: float,
                         axis: int) -> tuple[Array, None]:
    from_logits = check_flag(from_logits, "from_logits")
    label_smoothing = check_label_smoothing(label_smoothing)
    check_same_shape(x.y_true, x.y_pred)
    axis = canonical_axis(axis, x.y_pred.ndim)
    _check_mean_axis(x.y_pred, axis)
    y_true = _smooth_binary(x.y_true, label_smoothing)
    values = _checked_call(x, "binary_crossentropy", y_true, lambda: _check_binary_data(x, from_logits),
                           from_logits=from_logits, axis=axis, epsilon=epsilon())
    return values, None


def _binary_focal_crossentropy(x: Inputs, *, apply_class_balancing: bool, alpha: float,
                               gamma: float, from_logits: bool, label_smoothing: float,
                               axis: int) -> tuple[Array, None]:
    apply_class_balancing = check_flag(apply_class_balancing, "apply_class_balancing")
    alpha = check_alpha(alpha, per_class=False)  # type: ignore[assignment]
    gamma = check_gamma(gamma)
    from_logits = check_flag(from_logits, "from_logits")
    label_smoothing = check_label_smoothing(label_smoothing)
    check_same_shape(x.y_true, x.y_pred)
    axis = canonical_axis(axis, x.y_pred.ndim)
    _check_mean_axis(x.y_pred, axis)
    y_true = _smooth_binary(x.y_true, label_smoothing)
    values = _checked_call(x, "binary_focal_crossentropy", y_true, lambda: _check_binary_data(x, from_logits),
                           apply_class_balancing=apply_class_balancing, alpha=alpha, gamma=gamma,
                           from_logits=from_logits, axis=axis, epsilon=epsilon())
    return values, None


def _check_categorical_pred(checker: DataChecker, y_pred: Array, from_logits: bool,
                            axis: int, keep: Array | None = None) -> None:
    if from_logits:
        checker.in_range(y_pred, "y_pred", -math.inf, math.inf, allow_neg_inf=True)
        checker.some_finite_logit(y_pred, axis, keep)
        checker.probabilities_as_logits(y_pred)
    else:
        checker.in_range(y_pred, "y_pred", 0.0, 1.0, hint=_PROBABILITY_HINT)
        checker.positive_sums(y_pred, axis, keep)


def _categorical_setup(x: Inputs, loss_name: str, from_logits: Any, label_smoothing: Any,
                       axis: Any) -> tuple[bool, Array, int, Callable[[], None]]:
    """Check the arguments; return them with the smoothed labels and the data checks to run."""
    from_logits = check_flag(from_logits, "from_logits")
    label_smoothing = check_label_smoothing(label_smoothing)
    check_same_shape(x.y_true, x.y_pred)
    axis = canonical_axis(axis, x.y_pred.ndim)
    _check_mean_axis(x.y_pred, axis, "the class axis")
    _warn_single_class(loss_name, x.y_pred, axis)

    def check() -> None:
        x.checker.in_range(x.y_true, "y_true", 0.0, 1.0)
        _check_categorical_pred(x.checker, x.y_pred, from_logits, axis)

    y_true = _smooth_categorical(x.y_true, label_smoothing, x.y_pred.shape[axis])
    return from_logits, y_true, axis, check


def _categorical_crossentropy(x: Inputs, *, from_logits: bool, label_smoothing: float,
                              axis: int) -> tuple[Array, None]:
    from_logits, y_true, axis, check = _categorical_setup(x, "categorical_crossentropy", from_logits,
                                                          label_smoothing, axis)
    values = _checked_call(x, "categorical_crossentropy", y_true, check, from_logits=from_logits,
                           axis=axis, epsilon=epsilon())
    return values, None


def _categorical_focal_crossentropy(x: Inputs, *, alpha: float | Sequence[float], gamma: float,
                                    from_logits: bool, label_smoothing: float,
                                    axis: int) -> tuple[Array, None]:
    alpha = check_alpha(alpha, per_class=True)
    gamma = check_gamma(gamma)
    from_logits, y_true, axis, check = _categorical_setup(x, "categorical_focal_crossentropy",
                                                          from_logits, label_smoothing, axis)
    values = _checked_call(x, "categorical_focal_crossentropy", y_true, check, alpha=alpha,
                           gamma=gamma, from_logits=from_logits, axis=axis, epsilon=epsilon())
    return values, None


def _sparse_categorical_crossentropy(x: Inputs, *, from_logits: bool, ignore_class: int | None,
                                     axis: int) -> tuple[Array, Array | None]:
    from_logits = check_flag(from_logits, "from_logits")
    ignore_class = check_ignore_class(ignore_class)
    xp, y_true, y_pred = x.xp, x.y_true, x.y_pred
    _check_rank_1(y_pred)
    axis = canonical_axis(axis, y_pred.ndim)
    if y_true.ndim == y_pred.ndim and y_true.shape[axis] == 1:
        y_true = xp.squeeze(y_true, axis=axis)
    expected = tuple(y_pred.shape[:axis]) + tuple(y_pred.shape[axis + 1:])
    if not shapes_match(tuple(y_true.shape), expected):
        msg = (
            "Arguments `y_true` and `y_pred` must have matching shapes: y_true.shape must be "
            f"y_pred.shape without the class axis (axis={axis}). Received: "
            f"y_true.shape={tuple(y_true.shape)}, y_pred.shape={tuple(y_pred.shape)}"
        )
        raise ValueError(msg)
    num_classes = y_pred.shape[axis]
    _check_mean_axis(y_pred, axis, "the class axis")

    def check() -> None:
        x.checker.labels(y_true, num_classes, ignore_class)
        _check_categorical_pred(x.checker, y_pred, from_logits, axis,
                                None if ignore_class is None else y_true != ignore_class)

    if ignore_class is None:  # the kernel sees the checked arrays: it may report their bounds
        return _checked_call(x, "sparse_categorical_crossentropy", y_true, check, from_logits=from_logits,
                             axis=axis, epsilon=epsilon()), None
    check()
    valid = y_true != ignore_class
    labels = xp.where(valid, y_true, xp.zeros_like(y_true))
    # An ignored row may be all zeros (or all -inf logits); give it finite values so that
    # neither the value nor the gradient of the discarded branch is NaN.
    filler = xp.zeros_like(y_pred) if from_logits else xp.ones_like(y_pred)
    y_pred = xp.where(xp.expand_dims(valid, axis=axis), y_pred, filler)
    # The mask will rescale the rows' gradients: a reduction hint would only be a wrong guess.
    previous = publish(None)
    try:
        values = call("sparse_categorical_crossentropy", labels, y_pred, xp=xp,
                      from_logits=from_logits, axis=axis, epsilon=epsilon())
    finally:
        publish(previous)
    return xp.where(valid, values, xp.zeros_like(values)), valid


def _check_rank_1(y_pred: Array) -> None:
    if y_pred.ndim < 1:
        msg = f"Argument `y_pred` must be at least rank 1. Received: y_pred.shape={tuple(y_pred.shape)}"
        raise ValueError(msg)


def _check_mean_axis(y_pred: Array, axis: int, role: str = "the axis the loss averages over") -> None:
    """Refuse an empty averaging or class axis: the mean of nothing is 0/0, and no class has no softmax."""
    if y_pred.shape[axis] == 0:
        msg = (
            f"Argument `y_pred` has no elements along axis {axis}, {role}, so the loss is "
            f"undefined. Received: y_pred.shape={tuple(y_pred.shape)}"
        )
        raise ValueError(msg)


def _poisson(x: Inputs) -> tuple[Array, None]:
    check_same_shape(x.y_true, x.y_pred)
    _check_rank_1(x.y_pred)
    _check_mean_axis(x.y_pred, -1)

    def check() -> None:
        x.checker.in_range(x.y_true, "y_true", 0.0, math.inf, hint=" Counts cannot be negative.")
        x.checker.in_range(x.y_pred, "y_pred", 0.0, math.inf, hint=" Rates cannot be negative.")

    # Keras reduces the last axis; the kernel is told so, like every other kernel.
    return _checked_call(x, "poisson", x.y_true, check, axis=x.y_pred.ndim - 1, epsilon=epsilon()), None


def _kl_divergence(x: Inputs) -> tuple[Array, None]:
    check_same_shape(x.y_true, x.y_pred)
    _check_rank_1(x.y_pred)
    _check_mean_axis(x.y_pred, -1, "the axis the divergence sums over")

    def check() -> None:
        x.checker.in_range(x.y_true, "y_true", 0.0, 1.0, hint=" Both arguments are distributions.")
        x.checker.in_range(x.y_pred, "y_pred", 0.0, 1.0, hint=" Both arguments are distributions.")

    return _checked_call(x, "kl_divergence", x.y_true, check, axis=x.y_pred.ndim - 1, epsilon=epsilon()), None


# ------------------------------------------------------------ public functions


@implemented_by(_binary_crossentropy)
def binary_crossentropy(y_true: Any, y_pred: Any, from_logits: bool = False,
                        label_smoothing: float = 0.0, axis: int = -1, *,
                        validate: str | None = None) -> Array:
    """Binary cross-entropy between labels and predicted probabilities or logits.

    ``loss = mean(-[y·log(p) + (1-y)·log(1-p)], axis)``. With ``from_logits``,
    ``p = sigmoid(x)`` is never formed: the loss is computed as
    ``y·softplus(-x) + (1-y)·softplus(x)``, exact for any logit. Probabilities
    are clipped to ``[ε, 1-ε]`` as in Keras.

    Args:
        y_true: labels in [0, 1], shape ``[batch_size, d0, .. dN]``.
        y_pred: probabilities (or logits), the same shape as ``y_true``.
        from_logits: whether ``y_pred`` holds logits.
        label_smoothing: float in [0, 1]; labels are squeezed towards 0.5:
            ``y·(1 - label_smoothing) + 0.5·label_smoothing``.
        axis: the axis to average over. Defaults to -1.
        validate: data checks: ``"raise"``, ``"warn"`` or ``"off"``
            (None: the mode set by :func:`probloss.validation`, ``"raise"`` by default).

    Returns:
        The loss, shape ``[batch_size, d0, .. dN-1]``, in ``y_pred``'s library,
        device and floating dtype.

    Examples:
        >>> import probloss
        >>> loss = probloss.binary_crossentropy([[0, 1], [0, 0]], [[0.6, 0.4], [0.4, 0.6]])
        >>> loss.round(3)
        array([0.916, 0.714], dtype=float32)

    References:
        Keras 3, ``keras.losses.binary_crossentropy``.
    """
    return evaluate(binary_crossentropy, y_true, y_pred, validate=validate,
                    from_logits=from_logits, label_smoothing=label_smoothing, axis=axis)


@implemented_by(_binary_focal_crossentropy)
def binary_focal_crossentropy(y_true: Any, y_pred: Any, apply_class_balancing: bool = False,
                              alpha: float = 0.25, gamma: float = 2.0, from_logits: bool = False,
                              label_smoothing: float = 0.0, axis: int = -1, *,
                              validate: str | None = None) -> Array:
    """Binary focal cross-entropy: cross-entropy down-weighted on easy examples.

    ``loss = mean((1 - p_t)^gamma · bce, axis)`` with
    ``p_t = y·p + (1-y)·(1-p)``, times ``y·alpha + (1-y)·(1-alpha)`` when
    ``apply_class_balancing``. With ``from_logits`` the cross-entropy term is
    computed exactly from the logits (as Keras's TensorFlow backend does).

    Args:
        y_true: labels in [0, 1], shape ``[batch_size, d0, .. dN]``.
        y_pred: probabilities (or logits), the same shape as ``y_true``.
        apply_class_balancing: whether to weight classes by ``alpha``.
        alpha: the weight of the positive class, used only with class balancing.
        gamma: the focusing parameter, ``>= 0``. ``gamma=0`` gives plain BCE.
        from_logits: whether ``y_pred`` holds logits.
        label_smoothing: float in [0, 1], as in :func:`binary_crossentropy`.
        axis: the axis to average over. Defaults to -1.
        validate: data checks, as in :func:`binary_crossentropy`.

    Returns:
        The loss, shape ``[batch_size, d0, .. dN-1]``.

    Examples:
        >>> import probloss
        >>> y_true = [[0, 1], [0, 0]]
        >>> y_pred = [[0.6, 0.4], [0.4, 0.6]]
        >>> probloss.binary_focal_crossentropy(y_true, y_pred, gamma=2.0).round(3)
        array([0.33 , 0.206], dtype=float32)

    References:
        Lin et al., "Focal Loss for Dense Object Detection", 2017.
    """
    return evaluate(binary_focal_crossentropy, y_true, y_pred, validate=validate,
                    apply_class_balancing=apply_class_balancing, alpha=alpha, gamma=gamma,
                    from_logits=from_logits, label_smoothing=label_smoothing, axis=axis)


@implemented_by(_categorical_crossentropy)
def categorical_crossentropy(y_true: Any, y_pred: Any, from_logits: bool = False,
                             label_smoothing: float = 0.0, axis: int = -1, *,
                             validate: str | None = None) -> Array:
    """Categorical cross-entropy between one-hot (or soft) labels and predictions.

    ``loss = -sum(y · log(p), axis)``. Probabilities are renormalised to sum to 1
    and clipped to ``[ε, 1-ε]`` as in Keras; logits go through an accurate
    log-softmax (``(max - x) + log1p(sum of the other exponentials)``).

    Args:
        y_true: one-hot or soft labels, shape ``[batch_size, ..., num_classes]``.
        y_pred: probabilities (or logits), the same shape as ``y_true``.
        from_logits: whether ``y_pred`` holds logits.
        label_smoothing: float in [0, 1]: labels become
            ``y·(1 - label_smoothing) + label_smoothing / num_classes``.
        axis: the class axis. Defaults to -1.
        validate: data checks, as in :func:`binary_crossentropy`.

    Returns:
        The loss, ``y_pred``'s shape without ``axis``.

    Examples:
        >>> import probloss
        >>> y_true = [[0, 1, 0], [0, 0, 1]]
        >>> y_pred = [[0.05, 0.95, 0], [0.1, 0.8, 0.1]]
        >>> probloss.categorical_crossentropy(y_true, y_pred).round(4)
        array([0.0513, 2.3026], dtype=float32)
    """
    return evaluate(categorical_crossentropy, y_true, y_pred, validate=validate,
                    from_logits=from_logits, label_smoothing=label_smoothing, axis=axis)


@implemented_by(_categorical_focal_crossentropy)
def categorical_focal_crossentropy(y_true: Any, y_pred: Any,
                                   alpha: float | Sequence[float] = 0.25, gamma: float = 2.0,
                                   from_logits: bool = False, label_smoothing: float = 0.0,
                                   axis: int = -1, *, validate: str | None = None) -> Array:
    """Categorical focal cross-entropy.

    ``loss = sum(alpha · (1 - p)^gamma · (-y · log(p)), axis)`` over the classes,
    with ``p`` renormalised and clipped to ``[ε, 1-ε]`` on the probability path,
    and taken exactly from the logits (no clipping) with ``from_logits``.

    Args:
        y_true: one-hot or soft labels, shape ``[batch_size, ..., num_classes]``.
        y_pred: probabilities (or logits), the same shape as ``y_true``.
        alpha: a float, or one weight per class (broadcast against the last axis,
            as in Keras).
        gamma: the focusing parameter, ``>= 0``.
        from_logits: whether ``y_pred`` holds logits.
        label_smoothing: as in :func:`categorical_crossentropy`.
        axis: the class axis. Defaults to -1.
        validate: data checks, as in :func:`binary_crossentropy`.

    Returns:
        The loss, ``y_pred``'s shape without ``axis``.

    Examples:
        >>> import probloss
        >>> y_true = [[0, 1, 0], [0, 0, 1]]
        >>> y_pred = [[0.05, 0.95, 0], [0.1, 0.8, 0.1]]
        >>> probloss.categorical_focal_crossentropy(y_true, y_pred).round(4)
        array([0.    , 0.4663], dtype=float32)
    """
    return evaluate(categorical_focal_crossentropy, y_true, y_pred, validate=validate,
                    alpha=alpha, gamma=gamma, from_logits=from_logits,
                    label_smoothing=label_smoothing, axis=axis)


@implemented_by(_sparse_categorical_crossentropy, sparse=True)
def sparse_categorical_crossentropy(y_true: Any, y_pred: Any, from_logits: bool = False,
                                    ignore_class: int | None = None, axis: int = -1, *,
                                    validate: str | None = None) -> Array:
    """Categorical cross-entropy with integer class labels.

    ``loss = -log(p[y_true])`` along the class ``axis``; any ``axis`` works
    (Keras 3 supports only -1 on most backends). Labels equal to
    ``ignore_class`` give a loss of exactly 0 (and are left out of the mean by
    the ``Loss`` classes). With validation off or on lazy arrays, a label
    outside ``[0, num_classes)`` gives NaN in its own slot, never a plausible
    number.

    Args:
        y_true: integer labels, ``y_pred``'s shape without the class axis (a
            trailing class axis of size 1 is squeezed). Float labels must hold
            whole numbers.
        y_pred: probabilities (or logits), shape ``[batch_size, ..., num_classes]``.
        from_logits: whether ``y_pred`` holds logits.
        ignore_class: a label value to ignore, or None.
        axis: the class axis. Defaults to -1.
        validate: data checks, as in :func:`binary_crossentropy`.

    Returns:
        The loss, ``y_pred``'s shape without ``axis``.

    Examples:
        >>> import probloss
        >>> import numpy as np
        >>> y_true = np.array([1, 2])
        >>> y_pred = [[0.05, 0.95, 0], [0.1, 0.8, 0.1]]
        >>> probloss.sparse_categorical_crossentropy(y_true, y_pred).round(4)
        array([0.0513, 2.3026], dtype=float32)
    """
    return evaluate(sparse_categorical_crossentropy, y_true, y_pred, validate=validate,
                    from_logits=from_logits, ignore_class=ignore_class, axis=axis)


@implemented_by(_poisson)
def poisson(y_true: Any, y_pred: Any, *, validate: str | None = None) -> Array:
    """Poisson loss: ``mean(y_pred - y_true · log(y_pred + ε), axis=-1)``.

    Args:
        y_true: observed counts, shape ``[batch_size, d0, .. dN]``.
        y_pred: predicted rates (non-negative), the same shape.
        validate: data checks, as in :func:`binary_crossentropy`.

    Returns:
        The loss, shape ``[batch_size, d0, .. dN-1]``.

    Examples:
        >>> import probloss
        >>> probloss.poisson([[0.0, 1.0], [2.0, 0.0]], [[1.0, 1.0], [1.0, 0.5]]).round(4)
        array([1.  , 0.75], dtype=float32)
    """
    return evaluate(poisson, y_true, y_pred, validate=validate)


@implemented_by(_kl_divergence)
def kl_divergence(y_true: Any, y_pred: Any, *, validate: str | None = None) -> Array:
    """Kullback-Leibler divergence: ``sum(y_true · log(y_true / y_pred), axis=-1)``.

    Both arguments are clipped to ``[ε, 1]`` first, as in Keras, so a zero
    target contributes a tiny ``ε·log(ε/p)``.

    Args:
        y_true: the target distribution, shape ``[batch_size, d0, .. dN]``.
        y_pred: the predicted distribution, the same shape.
        validate: data checks, as in :func:`binary_crossentropy`.

    Returns:
        The loss, shape ``[batch_size, d0, .. dN-1]``.

    Examples:
        >>> import probloss
        >>> probloss.kl_divergence([[0.0, 1.0], [0.5, 0.5]], [[0.4, 0.6], [0.5, 0.5]]).round(4)
        array([0.5108, 0.    ], dtype=float32)
    """
    return evaluate(kl_divergence, y_true, y_pred, validate=validate)
