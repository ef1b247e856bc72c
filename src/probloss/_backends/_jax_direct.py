"""JAX's ``Loss``-level short way: the reduced Poisson loss with the compiled kernel's gradient.

Under ``jax.jit(jax.value_and_grad(loss))`` the general path (the per-sample
losses of :mod:`probloss._backends._jax`, then ``Loss.__call__``'s reduction)
takes the value from the compiled kernel and the gradient from an XLA pass of
its own, which reads both inputs again. Here the reduction is part of the
differentiated function, so the kernel's one pass writes the gradient of the
reduced loss itself, its factor (``1/N`` of the mean, ``1/cols`` of each row's)
folded in; the cotangent that ``value_and_grad`` sends is the constant 1, and
XLA drops the multiplication by it: the gradient is the kernel's output, with
no pass after it (4096 x 256: 8-15% less time than the general path, docs/backends.md).

Same numbers as the general path: the value by the same functions (the per-row
losses of ``_jax._poisson``, reduced by :func:`probloss._reduction.reduce_values`);
the gradient by the same float32 formula ``((p - y) + ε)/(p + ε)`` that the
general path's XLA pass evaluates (the kernel's float32 mode), scaled once by
the float32 product of the factors (the same bits where they are powers of 2,
else within 2 ulps). Rows the kernel leaves non-finite are taken from that
formula, and so are the derivatives of the rule itself (``jax.hessian``), as
everywhere in :mod:`probloss._backends._jax`. With ``jax_enable_x64`` the
general path computes the gradient in float64 and is kept.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import array_api_compat
import jax
import jax.numpy as jnp

from .. import _config
from .._namespace import is_eager
from .._reduction import reduce_values, standardize_reduction
from . import _jax
from . import _jax_ffi as _ffi

__all__ = ["poisson_loss_direct"]

_REDUCTIONS = ("sum_over_batch_size", "mean", "mean_with_sample_weight", "sum")

Array = Any


def poisson_loss_direct(loss: Any, y_true: Any, y_pred: Any) -> Array | None:
    """``Poisson()(y_true, y_pred)`` of its common JAX call, or None for the general path.

    The common call: float32 JAX arrays of one shape, rank >= 2, with no data
    checks to run (inside ``jit``/``grad``/``vmap``, where the general path skips
    them too, or ``validate="off"``), rates (no ``log_input`` or ``full``), no
    sample weight or dtype, a reducing reduction, fast paths on, the compiled
    kernel registered with XLA and float64 off.
    """
    reduction = standardize_reduction(loss.reduction)
    if not (reduction in _REDUCTIONS and loss.log_input is False and loss.full is False and loss._dtype is None
            and _ffi.AVAILABLE and not jax.config.jax_enable_x64 and _config.fast_paths_enabled()
            and _jax_pair(y_true, y_pred)):
        return None
    mode = loss.validate if loss.validate is not None else _config.validation_mode()
    if mode != "off" and is_eager(y_true, y_pred):
        return None  # eager arrays: the general path runs the data checks
    return _poisson_reduced(y_true, y_pred, float(_config.epsilon()), reduction)


def _jax_pair(y_true: Any, y_pred: Any) -> bool:
    """Whether both are float32 JAX arrays (or tracers) of one shape, rank >= 2, not empty."""
    if not (array_api_compat.is_jax_array(y_pred) and array_api_compat.is_jax_array(y_true)):
        return False
    return (y_pred.dtype == jnp.float32 and y_true.dtype == jnp.float32 and y_pred.ndim >= 2
            and y_true.shape == y_pred.shape and y_pred.size > 0)


def _reduce(rows: Array, reduction: str) -> Array:
    """The general path's reduction of the per-sample losses (``Loss.__call__``, no weight or mask)."""
    return reduce_values(rows, None, reduction, xp=array_api_compat.array_namespace(rows))


def _row_factor(rows_shape: tuple[int, ...], reduction: str) -> float:
    """``d reduced / d row``: ``1/N`` for the means (N the per-sample losses), 1 for ``"sum"``."""
    return 1.0 if reduction == "sum" else 1.0 / math.prod(rows_shape)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3))
def _poisson_reduced(t: Array, p: Array, epsilon: float, reduction: str) -> Array:
    return _reduce(_jax._poisson(t, p, p.ndim - 1, epsilon), reduction)


def _formula_pair(epsilon: float, scale: float, t: Array, p: Array) -> tuple[Array, Array]:
    """Per-row losses and the scaled gradient by the general path's XLA formulas (off CPU, non-finite rows)."""
    return (_jax._poisson_value(t, p, epsilon),
            _jax._poisson_slope(t, p, epsilon, p.shape[-1]) * jnp.asarray(scale * p.shape[-1], p.dtype))


def _kernel_pair(epsilon: float, scale: float, t: Array, p: Array) -> tuple[Array, Array]:
    """Per-row losses and the gradient ``scale·((p - y) + ε)/(p + ε)`` by the compiled kernel (float32 mode)."""
    kernel_params = (*_jax._poisson_params(epsilon), 1.0)
    return _ffi.binary_rows(_ffi.native_binary().KIND_POISSON, t, p, divisor=p.shape[-1], params=kernel_params,
                            want_grad=True, grad_scale=scale)


@functools.partial(_poisson_reduced.defjvp, symbolic_zeros=True)
def _poisson_reduced_jvp(epsilon: float, reduction: str, primals: tuple[Array, Array],
                         tangents: tuple[Any, Any]) -> tuple[Array, Array]:
    t, p = primals
    if not _jax._is_zero(tangents[0]):
        # labels with a tangent (rare): the general path's rules for both arguments
        dt, dp = (jnp.zeros_like(x) if _jax._is_zero(d) else d for x, d in zip(primals, tangents, strict=True))
        return jax.jvp(lambda a, b: _reduce(_jax._poisson(a, b, b.ndim - 1, epsilon), reduction), primals, (dt, dp))
    # d reduced / d p = factor · (1/cols) · ((p - y) + ε)/(p + ε)
    scale = _row_factor(p.shape[:-1], reduction) / p.shape[-1]
    pair = _ffi.choose(functools.partial(_formula_pair, epsilon, scale),
                       functools.partial(_kernel_pair, epsilon, scale))
    rows, g = pair(t, p)
    value = _reduce(rows, reduction)
    return value, _jax._linear([(g, tangents[1])], jnp.sum, value)
