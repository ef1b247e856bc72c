"""Eager TensorFlow on CPU: BCE and sparse CE from logits through the compiled C kernels.

Eagerly, every TensorFlow op is one pass over memory with its own dispatch;
the compiled kernels that serve NumPy and PyTorch on CPU
(src/probloss/_native/binary.c, softmax_ce.c) compute a row's loss, its
gradient and the inputs' bounds (for the data checks) in one multi-threaded
pass with the GIL released. Here they run zero-copy on the buffers of CPU
``EagerTensor`` s (``np.asarray`` views them, read-only) and write the gradient
into a 64-byte-aligned NumPy buffer that becomes a tensor through DLPack
(again without a copy; TensorFlow requires that alignment). Each call is one
``tf.custom_gradient`` op whose backward pass hands that gradient over:

- sparse CE: the kernel writes the gradient already multiplied by what the
  ``Loss``'s reduction is expected to send back (``1/N`` for a mean, from
  :mod:`probloss._grad_hint`); backward checks that guess against the
  gradient that arrives and hands the buffer over unchanged when it holds, or
  scales it in place when nothing was expected, or recomputes it exactly (the
  kernel multiplies in float64 and rounds once) for any other incoming
  gradient -- as the PyTorch path does;
- binary CE: the kernel writes ``(sigmoid(x) - y)/cols``; backward scales it
  in place by the incoming gradient (as the PyTorch path), and gives the
  labels their gradient ``-x/cols`` when the tape records them.

The gradient buffer is handed over once; a second gradient through a
persistent tape recomputes it. The gradient is only computed when a tape
records the logits (TensorFlow's own check, ``should_record_backprop``).

What is not a float32 CPU eager tensor (GPU, float16/64, symbolic tensors
inside ``tf.function`` or XLA), and what the kernels leave to the reference
(a NaN or infinite logit), takes the TF-ops paths of
:mod:`probloss._backends._tensorflow`, which stay the reference here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

from .. import _native

Array = Any

try:  # TensorFlow's own test of whether a tape records these tensors (private, so guarded)
    from tensorflow.python.eager.record import should_record_backprop as _records
except ImportError:  # pragma: no cover - other TensorFlow versions: assume it does
    def _records(tensors: Any) -> bool:
        return True

_BCE_LOGITS = 0  # binary.c's KIND_BCE_LOGITS
_ALIGN = 64  # TensorFlow's tensor buffers must be aligned to 64 bytes (Eigen)
with tf.init_scope():  # eager even when this module is first imported while a tf.function traces
    _EagerTensor = type(tf.constant(0.0))


def _on_cpu(t: Any) -> bool:
    return isinstance(t, _EagerTensor) and "CPU" in t.device.rsplit("/", 1)[-1].upper()


def binary_applies(y: Array, x: Array) -> bool:
    """Whether the compiled BCE kernel serves ``(y, x)``: float32 CPU eager tensors of one shape, not empty."""
    return (_native.binary is not None and tf.executing_eagerly() and _on_cpu(x) and _on_cpu(y)
            and x.dtype == tf.float32 and y.dtype == tf.float32 and x.shape == y.shape and x.ndim >= 1
            and x.shape.num_elements() > 0)


def softmax_applies(labels: Array, x: Array) -> bool:
    """Whether the compiled sparse CE kernel serves ``(labels, x)`` (float32 CPU eager logits, integer labels)."""
    from . import _native_softmax

    return (_native_softmax.AVAILABLE and tf.executing_eagerly() and _on_cpu(x) and isinstance(labels, _EagerTensor)
            and x.dtype == tf.float32 and labels.dtype.is_integer and x.ndim >= 1
            and x.shape.num_elements() > 0 and labels.shape == x.shape[:-1])


def _aligned_empty(shape: tuple[int, ...]) -> np.ndarray:
    """An uninitialised float32 C-contiguous array whose data starts on a 64-byte boundary."""
    size = 4 * math.prod(shape)
    raw = np.empty(size + _ALIGN, np.uint8)
    start = -raw.ctypes.data % _ALIGN
    return raw[start:start + size].view(np.float32).reshape(shape)


def _as_tensor(a: np.ndarray, shape: Any) -> Array:
    """The aligned array ``a`` as a tensor of ``shape``, sharing its memory (DLPack keeps ``a`` alive)."""
    return tf.reshape(tf.experimental.dlpack.from_dlpack(a.__dlpack__()), shape)


def _expected_scale(rows: int) -> float:
    """The gradient the current ``Loss``'s reduction will send to each row's value (a guess; 1.0: none).

    ``1/N`` (as float32 division makes it) for the means without sample
    weights, 1 for a sum; 1.0 where nothing is known. Backward checks it.
    """
    from .. import _grad_hint

    hint = _grad_hint.current()
    if (hint is None or hint.sample_weight is not None or hint.out_dtype != tf.float32
            or hint.reduction in (None, "none")):
        return 1.0
    return 1.0 if hint.reduction == "sum" else float(np.float32(1.0) / np.float32(max(rows, 1)))


# ------------------------------------------------------------------ binary cross-entropy from logits


def binary_crossentropy(y: Array, x: Array, bounds: list[float] | None,
                        reference: Callable[[Array, Array], Array]) -> Array:
    """Per-row mean BCE of logits ``x`` (last axis), with a gradient; the inputs' bounds into ``bounds``.

    ``reference(y, x)``: the TF-ops path, used when a value comes out non-finite.
    """
    shape = x.shape
    cols = int(shape[-1])
    y2 = np.asarray(y).reshape(-1, cols)
    x2 = np.asarray(x).reshape(-1, cols)
    want_grad = _records([x])
    label_grad = _records([y])

    def run(grad: np.ndarray | None) -> tuple[np.ndarray, tuple[Any, ...]]:
        out = np.empty(x2.shape[0], np.float32)
        found = _native.binary.row_losses(_BCE_LOGITS, y2, x2, out, float(cols), _native.threads(), grad, ())
        return out, found

    grad = _aligned_empty(x2.shape) if want_grad else None
    out, (nonfinite, *found) = run(grad)
    if bounds is not None:
        bounds[:] = found
    if nonfinite:  # a NaN or infinite logit: the TF-ops path defines those values and gradients
        return reference(y, x)
    values = tf.reshape(tf.constant(out), shape[:-1])
    if not want_grad and not label_grad:
        return values
    held = {"grad": grad}

    def gradients(upstream: Array) -> tuple[Array | None, Array]:
        up = np.asarray(upstream, np.float32).reshape(-1, 1)
        g = held.pop("grad", None)
        if g is None:  # a second gradient (persistent tape): compute it again
            g = _aligned_empty(x2.shape)
            run(g)
        np.multiply(g, up, out=g)
        grad_x = _as_tensor(g, shape)
        grad_y = x * tf.reshape(upstream * (-1.0 / cols), (*shape[:-1], 1)) if label_grad else None
        return grad_y, grad_x

    if label_grad:
        @tf.custom_gradient
        def op(y: Array, x: Array) -> Any:
            return tf.identity(values), gradients
        return op(y, x)

    @tf.custom_gradient
    def op_x(x: Array) -> Any:
        return tf.identity(values), lambda upstream: gradients(upstream)[1]
    return op_x(x)


# ------------------------------------------------------------------ sparse CE from logits


def sparse_categorical_crossentropy(labels: Array, x: Array, bounds: list[float] | None,
                                    reference: Callable[[Array, Array], Array]) -> Array:
    """Per-row sparse CE of logits ``x`` (last axis), labels already clipped into range, with a gradient.

    ``bounds``: receives the logits' minimum (NaN if one is NaN) and maximum.
    ``reference(labels, x)``: the TF-ops path, used when a row is left to it.
    """
    from . import _native_softmax as kernels

    shape = x.shape
    x2 = np.asarray(x).reshape(-1, int(shape[-1]))
    k = np.asarray(labels).reshape(-1)
    rows = x2.shape[0]
    want_grad = _records([x])
    scale = _expected_scale(rows) if want_grad else 1.0
    grad = _aligned_empty(x2.shape) if want_grad else None
    row_bounds = np.empty((rows, 2), np.float32) if bounds is not None else None
    out = kernels.softmax_cross_entropy_sparse(x2, k, grad_out=grad, scale=scale, row_bounds=row_bounds)
    if row_bounds is not None:
        bounds[:] = [float(np.min(row_bounds[:, 0])), float(np.max(row_bounds[:, 1]))]
    if not np.isfinite(out).all():  # NaN or +inf logits, no finite logit: the TF-ops path's rows
        return reference(labels, x)
    values = tf.reshape(tf.constant(out), shape[:-1])
    if not want_grad:
        return values
    held = {"grad": grad}

    def gradient(upstream: Array) -> Array:
        up = np.asarray(upstream, np.float32).reshape(-1)
        g = held.pop("grad", None)
        if g is not None and scale != 1.0 and bool(np.all(up == np.float32(scale))):
            return _as_tensor(g, shape)  # the expected gradient arrived: already scaled
        if g is not None and scale == 1.0:  # nothing was expected: scale the buffer we own, in place
            np.multiply(g, up[:, None], out=g)
            return _as_tensor(g, shape)
        # Any other gradient, or a second one: exact (the kernel multiplies in float64, rounds once).
        g = _aligned_empty(x2.shape) if g is None else g
        kernels.softmax_cross_entropy_sparse(x2, k, grad_out=g, row_scale=up)
        return _as_tensor(g, shape)

    @tf.custom_gradient
    def op(x: Array) -> Any:
        return tf.identity(values), gradient

    return op(x)
