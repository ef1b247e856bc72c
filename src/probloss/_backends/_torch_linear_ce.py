"""Fused linear cross-entropy on PyTorch: a chunked ``torch.autograd.Function``.

Torch operations only (no NumPy, no host synchronisation), so the same code runs on
CUDA tensors and under ``torch.compile``. With a reducing reduction the gradients are
computed during the forward pass, chunk by chunk, and saved: the backward pass only
scales them by the incoming gradient, so a training step costs three matmuls over the
vocabulary and never recomputes the logits. With ``reduction="none"`` the backward
pass recomputes the logits with the incoming per-token gradients.
"""

from __future__ import annotations

from typing import Any

import torch

from .._kernels._linear_ce import LinearCEOptions

__all__ = ["linear_ce_grads", "linear_ce_sum", "linear_ce_values"]


def _chunks(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
            labels: torch.Tensor, coef: torch.Tensor | None, valid: torch.Tensor | None,
            options: LinearCEOptions) -> tuple[torch.Tensor, tuple[Any, Any, Any] | None]:
    """Per-token losses and, with ``coef``, the gradients of ``sum(coef * L)``.

    Computes in ``hidden``'s dtype (float32 or float64; the caller upcasts half
    precision). A label outside ``[0, V)`` that is not ignored gives a NaN loss
    (the data checks that raise for it need eager tensors).
    """
    n, d = hidden.shape
    v = weight.shape[0]
    smoothing, zl, cap = options.label_smoothing, options.z_loss, options.logit_softcap
    grads = coef is not None
    pieces, d_hidden_pieces = [], []
    d_weight = torch.zeros_like(weight) if grads else None
    d_bias = torch.zeros_like(bias) if grads and bias is not None else None
    weight_t = weight.t()
    for start in range(0, n, options.chunk_rows):
        stop = min(n, start + options.chunk_rows)
        h = hidden[start:stop]
        y = labels[start:stop]
        in_range = (y >= 0) & (y < v)
        if valid is not None:
            keep = valid[start:stop]
            h = torch.where(keep[:, None], h, torch.zeros_like(h))
            in_range = in_range | ~keep
        y = torch.where(in_range, y, torch.zeros_like(y))
        if valid is not None:
            y = torch.where(keep, y, torch.zeros_like(y))
        z = torch.addmm(bias, h, weight_t) if bias is not None else h @ weight_t
        tanh = None
        if cap is not None:
            tanh = torch.tanh(z.mul_(1.0 / cap))
            z = torch.mul(tanh, cap, out=z)
        # One [rows, V] buffer, transformed in place: logits -> exp(z - max) -> dL/dz.
        picked = z.gather(1, y[:, None]).squeeze(1)
        total = z.sum(dim=1) if smoothing else None
        top = z.amax(dim=1)
        e = z.sub_(top[:, None]).exp_()
        norm = e.sum(dim=1)
        lse = top + torch.log(norm)
        loss = lse - (1.0 - smoothing) * picked
        if smoothing:
            loss = loss - (smoothing / v) * total
        if zl:
            loss = loss + zl * lse * lse
        if valid is not None:
            loss = torch.where(keep, loss, torch.zeros_like(loss))
        loss = torch.where(in_range, loss, torch.full_like(loss, float("nan")))
        pieces.append(loss)
        if not grads:
            del z, e, tanh  # as below: one chunk's logits alive at a time
            continue
        c = coef[start:stop]
        g = e.mul_((c * (1.0 + 2.0 * zl * lse) / norm)[:, None])
        g.scatter_add_(1, y[:, None], (-(1.0 - smoothing) * c)[:, None])
        if smoothing:
            g.sub_((c * (smoothing / v))[:, None])
        if tanh is not None:
            g.mul_(tanh.mul_(tanh).neg_().add_(1.0))
        d_hidden_pieces.append(g @ weight)
        d_weight.addmm_(g.t(), h)
        if d_bias is not None:
            d_bias.add_(g.sum(dim=0))
        # Drop this chunk's [rows, V] buffer before the next chunk's matmul allocates its own:
        # held until the names were rebound, two chunks' logits were alive at once (a slower
        # step, measured: 17.3 s -> 13.0 s at N=4096, D=1024, V=64000).
        del z, e, g, tanh
    if not pieces:  # no tokens
        empty = hidden.new_zeros((0,))
        return empty, ((hidden.new_zeros((0, d)), d_weight, d_bias) if grads else None)
    losses = torch.cat(pieces)
    if not grads:
        return losses, None
    return losses, (torch.cat(d_hidden_pieces), d_weight, d_bias)


def _upcast(x: torch.Tensor | None) -> torch.Tensor | None:
    if x is None or x.dtype in (torch.float32, torch.float64):
        return x
    return x.float()


def _cast_like(grad: torch.Tensor | None, like: torch.Tensor | None) -> torch.Tensor | None:
    if grad is None or like is None:
        return None
    return grad.to(like.dtype)


class _LinearCESum(torch.autograd.Function):
    """``sum_i coef_i L_i`` with the gradients computed in the forward pass."""

    @staticmethod
    def forward(ctx: Any, hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                labels: torch.Tensor, coef: torch.Tensor, valid: torch.Tensor | None,
                options: LinearCEOptions, want_grads: bool) -> torch.Tensor:
        losses, grads = _chunks(_upcast(hidden), _upcast(weight), _upcast(bias), labels,
                                coef.to(_upcast(hidden).dtype) if want_grads else None, valid, options)
        # The sum of the per-token terms in float64 (float32 on devices without it would
        # still be accurate to about sqrt(N) ulps).
        value = (losses.double() * coef.double()).sum().to(losses.dtype)
        if want_grads:
            d_hidden, d_weight, d_bias = grads
            ctx.save_for_backward(_cast_like(d_hidden, hidden), _cast_like(d_weight, weight),
                                  _cast_like(d_bias, bias), losses.to(coef.dtype))
        return value

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[Any, ...]:
        d_hidden, d_weight, d_bias, losses = ctx.saved_tensors
        g = grad_output
        # Scaled in place: the saved gradients are this graph's own buffers, and a [V, D]
        # copy would be the largest temporary of the step. A second backward through the
        # same graph (retain_graph=True) is refused by autograd's version check.
        return (d_hidden.mul_(g.to(d_hidden.dtype)), d_weight.mul_(g.to(d_weight.dtype)),
                None if d_bias is None else d_bias.mul_(g.to(d_bias.dtype)), None,
                losses * g.to(losses.dtype), None, None, None)


class _LinearCEValues(torch.autograd.Function):
    """Per-token ``coef_i L_i`` (reduction ``"none"``); the backward pass recomputes."""

    @staticmethod
    def forward(ctx: Any, hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                labels: torch.Tensor, coef: torch.Tensor, valid: torch.Tensor | None,
                options: LinearCEOptions) -> torch.Tensor:
        losses, _ = _chunks(_upcast(hidden), _upcast(weight), _upcast(bias), labels, None, valid, options)
        ctx.options = options
        ctx.save_for_backward(hidden, weight, bias, labels, coef, valid, losses)
        return losses * coef.to(losses.dtype)

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[Any, ...]:
        hidden, weight, bias, labels, coef, valid, losses = ctx.saved_tensors
        h = _upcast(hidden)
        _, (d_hidden, d_weight, d_bias) = _chunks(
            h, _upcast(weight), _upcast(bias), labels, (coef * grad_output).to(h.dtype), valid, ctx.options)
        return (_cast_like(d_hidden, hidden), _cast_like(d_weight, weight), _cast_like(d_bias, bias), None,
                (losses * grad_output.to(losses.dtype)).to(coef.dtype), None, None)


def linear_ce_sum(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                  labels: torch.Tensor, coef: torch.Tensor, valid: torch.Tensor | None,
                  options: LinearCEOptions) -> torch.Tensor:
    """``sum(coef * L)``, differentiable in hidden, weight, bias and coef."""
    want_grads = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (hidden, weight, bias, coef))
    return _LinearCESum.apply(hidden, weight, bias, labels, coef, valid, options, want_grads)


def linear_ce_values(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                     labels: torch.Tensor, coef: torch.Tensor, valid: torch.Tensor | None,
                     options: LinearCEOptions) -> torch.Tensor:
    """Per-token ``coef * L``, differentiable in hidden, weight, bias and coef."""
    return _LinearCEValues.apply(hidden, weight, bias, labels, coef, valid, options)


def linear_ce_grads(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                    labels: torch.Tensor, coef: torch.Tensor, valid: torch.Tensor | None,
                    options: LinearCEOptions) -> tuple[torch.Tensor, tuple[Any, Any, Any]]:
    """``sum(coef * L)`` and its gradients in hidden, weight and bias, without autograd."""
    with torch.no_grad():
        h = _upcast(hidden)
        losses, (d_hidden, d_weight, d_bias) = _chunks(h, _upcast(weight), _upcast(bias), labels,
                                                       coef.to(h.dtype), valid, options)
        value = (losses.double() * coef.double()).sum().to(losses.dtype)
    return value, (_cast_like(d_hidden, hidden), _cast_like(d_weight, weight), _cast_like(d_bias, bias))
