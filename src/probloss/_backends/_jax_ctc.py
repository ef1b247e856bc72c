"""JAX fast path of the CTC loss: ``jax.custom_vjp`` with the analytic gradient.

The forward pass computes the loss and its gradient ``softmax - occupancy``
together and keeps the gradient as the residual; the backward pass only scales
it by the cotangent, so ``jax.grad`` never differentiates through the
recursion. Works under ``jit``, ``vmap`` and ``grad``. Two implementations,
chosen per platform when the computation is lowered
(``lax.platform_dependent``, so a CPU-placed computation on a GPU machine still
gets the CPU one):

- CPU, where the extension is built: the compiled kernel of the NumPy path
  (:func:`probloss._backends._numpy_ctc.compiled_ctc`) through
  ``jax.pure_callback``: one host call computes every sample's loss and gradient
  in float64 (also where ``jax_enable_x64`` is off) and rounds once; it threads
  over the batch. Under ``vmap`` the callback gets the mapped axes in front
  (``vmap_method="broadcast_all"``) and runs them as one larger batch.
- other platforms, and CPU without the extension: the generic kernel's
  recursions under ``lax.scan`` (one compiled step, not ``T`` unrolled ones):
  alpha forward, beta in reverse, in float64 where ``jax_enable_x64`` is on
  (float32 otherwise: see docs/accuracy.md).

``scan_ctc`` and ``callback_ctc`` are the two, exposed for the parity tests.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .._dispatch import fast_path
from .._kernels import _ctc as k
from .._numerics import wide_dtype

try:
    from . import _numpy_ctc
except ImportError:  # pragma: no cover - the module ships with probloss
    _numpy_ctc = None

__all__ = ["COMPILED", "callback_ctc", "ctc_loss", "scan_ctc"]

#: Whether the CPU platform runs the compiled kernel (the extension is built).
COMPILED = _numpy_ctc is not None and _numpy_ctc.AVAILABLE


def _varying_like(value: Any, labels: Any, x: Any, label_lengths: Any, logit_lengths: Any) -> Any:
    """``value`` (batch first) typed as varying over the ``shard_map`` mesh axes that any input varies over.

    Under ``shard_map`` an array's type includes the mesh axes it varies over,
    and two places need it to be the type of the computation's result: a
    ``lax.scan`` carry (the initial alpha and beta are built from shapes and
    the label lengths, so they vary over fewer axes than the step's output,
    which mixes in this shard's logits, labels and lengths), and the two
    branches of ``lax.platform_dependent`` (``pure_callback``'s results are
    typed as varying over no axis, the scan's over the inputs' axes). An
    operation's result varies wherever one of its operands does, so selecting
    ``value`` under a predicate computed from every input gives ``value``
    unchanged with that type (the predicate's value is irrelevant; XLA folds the
    select away). This needs no version-specific API (``lax.pcast``/``pvary``
    and the type attributes they read have changed between JAX releases);
    outside ``shard_map`` it is a no-op.
    """
    anchor = ((label_lengths != 0) | (logit_lengths != 0) | jnp.any(labels != 0, axis=1)
              | jnp.any(x[:, :1, :1] != 0, axis=(1, 2)))
    return jnp.where(jnp.reshape(anchor, anchor.shape + (1,) * (value.ndim - 1)), value, value)


def _scan(labels: Any, logits: Any, label_lengths: Any, logit_lengths: Any, blank: int,
          want_grad: bool) -> tuple[Any, Any]:
    """Loss (in ``logits``' dtype) and, with ``want_grad``, its gradient, by ``lax.scan``."""
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

    inputs = (labels, x, label_lengths, logit_lengths)
    alpha_0 = _varying_like(k.initial_alpha(lattice, x.dtype, xp=jnp), *inputs)
    alpha, alphas = lax.scan(forward_step, alpha_0, (emit_by_frame, frames))
    log_p = k.log_likelihood(alpha, lattice, xp=jnp)
    loss = (-log_p).astype(logits.dtype)
    if not want_grad:
        return loss, None
    terminal = k.terminal_beta(lattice, x.dtype, xp=jnp)

    def backward_step(beta: Any, step: tuple[Any, Any]) -> tuple[Any, Any]:
        emit_t, t = step
        return k.beta_step(beta, emit_t, t, lattice, terminal, xp=jnp), beta

    _, betas = lax.scan(backward_step, _varying_like(terminal, *inputs), (emit_by_frame, frames), reverse=True)
    grad = k.gradient(logp, log_p, jnp.moveaxis(alphas, 0, 1), jnp.moveaxis(betas, 0, 1), lattice, xp=jnp)
    return loss, grad.astype(logits.dtype)


def _host(labels: np.ndarray, logits: np.ndarray, label_lengths: np.ndarray, logit_lengths: np.ndarray, *,
          blank: int, want_grad: bool) -> tuple[np.ndarray, ...]:
    """The callback: the compiled kernel on host arrays, any leading (``vmap``) axes as more samples."""
    lead, samples = logits.shape[:-2], int(np.prod(logits.shape[:-2]))
    loss, grad = _numpy_ctc.compiled_ctc(labels.reshape(samples, labels.shape[-1]),
                                         logits.reshape(samples, *logits.shape[-2:]), label_lengths.reshape(samples),
                                         logit_lengths.reshape(samples), blank, want_grad)
    loss = loss.astype(logits.dtype).reshape(lead)
    return (loss, grad.reshape(logits.shape)) if want_grad else (loss,)


def _callback(labels: Any, logits: Any, label_lengths: Any, logit_lengths: Any, blank: int,
              want_grad: bool) -> tuple[Any, Any]:
    """Loss (in ``logits``' dtype) and, with ``want_grad``, its gradient, by the compiled kernel."""
    shapes = (jax.ShapeDtypeStruct(logits.shape[:1], logits.dtype),)
    if want_grad:
        shapes += (jax.ShapeDtypeStruct(logits.shape, logits.dtype),)
    out = jax.pure_callback(functools.partial(_host, blank=blank, want_grad=want_grad), shapes, labels, logits,
                            label_lengths, logit_lengths, vmap_method="broadcast_all")
    out = [_varying_like(o, labels, logits, label_lengths, logit_lengths) for o in out]
    return out[0], (out[1] if want_grad else None)


def _compute(labels: Any, logits: Any, label_lengths: Any, logit_lengths: Any, blank: int,
             want_grad: bool) -> tuple[Any, Any]:
    scan = functools.partial(_scan, blank=blank, want_grad=want_grad)
    if not COMPILED:
        return scan(labels, logits, label_lengths, logit_lengths)
    callback = functools.partial(_callback, blank=blank, want_grad=want_grad)
    return lax.platform_dependent(labels, logits, label_lengths, logit_lengths, cpu=callback, default=scan)


def _make(compute: Any) -> Any:
    """The loss ``(labels, logits, label_lengths, logit_lengths, blank) -> loss`` with the analytic VJP."""

    @functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
    def ctc(labels: Any, logits: Any, label_lengths: Any, logit_lengths: Any, blank: int) -> Any:
        return compute(labels, logits, label_lengths, logit_lengths, blank, want_grad=False)[0]

    def forward(labels: Any, logits: Any, label_lengths: Any, logit_lengths: Any, blank: int) -> tuple[Any, Any]:
        return compute(labels, logits, label_lengths, logit_lengths, blank, want_grad=True)

    def backward(blank: int, grad: Any, g: Any) -> tuple[None, Any, None, None]:
        return None, grad * g.astype(grad.dtype)[:, None, None], None, None

    ctc.defvjp(forward, backward)
    return ctc


_ctc = _make(_compute)
#: The ``lax.scan`` implementation on every platform (the non-CPU path), for the parity tests.
scan_ctc = _make(_scan)
#: The compiled-kernel implementation on every platform (CPU only), for the parity tests.
callback_ctc = _make(_callback) if COMPILED else None

# Eager calls compile the whole loss once per shape rather than each of its many
# small operations (inside a caller's jit this is inlined).
_ctc_jit = jax.jit(_ctc, static_argnums=(4,))


@fast_path("ctc_loss", backend="jax")
def ctc_loss(labels: Any, logits: Any, label_lengths: Any, logit_lengths: Any, *, blank_index: int, xp: Any) -> Any:
    if logits.dtype not in (jnp.float32, jnp.float64) or logits.shape[1] == 0:
        return NotImplemented
    return _ctc_jit(labels, logits, label_lengths, logit_lengths, blank_index)
