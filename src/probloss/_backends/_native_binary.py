"""NumPy fast paths of the binary family through the compiled kernels (``probloss._native._binary``).

Binary cross-entropy (logits, probabilities), binary focal cross-entropy
(logits, probabilities), Poisson and KL divergence of float32 arrays (any byte
order, strides or axis): one multi-threaded pass computes the per-sample loss
and the bounds of both inputs, which the functional layer uses for its data
checks (``observe``). The kernels follow the generic kernels' formulas (float64
where those compute in float64); rows whose value comes out NaN or inf (an
infinite logit, NaN data) are recomputed by the generic kernel, which defines
the behaviour there. Other dtypes, and a missing extension, fall back on the
pure-NumPy paths of :mod:`probloss._backends._numpy` or the generic kernel.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .. import _native
from .._dispatch import GENERIC, Observed, fast_path
from . import _numpy as pure

__all__ = ["binary_crossentropy_with_grad"]

Kernel = Callable[..., Any]


def _native_float32(a: np.ndarray) -> np.ndarray | None:
    """``a`` as native-order float32 (a copy only for a foreign byte order), or None for other dtypes."""
    if a.dtype.kind != "f" or a.dtype.itemsize != 4:
        return None
    return a if a.dtype.isnative else a.astype(np.float32)


def _rows(a: np.ndarray, axis: int) -> np.ndarray:
    """``a`` as a 2-D ``(rows, cols)`` array with ``axis`` last (a view where possible)."""
    if a.ndim == 1:
        return a[None, :]
    if a.ndim == 2 and axis in (-1, 1):  # the common case, without moveaxis's overhead
        return a
    moved = np.moveaxis(a, axis, -1)
    return moved if moved.ndim == 2 else moved.reshape(-1, a.shape[axis])


def _run(kind: int, y_true: np.ndarray, y_pred: np.ndarray, *, axis: int, mean: bool,
         params: tuple[float, ...], observe: Observed | None, generic: Kernel,
         grad: np.ndarray | None = None) -> Any:
    """Run one compiled kernel; NotImplemented when it does not apply (the caller falls back)."""
    y, x = _native_float32(y_true), _native_float32(y_pred)
    if y is None or x is None or y.shape != x.shape or x.ndim == 0:
        return NotImplemented
    y2, x2 = _rows(y, axis), _rows(x, axis)
    cols = x.shape[axis]
    out = np.empty(x2.shape[0], np.float32)
    nonfinite, y_lo, y_hi, x_lo, x_hi = _native.binary.row_losses(
        kind, y2, x2, out, float(cols) if mean else 1.0, _native.threads(), grad, params)
    if observe is not None and x.size:
        observe.bounds[0] = (y_lo, y_hi)
        observe.bounds[1] = (x_lo, x_hi)
    if nonfinite:
        bad = ~np.isfinite(out)
        # Only invalid data (NaN, a negative rate) makes NumPy warn here; the data
        # checks report it, or it was asked not to be (validate="off").
        with np.errstate(all="ignore"):
            out[bad] = generic(y2[bad], x2[bad], axis=1)
    return out.reshape(x.shape[:axis] + x.shape[axis + 1:])


def _available() -> bool:
    """Whether the extension is loaded; if not, warn once (the caller then falls back)."""
    if _native.binary is not None:
        return True
    _native.warn_unavailable()
    return False


def _fallback(observe: Observed | None, run: Callable[[], Any]) -> Any:
    """Without the extension: nothing to observe (the caller then checks first), else ``run()``."""
    return NotImplemented if observe is not None else run()


@fast_path("binary_crossentropy", backend="numpy", observes=True, whole=True)
def binary_crossentropy(y_true: Any, y_pred: Any, *, from_logits: bool, axis: int, epsilon: float, xp: Any,
                        observe: Observed | None = None) -> Any:
    """Compiled BCE; logits: float exp/log1p (< 1 ulp each), the sum in float64."""
    if not _available():
        return _fallback(observe, lambda: pure.binary_crossentropy(y_true, y_pred, from_logits=from_logits, axis=axis,
                                                                   epsilon=epsilon, xp=xp))

    def generic(t: Any, p: Any, axis: int) -> Any:
        return GENERIC["binary_crossentropy"](t, p, from_logits=from_logits, axis=axis, epsilon=epsilon, xp=xp)

    if from_logits:  # p[0] = 1: no bounds wanted (nothing observes them), the kernel skips them
        kind, params = _native.binary.KIND_BCE_LOGITS, (() if observe is not None else (1.0,))
    else:  # Keras clips to [ε, 1-ε] made in the input dtype, as the generic kernel's clip
        kind, params = _native.binary.KIND_BCE_PROBS, (float(np.float32(epsilon)), float(np.float32(1.0 - epsilon)))
    return _run(kind, y_true, y_pred, axis=axis, mean=True, params=params, observe=observe, generic=generic)


def _gamma_mode(gamma: float) -> float:
    """The kernels' code for ``(1 - p_t) ** gamma``: 0, 1, 2 exactly, else 3 (exp(γ·log u))."""
    return float(gamma) if gamma in (0.0, 1.0, 2.0) else 3.0


@fast_path("binary_focal_crossentropy", backend="numpy", observes=True, whole=True)
def binary_focal_crossentropy(y_true: Any, y_pred: Any, *, apply_class_balancing: bool, alpha: float,
                              gamma: float, from_logits: bool, axis: int, epsilon: float, xp: Any,
                              observe: Observed | None = None) -> Any:
    """Compiled binary focal CE, in float64 as the generic kernel."""
    static = {"apply_class_balancing": apply_class_balancing, "alpha": alpha, "gamma": gamma,
              "from_logits": from_logits, "epsilon": epsilon, "xp": xp}
    if not _available():
        return _fallback(observe, lambda: pure.binary_focal_crossentropy(y_true, y_pred, axis=axis, **static))

    def generic(t: Any, p: Any, axis: int) -> Any:
        return GENERIC["binary_focal_crossentropy"](t, p, axis=axis, **static)

    params = (float(gamma), _gamma_mode(gamma), float(alpha), float(apply_class_balancing),
              float(np.float32(epsilon)), float(np.float32(1.0 - epsilon)))
    kind = _native.binary.KIND_FOCAL_LOGITS if from_logits else _native.binary.KIND_FOCAL_PROBS
    return _run(kind, y_true, y_pred, axis=axis, mean=True, params=params, observe=observe, generic=generic)


@fast_path("poisson", backend="numpy", observes=True, whole=True)
def poisson(y_true: Any, y_pred: Any, *, axis: int, epsilon: float, xp: Any,
            observe: Observed | None = None) -> Any:
    """Compiled Poisson, ``mean(p - y·log(p + ε))`` in float64 (ε rounded to float32 first)."""
    if not _available():
        return NotImplemented

    def generic(t: Any, p: Any, axis: int) -> Any:
        return GENERIC["poisson"](t, p, axis=axis, epsilon=epsilon, xp=xp)

    return _run(_native.binary.KIND_POISSON, y_true, y_pred, axis=axis, mean=True,
                params=(float(np.float32(epsilon)),), observe=observe, generic=generic)


@fast_path("kl_divergence", backend="numpy", observes=True, whole=True)
def kl_divergence(y_true: Any, y_pred: Any, *, axis: int, epsilon: float, xp: Any,
                  observe: Observed | None = None) -> Any:
    """Compiled KL divergence, ``sum(t·log(t/p))`` of ``[ε, 1]``-clipped inputs in float64."""
    if not _available():
        return _fallback(observe, lambda: pure.kl_divergence(y_true, y_pred, axis=axis, epsilon=epsilon, xp=xp))

    def generic(t: Any, p: Any, axis: int) -> Any:
        return GENERIC["kl_divergence"](t, p, axis=axis, epsilon=epsilon, xp=xp)

    return _run(_native.binary.KIND_KL, y_true, y_pred, axis=axis, mean=False,
                params=(float(np.float32(epsilon)),), observe=observe, generic=generic)


def binary_crossentropy_with_grad(y_true: np.ndarray, logits: np.ndarray, *, axis: int = -1,
                                  grad: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample BCE from float32 logits and its gradient, in one pass of the compiled kernel.

    For callers that need the backward pass too (the PyTorch CPU path): no
    validation, no label smoothing (apply it to ``y_true`` first).

    Args:
        y_true: float32 labels, the shape of ``logits``.
        logits: float32 logits.
        axis: the axis averaged over.
        grad: optional C-contiguous float32 output of ``logits``'s shape with
            ``axis`` moved last (``np.moveaxis(logits, axis, -1).shape``).

    Returns:
        ``(loss, grad)``: the loss (``logits``'s shape without ``axis``) and
        ``d loss[r] / d logits[r, c] = (sigmoid(x) - y) / cols``, in the
        axis-last layout of ``grad``. Entries of rows with an infinite logit are
        recomputed by the generic kernel for the loss; their gradient is
        ``sigmoid(±inf) - y`` as computed (finite).

    Raises:
        RuntimeError: if the compiled extension is not available.

    Examples:
        >>> import numpy as np
        >>> from probloss._backends._native_binary import binary_crossentropy_with_grad
        >>> loss, grad = binary_crossentropy_with_grad(np.float32([[1, 0]]), np.float32([[0, 0]]))
        >>> loss.round(4), grad
        (array([0.6931], dtype=float32), array([[-0.25,  0.25]], dtype=float32))
    """
    if _native.binary is None:
        msg = f"probloss's compiled kernels are not available ({_native.load_error})."
        raise RuntimeError(msg)
    axis = axis % logits.ndim
    shape = np.moveaxis(logits, axis, -1).shape
    if grad is None:
        grad = np.empty(shape, np.float32)
    import array_api_compat.numpy as xp

    def generic(t: Any, p: Any, axis: int) -> Any:
        return GENERIC["binary_crossentropy"](t, p, from_logits=True, axis=axis, epsilon=0.0, xp=xp)

    loss = _run(_native.binary.KIND_BCE_LOGITS, y_true, logits, axis=axis, mean=True,
                params=(), observe=None, generic=generic, grad=grad)
    if loss is NotImplemented:
        msg = "binary_crossentropy_with_grad takes float32 arrays of one shape."
        raise TypeError(msg)
    return loss, grad
