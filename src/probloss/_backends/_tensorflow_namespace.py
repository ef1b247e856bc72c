"""An array-API namespace over TensorFlow ops, for the generic kernels.

array-api-compat has no TensorFlow namespace, and ``tf.experimental.numpy``
differs from the standard where the kernels rely on it (no ``astype``,
``isdtype`` or ``bfloat16`` alias, float64 defaults, ``asarray`` without a
``device``). This module is the small subset the kernels use, written on plain
TensorFlow ops, so that they run unchanged on eager tensors, inside
``tf.function`` (with ``jit_compile=True`` too), with unknown dimensions, and
under ``GradientTape``. It never turns on ``experimental_enable_numpy_behavior()``,
which would change the semantics of the user's whole program.

Where TensorFlow's op differs from the standard's intent, the function here
restores it:

* ``maximum``/``minimum`` split the gradient evenly at ties, as JAX does
  (``tf.maximum`` gives all of it to the first argument, which made the
  gradient of BCE from logits ``1 - 2y`` instead of ``0.5 - y`` at logit 0);
* ``max``/``min`` reductions return NaN for a slice holding one (XLA's
  reductions skip NaN);
* ``sum``/``mean`` of float32 accumulate in float64 inside graphs (XLA on CPU
  sums sequentially in the input dtype: 10M float32 values came out 1.5% low);
  eager sums use TensorFlow's own tree reduction, which is accurate;
* ``round`` rounds half to even and carries no gradient.

Results keep TensorFlow's dtype rules (no implicit promotion): the kernels
already cast their inputs to one floating dtype.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf

Array = Any

bool = tf.bool
int8, int16, int32, int64 = tf.int8, tf.int16, tf.int32, tf.int64
uint8, uint16, uint32, uint64 = tf.uint8, tf.uint16, tf.uint32, tf.uint64
float16, bfloat16, float32, float64 = tf.float16, tf.bfloat16, tf.float32, tf.float64

_KINDS = {
    "bool": lambda d: d == tf.bool,
    "signed integer": lambda d: d.is_integer and not d.is_unsigned,
    "unsigned integer": lambda d: d.is_integer and d.is_unsigned,
    "integral": lambda d: d.is_integer,
    "real floating": lambda d: d.is_floating,
    "complex floating": lambda d: d.is_complex,
    "numeric": lambda d: d.is_integer or d.is_floating or d.is_complex,
}


# ------------------------------------------------------------------ dtypes


def isdtype(dtype: Any, kind: Any) -> bool:
    """The standard's ``isdtype``: ``kind`` a dtype, a kind name, or a tuple of them."""
    dtype = tf.as_dtype(dtype)
    if isinstance(kind, tuple):
        return builtins.any(isdtype(dtype, k) for k in kind)
    if isinstance(kind, str):
        if kind not in _KINDS:
            msg = f"Unknown dtype kind {kind!r}."
            raise ValueError(msg)
        return _KINDS[kind](dtype)
    return dtype == tf.as_dtype(kind)


def astype(x: Array, dtype: Any, /, *, copy: bool = True, device: Any = None) -> Array:
    """``x`` cast to ``dtype`` (tensors are immutable, so ``copy`` changes nothing)."""
    del copy, device
    dtype = tf.as_dtype(dtype)
    return x if x.dtype == dtype else tf.cast(x, dtype)


def finfo(dtype: Any) -> Any:
    """Machine limits of a floating dtype (NumPy's, which TensorFlow shares)."""
    return np.finfo(tf.as_dtype(dtype).as_numpy_dtype)


# ------------------------------------------------------------------ creation


def _on(device: Any) -> Any:
    """A context placing new tensors on ``device`` (a device string), or none."""
    return tf.device(device) if isinstance(device, str) and device else _NoDevice()


class _NoDevice:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def asarray(obj: Any, /, *, dtype: Any = None, device: Any = None, copy: bool | None = None) -> Array:
    """``obj`` as a tensor; Python floats become float32 (Keras's floatx), as in TensorFlow."""
    del copy
    if isinstance(obj, tf.Tensor | tf.Variable):
        x = tf.convert_to_tensor(obj)
        return x if dtype is None else astype(x, dtype)
    with _on(device):
        if dtype is not None:
            dtype = tf.as_dtype(dtype)
            host = np.asarray(obj)
            if host.dtype.kind == "f" and dtype.is_integer:
                return tf.cast(tf.constant(host), dtype)
            return tf.constant(host.astype(dtype.as_numpy_dtype) if dtype != tf.bfloat16
                               else host.astype(np.float32), dtype=dtype)
        return tf.convert_to_tensor(obj)


def arange(start: Any, /, stop: Any = None, step: Any = 1, *, dtype: Any = None, device: Any = None) -> Array:
    with _on(device):
        if stop is None:
            start, stop = 0, start
        return tf.range(start, stop, step, dtype=tf.int64 if dtype is None else tf.as_dtype(dtype))


def zeros_like(x: Array, /, *, dtype: Any = None, device: Any = None) -> Array:
    return tf.zeros_like(x, dtype=dtype)


def ones_like(x: Array, /, *, dtype: Any = None, device: Any = None) -> Array:
    return tf.ones_like(x, dtype=dtype)


def full_like(x: Array, /, fill_value: Any, *, dtype: Any = None, device: Any = None) -> Array:
    dtype = x.dtype if dtype is None else tf.as_dtype(dtype)
    return tf.fill(tf.shape(x), tf.constant(fill_value, dtype=dtype))


def full(shape: Any, fill_value: Any, *, dtype: Any = None, device: Any = None) -> Array:
    with _on(device):
        value = tf.constant(fill_value, dtype=None if dtype is None else tf.as_dtype(dtype))
        return tf.fill(tf.constant(shape if isinstance(shape, Sequence) else (shape,), tf.int64), value)


def zeros(shape: Any, *, dtype: Any = None, device: Any = None) -> Array:
    return full(shape, 0, dtype=tf.float32 if dtype is None else dtype, device=device)


def ones(shape: Any, *, dtype: Any = None, device: Any = None) -> Array:
    return full(shape, 1, dtype=tf.float32 if dtype is None else dtype, device=device)


# ------------------------------------------------------------------ elementwise


def _like(value: Any, other: Array) -> Array:
    """A Python scalar as a tensor of ``other``'s dtype; tensors pass through."""
    if isinstance(value, tf.Tensor | tf.Variable):
        return value
    return tf.constant(value, dtype=other.dtype)


def _pair(a: Any, b: Any) -> tuple[Array, Array]:
    if not isinstance(a, tf.Tensor | tf.Variable):
        a = _like(a, b)
    return a, _like(b, a)


def _broadcast(a: Array, b: Array) -> tuple[Array, Array]:
    if a.shape.is_fully_defined() and b.shape.is_fully_defined() and a.shape == b.shape:
        return a, b
    shape = tf.broadcast_dynamic_shape(tf.shape(a), tf.shape(b))
    return tf.broadcast_to(a, shape), tf.broadcast_to(b, shape)


@tf.custom_gradient
def _maximum(a: Array, b: Array) -> Any:
    value = tf.maximum(a, b)

    def gradient(upstream: Array) -> tuple[Array, Array]:
        # 1 where a wins, 1/2 at a tie, 0 where b wins (and for NaN, which wins nothing).
        share = tf.where(a > b, tf.ones_like(a), tf.where(a == b, tf.fill(tf.shape(a), tf.constant(0.5, a.dtype)),
                                                          tf.zeros_like(a)))
        return upstream * share, upstream * (1 - share)

    return value, gradient


@tf.custom_gradient
def _minimum(a: Array, b: Array) -> Any:
    value = tf.minimum(a, b)

    def gradient(upstream: Array) -> tuple[Array, Array]:
        share = tf.where(a < b, tf.ones_like(a), tf.where(a == b, tf.fill(tf.shape(a), tf.constant(0.5, a.dtype)),
                                                          tf.zeros_like(a)))
        return upstream * share, upstream * (1 - share)

    return value, gradient


def maximum(a: Any, b: Any, /) -> Array:
    """Elementwise maximum, NaN-propagating, with the gradient split evenly at ties."""
    a, b = _pair(a, b)
    if not a.dtype.is_floating:
        return tf.maximum(a, b)
    return _maximum(*_broadcast(a, b))


def minimum(a: Any, b: Any, /) -> Array:
    """Elementwise minimum, NaN-propagating, with the gradient split evenly at ties."""
    a, b = _pair(a, b)
    if not a.dtype.is_floating:
        return tf.minimum(a, b)
    return _minimum(*_broadcast(a, b))


def clip(x: Array, /, min: Any = None, max: Any = None) -> Array:
    if min is not None:
        x = maximum(x, min)
    if max is not None:
        x = minimum(x, max)
    return x


def where(condition: Array, a: Any, b: Any, /) -> Array:
    a, b = _pair(a, b)
    return tf.where(condition, a, b)


def exp(x: Array, /) -> Array:
    return tf.exp(x)


def expm1(x: Array, /) -> Array:
    return tf.math.expm1(x)


def log(x: Array, /) -> Array:
    return tf.math.log(x)


def log1p(x: Array, /) -> Array:
    return tf.math.log1p(x)


def sqrt(x: Array, /) -> Array:
    return tf.sqrt(x)


def abs(x: Array, /) -> Array:
    return tf.abs(x)


def floor(x: Array, /) -> Array:
    return x if x.dtype.is_integer else tf.floor(x)


def round(x: Array, /) -> Array:
    """Round half to even, as the standard; no gradient (its derivative is 0 almost everywhere)."""
    return x if x.dtype.is_integer else tf.stop_gradient(tf.round(x))


def logaddexp(a: Array, b: Array, /) -> Array:
    """``log(exp(a) + exp(b))`` without overflow; -inf for two -inf."""
    a, b = _pair(a, b)
    big = maximum(a, b)
    safe = tf.where(tf.math.is_finite(big), big, tf.zeros_like(big))
    return tf.where(tf.math.is_finite(big),
                    safe + tf.math.log(tf.exp(a - safe) + tf.exp(b - safe)), big)


def isnan(x: Array, /) -> Array:
    return tf.math.is_nan(x) if x.dtype.is_floating else tf.zeros_like(x, dtype=tf.bool)


def isinf(x: Array, /) -> Array:
    return tf.math.is_inf(x) if x.dtype.is_floating else tf.zeros_like(x, dtype=tf.bool)


def isfinite(x: Array, /) -> Array:
    return tf.math.is_finite(x) if x.dtype.is_floating else tf.ones_like(x, dtype=tf.bool)


def logical_and(a: Array, b: Array, /) -> Array:
    return tf.logical_and(a, b)


def logical_or(a: Array, b: Array, /) -> Array:
    return tf.logical_or(a, b)


def logical_not(x: Array, /) -> Array:
    return tf.logical_not(x)


# ------------------------------------------------------------------ reductions


def _axes(axis: Any) -> Any:
    return list(axis) if isinstance(axis, tuple) else axis


def _accumulator(x: Array) -> Any:
    """float64 for float32 sums inside graphs (XLA sums sequentially), else the input dtype.

    Eager reductions use TensorFlow's own pairwise kernels, accurate in float32.
    """
    if x.dtype in (tf.float32, tf.float16, tf.bfloat16) and not tf.executing_eagerly():
        return tf.float64
    return x.dtype


def sum(x: Array, /, *, axis: Any = None, dtype: Any = None, keepdims: bool = False) -> Array:
    if dtype is not None:
        x = astype(x, dtype)
    if x.dtype == tf.bool:
        x = tf.cast(x, tf.int64)
    wide = _accumulator(x)
    total = tf.reduce_sum(astype(x, wide), axis=_axes(axis), keepdims=keepdims)
    return astype(total, x.dtype)


def _count(x: Array, axis: Any) -> Array:
    """The number of elements reduced over ``axis``, known statically where the shape is."""
    axes = range(x.ndim) if axis is None else (axis if isinstance(axis, tuple) else (axis,))
    dims = [x.shape[a] for a in axes]
    if builtins.all(d is not None for d in dims):
        return float(np.prod(dims, dtype=np.float64))
    shape = tf.shape(x)
    return tf.reduce_prod(tf.cast(tf.gather(shape, [a % x.ndim for a in axes]), tf.float64))


def mean(x: Array, /, *, axis: Any = None, keepdims: bool = False) -> Array:
    wide = _accumulator(x)
    total = tf.reduce_sum(astype(x, wide), axis=_axes(axis), keepdims=keepdims)
    count = _count(x, axis)
    if isinstance(count, float):
        return astype(total / count, x.dtype)
    return astype(total / astype(count, wide), x.dtype)


def _nan_in(x: Array, axis: Any, keepdims: bool) -> Array:
    return tf.reduce_any(tf.math.is_nan(x), axis=_axes(axis), keepdims=keepdims)


def max(x: Array, /, *, axis: Any = None, keepdims: bool = False) -> Array:
    """Maximum along ``axis``; NaN where the slice holds a NaN (XLA's reduction skips it)."""
    top = tf.reduce_max(x, axis=_axes(axis), keepdims=keepdims)
    if not x.dtype.is_floating:
        return top
    return tf.where(_nan_in(x, axis, keepdims), tf.constant(float("nan"), x.dtype), top)


def min(x: Array, /, *, axis: Any = None, keepdims: bool = False) -> Array:
    """Minimum along ``axis``; NaN where the slice holds a NaN."""
    low = tf.reduce_min(x, axis=_axes(axis), keepdims=keepdims)
    if not x.dtype.is_floating:
        return low
    return tf.where(_nan_in(x, axis, keepdims), tf.constant(float("nan"), x.dtype), low)


def any(x: Array, /, *, axis: Any = None, keepdims: bool = False) -> Array:
    return tf.reduce_any(tf.cast(x, tf.bool), axis=_axes(axis), keepdims=keepdims)


def all(x: Array, /, *, axis: Any = None, keepdims: bool = False) -> Array:
    return tf.reduce_all(tf.cast(x, tf.bool), axis=_axes(axis), keepdims=keepdims)


def argmax(x: Array, /, *, axis: Any = None, keepdims: bool = False) -> Array:
    if axis is None:
        return tf.argmax(tf.reshape(x, [-1]), axis=0)
    index = tf.argmax(x, axis=axis)
    return tf.expand_dims(index, axis) if keepdims else index


def argsort(x: Array, /, *, axis: int = -1, descending: bool = False, stable: bool = True) -> Array:
    return tf.argsort(x, axis=axis, direction="DESCENDING" if descending else "ASCENDING", stable=stable)


# ------------------------------------------------------------------ shapes


def reshape(x: Array, /, shape: Any, *, copy: bool | None = None) -> Array:
    return tf.reshape(x, [-1 if d is None else d for d in shape])


def expand_dims(x: Array, /, *, axis: int = 0) -> Array:
    return tf.expand_dims(x, axis)


def squeeze(x: Array, /, axis: Any) -> Array:
    return tf.squeeze(x, axis=_axes(axis))


def concat(arrays: Sequence[Array], /, *, axis: int | None = 0) -> Array:
    if axis is None:
        return tf.concat([tf.reshape(a, [-1]) for a in arrays], 0)
    return tf.concat(list(arrays), axis)


def stack(arrays: Sequence[Array], /, *, axis: int = 0) -> Array:
    return tf.stack(list(arrays), axis)


def permute_dims(x: Array, /, axes: Sequence[int]) -> Array:
    return tf.transpose(x, list(axes))


def broadcast_to(x: Array, /, shape: Any) -> Array:
    return tf.broadcast_to(x, list(shape))


def matmul(a: Array, b: Array, /) -> Array:
    return tf.linalg.matmul(a, b)


def take_along_axis(x: Array, indices: Array, /, *, axis: int = -1) -> Array:
    axis = axis % x.ndim
    perm = [*range(axis), *range(axis + 1, x.ndim), axis]
    inverse = np.argsort(perm).tolist()
    picked = tf.gather(tf.transpose(x, perm), tf.transpose(indices, perm), batch_dims=x.ndim - 1)
    return tf.transpose(picked, inverse)


def nonzero(x: Array, /) -> tuple[Array, ...]:
    where_true = tf.where(tf.cast(x, tf.bool))
    return tuple(where_true[:, i] for i in range(x.ndim))


def size_array(x: Array) -> Array:
    """The number of elements of ``x`` as an int64 tensor (for dimensions unknown while tracing)."""
    return tf.size(x, out_type=tf.int64)
