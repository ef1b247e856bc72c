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
import numbers
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from . import _kernels  # noqa: F401 - registers the kernels
from ._backends import _numpy_direct  # the common NumPy call's short way to the kernels
from ._config import epsilon
from ._dispatch import Observed, call, call_generic, call_observing
from ._grad_hint import publish
from ._kernels._focal import pick_class_weight
from ._namespace import FLOATX, as_arrays, compute_dtype, index_dtype, is_floating, is_integer, resolve_dtype
from ._numerics import class_vector
from ._validation import (
    DataChecker,
    canonical_axis,
    check_alpha,
    check_flag,
    check_gamma,
    check_ignore_class,
    check_label_smoothing,
    check_num_weights,
    check_same_shape,
    check_weight_vector,
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
    "sparse_categorical_focal_crossentropy",
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
    """How a public loss function computes: its values function, and its label kind.

    ``class_weights``, for losses with a ``class_weight`` option: returns each
    sample's class weight ``c_i = sum_c w_c·y_ic`` (``w[y_i]`` for integer labels),
    or None without class weights; the ``Loss`` classes divide by their sum
    under ``normalize_by="weights"``.
    """

    values: ValuesFn
    sparse: bool = False
    class_weights: Callable[..., Array | None] | None = None


#: public loss function -> its spec; the classes look their function up here.
SPECS: dict[Callable[..., Any], LossSpec] = {}


def implemented_by(values: ValuesFn, *, sparse: bool = False,
                   class_weights: Callable[..., Array | None] | None = None,
                   ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register ``values`` as the computation behind a public loss function."""

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        SPECS[fn] = LossSpec(values, sparse, class_weights)
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


def _checked_generic(x: Inputs, name: str, y_true: Array, check: Callable[[], None], **static: Any) -> Array:
    """Run the data checks, then the generic kernel ``name`` (for options no fast path takes)."""
    check()
    # The values may be rescaled afterwards or computed off the fast path: no reduction hint.
    previous = publish(None)
    try:
        return call_generic(name, y_true, x.y_pred, xp=x.xp, **static)
    finally:
        publish(previous)


def _pos_weight(value: Any, y_pred: Array, axis: int) -> float | tuple[float, ...] | None:
    weight = check_weight_vector(value, "pos_weight", allow_scalar=True)
    check_num_weights(weight, y_pred.shape[axis], "pos_weight")
    return weight


def _class_weight(value: Any, y_pred: Array, axis: int) -> tuple[float, ...] | None:
    weight = check_weight_vector(value, "class_weight")
    check_num_weights(weight, y_pred.shape[axis], "class_weight")
    return weight  # type: ignore[return-value]


def _binary_crossentropy(x: Inputs, *, from_logits: bool, label_smoothing: float,
                         axis: int, pos_weight: Any = None) -> tuple[Array, None]:
    from_logits = check_flag(from_logits, "from_logits")
    label_smoothing = check_label_smoothing(label_smoothing)
    check_same_shape(x.y_true, x.y_pred)
    axis = canonical_axis(axis, x.y_pred.ndim)
    _check_mean_axis(x.y_pred, axis)
    pos_weight = _pos_weight(pos_weight, x.y_pred, axis)
    y_true = _smooth_binary(x.y_true, label_smoothing)
    if pos_weight is not None:
        return _checked_generic(x, "binary_crossentropy", y_true, lambda: _check_binary_data(x, from_logits),
                                from_logits=from_logits, axis=axis, epsilon=epsilon(),
                                pos_weight=pos_weight), None
    values = _checked_call(x, "binary_crossentropy", y_true, lambda: _check_binary_data(x, from_logits),
                           from_logits=from_logits, axis=axis, epsilon=epsilon())
    return values, None


def _binary_focal_crossentropy(x: Inputs, *, apply_class_balancing: bool, alpha: float,
                               gamma: float, from_logits: bool, label_smoothing: float,
                               axis: int, pos_weight: Any = None) -> tuple[Array, None]:
    apply_class_balancing = check_flag(apply_class_balancing, "apply_class_balancing")
    alpha = check_alpha(alpha, per_class=False)  # type: ignore[assignment]
    gamma = check_gamma(gamma)
    from_logits = check_flag(from_logits, "from_logits")
    label_smoothing = check_label_smoothing(label_smoothing)
    check_same_shape(x.y_true, x.y_pred)
    axis = canonical_axis(axis, x.y_pred.ndim)
    _check_mean_axis(x.y_pred, axis)
    pos_weight = _pos_weight(pos_weight, x.y_pred, axis)
    y_true = _smooth_binary(x.y_true, label_smoothing)
    if pos_weight is not None:
        return _checked_generic(x, "binary_focal_crossentropy", y_true, lambda: _check_binary_data(x, from_logits),
                                apply_class_balancing=apply_class_balancing, alpha=alpha, gamma=gamma,
                                from_logits=from_logits, axis=axis, epsilon=epsilon(),
                                pos_weight=pos_weight), None
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
                       axis: Any, class_weight: Any = None) -> tuple[bool, Array, int, Callable[[], None]]:
    """Check the arguments; return them with the smoothed labels and the data checks to run.

    Class weights are folded into the labels, ``w_c·y_c``: every kernel and fast
    path computes ``-sum_c y_c·log p_c`` for any non-negative labels.
    """
    from_logits = check_flag(from_logits, "from_logits")
    label_smoothing = check_label_smoothing(label_smoothing)
    check_same_shape(x.y_true, x.y_pred)
    axis = canonical_axis(axis, x.y_pred.ndim)
    _check_mean_axis(x.y_pred, axis, "the class axis")
    _warn_single_class(loss_name, x.y_pred, axis)

    def check() -> None:
        x.checker.in_range(x.y_true, "y_true", 0.0, 1.0)
        _check_categorical_pred(x.checker, x.y_pred, from_logits, axis)

    class_weight = _class_weight(class_weight, x.y_pred, axis)
    y_true = _smooth_categorical(x.y_true, label_smoothing, x.y_pred.shape[axis])
    if class_weight is not None:
        y_true = y_true * class_vector(class_weight, y_true, axis=axis, xp=x.xp)
    return from_logits, y_true, axis, check


def _categorical_crossentropy(x: Inputs, *, from_logits: bool, label_smoothing: float,
                              axis: int, class_weight: Any = None) -> tuple[Array, None]:
    from_logits, y_true, axis, check = _categorical_setup(x, "categorical_crossentropy", from_logits,
                                                          label_smoothing, axis, class_weight)
    values = _checked_call(x, "categorical_crossentropy", y_true, check, from_logits=from_logits,
                           axis=axis, epsilon=epsilon())
    return values, None


def _categorical_focal_crossentropy(x: Inputs, *, alpha: float | Sequence[float], gamma: float,
                                    from_logits: bool, label_smoothing: float,
                                    axis: int, class_weight: Any = None) -> tuple[Array, None]:
    alpha = check_alpha(alpha, per_class=True)
    gamma = check_gamma(gamma)
    from_logits, y_true, axis, check = _categorical_setup(x, "categorical_focal_crossentropy",
                                                          from_logits, label_smoothing, axis, class_weight)
    values = _checked_call(x, "categorical_focal_crossentropy", y_true, check, alpha=alpha,
                           gamma=gamma, from_logits=from_logits, axis=axis, epsilon=epsilon())
    return values, None


def _sparse_labels(x: Inputs, axis: Any) -> tuple[Array, int]:
    """Return the labels without a trailing class axis of size 1, and the canonical class axis."""
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
    return y_true, axis


def _sparse_categorical_crossentropy(x: Inputs, *, from_logits: bool, ignore_class: int | None,
                                     axis: int, class_weight: Any = None) -> tuple[Array, Array | None]:
    return _sparse(x, "sparse_categorical_crossentropy", from_logits=from_logits,
                   ignore_class=ignore_class, axis=axis, class_weight=class_weight)


def _sparse_categorical_focal_crossentropy(x: Inputs, *, alpha: Any, gamma: float, from_logits: bool,
                                           ignore_class: int | None, axis: int,
                                           class_weight: Any = None) -> tuple[Array, Array | None]:
    gamma = check_gamma(gamma)
    if isinstance(alpha, numbers.Real) and not isinstance(alpha, bool):
        alpha = check_alpha(alpha, per_class=False)
    else:
        alpha = check_alpha(check_weight_vector(alpha, "alpha"), per_class=True)
    return _sparse(x, "sparse_categorical_focal_crossentropy", from_logits=from_logits,
                   ignore_class=ignore_class, axis=axis, class_weight=class_weight, alpha=alpha, gamma=gamma)


def _sparse(x: Inputs, name: str, *, from_logits: bool, ignore_class: int | None, axis: int,
            class_weight: Any, **static: Any) -> tuple[Array, Array | None]:
    """The sparse losses: labels, ignored entries and class weights around the kernel ``name``."""
    from_logits = check_flag(from_logits, "from_logits")
    ignore_class = check_ignore_class(ignore_class)
    xp, y_pred = x.xp, x.y_pred
    y_true, axis = _sparse_labels(x, axis)
    num_classes = y_pred.shape[axis]
    _check_mean_axis(y_pred, axis, "the class axis")
    class_weight = _class_weight(class_weight, y_pred, axis)
    if isinstance(static.get("alpha"), tuple):
        check_num_weights(static["alpha"], num_classes, "alpha")

    def check() -> None:
        x.checker.labels(y_true, num_classes, ignore_class)
        _check_categorical_pred(x.checker, y_pred, from_logits, axis,
                                None if ignore_class is None else y_true != ignore_class)

    static.update(from_logits=from_logits, axis=axis, epsilon=epsilon())
    if ignore_class is None and class_weight is None:
        # The kernel sees the checked arrays: it may report their bounds.
        return _checked_call(x, name, y_true, check, **static), None
    check()
    labels, valid = y_true, None
    if ignore_class is not None:
        valid = y_true != ignore_class
        labels = xp.where(valid, y_true, xp.zeros_like(y_true))
        # An ignored row may be all zeros (or all -inf logits); give it finite values so that
        # neither the value nor the gradient of the discarded branch is NaN.
        filler = xp.zeros_like(y_pred) if from_logits else xp.ones_like(y_pred)
        y_pred = xp.where(xp.expand_dims(valid, axis=axis), y_pred, filler)
    # The mask or the class weights rescale the rows' gradients: a reduction hint would only be a wrong guess.
    previous = publish(None)
    try:
        values = call(name, labels, y_pred, xp=xp, **static)
    finally:
        publish(previous)
    if class_weight is not None:
        values = pick_class_weight(class_weight, labels, y_pred, axis=axis, xp=xp) * values
    if valid is None:
        return values, None
    return xp.where(valid, values, xp.zeros_like(values)), valid


def _categorical_class_weights(x: Inputs, *, class_weight: Any = None, axis: int = -1,
                               **_: Any) -> Array | None:
    """``c_i = sum_c w_c·y_ic`` of the labels as given (before label smoothing)."""
    if class_weight is None:
        return None
    axis = canonical_axis(axis, x.y_pred.ndim)
    weight = _class_weight(class_weight, x.y_pred, axis)
    return x.xp.sum(x.y_true * class_vector(weight, x.y_true, axis=axis, xp=x.xp), axis=axis)


def _sparse_class_weights(x: Inputs, *, class_weight: Any = None, axis: int = -1,
                          ignore_class: int | None = None, **_: Any) -> Array | None:
    """``c_i = w[y_i]`` (the mask of ignored labels is applied by the reduction)."""
    if class_weight is None:
        return None
    labels, axis = _sparse_labels(x, axis)
    weight = _class_weight(class_weight, x.y_pred, axis)
    return pick_class_weight(weight, labels, x.y_pred, axis=axis, xp=x.xp)


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


def _poisson(x: Inputs, *, log_input: bool = False, full: bool = False) -> tuple[Array, None]:
    log_input = check_flag(log_input, "log_input")
    full = check_flag(full, "full")
    check_same_shape(x.y_true, x.y_pred)
    _check_rank_1(x.y_pred)
    _check_mean_axis(x.y_pred, -1)

    def check() -> None:
        x.checker.in_range(x.y_true, "y_true", 0.0, math.inf, hint=" Counts cannot be negative.")
        if log_input:
            x.checker.in_range(x.y_pred, "y_pred", -math.inf, math.inf, allow_neg_inf=True,
                               hint=" With log_input, `y_pred` holds log-rates.")
        else:
            x.checker.in_range(x.y_pred, "y_pred", 0.0, math.inf, hint=" Rates cannot be negative.")

    # Keras reduces the last axis; the kernel is told so, like every other kernel.
    static = {"axis": x.y_pred.ndim - 1, "epsilon": epsilon()}
    if log_input or full:
        return _checked_generic(x, "poisson", x.y_true, check, log_input=log_input, full=full, **static), None
    return _checked_call(x, "poisson", x.y_true, check, **static), None


def _kl_divergence(x: Inputs, *, log_input: bool = False, log_target: bool = False) -> tuple[Array, None]:
    log_input = check_flag(log_input, "log_input")
    log_target = check_flag(log_target, "log_target")
    check_same_shape(x.y_true, x.y_pred)
    _check_rank_1(x.y_pred)
    _check_mean_axis(x.y_pred, -1, "the axis the divergence sums over")

    def check() -> None:
        for arr, argument, is_log in ((x.y_true, "y_true", log_target), (x.y_pred, "y_pred", log_input)):
            if is_log:
                x.checker.in_range(arr, argument, -math.inf, 0.0, allow_neg_inf=True,
                                   hint=" It holds log-probabilities.")
            else:
                x.checker.in_range(arr, argument, 0.0, 1.0, hint=" Both arguments are distributions.")

    static = {"axis": x.y_pred.ndim - 1, "epsilon": epsilon()}
    if log_input or log_target:
        return _checked_generic(x, "kl_divergence", x.y_true, check, log_input=log_input,
                                log_target=log_target, **static), None
    return _checked_call(x, "kl_divergence", x.y_true, check, **static), None


# ------------------------------------------------------------ public functions


@implemented_by(_binary_crossentropy)
def binary_crossentropy(y_true: Any, y_pred: Any, from_logits: bool = False,
                        label_smoothing: float = 0.0, axis: int = -1, *, pos_weight: Any = None,
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
        pos_weight: None (Keras), or PyTorch's weight of the positive term:
            a number, or one per entry along ``axis``; the elementwise loss
            becomes ``-[w·y·log(p) + (1-y)·log(1-p)]``.
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
    direct = _numpy_direct.binary_crossentropy(y_true, y_pred, from_logits, label_smoothing, axis, pos_weight,
                                               validate)
    if direct is not None:
        return direct
    return evaluate(binary_crossentropy, y_true, y_pred, validate=validate,
                    from_logits=from_logits, label_smoothing=label_smoothing, axis=axis,
                    pos_weight=pos_weight)


@implemented_by(_binary_focal_crossentropy)
def binary_focal_crossentropy(y_true: Any, y_pred: Any, apply_class_balancing: bool = False,
                              alpha: float = 0.25, gamma: float = 2.0, from_logits: bool = False,
                              label_smoothing: float = 0.0, axis: int = -1, *,
                              pos_weight: Any = None, validate: str | None = None) -> Array:
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
        pos_weight: None, or the weight of the positive cross-entropy term,
            as in :func:`binary_crossentropy` (the focal factor is unchanged).
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
                    from_logits=from_logits, label_smoothing=label_smoothing, axis=axis,
                    pos_weight=pos_weight)


@implemented_by(_categorical_crossentropy, class_weights=_categorical_class_weights)
def categorical_crossentropy(y_true: Any, y_pred: Any, from_logits: bool = False,
                             label_smoothing: float = 0.0, axis: int = -1, *,
                             class_weight: Any = None, validate: str | None = None) -> Array:
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
        class_weight: None (Keras), or one non-negative weight per class along
            ``axis``: class ``c``'s term is multiplied by ``class_weight[c]``.
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
    direct = _numpy_direct.categorical_crossentropy(y_true, y_pred, from_logits, label_smoothing, axis,
                                                    class_weight, validate)
    if direct is not None:
        return direct
    return evaluate(categorical_crossentropy, y_true, y_pred, validate=validate,
                    from_logits=from_logits, label_smoothing=label_smoothing, axis=axis,
                    class_weight=class_weight)


@implemented_by(_categorical_focal_crossentropy, class_weights=_categorical_class_weights)
def categorical_focal_crossentropy(y_true: Any, y_pred: Any,
                                   alpha: float | Sequence[float] = 0.25, gamma: float = 2.0,
                                   from_logits: bool = False, label_smoothing: float = 0.0,
                                   axis: int = -1, *, class_weight: Any = None,
                                   validate: str | None = None) -> Array:
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
        class_weight: None (Keras), or one non-negative weight per class along
            ``axis``: class ``c``'s term is multiplied by ``class_weight[c]``.
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
                    label_smoothing=label_smoothing, axis=axis, class_weight=class_weight)


@implemented_by(_sparse_categorical_crossentropy, sparse=True, class_weights=_sparse_class_weights)
def sparse_categorical_crossentropy(y_true: Any, y_pred: Any, from_logits: bool = False,
                                    ignore_class: int | None = None, axis: int = -1, *,
                                    class_weight: Any = None, validate: str | None = None) -> Array:
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
        class_weight: None (Keras), or one non-negative weight per class along
            ``axis``: the loss of a sample labelled ``c`` is multiplied by
            ``class_weight[c]`` (PyTorch's ``weight``).
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
    direct = _numpy_direct.sparse_categorical_crossentropy(y_true, y_pred, from_logits, ignore_class, axis,
                                                           class_weight, validate)
    if direct is not None:
        return direct
    return evaluate(sparse_categorical_crossentropy, y_true, y_pred, validate=validate,
                    from_logits=from_logits, ignore_class=ignore_class, axis=axis,
                    class_weight=class_weight)


@implemented_by(_sparse_categorical_focal_crossentropy, sparse=True, class_weights=_sparse_class_weights)
def sparse_categorical_focal_crossentropy(y_true: Any, y_pred: Any,
                                          alpha: float | Sequence[float] = 0.25, gamma: float = 2.0,
                                          from_logits: bool = False, ignore_class: int | None = None,
                                          axis: int = -1, *, class_weight: Any = None,
                                          validate: str | None = None) -> Array:
    """Categorical focal cross-entropy with integer class labels.

    ``loss = alpha[y] · (1 - p)^gamma · (-log p)`` with ``p`` the probability of
    the label ``y`` along the class ``axis``: :func:`categorical_focal_crossentropy`
    of the one-hot labels (the same clipping on the probability path, the same
    exact log-softmax with ``from_logits``). Labels equal to ``ignore_class``
    give 0 and are left out of the mean by the ``Loss`` class. Not in Keras.

    Args:
        y_true: integer labels, ``y_pred``'s shape without the class axis.
        y_pred: probabilities (or logits), shape ``[batch_size, ..., num_classes]``.
        alpha: a float, or one weight per class (``alpha[y]`` weighs the sample).
        gamma: the focusing parameter, ``>= 0``.
        from_logits: whether ``y_pred`` holds logits.
        ignore_class: a label value to ignore, or None.
        axis: the class axis. Defaults to -1.
        class_weight: None, or one non-negative weight per class (a further
            factor ``class_weight[y]``).
        validate: data checks, as in :func:`binary_crossentropy`.

    Returns:
        The loss, ``y_pred``'s shape without ``axis``.

    Examples:
        >>> import numpy as np
        >>> import probloss
        >>> y_pred = [[0.05, 0.95, 0], [0.1, 0.8, 0.1]]
        >>> probloss.sparse_categorical_focal_crossentropy(np.array([1, 2]), y_pred).round(4)
        array([0.    , 0.4663], dtype=float32)
    """
    return evaluate(sparse_categorical_focal_crossentropy, y_true, y_pred, validate=validate,
                    alpha=alpha, gamma=gamma, from_logits=from_logits, ignore_class=ignore_class,
                    axis=axis, class_weight=class_weight)


@implemented_by(_poisson)
def poisson(y_true: Any, y_pred: Any, *, log_input: bool = False, full: bool = False,
            validate: str | None = None) -> Array:
    """Poisson loss: ``mean(y_pred - y_true · log(y_pred + ε), axis=-1)``.

    With ``log_input``, ``y_pred`` holds log-rates ``z`` and the loss is
    ``mean(exp(z) - y_true · z)`` (PyTorch's ``poisson_nll_loss``; a count of 0
    contributes ``exp(z)`` even at ``z = -inf``). With ``full``, PyTorch's
    Stirling term ``y·log(y) - y + log(2πy)/2`` is added where ``y > 1``.

    Args:
        y_true: observed counts, shape ``[batch_size, d0, .. dN]``.
        y_pred: predicted rates (non-negative), the same shape; log-rates with ``log_input``.
        log_input: whether ``y_pred`` holds log-rates.
        full: whether to add the Stirling approximation of ``log(y!)``.
        validate: data checks, as in :func:`binary_crossentropy`.

    Returns:
        The loss, shape ``[batch_size, d0, .. dN-1]``.

    Examples:
        >>> import probloss
        >>> probloss.poisson([[0.0, 1.0], [2.0, 0.0]], [[1.0, 1.0], [1.0, 0.5]]).round(4)
        array([1.  , 0.75], dtype=float32)
    """
    direct = _numpy_direct.poisson(y_true, y_pred, log_input, full, validate)
    if direct is not None:
        return direct
    return evaluate(poisson, y_true, y_pred, validate=validate, log_input=log_input, full=full)


@implemented_by(_kl_divergence)
def kl_divergence(y_true: Any, y_pred: Any, *, log_input: bool = False, log_target: bool = False,
                  validate: str | None = None) -> Array:
    """Kullback-Leibler divergence: ``sum(y_true · log(y_true / y_pred), axis=-1)``.

    Probabilities are clipped to ``[ε, 1]`` first, as in Keras, so a zero
    target contributes a tiny ``ε·log(ε/p)``. An argument given as
    log-probabilities (``log_input``, ``log_target``) is taken exactly:
    ``sum(t · (log t - log q))`` with ``t·log t = 0`` where ``t = 0``
    (``log t = -inf``), whose value and gradients stay finite.

    Args:
        y_true: the target distribution, shape ``[batch_size, d0, .. dN]``.
        y_pred: the predicted distribution, the same shape.
        log_input: whether ``y_pred`` holds log-probabilities (as PyTorch's ``kl_div``).
        log_target: whether ``y_true`` holds log-probabilities.
        validate: data checks, as in :func:`binary_crossentropy`.

    Returns:
        The loss, shape ``[batch_size, d0, .. dN-1]``.

    Examples:
        >>> import probloss
        >>> probloss.kl_divergence([[0.0, 1.0], [0.5, 0.5]], [[0.4, 0.6], [0.5, 0.5]]).round(4)
        array([0.5108, 0.    ], dtype=float32)
    """
    direct = _numpy_direct.kl_divergence(y_true, y_pred, log_input, log_target, validate)
    if direct is not None:
        return direct
    return evaluate(kl_divergence, y_true, y_pred, validate=validate, log_input=log_input,
                    log_target=log_target)
