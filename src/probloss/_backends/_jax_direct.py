"""JAX's ``Loss``-level short ways: Poisson and KL divergence reduced, with the compiled kernel's gradient.

Under ``jax.jit(jax.value_and_grad(loss))`` the general path (the per-sample
losses of :mod:`probloss._backends._jax`, then ``Loss.__call__``'s reduction)
takes the value from the compiled kernel and the gradient from an XLA pass of
its own, which reads both inputs again. Here the reduction is part of the
differentiated function, so the kernel's one pass writes the gradient of the
reduced loss itself, its factors (``1/N`` of the mean, Poisson's ``1/cols`` of
each row) folded in; the cotangent that ``value_and_grad`` sends is the
constant 1, and XLA drops the multiplication by it: the gradient is the
kernel's output, with no pass after it (4096 x 256, fastest calls: Poisson
0.57 ms against the general path's 0.68, KL 0.85 against 0.97; docs/backends.md).

Same numbers as the general path: the value by the same functions (the per-row
losses of ``_jax._poisson`` / ``_jax._kl``, reduced by
:func:`probloss._reduction.reduce_values`); the gradient by the same float32
formula that the general path's XLA pass evaluates (the kernel's float32 mode,
binary_impl.h), scaled once by the float32 product of the factors (the same
bits where they are powers of 2, else within 2 ulps). Rows the kernel leaves
non-finite are taken from that formula, and so are the derivatives of the rule
itself (``jax.hessian``), as everywhere in :mod:`probloss._backends._jax`. With
``jax_enable_x64`` the general path computes in float64 and is kept.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import array_api_compat
import jax
import jax.numpy as jnp

from .. import _config
from .._namespace import is_eager
from .._numerics import clip_bounds
from .._reduction import reduce_values, standardize_reduction
from . import _jax
from . import _jax_ffi as _ffi

__all__ = ["kl_divergence_loss_direct", "poisson_loss_direct"]

_REDUCTIONS = ("sum_over_batch_size", "mean", "mean_with_sample_weight", "sum")

Array = Any


class _Loss(NamedTuple):
    """What a short way needs of its loss: the kernel, the general path's rows and their XLA formulas."""

    kind: str  # the binary module's KIND_* constant
    mean: bool  # rows are means along the last axis (Poisson), else sums (KL)
    params: Callable[[float], tuple[float, ...]]  # the kernel's parameters: float32 arithmetic
    rows: Callable[[Array, Array, int, float], Array]  # the general path's per-row losses (t, p, axis, param)
    formula_rows: Callable[[Array, Array, float], Array]  # their XLA formula along the last axis (t, p, param)
    formula_slope: Callable[[Array, Array, float], Array]  # d row / d p by the XLA formula (t, p, param)


def _poisson_slope(t: Array, p: Array, epsilon: float) -> Array:
    return _jax._poisson_slope(t, p, epsilon, p.shape[-1])


def _kl_rows(t: Array, p: Array, low: float) -> Array:
    return _jax._kl_value(t, p, -1, low)


def _kl_slope(t: Array, p: Array, low: float) -> Array:
    """The general path's ``d row / d p = -(t/p)`` of the clipped inputs, times the clip's slope."""
    return -(jnp.clip(t, low, 1.0) / jnp.clip(p, low, 1.0)) * _jax._clip_slope(p, low, 1.0)


def _poisson_params(epsilon: float) -> tuple[float, ...]:
    return _jax._poisson_params(epsilon, jnp.float32)  # float64 off: float32 arithmetic


_POISSON = _Loss("KIND_POISSON", True, _poisson_params, _jax._poisson, _jax._poisson_value, _poisson_slope)
_KL = _Loss("KIND_KL", False, _jax._kl_params, _jax._kl, _kl_rows, _kl_slope)


def poisson_loss_direct(loss: Any, y_true: Any, y_pred: Any) -> Array | None:
    """``Poisson()(y_true, y_pred)`` of its common JAX call, or None for the general path.

    The common call (:func:`_common_call`), with rates (no ``log_input`` or ``full``).
    """
    if loss.log_input is not False or loss.full is not False or not _common_call(loss, y_true, y_pred):
        return None
    return _reduced(y_true, y_pred, _POISSON, float(_config.epsilon()), standardize_reduction(loss.reduction))


def kl_divergence_loss_direct(loss: Any, y_true: Any, y_pred: Any) -> Array | None:
    """``KLDivergence()(y_true, y_pred)`` of its common JAX call, or None for the general path.

    The common call (:func:`_common_call`), with probabilities (no ``log_input`` or ``log_target``).
    """
    if loss.log_input is not False or loss.log_target is not False or not _common_call(loss, y_true, y_pred):
        return None
    low, _ = clip_bounds(_config.epsilon(), jnp.float32, xp=jnp)
    return _reduced(y_true, y_pred, _KL, float(low), standardize_reduction(loss.reduction))


def _common_call(loss: Any, y_true: Any, y_pred: Any) -> bool:
    """Whether a call may take a short way (the loss's own options aside).

    Float32 JAX arrays (or tracers) of one shape, rank >= 2, not empty, with no
    data checks to run (inside ``jit``/``grad``/``vmap``, where the general path
    skips them too, or ``validate="off"``), no dtype, a reducing reduction, fast
    paths on, the compiled kernel registered with XLA and float64 off.
    """
    if not (standardize_reduction(loss.reduction) in _REDUCTIONS and loss._dtype is None and _ffi.AVAILABLE
            and not jax.config.jax_enable_x64 and _config.fast_paths_enabled()):
        return False
    if not (array_api_compat.is_jax_array(y_pred) and array_api_compat.is_jax_array(y_true)
            and y_pred.dtype == jnp.float32 and y_true.dtype == jnp.float32 and y_pred.ndim >= 2
            and y_true.shape == y_pred.shape and y_pred.size > 0):
        return False
    mode = loss.validate if loss.validate is not None else _config.validation_mode()
    return mode == "off" or not is_eager(y_true, y_pred)  # eager arrays: the general path runs the checks


def _reduce(rows: Array, reduction: str) -> Array:
    """The general path's reduction of the per-sample losses (``Loss.__call__``, no weight or mask)."""
    return reduce_values(rows, None, reduction, xp=array_api_compat.array_namespace(rows))


def _row_factor(rows_shape: tuple[int, ...], reduction: str) -> float:
    """``d reduced / d row``: ``1/N`` for the means (N the per-sample losses), 1 for ``"sum"``."""
    return 1.0 if reduction == "sum" else 1.0 / math.prod(rows_shape)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3, 4))
def _reduced(t: Array, p: Array, spec: _Loss, param: float, reduction: str) -> Array:
    return _reduce(spec.rows(t, p, p.ndim - 1, param), reduction)


def _formula_pair(spec: _Loss, param: float, factor: float, t: Array, p: Array) -> tuple[Array, Array]:
    """Per-row losses and the reduced loss's gradient by the general path's XLA formulas (off CPU, bad rows)."""
    return spec.formula_rows(t, p, param), spec.formula_slope(t, p, param) * jnp.asarray(factor, p.dtype)


def _kernel_pair(spec: _Loss, param: float, scale: float, t: Array, p: Array) -> tuple[Array, Array]:
    """Per-row losses and the reduced loss's gradient by the compiled kernel (its float32 mode)."""
    return _ffi.binary_rows(getattr(_ffi.native_binary(), spec.kind), t, p, divisor=p.shape[-1] if spec.mean else 1.0,
                            params=spec.params(param), want_grad=True, grad_scale=scale)


@functools.partial(_reduced.defjvp, symbolic_zeros=True)
def _reduced_jvp(spec: _Loss, param: float, reduction: str, primals: tuple[Array, Array],
                 tangents: tuple[Any, Any]) -> tuple[Array, Array]:
    t, p = primals
    if not _jax._is_zero(tangents[0]):
        # labels with a tangent (rare): the general path's rules for both arguments
        dt, dp = (jnp.zeros_like(x) if _jax._is_zero(d) else d for x, d in zip(primals, tangents, strict=True))
        return jax.jvp(lambda a, b: _reduce(spec.rows(a, b, b.ndim - 1, param), reduction), primals, (dt, dp))
    factor = _row_factor(p.shape[:-1], reduction)
    # d reduced / d p = factor · d row / d p; Poisson's row is a mean, whose 1/cols the
    # kernel's scale takes too (the formula's slope holds it already)
    scale = factor / p.shape[-1] if spec.mean else factor
    pair = _ffi.choose(functools.partial(_formula_pair, spec, param, factor),
                       functools.partial(_kernel_pair, spec, param, scale))
    rows, g = pair(t, p)
    value = _reduce(rows, reduction)
    return value, _jax._linear([(g, tangents[1])], jnp.sum, value)
