"""PyTorch fast paths of the binary family: binary CE (logits, probabilities), binary focal CE, Poisson, KL.

Two implementations, chosen per call on static properties only:

- CPU float32 tensors outside ``torch.func`` transforms, whose labels need no
  gradient, run the compiled one-pass kernels of ``probloss._native._binary``
  (src/probloss/_native/binary.c), zero-copy through NumPy views of the
  tensors' memory, as one ``torch.library`` custom op (``probloss::binary_rows_cpu``)
  with a fake implementation (``torch.compile`` sees one opaque op, no graph
  break) and a registered autograd formula. When the prediction requires grad,
  the same pass writes ``d loss[r] / d x[r, c]`` (the mean's ``1/cols``
  included) into one tensor of the input's size; backward only scales it by the
  incoming gradient, in place on that tensor (which autograd then hands on as
  the gradient: no second full-size tensor). A second backward through a
  retained graph recomputes it. Rows whose value comes out NaN or inf are
  recomputed by the generic kernel (value and gradient, by autograd).
- everything else (CUDA, float64 compute, traced label gradients, vmap) runs the
  torch-ops ``autograd.Function`` classes below (binary CE from logits,
  Poisson, KL) or declines to the generic kernel (binary CE from
  probabilities, binary focal CE), which stays the reference.

Accuracy is that of the generic kernels (docs/accuracy.md): the compiled
kernels follow their formulas (float64 where those compute in float64), and
so do the torch-ops paths:

- binary cross-entropy from logits is the generic float32 formula
  ``log1p(e) + y·relu(-x) + (1-y)·relu(x)``, ``e = exp(-|x|)``, with the
  gradient ``sigmoid(x) - y`` formed without ``1 - (1 - tiny)``;
- Poisson and KL divergence are computed in float64 and rounded once.

Gradients with respect to ``y_true`` (soft labels are differentiable in Keras)
are returned by the torch-ops paths: ``-x`` for binary cross-entropy,
``-log(p + ε)`` for Poisson and ``log(t/p) + 1`` inside the clip range for KL.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from .._dispatch import GENERIC, Observed, fast_path
from ._torch import _native, _wants_grad

Tensor = torch.Tensor

# Kernel kinds of probloss._native._binary (its KIND_* constants).
BCE_LOGITS, BCE_PROBS, FOCAL_LOGITS, FOCAL_PROBS, POISSON, KL = range(6)
_GENERIC_NAMES = {BCE_LOGITS: "binary_crossentropy", BCE_PROBS: "binary_crossentropy",
                  FOCAL_LOGITS: "binary_focal_crossentropy", FOCAL_PROBS: "binary_focal_crossentropy",
                  POISSON: "poisson", KL: "kl_divergence"}


# ------------------------------------------------------------ the compiled CPU op


def _float32(value: float) -> float:
    """``value`` rounded to float32 (to nearest, ties to even), in plain Python.

    Plain arithmetic, so that torch.compile folds it (``tensor.item()`` would break the graph).
    """
    mantissa, exponent = math.frexp(value)
    return math.ldexp(round(mantissa * 2.0**24), exponent - 24)


def _generic_rows(kind: int, static: dict[str, Any], y: Tensor, x: Tensor,
                  want_grad: bool) -> tuple[Tensor, Tensor]:
    """The generic kernel's per-row values of ``(y, x)`` rows, and their gradient.

    The gradient comes from ``torch.func.grad`` (autograd is off inside a custom op's implementation).
    """
    import array_api_compat.torch as xp

    kernel = GENERIC[_GENERIC_NAMES[kind]]
    y = y.detach()

    def total(v: Tensor) -> tuple[Tensor, Tensor]:
        values = kernel(y, v, axis=1, xp=xp, **static)
        return values.sum(), values

    if not want_grad:
        return total(x.detach())[1].to(x.dtype), x.new_empty(0)
    grad, values = torch.func.grad(total, has_aux=True)(x.detach())
    return values.to(x.dtype), grad


def _static_of(kind: int, params: list[float]) -> dict[str, Any]:
    """The generic kernel's static arguments for ``kind`` from the op's ``params``."""
    if kind == BCE_LOGITS:
        return {"from_logits": True, "epsilon": params[0]}
    if kind == BCE_PROBS:
        return {"from_logits": False, "epsilon": params[0]}
    if kind in (FOCAL_LOGITS, FOCAL_PROBS):
        return {"from_logits": kind == FOCAL_LOGITS, "gamma": params[1], "alpha": params[2],
                "apply_class_balancing": bool(params[3]), "epsilon": params[0]}
    return {"epsilon": params[0]}


def _kernel_params(kind: int, params: list[float]) -> tuple[float, ...]:
    """The compiled kernel's parameters (binary.c) from the op's ``params`` (ε first)."""
    eps = params[0]
    lo, hi = _float32(eps), _float32(1.0 - eps)
    if kind == BCE_LOGITS:
        return ()
    if kind == BCE_PROBS:
        return (lo, hi)
    if kind in (FOCAL_LOGITS, FOCAL_PROBS):
        gamma = params[1]
        mode = gamma if gamma in (0.0, 1.0, 2.0) else 3.0
        return (gamma, mode, params[2], params[3], lo, hi)
    return (lo,)  # Poisson's ε, KL's lower clip bound: ε rounded to float32


def _compute_rows(kind: int, y: Tensor, x: Tensor, params: list[float], mean: bool,
                  want_grad: bool) -> tuple[Tensor, Tensor, Tensor]:
    from .. import _native as native

    grad = torch.empty_like(x, memory_format=torch.contiguous_format) if want_grad else x.new_empty(0)
    loss = x.new_empty(x.shape[0])
    cols = x.shape[1]
    bounds = torch.tensor([math.inf, -math.inf, math.inf, -math.inf], dtype=torch.float64)
    if x.numel():
        # Zero-copy: NumPy views of the tensors' memory (any strides); the kernel writes
        # loss and grad in place, with the GIL released.
        nonfinite, *found = native.binary.row_losses(kind, y.detach().numpy(), x.detach().numpy(), loss.numpy(),
                                                     float(cols) if mean else 1.0, native.threads(),
                                                     grad.numpy() if want_grad else None,
                                                     _kernel_params(kind, params))
        bounds = torch.tensor(found, dtype=torch.float64)
        if nonfinite:  # rows the generic kernel defines (non-finite inputs, invalid data)
            bad = ~torch.isfinite(loss)
            values, row_grad = _generic_rows(kind, _static_of(kind, params), y[bad], x[bad], want_grad)
            loss[bad] = values  # a mean over the row, or its sum (KL), as the kernel's
            if want_grad:
                grad[bad] = row_grad
    elif want_grad:
        grad.zero_()
    return loss, grad, bounds


def _register_compiled() -> Callable[..., Any] | None:
    """Register ``probloss::binary_rows_cpu`` where the compiled extension is built; None elsewhere."""
    from .. import _native as native

    if native.binary is None:
        return None

    @torch.library.custom_op("probloss::binary_rows_cpu", mutates_args=(), device_types="cpu")
    def binary_rows_cpu(kind: int, y: Tensor, x: Tensor, params: list[float], mean: bool,
                        want_grad: bool) -> tuple[Tensor, Tensor, Tensor]:
        """Per-row loss of float32 ``(rows, cols)`` inputs (mean or sum), its gradient if asked, and
        the bounds ``[min y, max y, min x, max x]`` (float64; NaN where the input holds one)."""
        return _compute_rows(kind, y, x, params, mean, want_grad)

    @binary_rows_cpu.register_fake
    def _(kind: int, y: Tensor, x: Tensor, params: list[float], mean: bool,
          want_grad: bool) -> tuple[Tensor, Tensor, Tensor]:
        return (x.new_empty(x.shape[0]),
                torch.empty_like(x, memory_format=torch.contiguous_format) if want_grad else x.new_empty(0),
                x.new_empty(4, dtype=torch.float64))

    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, Tensor, Tensor]) -> None:
        kind, y, x, params, mean, _ = inputs
        ctx.spec = (kind, params, mean)
        ctx.save_for_backward(y, x)  # the caller's tensors: kept only to recompute after a retained backward
        ctx.grad = output[1]  # released by the first backward, so that it can be handed on in place
        ctx.mark_non_differentiable(output[1], output[2])
        ctx.set_materialize_grads(False)

    def backward(ctx: Any, grad_loss: Tensor, *_: Any) -> tuple[None, None, Tensor | None, None, None, None]:
        if grad_loss is None or not ctx.needs_input_grad[2]:
            return None, None, None, None, None, None
        grad, ctx.grad = ctx.grad, None
        scale = grad_loss[:, None]
        if grad is None or (grad.numel() == 0 and grad_loss.numel() != 0):
            # A second backward through a retained graph (the first consumed the
            # gradient), or a forward that did not compute it: recompute.
            kind, params, mean = ctx.spec
            y, x = ctx.saved_tensors
            grad = torch.ops.probloss.binary_rows_cpu(kind, y, x, params, mean, True)[1]
            return None, None, grad * scale, None, None, None
        if type(grad) is Tensor and not scale.requires_grad:  # eager: scale the tensor we own, in place
            return None, None, grad.mul_(scale), None, None, None
        return None, None, grad * scale, None, None, None  # traced (torch.compile) or double backward

    binary_rows_cpu.register_autograd(backward, setup_context=setup_context)
    return binary_rows_cpu


_BINARY_ROWS_CPU = _register_compiled()


def _compiled_applies(y: Tensor, x: Tensor) -> bool:
    """Whether the compiled op serves these tensors (a static decision: dtype, device, transforms)."""
    return (_BINARY_ROWS_CPU is not None and x.device.type == "cpu" and y.device.type == "cpu"
            and x.dtype == torch.float32 and y.dtype == torch.float32 and y.shape == x.shape
            and not (y.requires_grad and torch.is_grad_enabled())
            and not torch._C._are_functorch_transforms_active())


def _compiled_rows(kind: int, y_true: Tensor, y_pred: Tensor, axis: int, params: list[float],
                   observe: Observed | None, mean: bool = True) -> Tensor:
    """Run the compiled op on ``axis``-last rows; the result has ``y_pred``'s shape without ``axis``.

    With ``observe``, the inputs' bounds from the same pass go there (eager calls only).
    """
    x = torch.movedim(y_pred, axis, -1)
    y = torch.movedim(y_true, axis, -1)
    shape = x.shape[:-1]
    cols = x.shape[-1]
    loss, _, bounds = torch.ops.probloss.binary_rows_cpu(kind, y.reshape(-1, cols), x.reshape(-1, cols), params,
                                                         mean, _wants_grad(y_pred))
    if observe is not None:
        y_lo, y_hi, x_lo, x_hi = bounds.tolist()
        observe.bounds[0] = (y_lo, y_hi)
        observe.bounds[1] = (x_lo, x_hi)
    return loss.reshape(shape)


def _observable(y_true: Tensor, y_pred: Tensor, observe: Observed | None) -> bool:
    """Whether this call can run here: without ``observe``, or with it where the compiled op applies eagerly."""
    return observe is None or (_compiled_applies(y_true, y_pred) and not torch.compiler.is_compiling())


# ------------------------------------------------------------ binary cross-entropy from logits (torch ops)


def _zero_safe(product: Tensor) -> Tensor:
    """Read the NaN of ``0 * inf`` in ``product`` as 0 (a zero weight ignores an infinite term).

    A NaN input is NaN in the other terms of the loss as well, so it still
    reaches the result.
    """
    return torch.nan_to_num_(product, nan=0.0, posinf=math.inf, neginf=-math.inf)


def binary_rows(x: Tensor, y: Tensor, n: int, want_grad: bool = True) -> tuple[Tensor, Tensor]:
    """Return the per-element binary cross-entropy of logits ``x`` and ``(sigmoid(x) - y)/n``.

    The gradient is empty unless ``want_grad``.
    """
    e = torch.abs(x).neg_().exp_()  # exp(-|x|)
    loss = torch.log1p(e)
    # y·relu(-x) + (1-y)·relu(x): non-negative terms, as the generic kernel.
    one_minus_y = 1 - y
    loss.add_(_zero_safe(one_minus_y * torch.clamp(x, min=0)))
    loss.sub_(_zero_safe(y * torch.clamp(x, max=0)))
    if not want_grad:
        return loss, x.new_empty(0)
    # sigmoid(x) - y = (1 - y) - q for x >= 0 and q - y below, q = e/(1+e) = sigmoid(-|x|):
    # no 1 - (1 - tiny), so a confident correct logit keeps its tiny gradient.
    q = e.div_(1 + e)
    positive = x >= 0
    grad = torch.where(positive, one_minus_y - q, q - y)
    return loss, grad.div_(n)


class BinaryCrossEntropy(torch.autograd.Function):
    """Mean over the last axis of the binary cross-entropy of float32 logits."""

    generate_vmap_rule = True

    @staticmethod
    def forward(y: Tensor, x: Tensor, want_grad: bool) -> tuple[Tensor, Tensor]:
        per_element, grad = binary_rows(x, y, x.shape[-1], want_grad)
        return per_element.mean(dim=-1), grad

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, ...]) -> None:
        _, x, _ = inputs
        ctx.label_grad = ctx.needs_input_grad[0]
        ctx.save_for_backward(output[1], x if ctx.label_grad else None)
        ctx.set_materialize_grads(False)  # no zero tensors for the gradient outputs' own gradients
        ctx.mark_non_differentiable(output[1])

    @staticmethod
    def backward(ctx: Any, grad_loss: Tensor, _: Any) -> tuple[Tensor | None, Tensor | None, None]:
        grad, x = ctx.saved_tensors
        scale = grad_loss[..., None]
        grad_x = grad * scale if ctx.needs_input_grad[1] else None
        # d/dy of y·relu(-x) + (1-y)·relu(x) = -x, per element of the mean.
        grad_y = x * (-scale / x.shape[-1]) if ctx.label_grad else None
        return grad_y, grad_x, None


@fast_path("binary_crossentropy", backend="torch", observes=True)
def binary_crossentropy(y_true: Tensor, y_pred: Tensor, *, from_logits: bool, axis: int, epsilon: float,
                        xp: Any, observe: Observed | None = None) -> Any:
    if y_pred.numel() == 0 or not _native(y_true, y_pred) or not _observable(y_true, y_pred, observe):
        return NotImplemented
    if _compiled_applies(y_true, y_pred):
        return _compiled_rows(BCE_LOGITS if from_logits else BCE_PROBS, y_true, y_pred, axis, [float(epsilon)],
                              observe)
    if not from_logits:
        return NotImplemented
    y, x = torch.movedim(y_true, axis, -1), torch.movedim(y_pred, axis, -1)
    return BinaryCrossEntropy.apply(y, x, _wants_grad(y_pred))[0]


@fast_path("binary_focal_crossentropy", backend="torch", observes=True)
def binary_focal_crossentropy(y_true: Tensor, y_pred: Tensor, *, apply_class_balancing: bool, alpha: float,
                              gamma: float, from_logits: bool, axis: int, epsilon: float, xp: Any,
                              observe: Observed | None = None) -> Any:
    if (y_pred.numel() == 0 or not _native(y_true, y_pred) or not _compiled_applies(y_true, y_pred)
            or not _observable(y_true, y_pred, observe)):
        return NotImplemented
    params = [float(epsilon), float(gamma), float(alpha), float(bool(apply_class_balancing))]
    return _compiled_rows(FOCAL_LOGITS if from_logits else FOCAL_PROBS, y_true, y_pred, axis, params, observe)


# ------------------------------------------------------------ Poisson and KL divergence (torch ops)


class Poisson(torch.autograd.Function):
    """``mean(p - t·log(p + ε))`` over the last axis, in float64, rounded once."""

    generate_vmap_rule = True

    @staticmethod
    def forward(t: Tensor, p: Tensor, epsilon: float, want_grad: bool) -> tuple[Tensor, Tensor]:
        eps = torch.tensor(epsilon, dtype=p.dtype, device=p.device).to(torch.float64)  # ε in p's dtype
        p64 = p.to(torch.float64)
        shifted = p64 + eps
        t64 = t.to(torch.float64)
        loss = (p64 - t64 * torch.log(shifted)).mean(dim=-1).to(p.dtype)
        if not want_grad:
            return loss, p.new_empty(0)
        # d/dp = (1 - t/(p + ε))/n, rounded once.
        grad = ((1 - t64 / shifted) / p.shape[-1]).to(p.dtype)
        return loss, grad

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, ...]) -> None:
        _, p, epsilon, _ = inputs
        ctx.epsilon = epsilon
        ctx.save_for_backward(output[1], p if ctx.needs_input_grad[0] else None)
        ctx.set_materialize_grads(False)  # no zero tensors for the gradient outputs' own gradients
        ctx.mark_non_differentiable(output[1])

    @staticmethod
    def backward(ctx: Any, grad_loss: Tensor, _: Any) -> tuple[Tensor | None, Tensor | None, None, None]:
        grad, p = ctx.saved_tensors
        scale = grad_loss[..., None]
        grad_p = grad * scale if ctx.needs_input_grad[1] else None
        grad_t = None
        if ctx.needs_input_grad[0]:  # d/dt = -log(p + ε)/n
            eps = torch.tensor(ctx.epsilon, dtype=p.dtype, device=p.device)
            grad_t = (torch.log(p.to(torch.float64) + eps.to(torch.float64)) * (-scale / p.shape[-1])).to(p.dtype)
        return grad_t, grad_p, None, None


@fast_path("poisson", backend="torch", observes=True)
def poisson(y_true: Tensor, y_pred: Tensor, *, axis: int, epsilon: float, xp: Any,
            observe: Observed | None = None) -> Any:
    if not _native(y_true, y_pred) or y_pred.numel() == 0 or not _observable(y_true, y_pred, observe):
        return NotImplemented
    if _compiled_applies(y_true, y_pred):
        return _compiled_rows(POISSON, y_true, y_pred, axis, [float(epsilon)], observe)
    y, p = torch.movedim(y_true, axis, -1), torch.movedim(y_pred, axis, -1)
    return Poisson.apply(y, p, epsilon, _wants_grad(y_pred))[0]


def _clip_unit(x: Tensor, epsilon: float) -> Tensor:
    """Keras's clip of a float32 distribution to ``[ε, 1]`` (ε rounded to float32), in float64."""
    return torch.clamp(x, _float32(epsilon), 1.0).to(torch.float64)


def _inside(x: Tensor, epsilon: float) -> Tensor:
    """Where the clip to ``[ε, 1]`` passes gradients (bounds included, as ``torch.clamp``)."""
    return (x >= _float32(epsilon)) & (x <= 1.0)


class KLDivergence(torch.autograd.Function):
    """``sum(t·log(t/p))`` over the last axis of ``t, p`` clipped to ``[ε, 1]``, in float64."""

    generate_vmap_rule = True

    @staticmethod
    def forward(t: Tensor, p: Tensor, epsilon: float, want_grad: bool) -> tuple[Tensor, Tensor]:
        tc, pc = _clip_unit(t, epsilon), _clip_unit(p, epsilon)
        # log(t/p) = log1p((t - p)/p): t - p of float32 numbers is exact in float64, so
        # near t = p, where the terms of both signs cancel in the sum, each keeps ~2⁻⁵²
        # of its own size (log of the rounded ratio would be off by 2⁻⁵³ absolute).
        ratio = (tc - pc).div_(pc)  # t/p - 1
        loss = (tc * torch.log1p(ratio)).sum(dim=-1).to(p.dtype)
        if not want_grad:
            return loss, p.new_empty(0)
        # d/dp = -t/p inside the clip range.
        grad = ratio.add_(1).mul_(_inside(p, epsilon)).neg_().to(p.dtype)
        return loss, grad

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, ...]) -> None:
        t, p, epsilon, _ = inputs
        ctx.epsilon = epsilon
        label_grad = ctx.needs_input_grad[0]
        ctx.save_for_backward(output[1], t if label_grad else None, p if label_grad else None)
        ctx.set_materialize_grads(False)  # no zero tensors for the gradient outputs' own gradients
        ctx.mark_non_differentiable(output[1])

    @staticmethod
    def backward(ctx: Any, grad_loss: Tensor, _: Any) -> tuple[Tensor | None, Tensor | None, None, None]:
        grad, t, p = ctx.saved_tensors
        scale = grad_loss[..., None]
        grad_p = grad * scale if ctx.needs_input_grad[1] else None
        grad_t = None
        if ctx.needs_input_grad[0]:  # d/dt = log(t/p) + 1 inside the clip range
            tc, pc = _clip_unit(t, ctx.epsilon), _clip_unit(p, ctx.epsilon)
            grad_t = ((torch.log1p((tc - pc) / pc) + 1) * _inside(t, ctx.epsilon) * scale).to(t.dtype)
        return grad_t, grad_p, None, None


@fast_path("kl_divergence", backend="torch", observes=True)
def kl_divergence(y_true: Tensor, y_pred: Tensor, *, axis: int, epsilon: float, xp: Any,
                  observe: Observed | None = None) -> Any:
    if not _native(y_true, y_pred) or y_pred.numel() == 0 or not _observable(y_true, y_pred, observe):
        return NotImplemented
    if _compiled_applies(y_true, y_pred):
        return _compiled_rows(KL, y_true, y_pred, axis, [float(epsilon)], observe, mean=False)
    y, p = torch.movedim(y_true, axis, -1), torch.movedim(y_pred, axis, -1)
    return KLDivergence.apply(y, p, epsilon, _wants_grad(y_pred))[0]
