"""JAX fast path of the CTC loss: ``jax.custom_vjp`` over ``lax.scan`` recursions.

The forward pass scans the alpha recursion over the frames (one compiled step,
not ``T`` unrolled ones), the backward-of-the-recursion scans beta in reverse,
and the gradient ``softmax - occupancy`` is kept as the residual, so
``jax.grad`` never differentiates through the recursion. Works under ``jit``
and ``vmap``. The recursion runs in float64 where ``jax_enable_x64`` is on
(float32 otherwise: see docs/accuracy.md).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from .._dispatch import fast_path
from .._kernels import _ctc as k
from .._numerics import wide_dtype

__all__ = ["ctc_loss"]


def _run(labels: Any, logits: Any, label_lengths: Any, logit_lengths: Any, blank: int,
         want_grad: bool) -> tuple[Any, Any]:
    x = logits.astype(wide_dtype(logits, xp=jnp))
    logp = k.log_softmax(x, xp=jnp)
    lattice = k.Lattice(labels, label_lengths, logit_lengths, blank, x.shape[2], x.dtype, xp=jnp)
    emit = k.emissions(logp, lattice, xp=jnp)
    emit_by_frame = jnp.moveaxis(emit, 1, 0)  # (T, B, S)
    frames = jnp.arange(x.shape[1], dtype=label_lengths.dtype)

    def forward_step(alpha: Any, step: tuple[Any, Any]) -> tuple[Any, Any]:
        emit_t, t = step
        alpha = k.alpha_step(alpha, emit_t, t, lattice, xp=jnp)
        return alpha, (alpha if want_grad else None)

    alpha, alphas = lax.scan(forward_step, k.initial_alpha(lattice, x.dtype, xp=jnp), (emit_by_frame, frames))
    log_p = k.log_likelihood(alpha, lattice, xp=jnp)
    loss = (-log_p).astype(logits.dtype)
    if not want_grad:
        return loss, None
    terminal = k.terminal_beta(lattice, x.dtype, xp=jnp)

    def backward_step(beta: Any, step: tuple[Any, Any]) -> tuple[Any, Any]:
        emit_t, t = step
        return k.beta_step(beta, emit_t, t, lattice, terminal, xp=jnp), beta

    _, betas = lax.scan(backward_step, terminal, (emit_by_frame, frames), reverse=True)
    grad = k.gradient(logp, log_p, jnp.moveaxis(alphas, 0, 1), jnp.moveaxis(betas, 0, 1), lattice, xp=jnp)
    return loss, grad.astype(logits.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def _ctc(labels: Any, logits: Any, label_lengths: Any, logit_lengths: Any, blank: int) -> Any:
    return _run(labels, logits, label_lengths, logit_lengths, blank, want_grad=False)[0]


def _ctc_forward(labels: Any, logits: Any, label_lengths: Any, logit_lengths: Any,
                 blank: int) -> tuple[Any, Any]:
    loss, grad = _run(labels, logits, label_lengths, logit_lengths, blank, want_grad=True)
    return loss, grad


def _ctc_backward(blank: int, grad: Any, g: Any) -> tuple[None, Any, None, None]:
    return None, grad * g.astype(grad.dtype)[:, None, None], None, None


_ctc.defvjp(_ctc_forward, _ctc_backward)

# Eager calls compile the whole loss once per shape rather than each of its many
# small operations (inside a caller's jit this is inlined).
_ctc_jit = jax.jit(_ctc, static_argnums=(4,))


@fast_path("ctc_loss", backend="jax")
def ctc_loss(labels: Any, logits: Any, label_lengths: Any, logit_lengths: Any, *, blank_index: int, xp: Any) -> Any:
    if logits.dtype not in (jnp.float32, jnp.float64) or logits.shape[1] == 0:
        return NotImplemented
    return _ctc_jit(labels, logits, label_lengths, logit_lengths, blank_index)
