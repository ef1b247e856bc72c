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


# ------------------------------------------------------------------ inside tf.function (not XLA)
#
# A plain graph (``tf.function`` without ``jit_compile``) runs the TF-ops paths op by op, each
# op one pass over memory: sparse CE 2048 x 32000 took 3x TensorFlow's own fused op there. In
# such a graph the same C kernels run through ``tf.numpy_function``: TensorFlow hands a CPU
# tensor's buffer to NumPy without a copy, and takes back our 64-byte-aligned outputs without
# one. One op computes the loss and the gradient (when a tape records the logits) in one pass;
# backward multiplies the gradient by the incoming one, as TensorFlow's own gradient of its
# fused op does. XLA cannot compile a Python call, so an XLA context (``jit_compile=True``,
# Keras's ``jit_compile``) keeps the TF-ops paths; so do graphs that may run on an accelerator.


def _in_xla_context() -> bool:
    """Whether the graph being traced is (or is inside) an XLA-compiled function."""
    try:
        from tensorflow.python.ops import control_flow_util
    except ImportError:  # pragma: no cover - other TensorFlow versions: assume XLA, keep the TF ops
        return True
    return bool(control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph()))


def _graph_on_cpu(x: Array) -> bool:
    """Whether the traced ``x`` will live on the CPU: placed there, or no accelerator exists at all."""
    device = (x.device or "").rsplit("/", 1)[-1].upper()
    if device:
        return "CPU" in device
    return not any(tf.config.list_logical_devices(kind) for kind in ("GPU", "TPU"))


def _graph_applies(x: Array) -> bool:
    return (not tf.executing_eagerly() and x.dtype == tf.float32 and x.shape.rank is not None and x.ndim >= 1
            and x.shape[-1] is not None and x.shape[-1] > 0 and _graph_on_cpu(x) and not _in_xla_context())


def binary_graph_applies(y: Array, x: Array) -> bool:
    """Whether a traced (non-XLA, CPU) BCE of ``(y, x)`` runs the compiled kernel: float32, same static shape."""
    return (_native.binary is not None and _graph_applies(x) and y.dtype == tf.float32
            and y.shape.rank == x.shape.rank and y.shape.is_compatible_with(x.shape))


def softmax_graph_applies(labels: Array, x: Array) -> bool:
    """Whether a traced (non-XLA, CPU) sparse CE of ``(labels, x)`` runs the compiled kernel."""
    from . import _native_softmax

    return (_native_softmax.AVAILABLE and _graph_applies(x) and labels.dtype.is_integer
            and labels.shape.rank == x.shape.rank - 1)


def _rows_redone(values: Array, labels: Array, x: Array, reference: Callable[[Array, Array], Array]) -> Array:
    """``values`` (per row of ``x``'s last axis) with its NaN rows computed again by ``reference``.

    The compiled kernels leave the rows with a NaN or infinite logit to the TF-ops path, which
    defines their values and gradients; those rows are gathered (usually none) and the reference
    runs on them alone. (A ``tf.cond`` around the whole reference would keep the graph as small,
    but its gradient fails under a persistent tape.)
    """
    cols = tf.shape(x)[-1]
    flat = tf.reshape(values, [-1])
    redo = tf.where(tf.math.is_nan(flat))
    rows = redo[:, 0]
    x_rows = tf.gather(tf.reshape(x, [-1, cols]), rows)
    label_rows = tf.gather(tf.reshape(labels, [-1, cols] if labels.shape.rank == x.shape.rank else [-1]), rows)
    flat = tf.tensor_scatter_nd_update(flat, redo, reference(label_rows, x_rows))
    out = tf.reshape(flat, tf.shape(x)[:-1])
    out.set_shape(x.shape[:-1])
    return out


def binary_crossentropy_graph(y: Array, x: Array, reference: Callable[[Array, Array], Array]) -> Array:
    """Traced per-row mean BCE of logits ``x`` through the compiled kernel, with a gradient.

    ``reference(y, x)``: the TF-ops path, which computes (in the graph) the rows with a
    non-finite logit.
    """
    cols = int(x.shape[-1])
    want_grad = _records([x])
    label_grad = _records([y])

    def host(y_np: np.ndarray, x_np: np.ndarray) -> Any:
        y2 = np.ascontiguousarray(y_np, np.float32).reshape(-1, cols)
        x2 = np.ascontiguousarray(x_np, np.float32).reshape(-1, cols)
        out = _aligned_empty((x2.shape[0],))
        grad = _aligned_empty(x2.shape) if want_grad else None
        nonfinite, *_ = _native.binary.row_losses(_BCE_LOGITS, y2, x2, out, float(cols), _native.threads(), grad, ())
        if nonfinite:  # rows for the TF-ops path: NaN here, and no gradient from this op
            redo = ~np.isfinite(x2).all(axis=1)
            out[redo] = np.nan
            if grad is not None:
                grad[redo] = 0.0
        return (out, grad) if want_grad else out

    def compiled(y: Array, x: Array) -> Any:
        outs = tf.numpy_function(host, [y, x], [tf.float32, tf.float32] if want_grad else tf.float32,
                                 stateful=False, name="probloss_bce_logits")
        return (outs[0], outs[1]) if want_grad else (outs, None)

    if not want_grad and not label_grad:
        return _rows_redone(compiled(y, x)[0], y, x, reference)

    @tf.custom_gradient
    def op(y: Array, x: Array) -> Any:
        values, grad = compiled(y, x)

        def gradient(upstream: Array) -> tuple[Array | None, Array | None]:
            up = tf.reshape(upstream, [-1, 1])
            grad_x = tf.reshape(grad * up, tf.shape(x)) if grad is not None else None
            grad_y = tf.reshape(tf.reshape(x, [-1, cols]) * (up * (-1.0 / cols)), tf.shape(x)) if label_grad else None
            return grad_y, grad_x

        return values, gradient

    return _rows_redone(op(y, x), y, x, reference)


def sparse_categorical_crossentropy_graph(labels: Array, x: Array,
                                          reference: Callable[[Array, Array], Array]) -> Array:
    """Traced per-row sparse CE of logits ``x`` through the compiled kernel, labels already clipped.

    ``reference(labels, x)``: the TF-ops path, which computes (in the graph) the rows the
    kernel leaves to it (a NaN or infinite logit).
    """
    from . import _native_softmax as kernels

    classes = int(x.shape[-1])
    want_grad = _records([x])
    rows = x.shape[:-1].num_elements()  # None: known only at run time
    # The kernel writes the gradient times what the Loss's reduction is expected to send back
    # (1/N for a mean), saving backward a pass over the whole gradient when that arrives.
    scale = _expected_scale(rows) if want_grad and rows is not None else 1.0

    def host(k_np: np.ndarray, x_np: np.ndarray) -> Any:
        x2 = np.ascontiguousarray(x_np, np.float32).reshape(-1, classes)
        grad = _aligned_empty(x2.shape) if want_grad else None
        out = kernels.softmax_cross_entropy_sparse(x2, k_np.reshape(-1), grad_out=grad, scale=scale)
        out = out if out.ctypes.data % _ALIGN == 0 else _aligned_copy(out)
        if grad is not None:  # rows for the TF-ops path: no gradient from this op
            grad[np.isnan(out)] = 0.0
        return (out, grad) if want_grad else out

    def exact_gradient(k_np: np.ndarray, x_np: np.ndarray, up_np: np.ndarray) -> np.ndarray:
        """The gradient for any incoming one: the kernel multiplies in float64 and rounds once."""
        x2 = np.ascontiguousarray(x_np, np.float32).reshape(-1, classes)
        grad = _aligned_empty(x2.shape)
        out = kernels.softmax_cross_entropy_sparse(x2, k_np.reshape(-1), grad_out=grad,
                                                   row_scale=np.ascontiguousarray(up_np, np.float32).reshape(-1))
        grad[np.isnan(out)] = 0.0
        return grad

    def compiled(x: Array) -> Any:
        outs = tf.numpy_function(host, [labels, x], [tf.float32, tf.float32] if want_grad else tf.float32,
                                 stateful=False, name="probloss_sparse_ce_logits")
        return (outs[0], outs[1]) if want_grad else (outs, None)

    if not want_grad:
        return _rows_redone(compiled(x)[0], labels, x, reference)

    @tf.custom_gradient
    def op(x: Array) -> Any:
        values, grad = compiled(x)

        def gradient(upstream: Array) -> Array:
            up = tf.reshape(upstream, [-1])
            if scale == 1.0:  # nothing expected: scale the kernel's gradient
                return tf.reshape(grad * tf.expand_dims(up, -1), tf.shape(x))

            def recomputed() -> Array:
                return tf.numpy_function(exact_gradient, [labels, x, up], tf.float32, stateful=False,
                                         name="probloss_sparse_ce_logits_gradient")

            expected = tf.reduce_all(tf.equal(up, tf.constant(scale, tf.float32)))
            return tf.reshape(tf.cond(expected, lambda: grad, recomputed), tf.shape(x))

        return values, gradient

    return _rows_redone(op(x), labels, x, reference)


def _aligned_copy(a: np.ndarray) -> np.ndarray:
    out = _aligned_empty(a.shape)
    out[...] = a
    return out
