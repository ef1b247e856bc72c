"""The compiled kernels as XLA FFI calls: JAX's CPU fast paths, without a copy.

:mod:`probloss._native`'s binary and softmax modules export their kernels as XLA
FFI handlers (src/probloss/_native/pl_xla.h) where they were built against
jaxlib's FFI header. Registered here with ``jax.ffi.register_ffi_target``, they
run inside a compiled JAX computation on XLA's own buffers: the loss and its
gradient in one multi-threaded pass, written straight into XLA's results
(``jax.pure_callback`` would copy every operand through ``device_put``, which on
large arrays costs more than the kernel).

:func:`choose` picks the compiled kernel on CPU and an XLA formula elsewhere,
when the computation is lowered (``lax.platform_dependent``), and makes the
pair differentiable: its derivative is that of the XLA formula, so that
``jax.jvp``, ``jax.hessian`` and every higher order work through it. Rows that
a kernel leaves NaN (non-finite input, an invalid label) are recomputed by the
formula under a ``lax.cond``, so they cost nothing when there are none.

``AVAILABLE`` is False where the extension or its handlers are missing (built
without JAX, MSVC); the fast paths then use the XLA formulas only.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .. import _native

__all__ = ["AVAILABLE", "binary_rows", "choose", "native_binary", "normalized_rows", "softmax_rows"]

Array = Any


def _register() -> bool:
    handlers: dict[str, Any] = {}
    for module in (_native.binary, _native.softmax):
        get = getattr(module, "xla_handlers", None)
        if get is None:
            return False
        handlers.update(get())
    try:
        for name, capsule in handlers.items():
            jax.ffi.register_ffi_target(name, capsule, platform="cpu", api_version=1)
    except Exception:  # an XLA that refuses the handlers: the XLA formulas then
        return False
    return True


#: Whether the compiled kernels run as XLA FFI calls on the CPU platform.
AVAILABLE: bool = _register()


def native_binary() -> Any:
    """The compiled binary module (its ``KIND_*`` constants name the kernels)."""
    return _native.binary


def _threads() -> np.int64:
    return np.int64(_native.threads())


def softmax_rows(x: Array, labels: Array, *, sparse: bool, want_grad: bool) -> tuple[Array, ...]:
    """Per-row softmax cross-entropy of float32 ``(..., classes)`` logits (classes last), and its gradient.

    ``labels``: int32/int64 class indices of shape ``x.shape[:-1]`` (``sparse``),
    or float32 labels of ``x``'s shape. Returns ``(loss,)`` or ``(loss, grad)``,
    ``grad = softmax(x)·sum(t) - t`` per row; NaN rows for the caller.
    """
    shapes = [jax.ShapeDtypeStruct(x.shape[:-1], jnp.float32)]
    if want_grad:
        shapes.append(jax.ShapeDtypeStruct(x.shape, jnp.float32))
    target = "probloss_softmax_ce_sparse" if sparse else "probloss_softmax_ce"
    call = jax.ffi.ffi_call(target, tuple(shapes), vmap_method="broadcast_all")
    return tuple(call(x, labels, threads=_threads()))


def normalized_rows(t: Array, y: Array, *, low: float, high: float, want_grad: bool) -> tuple[Array, ...]:
    """Per-row categorical cross-entropy of float32 probabilities ``y`` (classes last), and its gradient.

    ``sum_j t_j·-log(clip(y_j / sum(y), low, high))`` with float32 labels ``t`` of
    ``y``'s shape; ``low`` a positive normal number. Returns ``(loss,)`` or
    ``(loss, grad)``, ``grad = d loss[r] / d y[r, j]``; NaN rows (a negative,
    NaN or infinite probability, a zero row) for the caller.
    """
    shapes = [jax.ShapeDtypeStruct(y.shape[:-1], jnp.float32)]
    if want_grad:
        shapes.append(jax.ShapeDtypeStruct(y.shape, jnp.float32))
    call = jax.ffi.ffi_call("probloss_normalized_ce", tuple(shapes), vmap_method="broadcast_all")
    return tuple(call(y, t, threads=_threads(), lo=np.float64(low), hi=np.float64(high)))


def binary_rows(kind: int, y: Array, x: Array, *, divisor: float, params: tuple[float, ...] = (),
                want_grad: bool, grad_scale: float | None = None) -> tuple[Array, ...]:
    """Per-row binary-family loss (``row_losses`` of binary.c) of float32 ``(..., cols)`` arrays, and its gradient.

    Returns ``(loss,)`` or ``(loss, grad)`` with ``grad = d loss[r] / d x[r, c]``,
    or that times ``grad_scale·divisor`` where ``grad_scale`` is given (a
    reduction's factor folded into the kernel's pass); NaN or inf rows for the caller.
    """
    shapes = [jax.ShapeDtypeStruct(x.shape[:-1], jnp.float32)]
    if want_grad:
        shapes.append(jax.ShapeDtypeStruct(x.shape, jnp.float32))
    attrs = {f"p{i}": np.float64(p) for i, p in enumerate(params)}
    if grad_scale is not None:
        attrs["grad_scale"] = np.float64(grad_scale)
    call = jax.ffi.ffi_call("probloss_binary", tuple(shapes), vmap_method="broadcast_all")
    return tuple(call(y, x, kind=np.int64(kind), threads=_threads(), divisor=np.float64(divisor), **attrs))


def _fix_rows(fast: tuple[Array, Array], formula: Callable[[], tuple[Array, Array]]) -> tuple[Array, Array]:
    """``fast``'s ``(loss, grad)`` with the rows whose loss is not finite taken from ``formula()``."""
    loss, grad = fast
    bad = ~jnp.isfinite(loss)

    def redo() -> tuple[Array, Array]:
        value, g = formula()
        return jnp.where(bad, value, loss), jnp.where(bad[..., None], g, grad)

    return lax.cond(jnp.any(bad), redo, lambda: (loss, grad))


def choose(formula: Callable[..., tuple[Array, Array]],
           kernel: Callable[..., tuple[Array, Array]]) -> Callable[..., tuple[Array, Array]]:
    """``(loss, grad)`` by ``kernel`` on CPU (rows it leaves NaN by ``formula``), by ``formula`` elsewhere.

    Both take the same positional arrays (float arrays and integer labels; static
    options bound beforehand) and return per-row losses and the gradient with
    respect to the last argument, classes last. The result is differentiable
    as ``formula`` is (a ``jax.custom_jvp`` whose rule is ``formula``'s JVP).
    """

    def on_cpu(*args: Array) -> tuple[Array, Array]:
        return _fix_rows(kernel(*args), functools.partial(formula, *args))

    @jax.custom_jvp
    def pair(*args: Array) -> tuple[Array, Array]:
        return lax.platform_dependent(*args, cpu=on_cpu, default=formula)

    @pair.defjvp
    def _pair_jvp(primals: tuple[Array, ...], tangents: tuple[Array, ...]) -> tuple[Any, Any]:
        return jax.jvp(formula, primals, tangents)

    return pair
