"""Argument checks (always on) and data checks (eager arrays, opt-out).

Static checks look at Python arguments and shapes only, so they cost nothing
per element and run everywhere, under ``jax.jit`` too. Data checks read array
values; they run only on eager arrays (NumPy, eager PyTorch and JAX, CuPy,
array-api-strict) and are skipped for Dask, JAX tracers and ``torch.compile``,
where reading values would compute the graph or break tracing. On those, the
kernels still never branch on data: an invalid sparse label gives NaN in its
own slot.

The common path costs one ``min`` and one ``max`` per checked array; the
position and value of an offending element are computed only to build the
error message.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._config import check_validation_mode, validation_mode
from ._namespace import dtype_name, is_eager, static_size

__all__ = [
    "DataChecker",
    "ProbabilitiesAsLogitsWarning",
    "ValidationWarning",
    "canonical_axis",
    "check_alpha",
    "check_axis",
    "check_choice",
    "check_flag",
    "check_gamma",
    "check_ignore_class",
    "check_label_smoothing",
    "check_num_weights",
    "check_same_shape",
    "check_weight_vector",
    "shapes_match",
]


class ValidationWarning(UserWarning):
    """Issued instead of an error for invalid data when ``validate="warn"``.

    Examples:
        >>> import warnings
        >>> import probloss
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     _ = probloss.binary_crossentropy([1.0], [1.5], validate="warn")
        >>> caught[0].category.__name__
        'ValidationWarning'
    """


class ProbabilitiesAsLogitsWarning(UserWarning):
    """``from_logits=True`` was given values that all lie in [0, 1].

    Examples:
        >>> import warnings
        >>> import probloss
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     _ = probloss.binary_crossentropy([1.0, 0.0], [0.9, 0.2], from_logits=True)
        >>> caught[0].category.__name__
        'ProbabilitiesAsLogitsWarning'
    """


# ---------------------------------------------------------------- static checks


def check_axis(axis: object) -> int:
    """Return ``axis`` as an int; reject bools, floats and other types."""
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
        msg = f"`axis` must be of type `int`. Received: axis={axis!r} of type {type(axis)}"
        raise TypeError(msg)
    return int(axis)


def canonical_axis(axis: object, ndim: int) -> int:
    """Return ``axis`` as a non-negative index into an array of rank ``ndim``."""
    axis = check_axis(axis)
    if not -ndim <= axis < ndim:
        msg = f"axis {axis} is out of bounds for an array with dimension {ndim}."
        raise ValueError(msg)
    return axis % ndim


def check_flag(value: object, argument: str) -> bool:
    """Return ``value`` as a bool; reject non-boolean values such as strings."""
    if isinstance(value, bool) or (isinstance(value, numbers.Integral) and value in (0, 1)):
        return bool(value)
    msg = f"`{argument}` must be a bool. Received: {argument}={value!r}"
    raise TypeError(msg)


def _real(value: object, argument: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        msg = f"`{argument}` must be a real number. Received: {argument}={value!r}"
        raise TypeError(msg)
    number = float(value)
    if math.isnan(number):
        msg = f"`{argument}` must not be NaN. Received: {argument}={value!r}"
        raise ValueError(msg)
    return number


def check_label_smoothing(value: object) -> float:
    """Return ``label_smoothing`` as a float in ``[0, 1]``."""
    number = _real(value, "label_smoothing")
    if not 0.0 <= number <= 1.0:
        msg = f"`label_smoothing` must be in [0, 1]. Received: label_smoothing={value!r}"
        raise ValueError(msg)
    return number


def check_gamma(value: object) -> float:
    """Return the focusing parameter ``gamma`` as a float ``>= 0``."""
    number = _real(value, "gamma")
    if not 0.0 <= number < math.inf:
        msg = f"`gamma` must be a finite number >= 0. Received: gamma={value!r}"
        raise ValueError(msg)
    return number


def check_alpha(value: object, *, per_class: bool) -> float | tuple[float, ...]:
    """Return ``alpha``: a finite float, or (``per_class``) a sequence of them."""
    if per_class and isinstance(value, Sequence) and not isinstance(value, str):
        return tuple(check_alpha(v, per_class=False) for v in value)  # type: ignore[misc]
    number = _real(value, "alpha")
    if not math.isfinite(number):
        msg = f"`alpha` must be finite. Received: alpha={value!r}"
        raise ValueError(msg)
    return number


def _weight_values(value: object, argument: str) -> list[object]:
    """Read a weight vector (a sequence, NumPy array or tensor) into a list of Python numbers."""
    tolist = getattr(value, "tolist", None)
    if callable(tolist) and not isinstance(value, (str, bytes)):
        value = tolist()  # NumPy arrays, tensors on any device: plain Python numbers
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return [value]
    if not isinstance(value, Sequence) or isinstance(value, (str, bytes)):
        msg = f"`{argument}` must be a sequence of numbers. Received: {argument}={value!r}"
        raise TypeError(msg)
    return list(value)


def check_weight_vector(value: object, argument: str, *,
                        allow_scalar: bool = False) -> float | tuple[float, ...] | None:
    """Return a non-negative finite weight (``allow_scalar``) or a 1-D tuple of them, or None.

    Raises:
        TypeError: for a value that is not a number or a flat sequence of numbers.
        ValueError: for an empty vector, a NaN, an infinite or a negative weight.
    """
    if value is None:
        return None
    scalar = isinstance(value, numbers.Real) and not isinstance(value, bool)
    items = _weight_values(value, argument)
    if not items:
        msg = f"`{argument}` must hold at least one weight. Received: {argument}={value!r}"
        raise ValueError(msg)
    weights = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, numbers.Real):
            msg = f"`{argument}` must hold real numbers (one per class). Received: {argument}={value!r}"
            raise TypeError(msg)
        number = float(item)
        if not (math.isfinite(number) and number >= 0):
            msg = f"`{argument}` must hold finite non-negative numbers. Received: {argument}={value!r}"
            raise ValueError(msg)
        weights.append(number)
    if scalar:
        if not allow_scalar:
            msg = f"`{argument}` must be a sequence of numbers, one per class. Received: {argument}={value!r}"
            raise TypeError(msg)
        return weights[0]
    return tuple(weights)


def check_num_weights(weights: object, num_classes: int, argument: str) -> None:
    """Raise ``ValueError`` unless a per-class vector has one entry per class."""
    if isinstance(weights, tuple) and len(weights) != num_classes:
        msg = (f"`{argument}` must have one entry per class: {num_classes} along the class axis. "
               f"Received {len(weights)} entries: {argument}={list(weights)!r}")
        raise ValueError(msg)


def check_choice(value: object, argument: str, choices: tuple[str, ...]) -> str:
    """Return ``value`` if it is one of ``choices``; raise ``ValueError`` otherwise."""
    if not isinstance(value, str) or value not in choices:
        msg = f"`{argument}` must be one of {choices}. Received: {argument}={value!r}"
        raise ValueError(msg)
    return value


def check_ignore_class(value: object) -> int | None:
    """Return ``ignore_class`` as an int, or None."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        msg = f"`ignore_class` must be an int or None. Received: ignore_class={value!r}"
        raise TypeError(msg)
    return int(value)


def shapes_match(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    """Whether two shapes are equal, a dimension unknown while tracing (None) matching any."""
    return len(a) == len(b) and all(x is None or y is None or x == y for x, y in zip(a, b, strict=True))


def check_same_shape(y_true: Any, y_pred: Any) -> None:
    """Raise ``ValueError`` unless ``y_true`` and ``y_pred`` have the same shape."""
    if not shapes_match(tuple(y_true.shape), tuple(y_pred.shape)):
        msg = (
            "Arguments `y_true` and `y_pred` must have the same shape. Received: "
            f"y_true.shape={_shape(y_true)}, y_pred.shape={_shape(y_pred)}"
        )
        raise ValueError(msg)


def _shape(x: Any) -> tuple[int | None, ...]:
    return tuple(None if d is None else int(d) for d in x.shape)


# ------------------------------------------------------------------ data checks


class DataChecker:
    """Value checks for one call, active only for eager arrays and a mode != "off".

    Args:
        mode: the ``validate=`` argument (None: the context's mode).
        xp: the namespace of the arrays.
        arrays: every array of the call, to decide whether they are eager.
    """

    def __init__(self, mode: str | None, xp: Any, *arrays: Any) -> None:
        mode = validation_mode() if mode is None else check_validation_mode(mode)
        self.xp = xp
        self.mode = mode
        self.active = mode != "off" and is_eager(*arrays)
        self._bounds: tuple[Any, float, float] | None = None  # (array, min, max) of the last check
        self._known: list[tuple[Any, float, float]] = []  # (array, min, max) seen by a kernel's own pass
        self._positive: list[Any] = []  # arrays whose rows a kernel's pass saw sum to more than 0

    def learn_bounds(self, x: Any, low: float, high: float) -> None:
        """Take ``x``'s minimum and maximum (NaN if it holds one) from a kernel's pass over it.

        The range checks of ``x`` then cost nothing; only a failing check reads
        ``x`` again, to name the first offending position.
        """
        if self.active:
            self._known.append((x, low, high))

    def learn_positive_sums(self, x: Any) -> None:
        """Take it from a kernel's pass that every row of ``x`` sums to more than 0.

        :meth:`positive_sums` on ``x`` then costs nothing.
        """
        if self.active:
            self._positive.append(x)

    def _bounds_of(self, x: Any) -> tuple[float, float] | None:
        for array, low, high in self._known:
            if array is x:
                return low, high
        return None

    def fail(self, message: str) -> None:
        """Raise or warn with ``message`` according to the mode."""
        if self.mode == "raise":
            raise ValueError(message)
        warnings.warn(message, ValidationWarning, stacklevel=4)
        # One warning per call: later checks would mostly restate the same problem.
        self.active = False

    def _first(self, bad: Any, x: Any) -> tuple[str, tuple[int, ...]]:
        """Return the first offending value (as text) and its position."""
        index = tuple(int(i[0]) for i in self.xp.nonzero(bad)) if x.ndim else ()
        value = x[index] if index else x
        return _format(value), index

    def in_range(self, x: Any, argument: str, low: float, high: float, *,
                 allow_neg_inf: bool = False, hint: str = "") -> None:
        """Check that ``x`` is free of NaN/inf and lies in ``[low, high]``."""
        if not self.active or static_size(x) == 0:
            return
        xp, original, x = self.xp, x, _detached(x)
        known = self._bounds_of(original)
        if known is not None:
            lo, hi = known
        elif low == 0.0 and not allow_neg_inf and _nonnegative_at_most(x, high):
            return
        else:
            lo, hi = float(xp.min(x)), float(xp.max(x))
        self._bounds = (original, lo, hi)
        # NaN fails every comparison, so one test covers NaN, inf and the range.
        if low <= lo and hi <= high and hi < math.inf and (allow_neg_inf or lo > -math.inf):
            return
        if allow_neg_inf:
            valid = "a finite number or -inf (logits)"
        else:
            valid = f"a finite number in [{_format(low)}, {_format(high)}{')' if high == math.inf else ']'}"
        if bool(xp.any(xp.isnan(x))):
            bad = xp.isnan(x)
        elif bool(xp.any((x == math.inf) if allow_neg_inf else xp.isinf(x))):
            bad = (x == math.inf) if allow_neg_inf else xp.isinf(x)
        else:
            bad = (x < low) | (x > high)
        value, where = self._first(bad, x)
        self.fail(f"`{argument}` must be {valid}. Received {value} at position {where}.{hint}")

    def labels(self, labels: Any, num_classes: int, ignore_class: int | None) -> None:
        """Check that sparse labels lie in ``[0, num_classes)`` or equal ``ignore_class``."""
        if not self.active or static_size(labels) == 0:
            return
        xp = self.xp
        checked = labels if ignore_class is None else xp.where(
            labels == ignore_class, xp.zeros_like(labels), labels)
        if float(xp.min(checked)) >= 0 and float(xp.max(checked)) < num_classes:
            return
        value, where = self._first((checked < 0) | (checked >= num_classes), labels)
        ignored = "" if ignore_class is None else f" and is not ignore_class={ignore_class}"
        self.fail(
            f"Received a label value of {value} at position {where} in `y_true`, which is "
            f"outside the valid range [0, {num_classes}) for {num_classes} classes{ignored}."
        )

    def integral(self, labels: Any) -> None:
        """Check that float-typed sparse labels hold whole numbers (no silent truncation)."""
        if not self.active or static_size(labels) == 0:
            return
        xp = self.xp
        # Whole numbers beyond 2**53 are not exact, and beyond int64 the cast is undefined.
        self.in_range(labels, "y_true", -(2.0**53), 2.0**53, hint=" Labels are class indices.")
        if not self.active:  # warned already
            return
        fractional = labels != xp.floor(labels)
        if bool(xp.any(fractional)):
            value, where = self._first(fractional, labels)
            self.fail(
                f"`y_true` must hold integer class indices. Received {value} at position "
                f"{where}; pass integer labels (Keras would truncate this value)."
            )

    def positive_sums(self, y_pred: Any, axis: int, keep: Any = None) -> None:
        """Check that probabilities along the class ``axis`` do not sum to 0 (0/0 on renormalising).

        ``keep`` (boolean, ``y_pred``'s shape without ``axis``) limits the check to
        rows that are used, so that ignored rows may be all zeros.
        """
        if not self.active or static_size(y_pred) == 0:
            return
        if any(array is y_pred for array in self._positive):
            return  # every row was seen to sum to more than 0 (so do the kept ones)
        xp = self.xp
        sums = xp.sum(_detached(y_pred), axis=axis)
        if keep is not None:
            sums = xp.where(keep, sums, xp.ones_like(sums))
        if float(xp.min(sums)) > 0:
            return
        _, where = self._first(sums <= 0, sums)
        self.fail(
            f"`y_pred` sums to 0 along the class axis (axis={axis}) at position {where}: "
            "probabilities are renormalised to sum to 1, which needs a positive sum. "
            "Received an all-zero row."
        )

    def some_finite_logit(self, y_pred: Any, axis: int, keep: Any = None) -> None:
        """Check that no row of logits along the class ``axis`` is entirely -inf (no softmax)."""
        if not self.active or static_size(y_pred) == 0:
            return
        if self._bounds is not None and self._bounds[0] is y_pred and self._bounds[1] > -math.inf:
            return  # in_range saw no -inf at all: every row has a finite logit
        xp = self.xp
        row_max = xp.max(_detached(y_pred), axis=axis)
        if keep is not None:
            row_max = xp.where(keep, row_max, xp.zeros_like(row_max))
        if float(xp.min(row_max)) > -math.inf:
            return
        _, where = self._first(row_max == -math.inf, row_max)
        self.fail(
            f"`y_pred` is -inf for every class along the class axis (axis={axis}) at position "
            f"{where}: the softmax of a fully masked row is undefined. At least one logit per "
            "row must be finite."
        )

    def probabilities_as_logits(self, y_pred: Any) -> None:
        """Warn when ``from_logits=True`` gets values that all lie in [0, 1].

        A constant array (all-zero logits, say) is not flagged: it carries no sign
        of being probabilities, and all-zero logits are a common starting point.
        """
        if not self.active or static_size(y_pred) < 2:
            return
        if self._bounds is not None and self._bounds[0] is y_pred:
            lo, hi = self._bounds[1:]  # already computed by in_range
        else:
            xp, x = self.xp, _detached(y_pred)
            lo, hi = float(xp.min(x)), float(xp.max(x))
        if 0.0 <= lo < hi <= 1.0:
            warnings.warn(
                "`y_pred` lies wholly inside [0, 1] but from_logits=True: these look like "
                "probabilities. Pass from_logits=False if they are.",
                ProbabilitiesAsLogitsWarning,
                stacklevel=4,
            )


_UNSIGNED = {np.dtype(np.float32): np.uint32, np.dtype(np.float64): np.uint64}


def _nonnegative_at_most(x: Any, high: float) -> bool:
    """One-pass accept test for a NumPy float array in ``[0, high]`` (finite, no NaN).

    Read as unsigned integers, non-negative floats keep their order, while
    negative numbers (sign bit set), NaN and inf all compare above the bit
    pattern of any finite ``high``; so ``max(bits) <= bits(high)`` accepts
    exactly the valid arrays (except ones holding -0.0, which take the exact
    path). This halves the cost of the common check, which otherwise takes a
    ``min`` and a ``max``. False means "not proven": the caller checks exactly.
    """
    x = _cpu_numpy_view(x)
    if type(x) is not np.ndarray or x.dtype not in _UNSIGNED or not (
            x.flags.c_contiguous or x.flags.f_contiguous):
        return False
    bound = np.asarray(min(high, float(np.finfo(x.dtype).max)), dtype=x.dtype)
    unsigned = _UNSIGNED[x.dtype]
    return bool(x.view(unsigned).max() <= bound.view(unsigned))


def _cpu_numpy_view(x: Any) -> Any:
    """A PyTorch CPU tensor (detached) as a zero-copy NumPy view, so that the one-pass test serves it too."""
    if type(x).__module__.startswith("torch") and getattr(getattr(x, "device", None), "type", None) == "cpu":
        try:
            return x.numpy()
        except (TypeError, RuntimeError):  # bfloat16, a tensor that requires grad, ...
            return x
    return x


def _detached(x: Any) -> Any:
    """Drop autograd history before reading values (checks are not differentiated)."""
    detach = getattr(x, "detach", None)
    return detach() if callable(detach) else x


_SHORTEST = {"float32": np.float32, "float16": np.float16}


def _format(value: Any) -> str:
    """Print a value as the user wrote it: 1.4, not float32's 1.399999976158142."""
    number = float(value)
    if not math.isfinite(number):
        return str(number)  # nan, inf, -inf
    if number.is_integer() and abs(number) < 2**53:
        return str(int(number))
    # The shortest repr that round-trips in the array's own precision.
    shortest = _SHORTEST.get(dtype_name(getattr(value, "dtype", "float64")))
    return repr(float(str(shortest(number)))) if shortest else repr(number)
