"""PyTorch fast paths: few-pass forwards with analytic backwards (``torch.autograd.Function``).

The generic kernels run op by op through ``array_api_compat.torch``: dozens of
full-size passes forward, and as many again in autograd's backward through them.
The paths here compute each loss with a handful of torch's own ops and return,
from the forward pass, the gradient that the backward pass only scales by the
incoming gradient (the approach of fused large-vocabulary cross-entropy
kernels): softmax minus target, sigmoid minus target, the Poisson and KL
derivatives. At most one tensor of the logits' size is kept for backward.

Every path takes float32 inputs (float16 and bfloat16 arrive as float32: the
public functions compute them so) on a device with float64; anything else
declines (``NotImplemented``, a static decision) to the generic kernel, which
stays the reference. Accuracy is that of the generic kernels (docs/accuracy.md):

- softmax cross-entropy from logits (dense and sparse labels) is computed in
  float64, a chunk of rows at a time: ``x - max`` of two float32 numbers is
  exact in float64, so ``S'`` (the sum of ``exp(x - max)`` without one maximal
  entry) and every gradient entry keep their last bits with no TwoSum, and the
  label's entry of a dominant class is ``-S'/(1 + S')``, never ``p - 1``;
- binary cross-entropy from logits is the generic float32 formula
  ``log1p(e) + y·relu(-x) + (1-y)·relu(x)``, ``e = exp(-|x|)``, with the
  gradient ``sigmoid(x) - y`` formed without ``1 - (1 - tiny)``;
- Poisson and KL divergence are computed in float64 and rounded once.

Gradients with respect to ``y_true`` (soft labels are differentiable in Keras)
are returned where the labels require grad: ``-log_softmax`` (zero only where
the label is 0 and the slope infinite, as the generic kernel's zero-safe product), ``-x`` for binary
cross-entropy, ``-log(p + ε)`` for Poisson and ``log(t/p) + 1`` inside the clip
range for KL. Integer labels get none.

Every function is pure torch (no NumPy), so the same code runs on CUDA, traces
under ``torch.compile`` without a graph break, and runs under ``torch.func``
transforms (``generate_vmap_rule``). Chunking is skipped while compiling (the
compiler fuses the ops itself).

CPU float32 inputs can instead be served by compiled one-pass kernels: see
:data:`CPU_KERNELS`, filled by the compiled extension when it is present.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from typing import Any

import torch

from .._dispatch import Observed, fast_path

Tensor = torch.Tensor

# Elements of float64 temporaries per chunk of rows: large enough that torch's
# per-op overhead is small, small enough to stay near the cache and to bound the
# extra memory of a large batch.
CHUNK_ELEMENTS = 1 << 17

#: Compiled CPU implementations of the row computations, by name (filled below when
#: the compiled extension loads): ``softmax_rows(x, labels, dense, want_grad, row_scale,
#: scale, want_bounds) -> (loss float32 rows, grad scaled by scale·row_scale[r], bounds)``,
#: bounds ``(1, R, 2)`` (sparse) or ``(2, R, 2)`` (dense): each row's logit minimum and
#: maximum, and for dense labels each row's label range (:func:`_kernel_rows`), from the
#: kernel's own passes; a ``torch.library`` custom op (opaque to torch.compile, with a fake
#: implementation). Used for CPU float32 tensors outside torch.func transforms when the
#: labels need no gradient; the torch-ops code below serves everything else.
CPU_KERNELS: dict[str, Callable[..., Any]] = {}


def _native(*tensors: Tensor) -> bool:
    """True for float32 tensors on a device with float64 (MPS has none: generic path)."""
    first = tensors[-1]
    return first.dtype == torch.float32 and first.device.type != "mps" and all(
        t.dtype == torch.float32 for t in tensors if t.is_floating_point())


def _traced() -> bool:
    """True under ``torch.compile`` or a ``torch.func`` transform: one chunk, no writes into buffers.

    The compiler fuses the ops itself, and ``vmap`` cannot copy a batched chunk
    into an unbatched buffer.
    """
    return bool(torch.compiler.is_compiling()) or bool(torch._C._are_functorch_transforms_active())


def _row_chunks(rows: int, columns: int) -> list[tuple[int, int]]:
    """Return ``(start, stop)`` row ranges of about :data:`CHUNK_ELEMENTS` elements each."""
    if rows * columns <= CHUNK_ELEMENTS or _traced():
        return [(0, rows)]
    step = max(1, CHUNK_ELEMENTS // max(columns, 1))
    return [(start, min(start + step, rows)) for start in range(0, rows, step)]


def _to_rows(x: Tensor, axis: int) -> Tensor:
    """Return ``x`` as a contiguous ``(rows, classes)`` tensor with ``axis`` last."""
    return torch.movedim(x, axis, -1).reshape(-1, x.shape[axis]).contiguous()


def _from_rows(values: Tensor, x: Tensor, axis: int) -> Tensor:
    """Reshape per-row values to ``x``'s shape without ``axis``."""
    return values.reshape(x.shape[:axis] + x.shape[axis + 1:])


# ------------------------------------------------------------ softmax cross-entropy from logits


def softmax_rows(x: Tensor, labels: Tensor, dense: bool,
                 want_grad: bool = True) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Softmax cross-entropy of float32 logit rows ``x`` ``(R, C)`` and its gradient.

    ``labels``: ``(R, C)`` float32 targets (``dense``) or ``(R,)`` int64 class
    indices in ``[0, C)``. Returns ``(loss, grad, m, log1p_rest)``: the float64
    per-row loss ``sum(t·(m - x)) + T·log1p(S')`` (``T = sum(t)``), the float32
    gradient ``T·softmax(x) - t`` with respect to ``x`` (empty unless
    ``want_grad``), and the float32 row
    maximum and float64 ``log1p(S')`` from which ``-log_softmax`` is rebuilt.
    Rows without a finite maximum (+inf, NaN, all -inf) are NaN, as the generic
    kernel's.
    """
    rows, classes = x.shape
    chunks = _row_chunks(rows, classes)
    if len(chunks) == 1:
        return _softmax_chunk(x, labels, dense, want_grad, x.to(torch.float64))
    # One float64 buffer for every chunk (a fresh allocation per chunk costs page faults).
    buffer = torch.empty((chunks[0][1], classes), dtype=torch.float64, device=x.device)
    loss = torch.empty(rows, dtype=torch.float64, device=x.device)
    log_rest = torch.empty(rows, dtype=torch.float64, device=x.device)
    maxima = torch.empty(rows, dtype=x.dtype, device=x.device)
    grad = torch.empty_like(x) if want_grad else x.new_empty(0)
    for start, stop in chunks:
        block = x[start:stop]
        shifted = buffer[:stop - start].copy_(block)
        parts = _softmax_chunk(block, labels[start:stop], dense, want_grad, shifted)
        loss[start:stop], chunk_grad, maxima[start:stop], log_rest[start:stop] = parts
        if want_grad:
            grad[start:stop] = chunk_grad
    return loss, grad, maxima, log_rest


def _scatter(x: Tensor, index: Tensor, values: Tensor, *, add: bool = False) -> Tensor:
    """Write (or add) one value per row of ``x`` at column ``index``: in place, except under transforms.

    ``vmap`` has batching rules for the out-of-place ``scatter`` only.
    """
    if _traced():
        return x.scatter_add(1, index, values) if add else x.scatter(1, index, values)
    return x.scatter_add_(1, index, values) if add else x.scatter_(1, index, values)


def _softmax_chunk(block: Tensor, labels: Tensor, dense: bool, want_grad: bool,
                   shifted: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """:func:`softmax_rows` of one chunk; ``shifted`` holds ``block`` in float64 and is overwritten."""
    m, top = torch.max(block, dim=1, keepdim=True)
    shifted.sub_(m)  # exact: a difference of two float32 numbers fits in float64
    if dense:
        total = labels.sum(dim=1, keepdim=True, dtype=torch.float64)
        # sum(t·(m - x)): a -inf logit's gap is huge but finite here, so a zero label
        # times it is 0 (the generic kernel's zero-safe product) and a positive label's
        # term still rounds to inf in float32.
        gaps = torch.clamp(shifted, min=-torch.finfo(torch.float64).max)
        label_term = -torch.linalg.vecdot(gaps, labels.to(torch.float64), dim=1)
        del gaps
        at_top = torch.gather(labels, 1, top).to(torch.float64)
    else:
        k = labels[:, None]
        total = torch.ones_like(m, dtype=torch.float64)
        label_term = -torch.gather(shifted, 1, k)[:, 0]
        at_top = (k == top).to(torch.float64)
    e = shifted.exp_()
    e = _scatter(e, top, torch.zeros_like(m, dtype=e.dtype))  # one maximal entry leaves the sum; ties stay in it as 1s
    rest = e.sum(dim=1, keepdim=True)
    rest = torch.where(torch.isfinite(m), rest, torch.full_like(rest, math.nan))
    log1p_rest = torch.log1p(rest)
    loss = label_term + (total * log1p_rest)[:, 0]
    if not want_grad:
        return loss, block.new_empty(0), m[:, 0], log1p_rest[:, 0]
    # T·p_i - t_i with p_i = e_i / (1 + S'); the maximum's entry is set below.
    e.mul_(total / (1 + rest))
    if dense:
        e.sub_(labels)
    else:
        e = _scatter(e, k, torch.full_like(at_top, -1.0), add=True)
    # At the maximum: (T - t_top) - T·S'/(1 + S') when the label holds most of the mass
    # there (no 1/(1 + S') - 1, which rounds a dominant class's tiny gradient to 0),
    # else T/(1 + S') - t_top.
    share = total * rest / (1 + rest)
    top_value = torch.where(2 * at_top >= total, (total - at_top) - share, total - share - at_top)
    e = _scatter(e, top, top_value)
    return loss, e.to(block.dtype), m[:, 0], log1p_rest[:, 0]


def _plain_eager(*tensors: Tensor) -> bool:
    """Whether plain tensors are computed eagerly: no compiler, no transform, mode or tensor subclass to see an op.

    There the compiled kernel's custom op may be skipped for the function it
    wraps (the same computation); anything else goes through the op.
    """
    return (not torch.compiler.is_compiling() and not torch._C._are_functorch_transforms_active()
            and not torch._C._len_torch_dispatch_stack() and not torch._C._is_torch_function_mode_enabled()
            and all(type(t) is Tensor or type(t) is torch.nn.Parameter for t in tensors))


def _compiled_kernel_runs(x: Tensor, label_grad: bool) -> bool:
    """Whether :func:`_softmax_compute` takes the compiled kernel (else the torch-ops code)."""
    functorch = bool(torch._C._are_functorch_transforms_active())  # vmap: no batching rule for the op
    return "softmax_rows" in CPU_KERNELS and x.device.type == "cpu" and not label_grad and not functorch


def _softmax_compute(x: Tensor, labels: Tensor, dense: bool, want_grad: bool, label_grad: bool,
                     row_scale: Tensor | None = None, scale: float = 1.0, want_bounds: bool = False,
                     summary: list[Any] | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Loss rows, gradient, and (compiled kernel only) the row bounds of :data:`CPU_KERNELS`.

    The gradient is ``scale·row_scale``-scaled only on the compiled path.
    ``summary``: None, or a list that receives the compiled kernel's summary
    (:func:`_kernel_rows`) where that kernel runs outside the custom op (plain
    eager calls); it stays empty elsewhere.
    """
    if _compiled_kernel_runs(x, label_grad):
        # The op's own function where nothing needs the op (it costs a dispatch and an argument binding)
        if _plain_eager(x, labels):
            loss, grad, bounds = CPU_KERNELS["softmax_rows_eager"](x, labels, dense, want_grad, row_scale, scale,
                                                                   want_bounds, summary)
        else:
            loss, grad, bounds = CPU_KERNELS["softmax_rows"](x, labels, dense, want_grad, row_scale, scale,
                                                             want_bounds)
        return loss, grad, x.new_empty(0), x.new_empty(0, dtype=torch.float64), bounds
    return (*softmax_rows(x, labels, dense, want_grad), x.new_empty(0))


def _kernel_rows(x: Tensor, labels: Tensor, dense: bool, grad: Tensor | None, row_scale: Tensor | None,
                 scale: float, bounds: Tensor | None = None, summary: list[Any] | None = None) -> Tensor:
    """Run the compiled kernel on CPU float32 rows, writing ``scale·row_scale[r]``-scaled gradient rows into ``grad``.

    Returns the float32 loss rows. Rows the kernel leaves NaN (NaN or +inf
    logits, no finite logit) are recomputed by :func:`softmax_rows`. ``bounds``:
    None or a float32 tensor of shape ``(1, R, 2)`` (sparse) or ``(2, R, 2)``
    (dense) receiving in ``bounds[0]`` each row's minimum (NaN where the row
    holds one) and maximum logit, from the kernel's first pass, and in
    ``bounds[1]`` each row's minimum and maximum label (NaN, NaN for a row
    holding a label the kernel does not vouch for: NaN, inf, a negative number
    or -0.0), from its pass over the labels: the data checks of ``validate``
    read them instead of passes of their own. ``summary``: None, or a list that
    receives the kernel's summary ``[finite, low, high, label_low, label_high]``
    (:func:`probloss._backends._native_softmax.softmax_cross_entropy`): whether
    every loss row is finite, and the columns' minimum and maximum of
    ``bounds[0]`` and ``bounds[1]``, which :func:`_report_summary` reports
    without a pass over ``bounds`` (NaN where not asked for).
    """
    from . import _native_softmax

    # Zero-copy: the NumPy views share the tensors' memory; the kernel writes grad in place.
    factors = None if row_scale is None else row_scale.detach().to(torch.float32).contiguous().numpy()
    views = None if bounds is None else bounds.numpy()
    result: list[Any] = [] if summary is None else summary
    common = {"grad_out": None if grad is None else grad.detach().numpy(), "row_scale": factors, "scale": scale,
              "row_bounds": None if views is None else views[0], "summary": result}
    if dense:
        loss = _native_softmax.softmax_cross_entropy(x.detach().numpy(), labels.detach().contiguous().numpy(),
                                                     label_bounds=None if views is None else views[1], **common)
    else:
        loss = _native_softmax.softmax_cross_entropy_sparse(x.detach().numpy(),
                                                            labels.detach().contiguous().numpy(), **common)
    loss = torch.from_numpy(loss)
    # Whether every row is finite, from the kernel's call (two torch ops less right after it)
    if not result[0]:  # rows the kernel leaves to the reference
        bad = ~torch.isfinite(loss)
        redo = softmax_rows(x[bad], labels[bad], dense, grad is not None)
        loss[bad] = redo[0].to(loss.dtype)
        if grad is not None:
            factor = redo[1].new_full((1,), scale) if row_scale is None else row_scale[bad].to(redo[1].dtype) * scale
            grad[bad] = redo[1] * factor.reshape(-1, 1)
    return loss


def _register_compiled_softmax() -> None:
    """Serve CPU float32 softmax rows with the compiled one-pass kernels, where they are built."""
    try:
        from . import _native_softmax
    except ImportError:  # pragma: no cover - the module ships with probloss
        return
    if not _native_softmax.AVAILABLE:
        return

    def softmax_rows_eager(x: Tensor, labels: Tensor, dense: bool, want_grad: bool, row_scale: Tensor | None,
                           scale: float, want_bounds: bool,
                           summary: list[Any] | None = None) -> tuple[Tensor, Tensor, Tensor]:
        x = x.contiguous()
        grad = torch.empty_like(x) if want_grad else None
        bounds = x.new_empty((2 if dense else 1, x.shape[0], 2)) if want_bounds else None
        loss = _kernel_rows(x, labels, dense, grad, row_scale, scale, bounds, summary)
        return (loss, grad if grad is not None else x.new_empty(0),
                bounds if bounds is not None else x.new_empty(0))

    def softmax_rows_op(x: Tensor, labels: Tensor, dense: bool, want_grad: bool, row_scale: Tensor | None,
                        scale: float, want_bounds: bool) -> tuple[Tensor, Tensor, Tensor]:
        return softmax_rows_eager(x, labels, dense, want_grad, row_scale, scale, want_bounds)

    # the op's schema comes from the signature: the eager function's `summary` (a list) has none
    softmax_rows_cpu = torch.library.custom_op("probloss::softmax_rows_cpu", softmax_rows_op, mutates_args=(),
                                               device_types="cpu")

    @softmax_rows_cpu.register_fake
    def _(x: Tensor, labels: Tensor, dense: bool, want_grad: bool, row_scale: Tensor | None,
          scale: float, want_bounds: bool) -> tuple[Tensor, Tensor, Tensor]:
        return (x.new_empty(x.shape[0]), torch.empty_like(x) if want_grad else x.new_empty(0),
                x.new_empty((2 if dense else 1, x.shape[0], 2)) if want_bounds else x.new_empty(0))

    CPU_KERNELS["softmax_rows"] = softmax_rows_cpu
    CPU_KERNELS["softmax_rows_eager"] = softmax_rows_eager


_register_compiled_softmax()


def _softmax_forward(labels: Tensor, x: Tensor, dense: bool, want_grad: bool, fused: bool,
                     row_scale: Tensor | None, scale: float, want_bounds: bool,
                     summary: list[Any] | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """The forward of :class:`SoftmaxCrossEntropy` and :class:`_EagerSoftmaxCrossEntropy`.

    ``summary`` (the eager class's only): as in :func:`_softmax_compute`. Not a
    parameter of ``SoftmaxCrossEntropy.forward``: a default argument there
    breaks torch.compile's graph (measured: 7 breaks in a forward without
    gradient).
    """
    if not fused:
        row_scale, scale = None, 1.0
    loss, grad, maxima, log_rest, bounds = _softmax_compute(x, labels, dense, want_grad, labels.requires_grad,
                                                            row_scale, scale, want_bounds, summary)
    return loss.to(x.dtype), grad, maxima, log_rest, bounds


class SoftmaxCrossEntropy(torch.autograd.Function):
    """Per-row softmax cross-entropy of ``(R, C)`` float32 logits; dense or sparse labels.

    ``fused`` (eager CPU float32 only, labels without gradient, ``x`` and
    ``labels`` the caller's tensors so that keeping them costs no memory): the
    compiled kernel writes the gradient already multiplied by the gradient the
    reduction is expected to send back (``scale·row_scale[r]``, from the
    ``Loss``'s :mod:`probloss._grad_hint`), and keeps it on ``ctx`` rather
    than as a saved tensor, so that backward can hand over that very tensor:
    no pass and no allocation when the expected gradient arrives, one in-place
    multiplication when nothing was expected, and an exact recomputation from
    ``x`` into the same buffer otherwise (or on a second backward through a
    retained graph). Elsewhere the gradient of the forward pass is saved and
    multiplied by the incoming one.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(labels: Tensor, x: Tensor, dense: bool, want_grad: bool, fused: bool,
                row_scale: Tensor | None, scale: float,
                want_bounds: bool) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        return _softmax_forward(labels, x, dense, want_grad, fused, row_scale, scale, want_bounds)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, ...]) -> None:
        labels, x, dense, want_grad, fused, row_scale, scale, _ = inputs
        _, grad, maxima, log_rest, bounds = output
        ctx.dense = dense
        ctx.label_grad = dense and ctx.needs_input_grad[0]
        ctx.fused = None
        if fused and want_grad and not ctx.label_grad:
            ctx.fused = {"grad": grad, "row_scale": row_scale, "scale": scale}
            ctx.save_for_backward(x, labels)  # the caller's tensors: no memory
        elif ctx.label_grad:  # x is the caller's tensor: keeping it costs no memory
            ctx.save_for_backward(grad, labels, x, maxima, log_rest)
        else:
            ctx.save_for_backward(grad)
        ctx.set_materialize_grads(False)  # no zero tensors for the gradient outputs' own gradients
        ctx.mark_non_differentiable(grad, maxima, log_rest, bounds)

    @staticmethod
    def backward(ctx: Any, grad_loss: Tensor, *_: Any) -> tuple[Tensor | None, ...]:
        if grad_loss is None:
            return None, None, None, None, None, None, None, None
        if ctx.fused is not None:
            grad_x = _fused_backward(ctx, grad_loss) if ctx.needs_input_grad[1] else None
            return None, grad_x, None, None, None, None, None, None
        grad = ctx.saved_tensors[0]
        grad_x = grad * grad_loss[:, None] if ctx.needs_input_grad[1] else None
        grad_labels = None
        if ctx.label_grad:
            _, labels, x, maxima, log_rest = ctx.saved_tensors
            # d/dt_i = -log_softmax(x)_i = (m - x_i) + log1p(S'), zero labels included (a
            # -inf logit's infinite slope is read as 0 there, as the generic kernel's).
            nll = (maxima[:, None].to(torch.float64) - x) + log_rest[:, None]
            nll = torch.where((labels == 0) & ~torch.isfinite(nll), torch.zeros_like(nll), nll)
            grad_labels = (nll * grad_loss[:, None]).to(x.dtype)
        return grad_labels, grad_x, None, None, None, None, None, None


class _EagerSoftmaxCrossEntropy(torch.autograd.Function):
    """:class:`SoftmaxCrossEntropy` with a ``forward(ctx, ...)`` of its own, for plain eager CPU calls.

    The same forward, context and backward; only ``apply`` differs: a Function
    with ``setup_context`` binds its arguments to ``forward``'s signature on
    every call (``inspect.signature``, ~20 microseconds), which this style
    skips. No ``torch.func`` support (its transforms take the other class).
    Its callers pass ``summary`` (the last input: a list that receives the
    kernel's summary, :func:`_kernel_rows`, read by the data checks).
    """

    @staticmethod
    def forward(ctx: Any, *inputs: Any) -> tuple[Tensor, ...]:  # type: ignore[override]
        output = _softmax_forward(*inputs)
        SoftmaxCrossEntropy.setup_context(ctx, inputs[:-1], output)
        return output

    @staticmethod
    def backward(ctx: Any, *grads: Any) -> tuple[Tensor | None, ...]:
        return (*SoftmaxCrossEntropy.backward(ctx, *grads), None)  # None: summary's


class _EagerSoftmaxCrossEntropyMean(torch.autograd.Function):
    """The mean of the per-row softmax cross-entropy in one node: :func:`categorical_loss_direct`'s mean reductions.

    Forward: :func:`_softmax_forward` fused (the gradient prescaled by
    ``scale``, the float32 ``1/N``), then the general path's reduction ops,
    ``torch.sum(loss) / torch.asarray(N)``, without autograd: the same value.
    Backward: the incoming gradient ``g`` as the reduction's backward nodes
    would pass it on, ``g / N`` for every row (DivBackward's float32 division,
    SumBackward's expansion), to :func:`_fused_backward`: the same gradient, the
    prescaled one handed over when ``g`` is 1. Two autograd nodes, an
    expansion and their Python calls fewer than the Function followed by
    ``sum`` and ``div``. Labels take no gradient here (the short way's calls).
    """

    @staticmethod
    def forward(ctx: Any, labels: Tensor, x: Tensor, scale: float, want_bounds: bool,  # type: ignore[override]
                summary: list[Any]) -> Tensor:
        loss, grad, *_ = _softmax_forward(labels, x, True, True, True, None, scale, want_bounds, summary)
        count = torch.asarray(x.shape[0], dtype=loss.dtype, device=loss.device)
        ctx.dense = True
        ctx.fused = {"grad": grad, "row_scale": None, "scale": scale}
        ctx.count, ctx.rows = count, x.shape[0]
        ctx.save_for_backward(x, labels)  # the caller's tensors: no memory
        ctx.set_materialize_grads(False)
        return torch.sum(loss) / count

    @staticmethod
    def backward(ctx: Any, grad_mean: Tensor | None) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        if grad_mean is None or not ctx.needs_input_grad[1]:
            return None, None, None, None, None
        grad_loss = (grad_mean / ctx.count).expand(ctx.rows)
        return None, _fused_backward(ctx, grad_loss), None, None, None


def _fused_backward(ctx: Any, grad_loss: Tensor,
                    recompute: Callable[[Tensor, Tensor], Any] | None = None) -> Tensor:
    """The gradient of a fused forward (see :class:`SoftmaxCrossEntropy`) for the incoming ``grad_loss``.

    ``recompute(out, row_scale)`` writes the exact gradient for per-row factors
    ``row_scale`` into ``out`` (default: the softmax kernel on the saved ``x, labels``).
    """
    fused = ctx.fused
    grad = fused.pop("grad", None)  # handed over once: autograd then owns it (no copy)
    row_scale, scale = fused["row_scale"], fused["scale"]
    if grad is not None:
        if row_scale is None:
            if bool((grad_loss == scale).all()):
                return grad  # the expected gradient arrived: already scaled
            if scale == 1.0:  # nothing was expected: scale the tensor we own, in place
                return grad.mul_(grad_loss[:, None])
        elif torch.equal(grad_loss, row_scale):
            return grad
    x, labels = ctx.saved_tensors[:2]
    out = grad if grad is not None else torch.empty_like(x)
    # Exact for any incoming gradient: the kernel multiplies in float64 and rounds once.
    if recompute is None:
        _kernel_rows(x, labels, ctx.dense, out, grad_loss, 1.0)
    else:
        recompute(out, grad_loss)
    return out


def _wants_grad(*tensors: Tensor) -> bool:
    """Whether autograd will ask for a gradient (decided when the graph is built)."""
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def _float32(value: float) -> float:
    """``value`` rounded to the nearest float32 number (ties to even)."""
    return struct.unpack("f", struct.pack("f", value))[0]


def _expected_gradient(values_shape: tuple[int, ...]) -> tuple[Tensor | None, float]:
    """The gradient the current ``Loss``'s reduction will send to each value: ``(row_scale or None, scale)``.

    A guess from :mod:`probloss._grad_hint` (backward checks it): ``1/N`` for
    the means, ``1`` for a sum, times the sample weights (one per sample, or
    one per value); ``(None, 1.0)`` where there is nothing to go on.
    """
    from .. import _grad_hint

    hint = _grad_hint.current()
    if hint is None or hint.out_dtype != torch.float32 or hint.reduction in (None, "none"):
        return None, 1.0
    n = max(math.prod(values_shape), 1)
    weight = hint.sample_weight
    if weight is None:
        # 1/N as the reduction's float32 division makes it, without a torch op (~10 us after the
        # kernel): N rounded to float32, then the quotient, whose float64 value rounded to float32
        # is the float32 quotient (53 >= 2·24 + 2 bits: no double rounding error).
        return None, (1.0 if hint.reduction == "sum" else _float32(1.0 / _float32(float(n))))
    inverse_n = torch.tensor(1.0, dtype=torch.float32) / n
    if (not isinstance(weight, Tensor) or weight.dtype != torch.float32 or weight.device.type != "cpu"
            or weight.ndim > len(values_shape) or tuple(weight.shape) != tuple(values_shape[:weight.ndim])):
        return None, 1.0
    weight = weight.detach()
    per_value = weight.reshape(tuple(weight.shape) + (1,) * (len(values_shape) - weight.ndim))
    per_value = per_value.expand(values_shape).reshape(-1)
    if hint.reduction == "sum":
        return per_value.contiguous(), 1.0
    if hint.reduction == "mean_with_sample_weight":
        return (1.0 / torch.sum(weight)) * per_value, 1.0
    return inverse_n * per_value, 1.0


def _softmax_cross_entropy(labels: Tensor, x: Tensor, axis: int, dense: bool,
                           observe: Observed | None = None) -> Tensor:
    """Per-sample softmax cross-entropy; with ``observe``, also report ``x``'s bounds (compiled kernel only).

    Dense labels' range is reported too where the kernel vouched for every row
    (as on NumPy: probloss._backends._softmax_paths), so that the data checks
    make no pass of their own over either input.
    """
    rows_x = _to_rows(x, axis)
    rows_labels = _to_rows(labels, axis) if dense else labels.reshape(-1)
    want_grad = _wants_grad(x)
    # Fused when the rows are views of the caller's tensors (keeping them for a recomputation
    # costs no memory) and the compiled kernel will run.
    fused = (want_grad and not _traced() and _compiled_kernel_runs(x, dense and labels.requires_grad)
             and rows_x.data_ptr() == x.data_ptr() and rows_labels.data_ptr() == labels.data_ptr())
    values_shape = tuple(x.shape[:axis]) + tuple(x.shape[axis + 1:])
    row_scale, scale = _expected_gradient(values_shape) if fused else (None, 1.0)
    eager = _compiled_kernel_runs(x, dense and labels.requires_grad) and _plain_eager(x, labels)
    summary: list[Any] = []  # filled by the kernel on the eager lane
    if eager:
        outputs = _EagerSoftmaxCrossEntropy.apply(rows_labels, rows_x, dense, want_grad, fused, row_scale, scale,
                                                  observe is not None, summary)
    else:
        outputs = SoftmaxCrossEntropy.apply(rows_labels, rows_x, dense, want_grad, fused, row_scale, scale,
                                            observe is not None)
    if observe is not None:
        if summary:
            _report_summary(observe, summary, dense)
        else:
            _report_bounds(observe, outputs[4].numpy(), dense)
    return _from_rows(outputs[0], x, axis)


_MEAN_REDUCTIONS = ("sum_over_batch_size", "mean", "mean_with_sample_weight")  # no weight: / count


def categorical_loss_direct(loss: Any, y_true: Any, y_pred: Any) -> Tensor | None:
    """``CategoricalCrossentropy(from_logits=True)(y_true, y_pred)`` of its common eager CPU call, or None.

    The common call: plain CPU float32 C-contiguous tensors of one shape, rank
    >= 2, classes last (more than one), labels without gradient, no sample
    weight, label smoothing, class weight or dtype, a mean (or ``"sum"``,
    ``"none"``) reduction, plain eager mode, fast paths on and the compiled
    kernel built. The general path (``Loss.__call__``: ``prepare``, the
    namespace, the values function, dispatch, the data checks, the reduction)
    spends ~400 Python calls on it, ~0.3 ms of a 4096 x 1000 forward right
    after a kernel that streamed 48 MB (the interpreter's working set is then
    out of the caches). Here: the same Function (:class:`_EagerSoftmaxCrossEntropy`)
    with the same arguments, and the same reduction ops, so the value and the
    gradient are the general path's, bit for bit; the data checks are settled
    by the kernel's summary (:func:`_kernel_rows`), as on NumPy
    (:mod:`probloss._backends._numpy_direct`): every loss finite (no NaN or
    +inf logit, a finite logit in every row), labels in ``[0, 1]``, logits
    that do not look like probabilities. Anything else returns None before any
    work, or, where the summary does not settle the checks, after the kernel:
    the general path then runs the call again and raises, warns or returns.
    """
    if not ("softmax_rows" in CPU_KERNELS and common_dense_call(loss, y_true, y_pred)):
        return None
    mode, reduction = short_way_mode(loss), loss.reduction
    rows_x, rows_labels, want_grad, scale = short_way_rows(loss, y_true, y_pred)
    summary: list[Any] = []
    if want_grad and reduction in _MEAN_REDUCTIONS:
        mean = _EagerSoftmaxCrossEntropyMean.apply(rows_labels, rows_x, scale, mode != "off", summary)
        return mean if _checks_settled(mode, summary) else None
    outputs = _EagerSoftmaxCrossEntropy.apply(rows_labels, rows_x, True, want_grad, want_grad, None, scale,
                                              mode != "off", summary)
    if not _checks_settled(mode, summary):
        return None  # data the checks refuse or warn about, or rows they read themselves
    return reduce_rows(outputs[0], y_pred, reduction)


def common_dense_call(loss: Any, y_true: Any, y_pred: Tensor) -> bool:
    """Whether a softmax-family ``Loss`` call is the common one of the short ways (kernel aside).

    From logits, no label smoothing, class weight or dtype, a mean, ``"sum"`` or
    ``"none"`` reduction; plain CPU float32 C-contiguous tensors of one shape,
    rank >= 2, classes last (more than one), labels without gradient; plain
    eager mode, fast paths on.
    """
    from .. import _config

    kw = loss._values_kwargs
    reduction = loss.reduction
    return (kw["from_logits"] is True and kw["class_weight"] is None and type(kw["label_smoothing"]) is float
            and kw["label_smoothing"] == 0.0 and loss._dtype is None
            and (reduction in _MEAN_REDUCTIONS or reduction in ("sum", "none", None))
            and (type(y_true) is Tensor or type(y_true) is torch.nn.Parameter) and not y_true.requires_grad
            and y_pred.dtype == torch.float32 and y_true.dtype == torch.float32
            and y_pred.device.type == "cpu" and y_true.device.type == "cpu"
            and y_pred.ndim >= 2 and y_true.shape == y_pred.shape and kw["axis"] in (-1, y_pred.ndim - 1)
            and y_pred.shape[-1] > 1 and y_pred.numel() > 0
            and y_pred.is_contiguous() and y_true.is_contiguous()
            and _plain_eager(y_pred, y_true) and _config.fast_paths_enabled())


def short_way_mode(loss: Any) -> str:
    """The validation mode a ``Loss`` call runs under."""
    from .. import _config

    return loss.validate if loss.validate is not None else _config.validation_mode()


def short_way_rows(loss: Any, y_true: Tensor, y_pred: Tensor) -> tuple[Tensor, Tensor, bool, float]:
    """``(logit rows, label rows, whether a gradient is wanted, the gradient's scale)`` of a short way's call.

    The scale is :func:`_expected_gradient`'s under the ``Loss``'s hint: the
    gradient the reduction sends each value (``1/N`` in float32 for the means).
    """
    classes = y_pred.shape[-1]
    rows_x, rows_labels = y_pred.reshape(-1, classes), y_true.reshape(-1, classes)  # views
    want_grad = _wants_grad(y_pred)
    reduction = loss.reduction
    scale = (1.0 if reduction == "sum" or not want_grad or reduction in ("none", None)
             else _float32(1.0 / _float32(float(rows_x.shape[0]))))
    return rows_x, rows_labels, want_grad, scale


def reduce_rows(values: Tensor, y_pred: Tensor, reduction: str | None) -> Tensor:
    """A short way's per-row ``values`` reduced as ``Loss.__call__``'s ``reduce_values`` does, by the same ops."""
    values = values.reshape(y_pred.shape[:-1])
    if reduction in ("none", None):
        return values
    total = torch.sum(values)
    if reduction == "sum":
        return total
    # the sum over the count as a float32 tensor
    return total / torch.asarray(values.numel(), dtype=total.dtype, device=total.device)


def _checks_settled(mode: str, summary: list[Any]) -> bool:
    """Whether the kernel's summary proves the data checks of categorical CE from logits pass, with no warning.

    Every loss finite (no NaN or +inf logit, a finite logit in every row),
    labels in ``[0, 1]`` (NaN: a row the kernel did not vouch for, which the
    checks read themselves), logits that do not look like probabilities.
    """
    if mode == "off":
        return True
    finite, low, high, label_low, label_high = summary
    # NaN fails every comparison: such data go to the general path, which names it.
    return bool(finite and label_low >= 0.0 and label_high <= 1.0) and not 0.0 <= low < high <= 1.0


def _report_summary(observe: Observed, summary: list[Any], dense: bool) -> None:
    """Record the bounds of a kernel's summary (:func:`_kernel_rows`) in ``observe``, as :func:`_report_bounds`.

    The same values that :func:`_report_bounds` reads from the per-row bounds,
    reduced in C by the kernel's call: a pass over them (four NumPy
    reductions) right after a kernel that streamed tens of MB costs ~50
    microseconds, the interpreter's working set being then out of the caches.
    """
    _, low, high, label_low, label_high = summary
    observe.bounds[1] = (low, high)  # NaN anywhere in the first column makes the minimum NaN
    if dense and label_low == label_low and label_high == label_high:  # NaN: some row is not known
        observe.bounds[0] = (label_low, label_high)


def _report_bounds(observe: Observed, bounds: Any, dense: bool) -> None:
    """Record the kernel's per-row bounds (NumPy views of :func:`_kernel_rows`'s ``bounds``) in ``observe``.

    As the NumPy path does, with its helpers: the logits' minimum (NaN anywhere
    makes it NaN) and maximum; dense labels' range only where the kernel vouched
    for every row (else the check reads the labels itself, and names the first
    offending position).
    """
    from ._softmax_paths import _report, _report_range

    _report(observe, bounds[0])
    if dense:
        _report_range(observe, 0, bounds[1])


def _observable(x: Tensor, labels: Tensor, dense: bool, observe: Observed | None) -> bool:
    """Whether the compiled kernel will run and can report ``x``'s bounds (else: NotImplemented to observers)."""
    return observe is None or _compiled_kernel_runs(x, dense and labels.requires_grad)


def _invalid_to_nan(loss: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    valid = (labels >= 0) & (labels < num_classes)
    return torch.where(valid, loss, torch.full_like(loss, math.nan))


@fast_path("categorical_crossentropy", backend="torch", observes=True)
def categorical_crossentropy(y_true: Tensor, y_pred: Tensor, *, from_logits: bool, axis: int,
                             epsilon: float, xp: Any, observe: Observed | None = None) -> Any:
    if not from_logits:
        if observe is not None:
            return NotImplemented
        if (_wants_grad(y_pred) and not y_true.requires_grad and _native(y_true, y_pred) and y_pred.numel()
                and not _traced()):
            import numpy as np

            from .._numerics import clip_bounds

            low, high = clip_bounds(epsilon, np.float32, xp=np)
            loss = NormalizedCrossEntropy.apply(_to_rows(y_true, axis), _to_rows(y_pred, axis), low, high)[0]
            return _from_rows(loss, y_pred, axis)
        return _probability_rows(y_true, y_pred, axis, False, epsilon)
    if not _native(y_true, y_pred) or y_pred.numel() == 0 or not _observable(y_pred, y_true, True, observe):
        return NotImplemented
    return _softmax_cross_entropy(y_true, y_pred, axis, dense=True, observe=observe)


@fast_path("sparse_categorical_crossentropy", backend="torch", observes=True)
def sparse_categorical_crossentropy(y_true: Tensor, y_pred: Tensor, *, from_logits: bool, axis: int,
                                    epsilon: float, xp: Any, observe: Observed | None = None) -> Any:
    if not from_logits:
        return NotImplemented if observe is not None else _probability_rows(y_true, y_pred, axis, True, epsilon)
    if not _native(y_pred) or y_pred.numel() == 0 or not _observable(y_pred, y_true, False, observe):
        return NotImplemented
    num_classes = y_pred.shape[axis]
    # Clamped so that an invalid label can be gathered; it is marked NaN below.
    index = torch.clamp(y_true, 0, num_classes - 1).to(torch.int64)
    loss = _softmax_cross_entropy(index, y_pred, axis, dense=False, observe=observe)
    return _invalid_to_nan(loss, y_true, num_classes)


def _probability_rows(y_true: Tensor, y_pred: Tensor, axis: int, sparse: bool, epsilon: float,
                      bounds: tuple[float, float] | None = None, force: bool = False) -> Any:
    """Cross-entropy from probabilities by the compiled kernels, where no gradient is wanted (else NotImplemented).

    CPU float32 only; rows the kernels leave NaN (a zero, negative or
    non-finite probability row) are recomputed by the generic kernel, and a
    sparse label outside ``[0, classes)`` stays NaN, as there.
    """
    import numpy as np

    from .._dispatch import GENERIC
    from .._numerics import clip_bounds
    from . import _native_softmax as kernels

    if not force and (not kernels.AVAILABLE or y_pred.device.type != "cpu" or _traced()
                      or _wants_grad(y_true, y_pred) or not _native(y_pred) or (not sparse and not _native(y_true))
                      or y_pred.numel() == 0):
        return NotImplemented
    name = "sparse_categorical_crossentropy" if sparse else "categorical_crossentropy"
    preds = _to_rows(y_pred, axis)
    labels = y_true.reshape(-1) if sparse else _to_rows(y_true, axis)
    low, high = clip_bounds(epsilon, np.float32, xp=np) if bounds is None else bounds
    epsilon = low if bounds is not None else epsilon
    kernel = kernels.normalized_cross_entropy_sparse if sparse else kernels.normalized_cross_entropy
    values = torch.from_numpy(kernel(preds.numpy(), labels.contiguous().numpy(), low=low, high=high))
    redo = ~torch.isfinite(values)
    if sparse:
        redo &= (labels >= 0) & (labels < preds.shape[1])
    if bool(redo.any()):
        import array_api_compat.torch as xp_torch

        values[redo] = GENERIC[name](labels[redo], preds[redo], from_logits=False, axis=1, epsilon=epsilon,
                                     xp=xp_torch).to(values.dtype)
    return _from_rows(values, y_pred, axis)


def _normalized_chunk(t: Tensor, y: Tensor, low: float, high: float,
                      want_grad: bool) -> tuple[Tensor, Tensor]:
    """Categorical cross-entropy from probability rows ``y`` (float32) and its gradient, in float64.

    ``-log(clip(y_j/S, low, high))`` with ``S = sum(y)``; at a unique maximum
    above half the sum, ``log1p(rest/m)`` clipped to ``[-log high, -log low]``
    (exact near 1), as the generic kernel. The gradient with respect to ``y``:
    ``M/S - t_k·i_k/y_k``, ``i`` the entries the clip passes (bounds included),
    ``M = sum(t·i)``; at such a maximum ``(M - t_a·i_a)/S - t_a·i_a·rest/(m·S)``.
    """
    y64, t64 = y.to(torch.float64), t.to(torch.float64)
    total = y64.sum(dim=1, keepdim=True)
    m, top_index = torch.max(y64, dim=1, keepdim=True)
    q = y64 / total
    inside = (q >= low) & (q <= high)
    nll = -torch.log(torch.clamp(q, low, high))
    is_max = y64 == m
    top = is_max & (2 * m > total)
    rest = torch.where(is_max, torch.zeros_like(y64), y64).sum(dim=1, keepdim=True)
    nll_hi, nll_lo = -math.log1p(-(1 - high)), -math.log(low)
    near_raw = torch.log1p(rest / m)
    near_inside = (near_raw >= nll_hi) & (near_raw <= nll_lo)
    nll = torch.where(top, torch.clamp(near_raw, nll_hi, nll_lo), nll)
    loss = (t64 * nll).sum(dim=1)
    if not want_grad:
        return loss, y.new_empty(0)
    inside = torch.where(top, near_inside.expand_as(inside), inside)
    weights = torch.where(inside, t64, torch.zeros_like(t64))
    big_m = weights.sum(dim=1, keepdim=True)
    grad = big_m / total - torch.where(weights != 0, weights / y64, torch.zeros_like(y64))
    has_top = top.any(dim=1, keepdim=True)
    t_top = torch.gather(weights, 1, top_index)
    top_value = (big_m - t_top) / total - t_top * rest / (m * total)
    grad = torch.where(has_top & (torch.arange(y.shape[1], device=y.device) == top_index), top_value, grad)
    return loss, grad.to(y.dtype)


def _normalized_gradient_cpu(t: Tensor, y: Tensor, low: float, high: float) -> Tensor:
    """The gradient of :func:`_normalized_chunk` in a few float32 passes over one buffer (CPU, no chunks).

    ``M/S - w_k/y_k`` with ``w = t·i`` needs no float64 off the maximum (there
    ``w_k/y_k >= 2·M/S``: no cancellation); the one entry per row where it
    would cancel, a maximum above half the sum, is recomputed per row in
    float64 as ``(M - w_a)/S - w_a·rest/(m·S)``.
    """
    # Row sums in float64 and the masks a block of rows at a time: a float64 sum over the
    # whole array would first cast all of it (twice the input's size), the masks would
    # be full-size too; the gradient is then the only full-size buffer.
    step = max(1, (1 << 18) // max(y.shape[1], 1))
    blocks = [(start, start + step) for start in range(0, y.shape[0], step)]
    total64 = torch.empty((y.shape[0], 1), dtype=torch.float64, device=y.device)
    big_m = torch.empty_like(total64)
    for start, stop in blocks:
        torch.sum(y[start:stop], dim=1, keepdim=True, dtype=torch.float64, out=total64[start:stop])
    total = total64.to(torch.float32)
    grad = torch.div(y, total)  # q = y/S, float32 as the generic kernel's clip sees it
    for start, stop in blocks:
        q = grad[start:stop]
        inside = (q >= low) & (q <= high)
        torch.mul(t[start:stop], inside, out=q)  # w = t·i
        torch.sum(q, dim=1, keepdim=True, dtype=torch.float64, out=big_m[start:stop])
    m, top_index = torch.max(y, dim=1, keepdim=True)
    w_top_general = torch.gather(grad, 1, top_index).to(torch.float64)
    grad.div_(y)
    torch.nan_to_num_(grad, nan=0.0)  # 0/0 where y = 0 (then w = 0); a NaN row stays NaN through M/S
    grad.neg_().add_((big_m / total64).to(torch.float32))
    m64 = m.to(torch.float64)
    rest = total64 - m64
    near_raw = torch.log1p(rest / m64)
    nll_hi, nll_lo = -math.log1p(-(1 - high)), -math.log(low)
    top_inside = (near_raw >= nll_hi) & (near_raw <= nll_lo)
    t_top = torch.gather(t, 1, top_index).to(torch.float64)
    w_top = torch.where(top_inside, t_top, torch.zeros_like(t_top))
    # At the maximum the clip applies to log1p(rest/m): its own mask, in place of the ratio's.
    top_value = (big_m - w_top_general) / total64 - w_top * rest / (m64 * total64)
    is_top = 2 * m64 > total64
    current = torch.gather(grad, 1, top_index)
    grad.scatter_(1, top_index, torch.where(is_top, top_value.to(torch.float32), current))
    return grad


class NormalizedCrossEntropy(torch.autograd.Function):
    """Per-row categorical cross-entropy of ``(R, C)`` float32 probabilities (labels without gradient)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(t: Tensor, y: Tensor, low: float, high: float) -> tuple[Tensor, Tensor]:
        rows, classes = y.shape
        if y.device.type == "cpu" and not _traced() and "softmax_rows" in CPU_KERNELS:  # the kernels are built
            loss = _probability_rows(t, y, 1, False, 0.0, bounds=(low, high), force=True)
            return loss, _normalized_gradient_cpu(t, y, low, high)
        chunks = _row_chunks(rows, classes)
        if len(chunks) == 1:
            loss, grad = _normalized_chunk(t, y, low, high, True)
            return loss.to(y.dtype), grad
        loss = torch.empty(rows, dtype=y.dtype, device=y.device)
        grad = torch.empty_like(y)
        for start, stop in chunks:
            part, grad[start:stop] = _normalized_chunk(t[start:stop], y[start:stop], low, high, True)
            loss[start:stop] = part.to(y.dtype)
        return loss, grad

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, ...]) -> None:
        t, y, low, high = inputs
        ctx.bounds = (low, high)
        # The gradient is kept on ctx (not saved): backward scales it in place and hands it over;
        # a second backward through a retained graph recomputes it from the inputs.
        ctx.owned = [output[1]]
        ctx.save_for_backward(t, y)
        ctx.set_materialize_grads(False)
        ctx.mark_non_differentiable(output[1])

    @staticmethod
    def backward(ctx: Any, grad_loss: Tensor, _: Any) -> tuple[Tensor | None, ...]:
        if grad_loss is None or not ctx.needs_input_grad[1]:
            return None, None, None, None
        if ctx.owned and not _traced():
            return None, ctx.owned.pop().mul_(grad_loss[:, None]), None, None
        grad = ctx.owned.pop() if ctx.owned else NormalizedCrossEntropy.forward(*ctx.saved_tensors, *ctx.bounds)[1]
        return None, grad * grad_loss[:, None], None, None


# The binary family (binary CE, binary focal CE, Poisson, KL) and categorical focal CE live in
# their own modules.
from . import _torch_binary  # noqa: E402, F401, I001 - registers its fast paths
from . import _torch_focal  # noqa: E402, F401 - registers the categorical focal fast path
