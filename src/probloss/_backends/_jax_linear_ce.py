"""Fused linear cross-entropy on JAX: ``jax.custom_vjp`` over a ``lax.scan`` of token chunks.

The tokens are padded to a whole number of equal chunks (padding rows have coefficient
0 and count as ignored) and scanned. Differentiated with a reducing reduction, the
forward scan also produces the gradients and keeps them as the residuals: the backward
pass only scales them, so a step costs three matmuls over the vocabulary, as the
unfused computation. Per chunk: the logits, ``exp(z - max)`` written over them (once;
soft-capping keeps the logits and recomputes it), the loss, ``dL/dz`` written over the
same buffer, ``dh = dL/dz @ W`` (the scan's per-chunk output) and, beside it, ``dW`` and
``db`` (the scan's carry) updated in place block of classes by block, so that no
``[V, D]`` temporary exists besides them. Chunks are large (:func:`default_chunk_rows`): each one
reads ``W`` twice and ``dW`` once more. Undifferentiated calls scan for the loss alone.
With ``reduction="none"`` the backward pass rescans with the incoming per-token
gradients.
"""

from __future__ import annotations

from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .._kernels._linear_ce import CHUNK_ELEMENTS, LinearCEOptions

__all__ = ["default_chunk_rows", "linear_ce_grads", "linear_ce_sum", "linear_ce_values", "vocab_block"]

Array = Any


#: Elements of the gradient loop's per-block buffers (``[rows, vb]``, ``[vb, D]``): 16 MiB.
_BLOCK_ELEMENTS = 2**22


def default_chunk_rows(tokens: int, features: int, vocabulary: int) -> int:
    """Tokens per chunk for JAX: as many as memory allows, in equal chunks.

    Each chunk costs a pass over ``W`` for its logits, another for ``dh`` and a
    read-modify-write of ``dW``: ``[V, D]`` arrays larger than any cache, so the fewer the
    chunks, the closer the step comes to the unfused one's three matmuls. A chunk's logits
    may take three quarters of the size of ``dW`` (``3 D // 4`` rows), which exists
    anyway, or
    :data:`CHUNK_ELEMENTS` numbers where that is more; the tokens are then split into
    equal chunks, so that the last one is not mostly padding.

    >>> default_chunk_rows(4096, 1024, 64000), default_chunk_rows(1000, 64, 64000)
    (683, 125)
    """
    if tokens <= 0:
        return 1
    most = max(1, CHUNK_ELEMENTS // max(1, vocabulary), 3 * features // 4)
    count = -(-tokens // most)
    return -(-tokens // count)


def vocab_block(rows: int, features: int, vocabulary: int) -> int:
    """Classes per block of the gradient loop, so that its buffers hold ~2**22 numbers each."""
    return max(1, min(vocabulary, _BLOCK_ELEMENTS // max(rows, features, 1)))


class _Stats(NamedTuple):
    """One chunk's ``[rows, V]`` buffer and the per-token factors of ``dL/dz``."""

    buf: Array  # [rows, V]: exp(z - top) without soft-capping, the soft-capped z with it
    top: Array  # [rows] max of z (the exponentials' shift)
    scale: Array  # [rows] c (1 + 2 zl lse) / sum(exp(z - top))
    label: Array  # [rows] the labels, 0 for ignored and padding tokens


def _chunk(h: Array, y: Array, c: Array | None, keep: Array, weight: Array, bias: Array | None,
           options: LinearCEOptions) -> tuple[Array, _Stats | None]:
    """Loss of one chunk and, with ``c``, what its gradient blocks are built from."""
    v = weight.shape[0]
    smoothing, zl, cap = options.label_smoothing, options.z_loss, options.logit_softcap
    in_range = ((y >= 0) & (y < v)) | ~keep
    y = jnp.where(keep & in_range, y, 0)
    h = jnp.where(keep[:, None], h, jnp.zeros_like(h))
    z = h @ weight.T
    if bias is not None:
        z = z + bias
    if cap is not None:
        z = jnp.tanh(z / cap) * cap
    top = jax.lax.stop_gradient(jnp.max(z, axis=1))
    total = jnp.sum(z, axis=1) if smoothing else None
    if c is not None and cap is None:
        # The exponentials are computed once and kept: XLA writes them over the logits
        # when every other read of z is a reduction done before. The label's logit is
        # therefore its own dot product (a gather from z would be fused into the loss,
        # after the exponentials, and keep z alive). With soft-capping the gradient
        # needs z, so the exponentials are summed here and recomputed per block instead.
        picked = jnp.sum(h * jnp.take(weight, y, axis=0), axis=1)
        if bias is not None:
            picked = picked + jnp.take(bias, y)
        buf = jnp.exp(z - top[:, None])
        norm = jnp.sum(buf, axis=1)
    else:
        picked = jnp.take_along_axis(z, y[:, None], axis=1)[:, 0]
        buf = z
        norm = jnp.sum(jnp.exp(z - top[:, None]), axis=1)
    lse = top + jnp.log(norm)
    loss = lse - (1.0 - smoothing) * picked
    if smoothing:
        loss = loss - (smoothing / v) * total
    if zl:
        loss = loss + zl * lse * lse
    loss = jnp.where(keep, loss, jnp.zeros_like(loss))
    loss = jnp.where(in_range, loss, jnp.full_like(loss, jnp.nan))
    if c is None:
        return loss, None
    scale = c * (1.0 + 2.0 * zl * lse) / norm
    # Everything read from the buffer for the loss is computed before the gradient (the
    # barrier orders it), so that XLA can write dL/dz over it.
    loss, buf, top, scale = jax.lax.optimization_barrier((loss, buf, top, scale))
    return loss, _Stats(buf, top, scale, y)


def _grad_block(stats: _Stats, c: Array, start: Any, size: int, options: LinearCEOptions) -> Array:
    """``dL/dz`` for classes ``[start, start + size)`` of one chunk: ``[rows, size]``."""
    v = stats.buf.shape[1]
    smoothing, cap = options.label_smoothing, options.logit_softcap
    buf = jax.lax.dynamic_slice_in_dim(stats.buf, start, size, axis=1)
    e = buf if cap is None else jnp.exp(buf - stats.top[:, None])
    g = e * stats.scale[:, None]
    classes = start + jnp.arange(size)
    g = g - (c * (1.0 - smoothing))[:, None] * (classes[None, :] == stats.label[:, None])
    if smoothing:
        g = g - (c * (smoothing / v))[:, None]
    if cap is not None:  # z = cap tanh(u / cap): dz/du = 1 - (z / cap)**2
        g = g * (1.0 - (buf / cap) * (buf / cap))
    return g


def _chunk_grads(h: Array, c: Array, keep: Array, stats: _Stats, weight: Array, carry: Any,
                 options: LinearCEOptions) -> tuple[Any, Array]:
    """Add one chunk's ``dW``, ``db`` into ``carry`` and return it with the chunk's ``dh``.

    ``g = dL/dz`` is built over the chunk's buffer (one ``[rows, V]`` array) and
    ``dh = g @ W`` is one matmul. ``dW`` and ``db`` are then updated class block by class
    block, ``dW_b += g_b.T @ h``, in place (``dynamic_update_slice`` of the loop's carry),
    so that no ``[V, D]`` temporary exists besides the carry. The block's matmul contracts
    ``g_b``'s rows as they are (XLA's general dot packs its operands anyway), without a
    transposed copy of ``g_b``. The two matmuls do not depend on each other: XLA runs
    them side by side.
    """
    v = weight.shape[0]
    h = jnp.where(keep[:, None], h, jnp.zeros_like(h))
    g = _grad_block(stats, c, 0, v, options)
    d_hidden = g @ weight
    size = options.vocab_block or vocab_block(h.shape[0], h.shape[1], v)
    contract_rows = (((0,), (0,)), ((), ()))

    def block(start: Any, size: int, state: Any) -> Any:
        d_weight, d_bias = state
        g_b = jax.lax.dynamic_slice_in_dim(g, start, size, axis=1)
        old = jax.lax.dynamic_slice_in_dim(d_weight, start, size, axis=0)
        part = jax.lax.dot_general(g_b, h, contract_rows)
        d_weight = jax.lax.dynamic_update_slice_in_dim(d_weight, old + part, start, axis=0)
        if d_bias is not None:
            old = jax.lax.dynamic_slice_in_dim(d_bias, start, size, axis=0)
            d_bias = jax.lax.dynamic_update_slice_in_dim(d_bias, old + jnp.sum(g_b, axis=0), start, axis=0)
        return d_weight, d_bias

    full = v // size
    carry = jax.lax.fori_loop(0, full, lambda i, state: block(i * size, size, state), carry)
    if v % size:
        carry = block(full * size, v % size, carry)
    return carry, d_hidden


def _scan(hidden: Array, weight: Array, bias: Array | None, labels: Array, coef: Array,
          valid: Array, options: LinearCEOptions, grads: bool) -> tuple[Array, Any]:
    n, d = hidden.shape
    rows = options.chunk_rows
    count = -(-n // rows)
    pad = count * rows - n

    def chunked(x: Array, fill: Any) -> Array:
        x = jnp.pad(x, [(0, pad)] + [(0, 0)] * (x.ndim - 1), constant_values=fill)
        return x.reshape((count, rows, *x.shape[1:]))

    xs = (chunked(hidden, 0), chunked(labels, 0), chunked(coef, 0), chunked(valid, False))
    if not grads:
        losses = jax.lax.map(lambda x: _chunk(x[0], x[1], None, x[3], weight, bias, options)[0], xs)
        return losses.reshape(-1)[:n], None

    def step(carry: Any, x: Any) -> Any:
        h, y, c, keep = x
        loss, stats = _chunk(h, y, c, keep, weight, bias, options)
        carry, d_hidden = _chunk_grads(h, c, keep, stats, weight, carry, options)
        return carry, (loss, d_hidden)

    init = (jnp.zeros_like(weight), None if bias is None else jnp.zeros_like(bias))
    (d_weight, d_bias), (losses, d_hidden) = jax.lax.scan(step, init, xs)
    return losses.reshape(-1)[:n], (d_hidden.reshape(-1, d)[:n], d_weight, d_bias)


def _upcast(x: Array | None) -> Array | None:
    if x is None or x.dtype in (jnp.float32, jnp.float64):
        return x
    return x.astype(jnp.float32)


def _cast_like(grad: Array | None, like: Array | None) -> Array | None:
    return None if grad is None or like is None else grad.astype(like.dtype)


def _no_cotangent(x: Array) -> Array:
    return np.zeros(x.shape, dtype=jax.dtypes.float0)


@partial(jax.custom_vjp, nondiff_argnums=(6,))
def _sum(hidden: Array, weight: Array, bias: Array | None, labels: Array, coef: Array, valid: Array,
         options: LinearCEOptions) -> Array:
    losses, _ = _scan(_upcast(hidden), _upcast(weight), _upcast(bias), labels, coef, valid, options, False)
    return jnp.sum(losses * coef)


def _sum_fwd(hidden: Array, weight: Array, bias: Array | None, labels: Array, coef: Array, valid: Array,
             options: LinearCEOptions) -> tuple[Array, Any]:
    h = _upcast(hidden)
    losses, (d_hidden, d_weight, d_bias) = _scan(h, _upcast(weight), _upcast(bias), labels,
                                                 coef.astype(h.dtype), valid, options, True)
    residuals = (_cast_like(d_hidden, hidden), _cast_like(d_weight, weight), _cast_like(d_bias, bias),
                 losses.astype(coef.dtype), labels, valid)
    return jnp.sum(losses * coef), residuals


def _sum_bwd(options: LinearCEOptions, residuals: Any, g: Array) -> tuple[Any, ...]:
    d_hidden, d_weight, d_bias, losses, labels, valid = residuals
    return (d_hidden * g.astype(d_hidden.dtype), d_weight * g.astype(d_weight.dtype),
            None if d_bias is None else d_bias * g.astype(d_bias.dtype), _no_cotangent(labels),
            losses * g.astype(losses.dtype), _no_cotangent(valid))


_sum.defvjp(_sum_fwd, _sum_bwd)


@partial(jax.custom_vjp, nondiff_argnums=(6,))
def _values(hidden: Array, weight: Array, bias: Array | None, labels: Array, coef: Array, valid: Array,
            options: LinearCEOptions) -> Array:
    losses, _ = _scan(_upcast(hidden), _upcast(weight), _upcast(bias), labels, coef, valid, options, False)
    return losses * coef


def _values_fwd(hidden: Array, weight: Array, bias: Array | None, labels: Array, coef: Array, valid: Array,
                options: LinearCEOptions) -> tuple[Array, Any]:
    losses, _ = _scan(_upcast(hidden), _upcast(weight), _upcast(bias), labels, coef, valid, options, False)
    return losses * coef, (hidden, weight, bias, labels, coef, valid, losses)


def _values_bwd(options: LinearCEOptions, residuals: Any, g: Array) -> tuple[Any, ...]:
    hidden, weight, bias, labels, coef, valid, losses = residuals
    h = _upcast(hidden)
    _, (d_hidden, d_weight, d_bias) = _scan(h, _upcast(weight), _upcast(bias), labels,
                                            (coef * g).astype(h.dtype), valid, options, True)
    return (_cast_like(d_hidden, hidden), _cast_like(d_weight, weight), _cast_like(d_bias, bias),
            _no_cotangent(labels), (losses * g).astype(coef.dtype), _no_cotangent(valid))


_values.defvjp(_values_fwd, _values_bwd)


def _valid(labels: Array, valid: Array | None) -> Array:
    return jnp.ones(labels.shape, dtype=bool) if valid is None else valid


# Jitted entry points (inlined under an outer jit): an eager call compiles one program
# per shapes and options instead of dispatching the scan and its padding op by op.
_sum_jit = jax.jit(_sum, static_argnums=(6,))
_values_jit = jax.jit(_values, static_argnums=(6,))


@partial(jax.jit, static_argnums=(6,))
def _grads_jit(hidden: Array, weight: Array, bias: Array | None, labels: Array, coef: Array, valid: Array,
               options: LinearCEOptions) -> tuple[Array, Any]:
    value, residuals = _sum_fwd(hidden, weight, bias, labels, coef, valid, options)
    return value, residuals[:3]


def linear_ce_sum(hidden: Array, weight: Array, bias: Array | None, labels: Array, coef: Array,
                  valid: Array | None, options: LinearCEOptions) -> Array:
    """``sum(coef * L)``, differentiable in hidden, weight, bias and coef."""
    return _sum_jit(hidden, weight, bias, labels, coef, _valid(labels, valid), options)


def linear_ce_values(hidden: Array, weight: Array, bias: Array | None, labels: Array, coef: Array,
                     valid: Array | None, options: LinearCEOptions) -> Array:
    """Per-token ``coef * L``, differentiable in hidden, weight, bias and coef."""
    return _values_jit(hidden, weight, bias, labels, coef, _valid(labels, valid), options)


def linear_ce_grads(hidden: Array, weight: Array, bias: Array | None, labels: Array, coef: Array,
                    valid: Array | None, options: LinearCEOptions) -> tuple[Array, tuple[Any, Any, Any]]:
    """``sum(coef * L)`` and its gradients in hidden, weight and bias, in one scan."""
    return _grads_jit(hidden, weight, bias, labels, coef, _valid(labels, valid), options)
