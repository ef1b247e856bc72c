"""The shortest way from the public cross-entropies to their compiled kernels, for plain NumPy arrays.

:func:`probloss.categorical_crossentropy` and
:func:`probloss.sparse_categorical_crossentropy` from logits (and
:func:`probloss.binary_crossentropy` from logits, :func:`binary_crossentropy`
below), on the common call
(C-contiguous native float32 logits with the class axis last, float32 one-hot
or soft labels of the same shape or int64/int32 class indices, no label
smoothing, class weights or ``ignore_class``), go through the general path's
namespace resolution, dtype handling, argument checks, dispatch and fast-path
glue: about 200 Python calls. That is ~30 microseconds on warm caches, and ~0.1
ms right after a kernel that has just streamed 32 MB through them (the
interpreter's own working set is then evicted): ~10% of a 4096 x 1000 call
(measured: kernel alone 1.00 ms, public function 1.17 ms). The functions here
call the kernel directly and return only where the result is certainly the
general path's, bit for bit: every row finite, and, under data validation,
every check proven passed by the kernel's own pass (the bounds it reports),
with no warning due. The kernel's call also returns what the checks read
(whether every loss is finite, the range of the logits and of the labels),
reduced in C from its per-row bounds: the same reductions in NumPy, right after
the kernel, cost ~50 us of a 4096 x 1000 call with the default validation
(~20 us with ``validate="off"``, its finiteness check alone), measured.
Anything else returns None, and the caller runs the general path, which then
defines the result, the error (naming the same first offending position as
always) or the warning: it repeats the kernel's work only on those rare calls
(a non-finite row, invalid data, logits that look like probabilities).

Why the checks hold from a finite result alone: the kernels leave NaN every row
that holds a NaN or +inf logit or no finite one, and (sparse) every label
outside ``[0, classes)``; the dense labels' range comes from the kernel's pass
over them (:func:`probloss._backends._native_softmax.softmax_cross_entropy`).
"""

from __future__ import annotations

import math
from types import ModuleType
from typing import Any

import numpy as np

from .. import _config

__all__ = ["binary_crossentropy", "categorical_crossentropy", "kl_divergence", "poisson",
           "sparse_categorical_crossentropy"]

_F32 = np.dtype(np.float32)  # native byte order (a swapped one compares unequal)
_LABEL_DTYPES = (np.dtype(np.int64), np.dtype(np.int32))
_MODES = ("raise", "warn", "off")
_MAX_CLASSES = 2**31 - 17  # the kernels' lane offsets are 32-bit (as in _native_softmax)

# probloss._native and the array-level module, imported on the first call (probloss's import stays
# free of the extension); one assignment, so that threads racing on the first call see both or none.
_loaded: tuple[ModuleType, ModuleType] | None = None
_binary_loaded: ModuleType | None = None


def _kernels() -> tuple[ModuleType, Any] | None:
    """The compiled softmax module and the thread-count function, or None where the kernels are missing."""
    global _loaded  # set once per process
    if _loaded is None:
        from .. import _native
        from . import _native_softmax

        _loaded = (_native, _native_softmax)
    native, array_level = _loaded
    # AVAILABLE read on every call, as the array-level functions do (tests switch it off)
    return (native.softmax, native.threads) if array_level.AVAILABLE else None


def _binary_kernel() -> tuple[ModuleType, Any] | None:
    """The compiled binary module and the thread-count function, or None where the extension is missing."""
    global _binary_loaded  # set once per process
    if _binary_loaded is None:
        from .. import _native

        _binary_loaded = _native
    return None if _binary_loaded.binary is None else (_binary_loaded.binary, _binary_loaded.threads)


def _logits_ok(y_pred: Any, axis: Any) -> bool:
    """Whether ``y_pred`` is a plain C-contiguous native float32 array of rank >= 2, classes last, 1 < classes."""
    return (type(y_pred) is np.ndarray and y_pred.dtype == _F32 and y_pred.ndim >= 2
            and type(axis) is int and axis in (-1, y_pred.ndim - 1) and y_pred.flags.c_contiguous
            and 1 < y_pred.shape[-1] <= _MAX_CLASSES and y_pred.size > 0)


def _dense_call_ok(y_true: Any, y_pred: Any, from_logits: Any, label_smoothing: Any, axis: Any,
                   weights: Any) -> bool:
    """Whether a call with labels of the logits' shape is the common one the short way takes.

    From logits, no label smoothing, no weights (``class_weight`` or
    ``pos_weight``: None), logits as :func:`_logits_ok`, and C-contiguous native
    float32 labels of the same shape.
    """
    return (from_logits is True and weights is None and type(label_smoothing) in (float, int)
            and label_smoothing == 0 and _logits_ok(y_pred, axis) and type(y_true) is np.ndarray
            and y_true.dtype == _F32 and y_true.shape == y_pred.shape and y_true.flags.c_contiguous
            and _config.fast_paths_enabled())


def _mode(validate: Any) -> str | None:
    """The validation mode in force, or None where ``validate`` is for the general path to judge."""
    if validate is None:
        return _config.validation_mode()
    return validate if type(validate) is str and validate in _MODES else None


def _look_like_probabilities(low: float, high: float) -> bool:
    """The condition of ``DataChecker.probabilities_as_logits`` on the logits' range from the kernel."""
    return 0.0 <= low < high <= 1.0


def categorical_crossentropy(y_true: Any, y_pred: Any, from_logits: Any, label_smoothing: Any, axis: Any,
                             class_weight: Any, validate: Any) -> np.ndarray | None:
    """Categorical CE from logits through the kernel alone, or None: the general path decides.

    Args and the result as :func:`probloss.categorical_crossentropy`'s.
    """
    if not _dense_call_ok(y_true, y_pred, from_logits, label_smoothing, axis, class_weight):
        return None
    mode, kernels = _mode(validate), _kernels()
    if mode is None or kernels is None:
        return None
    module, threads = kernels
    loss = np.empty(y_pred.shape[:-1], _F32)
    if mode == "off":
        # not finite: NaN or inf rows for the generic kernel, which the general path recomputes
        return loss if module.softmax_ce(y_pred, y_true, y_pred.shape[-1], loss, None, None, 1.0, threads(),
                                         None, None)[0] else None
    bounds = np.empty((2, loss.size, 2), _F32)  # the logits' and the labels' per-row bounds
    finite, low, high, label_low, label_high = module.softmax_ce(
        y_pred, y_true, y_pred.shape[-1], loss, None, None, 1.0, threads(), bounds[0], bounds[1])
    if not finite:
        return None  # data the checks refuse, or rows for the generic kernel
    # NaN: a row the kernel does not vouch for (a negative label, -0.0, ...), which the checks read.
    if not (label_low >= 0.0 and label_high <= 1.0) or _look_like_probabilities(low, high):
        return None
    return loss


def sparse_categorical_crossentropy(y_true: Any, y_pred: Any, from_logits: Any, ignore_class: Any, axis: Any,
                                    class_weight: Any, validate: Any) -> np.ndarray | None:
    """Sparse categorical CE from logits through the kernel alone, or None: the general path decides.

    Args and the result as :func:`probloss.sparse_categorical_crossentropy`'s.
    """
    if not (from_logits is True and ignore_class is None and class_weight is None and _logits_ok(y_pred, axis)
            and type(y_true) is np.ndarray and y_true.dtype in _LABEL_DTYPES and _config.fast_paths_enabled()):
        return None
    shape = y_pred.shape[:-1]
    if y_true.shape != shape:
        if y_true.shape != (*shape, 1):  # Keras's trailing class axis of size 1
            return None
        y_true = y_true.reshape(shape)
    mode, kernels = _mode(validate), _kernels()
    if mode is None or kernels is None:
        return None
    module, threads = kernels
    # int64, as the general path casts them (a no-op for the usual int64 labels)
    labels = np.ascontiguousarray(y_true, np.int64)
    loss = np.empty(shape, _F32)
    bounds = np.empty((loss.size, 2), _F32) if mode != "off" else None
    finite, low, high, _, _ = module.softmax_ce_sparse(y_pred, labels, y_pred.shape[-1], loss, None, None, 1.0,
                                                       threads(), bounds)
    if not finite:
        return None  # a label outside [0, classes), or rows for the generic kernel
    if bounds is not None and _look_like_probabilities(low, high):
        return None  # the general path warns
    return loss


def binary_crossentropy(y_true: Any, y_pred: Any, from_logits: Any, label_smoothing: Any, axis: Any,
                        pos_weight: Any, validate: Any) -> np.ndarray | None:
    """Binary CE from logits through the kernel alone, or None: the general path decides.

    The common call: C-contiguous native float32 labels and logits of one shape,
    rank >= 2, the mean over the last axis, no label smoothing or ``pos_weight``.
    The kernel's one pass gives the inputs' minimum and maximum (NaN where one
    holds a NaN), which settle the data checks of the general path
    (``_check_binary_data``): labels in ``[0, 1]``, logits free of NaN and +inf,
    and no warning that the logits look like probabilities. At 10M elements the
    general path's ~170 Python calls cost ~0.15 ms after the kernel has streamed
    80 MB (5% of the call).

    Args and the result as :func:`probloss.binary_crossentropy`'s.
    """
    if not _dense_call_ok(y_true, y_pred, from_logits, label_smoothing, axis, pos_weight):
        return None
    mode = _mode(validate)
    if mode is None:
        return None
    kernel = _binary_kernel()
    if kernel is None:
        return None  # the general path warns that the extension is missing
    module, threads = kernel
    cols = y_pred.shape[-1]
    loss = np.empty(y_pred.shape[:-1], _F32)
    # params (1.0,): no bounds wanted (validate="off"); () : the kernel reports them
    nonfinite, y_lo, y_hi, x_lo, x_hi = module.row_losses(
        module.KIND_BCE_LOGITS, y_true.reshape(-1, cols), y_pred.reshape(-1, cols), loss.reshape(-1), float(cols),
        threads(), None,
        (1.0,) if mode == "off" else ())
    if nonfinite:
        return None  # rows for the generic kernel, or data the checks refuse
    if mode != "off":
        # NaN fails every comparison: such data go to the general path, which names it.
        if not (y_lo >= 0.0 and y_hi <= 1.0 and x_hi < math.inf and x_lo == x_lo):
            return None
        if 0.0 <= x_lo < x_hi <= 1.0:
            return None  # the general path warns: these look like probabilities
    return loss


def _same_float32(y_true: Any, y_pred: Any) -> bool:
    """Whether both are plain C-contiguous native float32 arrays of one non-empty shape, rank >= 1."""
    return (type(y_true) is np.ndarray and type(y_pred) is np.ndarray and y_pred.dtype == _F32
            and y_true.dtype == _F32 and y_true.shape == y_pred.shape and y_pred.ndim >= 1 and y_pred.size > 0
            and y_true.flags.c_contiguous and y_pred.flags.c_contiguous and _config.fast_paths_enabled())


def _rates_or_distributions(kind_name: str, y_true: Any, y_pred: Any, flags: tuple[Any, ...], validate: Any,
                            high: float, mean: bool) -> np.ndarray | None:
    """Poisson or KL divergence (``kind_name``) through the binary kernel alone, or None.

    ``flags`` (``log_input``, ``full``, ``log_target``) must all be False.
    ``high``: the upper bound of both inputs' data checks (rates: inf,
    distributions: 1; the lower bound is 0 for both).
    """
    if not (all(flag is False for flag in flags) and _same_float32(y_true, y_pred)):
        return None
    mode, kernel = _mode(validate), _binary_kernel()
    if mode is None or kernel is None:
        return None  # the general path judges the mode, or warns that the extension is missing
    module, threads = kernel
    cols = y_pred.shape[-1]
    loss = np.empty(y_pred.shape[:-1], _F32)
    nonfinite, y_lo, y_hi, x_lo, x_hi = module.row_losses(
        getattr(module, kind_name), y_true.reshape(-1, cols), y_pred.reshape(-1, cols), loss.reshape(-1),
        float(cols) if mean else 1.0, threads(), None, (float(np.float32(_config.epsilon())),))
    if nonfinite:
        return None  # rows for the generic kernel, or data the checks refuse
    # The checks' in_range(0, high) on both: NaN fails every comparison, so the general path names it.
    if mode != "off" and not (y_lo >= 0.0 and y_hi <= high and y_hi < math.inf
                              and x_lo >= 0.0 and x_hi <= high and x_hi < math.inf):
        return None
    return loss


def poisson(y_true: Any, y_pred: Any, log_input: Any, full: Any, validate: Any) -> np.ndarray | None:
    """Poisson through the kernel alone, or None: the general path decides.

    The common call: C-contiguous native float32 counts and rates of one shape,
    the mean over the last axis, neither ``log_input`` nor ``full``. The
    kernel's pass gives both inputs' bounds, which settle the data checks
    (counts and rates finite and non-negative). At 4096 x 256 the general path's
    Python costs 20-30 microseconds warm, more after the kernel has streamed
    8 MB: 5-10% of the call.

    Args and the result as :func:`probloss.poisson`'s.
    """
    return _rates_or_distributions("KIND_POISSON", y_true, y_pred, (log_input, full), validate, math.inf,
                                   mean=True)


def kl_divergence(y_true: Any, y_pred: Any, log_input: Any, log_target: Any, validate: Any) -> np.ndarray | None:
    """KL divergence through the kernel alone, or None: the general path decides.

    As :func:`poisson`: neither ``log_input`` nor ``log_target``, the sum over
    the last axis, both inputs checked to lie in ``[0, 1]``.

    Args and the result as :func:`probloss.kl_divergence`'s.
    """
    return _rates_or_distributions("KIND_KL", y_true, y_pred, (log_input, log_target), validate, 1.0, mean=False)
