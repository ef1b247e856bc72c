"""PyTorch fast path of the CTC loss: an ``autograd.Function`` with the analytic gradient.

The forward pass runs the log-space forward-backward algorithm once and keeps
``d loss / d logits`` (``softmax - occupancy``); the backward pass only scales
it by the incoming gradient, so autograd never differentiates through the
recursion. On CPU the compiled kernel (:mod:`probloss._backends._numpy_ctc`)
runs it, as a ``torch.library`` custom op (opaque to ``torch.compile``); on other
devices, and where the extension is missing, the generic kernel runs on the
tensors themselves (float64, so also on CUDA).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import array_api_compat.torch as torch_namespace
import torch
from torch import Tensor

from .._dispatch import fast_path
from .._kernels._ctc import ctc_loss_and_gradient

__all__ = ["CTCLoss", "ctc_loss"]

#: The compiled CPU implementation ``(labels, logits, label_lengths, logit_lengths, blank,
#: want_grad) -> (loss float64, grad)``, registered below when the extension is built.
CPU_KERNEL: dict[str, Callable[..., Any]] = {}


def _generic(labels: Tensor, logits: Tensor, label_lengths: Tensor, logit_lengths: Tensor, blank: int,
             want_grad: bool) -> tuple[Tensor, Tensor]:
    with torch.no_grad():
        loss, grad = ctc_loss_and_gradient(labels, logits.detach(), label_lengths, logit_lengths, blank_index=blank,
                                           gradient=want_grad, xp=torch_namespace)
    return loss, (grad.to(logits.dtype) if grad is not None else logits.new_empty(0))


def _compute(labels: Tensor, logits: Tensor, label_lengths: Tensor, logit_lengths: Tensor, blank: int,
             want_grad: bool) -> tuple[Tensor, Tensor]:
    cpu = CPU_KERNEL.get("ctc")
    if cpu is not None and logits.device.type == "cpu" and logits.dtype in (torch.float32, torch.float64):
        return cpu(labels, logits, label_lengths, logit_lengths, blank, want_grad)
    return _generic(labels, logits, label_lengths, logit_lengths, blank, want_grad)


class CTCLoss(torch.autograd.Function):
    """Per-sample CTC loss of ``(B, T, K)`` logits; the gradient from the forward-backward pass."""

    @staticmethod
    def forward(labels: Tensor, logits: Tensor, label_lengths: Tensor, logit_lengths: Tensor, blank: int,
                want_grad: bool) -> tuple[Tensor, Tensor]:
        loss, grad = _compute(labels, logits, label_lengths, logit_lengths, blank, want_grad)
        return loss.to(logits.dtype), grad

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, ...]) -> None:
        ctx.save_for_backward(output[1])
        ctx.set_materialize_grads(False)
        ctx.mark_non_differentiable(output[1])

    @staticmethod
    def backward(ctx: Any, grad_loss: Tensor, *_: Any) -> tuple[None, Tensor | None, None, None, None, None]:
        (grad,) = ctx.saved_tensors
        if grad_loss is None or not ctx.needs_input_grad[1]:
            return None, None, None, None, None, None
        return None, grad * grad_loss.to(grad.dtype)[:, None, None], None, None, None, None


def _register_compiled() -> None:
    try:
        from . import _numpy_ctc
    except ImportError:  # pragma: no cover - the module ships with probloss
        return
    if not _numpy_ctc.AVAILABLE:
        return

    @torch.library.custom_op("probloss::ctc_cpu", mutates_args=(), device_types="cpu")
    def ctc_cpu(labels: Tensor, logits: Tensor, label_lengths: Tensor, logit_lengths: Tensor, blank: int,
                want_grad: bool) -> tuple[Tensor, Tensor]:
        loss, grad = _numpy_ctc.compiled_ctc(labels.detach().numpy(), logits.detach().numpy(),
                                             label_lengths.detach().numpy(), logit_lengths.detach().numpy(),
                                             blank, want_grad)
        return torch.from_numpy(loss), (torch.from_numpy(grad) if want_grad else logits.new_empty(0))

    @ctc_cpu.register_fake
    def _(labels: Tensor, logits: Tensor, label_lengths: Tensor, logit_lengths: Tensor, blank: int,
          want_grad: bool) -> tuple[Tensor, Tensor]:
        loss = logits.new_empty(logits.shape[0], dtype=torch.float64)
        return loss, (torch.empty_like(logits) if want_grad else logits.new_empty(0))

    CPU_KERNEL["ctc"] = ctc_cpu


_register_compiled()


@fast_path("ctc_loss", backend="torch")
def ctc_loss(labels: Tensor, logits: Tensor, label_lengths: Tensor, logit_lengths: Tensor, *, blank_index: int,
             xp: Any) -> Any:
    if logits.dtype not in (torch.float32, torch.float64) or logits.device.type == "mps":
        return NotImplemented  # the public function computes low precision in float32 already
    want_grad = torch.is_grad_enabled() and logits.requires_grad
    loss, _ = CTCLoss.apply(labels, logits, label_lengths, logit_lengths, blank_index, want_grad)
    return loss
