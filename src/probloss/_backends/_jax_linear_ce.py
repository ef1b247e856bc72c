"""Fused linear cross-entropy on JAX: ``jax.custom_vjp`` over a ``lax.scan`` of token chunks.

The tokens are padded to a whole number of chunks (padding rows have coefficient 0
and count as ignored) and scanned. Differentiated with a reducing reduction, the
forward scan also produces the gradients (``dW`` and ``db`` in the scan's carry,
``dh`` as its per-chunk output) and keeps them as the residuals: the backward pass
only scales them, so a step costs three matmuls over the vocabulary. Undifferentiated
calls scan for the loss alone. With ``reduction="none"`` the backward pass rescans
with the incoming per-token gradients.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._kernels._linear_ce import LinearCEOptions

__all__ = ["linear_ce_grads", "linear_ce_sum", "linear_ce_values"]

Array = Any


def _chunk(h: Array, y: Array, c: Array | None, keep: Array, weight: Array, bias: Array | None,
           options: LinearCEOptions) -> tuple[Array, Array | None]:
    """Loss of one chunk and, with ``c``, its scaled ``dL/dz``."""
    v = weight.shape[0]
    smoothing, zl, cap = options.label_smoothing, options.z_loss, options.logit_softcap
    in_range = ((y >= 0) & (y < v)) | ~keep
    y = jnp.where(keep & in_range, y, 0)
    h = jnp.where(keep[:, None], h, jnp.zeros_like(h))
    z = h @ weight.T
    if bias is not None:
        z = z + bias
    tanh = None
    if cap is not None:
        tanh = jnp.tanh(z / cap)
        z = tanh * cap
    picked = jnp.take_along_axis(z, y[:, None], axis=1)[:, 0]
    top = jax.lax.stop_gradient(jnp.max(z, axis=1))
    e = jnp.exp(z - top[:, None])
    norm = jnp.sum(e, axis=1)
    lse = top + jnp.log(norm)
    loss = lse - (1.0 - smoothing) * picked
    if smoothing:
        loss = loss - (smoothing / v) * jnp.sum(z, axis=1)
    if zl:
        loss = loss + zl * lse * lse
    loss = jnp.where(keep, loss, jnp.zeros_like(loss))
    loss = jnp.where(in_range, loss, jnp.full_like(loss, jnp.nan))
    if c is None:
        return loss, None
    g = e * (c * (1.0 + 2.0 * zl * lse) / norm)[:, None]
    g = g - (c * (1.0 - smoothing))[:, None] * (jnp.arange(v)[None, :] == y[:, None])
    if smoothing:
        g = g - (c * (smoothing / v))[:, None]
    if tanh is not None:
        g = g * (1.0 - tanh * tanh)
    return loss, g


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
        d_weight, d_bias = carry
        h, y, c, keep = x
        loss, g = _chunk(h, y, c, keep, weight, bias, options)
        d_weight = d_weight + g.T @ h
        if d_bias is not None:
            d_bias = d_bias + jnp.sum(g, axis=0)
        return (d_weight, d_bias), (loss, g @ weight)

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
