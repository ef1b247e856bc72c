"""PyTorch fast path of categorical focal cross-entropy from logits: one compiled pass with the gradient.

CPU float32 logits (float16/bfloat16 arrive as float32) go to the kernel of
``probloss._native._softmax_grad`` (src/probloss/_native/softmax_focal_grad_impl.h),
registered as the ``torch.library`` custom op ``probloss::focal_softmax_rows_cpu``
(opaque to ``torch.compile``, with a fake implementation). It returns the
per-row loss and, when a gradient is wanted, ``dL/dx = p·C - c`` computed in
float64 per labelled entry in the same call, scaled by the gradient the
``Loss``'s reduction is expected to send back (:mod:`probloss._grad_hint`) so
that backward usually has nothing to do (see
:class:`probloss._backends._torch.SoftmaxCrossEntropy`, whose backward this
shares). The same passes give the logits' bounds and the labels' range, which
the data checks of ``validate`` read instead of passes of their own (as for
softmax cross-entropy). Plain eager calls (:func:`probloss._backends._torch._plain_eager`)
run the op's function directly, through a ``forward(ctx, ...)`` Function
(:class:`_EagerFocalSoftmax`): the op's dispatch and a ``setup_context``
Function's argument binding cost tens of microseconds a call; modes and tensor
subclasses still see the op. Rows the kernel leaves NaN or infinite (NaN or +inf logits, no finite
logit, a label on a ``-inf`` logit) are recomputed by the generic kernel, its
gradient by autograd. Everything else declines to the generic kernel: other
devices and dtypes, labels that require grad, ``torch.func`` transforms, a
per-class ``alpha`` on a class axis that is not last, probabilities.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .. import _native
from .._dispatch import GENERIC, Observed, fast_path
from . import _torch as base

Tensor = torch.Tensor

_module = _native.softmax_grad
AVAILABLE: bool = _module is not None and bool(getattr(_module, "AVAILABLE", 0))


def _kernel_rows(x: Tensor, labels: Tensor, alpha: list[float], gamma: float, grad: Tensor | None,
                 row_scale: Tensor | None, scale: float, bounds: Tensor | None) -> Tensor:
    """Loss rows of ``(R, C)`` float32 CPU rows; gradient rows into ``grad`` scaled by ``scale·row_scale[r]``.

    ``bounds``: None or a float32 ``(2, R, 2)`` tensor receiving each row's
    minimum (NaN where the row holds one) and maximum logit in ``bounds[0]``,
    and in ``bounds[1]`` each row's minimum and maximum label (NaN, NaN for a
    row holding a label the kernel does not vouch for: NaN, inf, a negative
    number or -0.0), from the kernel's own passes, as
    :func:`probloss._backends._torch._kernel_rows` gives them for softmax
    cross-entropy: the data checks of ``validate`` read them instead of passes
    of their own.
    """
    rows, classes = x.shape
    loss = np.empty(rows, np.float32)
    factors = None if row_scale is None else row_scale.detach().to(torch.float32).contiguous().numpy()
    views = None if bounds is None else bounds.numpy()
    _module.focal_softmax_ce_grad(x.detach().numpy(), labels.detach().numpy(), classes,
                                  np.asarray(alpha, np.float64), float(gamma), loss,
                                  None if grad is None else grad.detach().numpy(), factors, float(scale),
                                  _native.threads(), None if views is None else views[0],
                                  None if views is None else views[1])
    return torch.from_numpy(loss)


def _generic_rows(x: Tensor, labels: Tensor, alpha: list[float], gamma: float, want_grad: bool,
                  factors: Tensor | None) -> tuple[Tensor, Tensor | None]:
    """The generic kernel's loss on a few rows and (``want_grad``) its autograd gradient times ``factors``."""
    import array_api_compat.torch as xp

    static = {"alpha": alpha[0] if len(alpha) == 1 else tuple(alpha), "gamma": gamma, "from_logits": True,
              "epsilon": 1e-7, "xp": xp}
    with torch.enable_grad():
        rows = x.detach().requires_grad_(want_grad)
        loss = GENERIC["categorical_focal_crossentropy"](labels.detach(), rows, axis=1, **static)
        if not want_grad:
            return loss.detach(), None
        (grad,) = torch.autograd.grad(loss, rows, grad_outputs=factors.to(loss.dtype))
    return loss.detach(), grad


def _finish(x: Tensor, labels: Tensor, alpha: list[float], gamma: float, loss: Tensor, grad: Tensor | None,
            row_scale: Tensor | None, scale: float) -> None:
    """Recompute, in place, the rows the kernel left non-finite."""
    bad = ~torch.isfinite(loss)
    if not bool(bad.any()):
        return
    factors = torch.full((int(bad.sum()),), scale, dtype=torch.float32)
    if row_scale is not None:
        factors = factors * row_scale[bad].to(torch.float32)
    values, rows_grad = _generic_rows(x[bad], labels[bad], alpha, gamma, grad is not None, factors)
    loss[bad] = values.to(loss.dtype)
    if grad is not None and rows_grad is not None:
        grad[bad] = rows_grad.to(grad.dtype)


def focal_softmax_rows_eager(x: Tensor, labels: Tensor, alpha: list[float], gamma: float, want_grad: bool,
                             row_scale: Tensor | None, scale: float,
                             want_bounds: bool) -> tuple[Tensor, Tensor, Tensor]:
    """The compiled kernel on ``(R, C)`` rows: ``(loss, grad or empty, bounds (2, R, 2) or empty)``.

    The function of the custom op ``probloss::focal_softmax_rows_cpu``, called
    directly where nothing needs the op (:func:`probloss._backends._torch._plain_eager`):
    the op's dispatch and argument binding cost more than a small call's kernel.
    """
    x, labels = x.contiguous(), labels.contiguous()
    grad = torch.empty_like(x) if want_grad else None
    bounds = x.new_empty((2, x.shape[0], 2)) if want_bounds else None
    loss = _kernel_rows(x, labels, alpha, gamma, grad, row_scale, scale, bounds)
    return (loss, grad if grad is not None else x.new_empty(0),
            bounds if bounds is not None else x.new_empty(0))


if AVAILABLE:
    focal_softmax_rows_cpu = torch.library.custom_op("probloss::focal_softmax_rows_cpu", focal_softmax_rows_eager,
                                                     mutates_args=(), device_types="cpu")

    @focal_softmax_rows_cpu.register_fake
    def _(x: Tensor, labels: Tensor, alpha: list[float], gamma: float, want_grad: bool, row_scale: Tensor | None,
          scale: float, want_bounds: bool) -> tuple[Tensor, Tensor, Tensor]:
        return (x.new_empty(x.shape[0]), torch.empty_like(x) if want_grad else x.new_empty(0),
                x.new_empty((2, x.shape[0], 2)) if want_bounds else x.new_empty(0))


class FocalSoftmax(torch.autograd.Function):
    """Per-row categorical focal cross-entropy of ``(R, C)`` float32 CPU logits (labels without gradient)."""

    @staticmethod
    def forward(labels: Tensor, x: Tensor, alpha: list[float], gamma: float, want_grad: bool, fused: bool,
                row_scale: Tensor | None, scale: float, want_bounds: bool) -> tuple[Tensor, Tensor, Tensor]:
        # The op's own function where nothing needs the op (see focal_softmax_rows_eager).
        kernel = focal_softmax_rows_eager if base._plain_eager(x, labels) else torch.ops.probloss.focal_softmax_rows_cpu
        loss, grad, bounds = kernel(x, labels, alpha, gamma, want_grad, row_scale, scale, want_bounds)
        # Outside the op: the generic kernel's gradient of those rows needs autograd.
        _finish(x, labels, alpha, gamma, loss, grad if want_grad else None, row_scale, scale)
        return loss, grad, bounds

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, ...]) -> None:
        labels, x, alpha, gamma, want_grad, fused, row_scale, scale, _ = inputs
        _, grad, bounds = output
        ctx.alpha, ctx.gamma = alpha, gamma
        ctx.fused = None
        if fused and want_grad:
            ctx.fused = {"grad": grad, "row_scale": row_scale, "scale": scale}
            ctx.save_for_backward(x, labels)  # the caller's tensors: no memory
        else:
            ctx.save_for_backward(grad)
        ctx.set_materialize_grads(False)
        ctx.mark_non_differentiable(grad, bounds)

    @staticmethod
    def backward(ctx: Any, grad_loss: Tensor, *_: Any) -> tuple[Tensor | None, ...]:
        if grad_loss is None or not ctx.needs_input_grad[1]:
            return (None,) * 9
        if ctx.fused is None:
            return None, ctx.saved_tensors[0] * grad_loss[:, None], *(None,) * 7

        def recompute(out: Tensor, factors: Tensor) -> None:
            x, labels = ctx.saved_tensors
            loss = _kernel_rows(x, labels, ctx.alpha, ctx.gamma, out, factors, 1.0, None)
            _finish(x, labels, ctx.alpha, ctx.gamma, loss, out, factors, 1.0)

        return None, base._fused_backward(ctx, grad_loss, recompute), *(None,) * 7


class _EagerFocalSoftmax(torch.autograd.Function):
    """:class:`FocalSoftmax` with a ``forward(ctx, ...)`` of its own, for plain eager calls.

    The same forward, context and backward; only ``apply`` differs: a Function
    with ``setup_context`` binds its arguments to ``forward``'s signature on
    every call (``inspect.signature``), which this style skips (as
    :class:`probloss._backends._torch._EagerSoftmaxCrossEntropy` does).
    """

    @staticmethod
    def forward(ctx: Any, *inputs: Any) -> tuple[Tensor, ...]:  # type: ignore[override]
        output = FocalSoftmax.forward(*inputs)
        FocalSoftmax.setup_context(ctx, inputs, output)
        return output

    @staticmethod
    def backward(ctx: Any, *grads: Any) -> tuple[Tensor | None, ...]:
        return FocalSoftmax.backward(ctx, *grads)


@fast_path("categorical_focal_crossentropy", backend="torch", observes=True)
def categorical_focal_crossentropy(y_true: Tensor, y_pred: Tensor, *, alpha: float | tuple[float, ...], gamma: float,
                                   from_logits: bool, axis: int, epsilon: float, xp: Any,
                                   observe: Observed | None = None) -> Any:
    per_class = isinstance(alpha, tuple | list)
    if (not AVAILABLE or not from_logits or y_pred.device.type != "cpu" or not base._native(y_true, y_pred)
            or y_pred.numel() == 0 or y_true.requires_grad or base._traced()
            or (per_class and axis != y_pred.ndim - 1)):
        return NotImplemented
    rows_x = base._to_rows(y_pred, axis)
    rows_labels = base._to_rows(y_true, axis)
    want_grad = base._wants_grad(y_pred)
    fused = (want_grad and rows_x.data_ptr() == y_pred.data_ptr() and rows_labels.data_ptr() == y_true.data_ptr())
    values_shape = tuple(y_pred.shape[:axis]) + tuple(y_pred.shape[axis + 1:])
    row_scale, scale = base._expected_gradient(values_shape) if fused else (None, 1.0)
    weights = [float(a) for a in alpha] if per_class else [float(alpha)]
    function = _EagerFocalSoftmax if base._plain_eager(rows_x, rows_labels) else FocalSoftmax
    loss, _, bounds = function.apply(rows_labels, rows_x, weights, float(gamma), want_grad, fused, row_scale,
                                     scale, observe is not None)
    if observe is not None:
        base._report_bounds(observe, bounds.numpy(), dense=True)
    return base._from_rows(loss, y_pred, axis)


def categorical_focal_loss_direct(loss: Any, y_true: Any, y_pred: Tensor) -> Tensor | None:
    """``CategoricalFocalCrossentropy(from_logits=True)(y_true, y_pred)`` of its common eager CPU call, or None.

    The common call of :func:`probloss._backends._torch.categorical_loss_direct`
    (:func:`probloss._backends._torch.common_dense_call`, the kernel built), for
    focal cross-entropy: the general path's ~400 Python calls (~0.4 ms of a
    4096 x 1000 forward + backward) become the same Function
    (:class:`_EagerFocalSoftmax`) with the same arguments and the same reduction
    ops, so value and gradient are the general path's, bit for bit. The data
    checks are settled by every loss being finite (no NaN or +inf logit, a
    finite one in every row) and the kernel's per-row bounds: labels in
    ``[0, 1]`` (a row the kernel does not vouch for leaves NaN there), logits
    that do not look like probabilities. Anything else returns None, and the
    general path runs the call again and raises, warns or returns.
    """
    if not (AVAILABLE and base.common_dense_call(loss, y_true, y_pred)):
        return None
    kw = loss._values_kwargs
    alpha = kw["alpha"]
    weights = [float(a) for a in alpha] if isinstance(alpha, tuple | list) else [float(alpha)]
    if len(weights) not in (1, y_pred.shape[-1]):
        return None  # the general path reports the mismatch
    mode = base.short_way_mode(loss)
    rows_x, rows_labels, want_grad, scale = base.short_way_rows(loss, y_true, y_pred)
    values, _, bounds = _EagerFocalSoftmax.apply(rows_labels, rows_x, weights, float(kw["gamma"]), want_grad,
                                                 want_grad, None, scale, mode != "off")
    if mode != "off":
        b = bounds.numpy()
        low, high = float(b[0, :, 0].min()), float(b[0, :, 1].max())  # NaN anywhere: NaN
        label_low, label_high = float(b[1, :, 0].min()), float(b[1, :, 1].max())
        # every loss finite, as the kernel's summary says for softmax CE: no NaN or +inf logit, a finite
        # logit in every row (and no label on a -inf logit, which the checks allow: the general path
        # then runs, as for CategoricalCrossentropy)
        finite = bool(torch.isfinite(values).all())
        if not base._checks_settled(mode, [finite, low, high, label_low, label_high]):
            return None  # data the checks refuse or warn about, or rows they read themselves
    return base.reduce_rows(values, y_pred, loss.reduction)
