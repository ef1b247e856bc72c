"""TensorFlow fast paths: BCE from logits and sparse CE from logits with analytic gradients.

The generic kernels run op by op through the TensorFlow namespace: autodiff
then goes back through every ``where`` and TwoSum step. Here each of the two
most used losses is one ``tf.custom_gradient`` function whose forward pass
keeps the generic kernel's formulas (same accuracy: ``log1p(exp(-|x|))`` plus
non-negative terms; ``(m - x_label) + log1p(S')`` with the TwoSum-corrected
``S'``, summed in float64) and whose backward pass is the analytic gradient
(``sigmoid(x) - y``; ``softmax(x) - onehot``, with ``-S'/(1 + S')`` at a
confident label so that a tiny gradient is not rounded to 0).

Row sums never widen a full-size array: converting the ``(rows, classes)``
terms to float64 made XLA write (and read back) a float64 copy of the whole
array, and costs a pass of its own in a plain graph. The terms summed are
non-negative, so a float32 sum of a few of them has a small relative error
(at most ``(n - 1)·2⁻²⁴`` for ``n`` terms in any order, no cancellation);
:func:`_row_sum` adds blocks of at most :data:`_BLOCK` terms in float32 and only
the block sums (1/16 of the data) in float64, so no long float32 accumulation
(XLA's CPU reductions run long sequential chains: 8.8 ulps on 32000 terms)
reaches the result.

Called eagerly on large logits (256K values or more), each runs as one
XLA-compiled ``tf.function`` (compiled once per input shape, then cached), so
its dozen elementwise steps fuse into a few passes over the data instead of a
dozen; on small inputs, and inside the user's own ``tf.function``, the ops run
inline and the user's choice of compiler applies.

Only float32 and float64 logits with the class (or averaging) axis last take
these paths; the rest declines to the generic kernel.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from .._dispatch import Observed, fast_path
from .._kernels._crossentropy import mark_invalid_labels
from . import _tensorflow_namespace as tnp
from . import _tensorflow_native as _native

Array = Any
_FLOATS = (tf.float32, tf.float64)


def _handled(x: Array, axis: int) -> bool:
    return x.dtype in _FLOATS and axis == x.ndim - 1


# Eager calls on at least this many logits run XLA-compiled. XLA compiles once per input
# shape (a fraction of a second, then cached), which pays only on large arrays.
_COMPILE_FROM = 1 << 18


def _eager_compiled(fn: Any) -> Any:
    """``fn`` as one XLA-compiled function when called eagerly on large logits; inline otherwise."""
    compiled = tf.function(fn, jit_compile=True, reduce_retracing=True, autograph=False)

    def run(labels: Array, x: Array) -> Array:
        if tf.executing_eagerly() and x.shape.num_elements() is not None and x.shape.num_elements() >= _COMPILE_FROM:
            return compiled(labels, x)
        return fn(labels, x)

    return run


# ------------------------------------------------------------------ row sums

# Most terms per float32 block of _row_sum: a block sum's relative error is below 15·2⁻²⁴ in the
# worst case (non-negative terms, any order) and ~1 ulp in practice; with 16, XLA's fused
# reduction is as fast as a plain float32 sum (sparse CE 2048 x 32000: 1.4x tf.nn, where the
# float64 sum was 0.8x). Padding the last axis to a multiple made XLA 3x slower on BCE, so
# the block length is a divisor of the axis where one of at least 4 exists.
_BLOCK = 16


def _block_length(k: int) -> int:
    """The largest divisor of ``k`` up to :data:`_BLOCK`, or 0 when it is below 4 and ``k`` exceeds the block."""
    if k <= _BLOCK:
        return max(k, 1)
    best = max(b for b in range(1, _BLOCK + 1) if k % b == 0)
    return best if best >= 4 else 0


def _blocked(terms: Array, block: int) -> Array:
    """Float64 sums along the last axis of ``terms``, whose length is a multiple of ``block``."""
    shape = tf.shape(terms)
    shaped = tf.reshape(terms, tf.concat([shape[:-1], [shape[-1] // block, block]], 0))
    return tf.reduce_sum(tf.cast(tf.reduce_sum(shaped, axis=-1), tf.float64), axis=-1)


def _row_sum(terms: Array) -> Array:
    """Float64 sums along the last axis of non-negative float32/64 ``terms``, without a full-size float64 copy.

    The last axis is cut into blocks of at most :data:`_BLOCK` terms, each summed in the
    terms' dtype; the block sums (a sixteenth of the data, or a quarter at worst) are
    summed in float64. An axis with no divisor in ``[4, 16]`` puts its last ``k % 16``
    terms in a block of their own; an axis of unknown length while tracing is zero-padded
    to a multiple of 16 (zeros add nothing).
    """
    if terms.dtype == tf.float64:
        return tf.reduce_sum(terms, axis=-1)
    k = terms.shape[-1]
    if k is None:
        length = tf.shape(terms)[-1]
        pad = (-length) % _BLOCK
        widths = tf.concat([tf.zeros([tf.rank(terms) - 1, 2], tf.int32), [[0, pad]]], 0)
        return _blocked(tf.pad(terms, widths), _BLOCK)
    block = _block_length(k)
    if block:
        return _blocked(terms, block)
    main = k - k % _BLOCK
    tail = tf.cast(tf.reduce_sum(terms[..., main:], axis=-1), tf.float64)
    return _blocked(terms[..., :main], _BLOCK) + tail


# ------------------------------------------------------------------ BCE from logits


def _bce_logits(y: Array, x: Array) -> Array:
    @tf.custom_gradient
    def bce(y: Array, x: Array) -> Any:
        magnitude = tf.abs(x)
        e = tf.exp(-magnitude)
        # y·relu(-x) + (1-y)·relu(x) = w·|x| with w the weight of the side x is on;
        # multiply_no_nan reads 0·inf as 0 (a zero label ignores an infinite logit).
        positive = x >= 0
        w = tf.where(positive, 1 - y, y)
        per_element = tf.math.log1p(e) + tf.math.multiply_no_nan(magnitude, w)
        n = tf.cast(tf.shape(x)[-1], tf.float64)
        value = tf.cast(_row_sum(per_element) / n, x.dtype)

        def gradient(upstream: Array) -> tuple[Array, Array]:
            scale = tf.expand_dims(upstream / tf.cast(n, upstream.dtype), -1)
            # sigmoid(x) - y with sigmoid(-|x|) = e/(1+e) formed directly, so that a
            # confident correct logit keeps its tiny gradient (1/(1+e) - 1 rounds to 0).
            small = e / (1 + e)
            return -x * scale, tf.where(positive, (1 - y) - small, small - y) * scale

        return value, gradient

    return bce(y, x)


_bce_logits_run = _eager_compiled(_bce_logits)


@fast_path("binary_crossentropy", backend="tensorflow", observes=True)
def _binary_crossentropy(y_true: Array, y_pred: Array, *, from_logits: bool, axis: int, epsilon: float,
                         xp: Any, observe: Observed | None = None) -> Array:
    if not from_logits or not _handled(y_pred, axis) or y_pred.ndim == 0:
        return NotImplemented
    if _native.binary_applies(y_true, y_pred):
        bounds = [] if observe is not None else None
        values = _native.binary_crossentropy(y_true, y_pred, bounds, _bce_logits_run)
        if observe is not None:
            y_lo, y_hi, x_lo, x_hi = bounds
            observe.bounds[0] = (y_lo, y_hi)
            observe.bounds[1] = (x_lo, x_hi)
        return values
    if observe is not None:  # only the compiled kernels report bounds: the caller checks first
        return NotImplemented
    if _native.binary_graph_applies(y_true, y_pred):
        return _native.binary_crossentropy_graph(y_true, y_pred, _bce_logits)
    return _bce_logits_run(y_true, y_pred)


# ------------------------------------------------------------------ sparse CE from logits


def _sparse_logits(labels: Array, x: Array) -> Array:
    """``-log_softmax(x)[label]`` along the last axis; labels already clipped into range."""
    @tf.custom_gradient
    def sparse(x: Array) -> Any:
        k = tf.argmax(x, axis=-1, output_type=labels.dtype)  # a NaN entry is the argmax on CPU
        top = tf.gather(x, k, batch_dims=x.ndim - 1)
        row_ok = tf.math.is_finite(top)
        m = tf.expand_dims(tf.where(row_ok, top, tf.zeros_like(top)), -1)
        # TwoSum: x - m = d + err exactly; exp(d)·(1 + err) keeps each term's last bits.
        d = x - m
        a_part = d + m
        b_part = d - a_part
        err = (x - a_part) - (m + b_part)
        err = tf.where(tf.math.is_nan(err), tf.zeros_like(err), err)
        classes = tf.range(tf.shape(x)[-1], dtype=labels.dtype)
        is_top = classes == tf.expand_dims(k, -1)
        e = tf.where(is_top, tf.zeros_like(x), tf.exp(d) * (1 + err))
        rest = tf.cast(_row_sum(e), x.dtype)
        rest = tf.where(row_ok, rest, tf.fill(tf.shape(rest), tf.constant(float("nan"), x.dtype)))
        picked = tf.gather(x, labels, batch_dims=x.ndim - 1)
        value = (tf.squeeze(m, -1) - picked) + tf.math.log1p(rest)
        value = tf.where(labels == k, tf.math.log1p(rest), value)  # m - x_k is 0: no rounding of it

        def gradient(upstream: Array) -> Array:
            inverse = tf.expand_dims(1 / (1 + rest), -1)
            is_label = classes == tf.expand_dims(labels, -1)
            confident = tf.expand_dims(labels == k, -1)
            # softmax - onehot; at a top label 1/(1+S') - 1 is -S'/(1+S') exactly.
            at_top = tf.where(confident, -tf.expand_dims(rest, -1) * inverse, inverse)
            g = tf.where(is_top, at_top, tf.where(is_label, e * inverse - 1, e * inverse))
            return g * tf.expand_dims(upstream, -1)

        return value, gradient

    return sparse(x)


_sparse_logits_run = _eager_compiled(_sparse_logits)


@fast_path("sparse_categorical_crossentropy", backend="tensorflow", observes=True)
def _sparse_categorical_crossentropy(y_true: Array, y_pred: Array, *, from_logits: bool, axis: int,
                                     epsilon: float, xp: Any, observe: Observed | None = None) -> Array:
    if not from_logits or not _handled(y_pred, axis):
        return NotImplemented
    native = _native.softmax_applies(y_true, y_pred)
    if observe is not None and not native:  # only the compiled kernels report bounds: the caller checks first
        return NotImplemented
    num_classes = y_pred.shape[axis]
    clipped = tf.clip_by_value(y_true, tf.constant(0, y_true.dtype), tf.constant(num_classes - 1, y_true.dtype))
    if native:
        bounds = [] if observe is not None else None
        loss = _native.sparse_categorical_crossentropy(clipped, y_pred, bounds, _sparse_logits_run)
        if observe is not None:
            observe.bounds[1] = (bounds[0], bounds[1])
    elif _native.softmax_graph_applies(clipped, y_pred):
        loss = _native.sparse_categorical_crossentropy_graph(clipped, y_pred, _sparse_logits)
    else:
        loss = _sparse_logits_run(clipped, y_pred)
    return mark_invalid_labels(loss, y_true, num_classes, xp=tnp)
