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
from collections.abc import Callable
from typing import Any

import torch

from .._dispatch import fast_path

Tensor = torch.Tensor

# Elements of float64 temporaries per chunk of rows: large enough that torch's
# per-op overhead is small, small enough to stay near the cache and to bound the
# extra memory of a large batch.
CHUNK_ELEMENTS = 1 << 17

#: Compiled CPU implementations of the row computations, by name (filled below when
#: the compiled extension loads): ``softmax_rows(x, labels, dense, want_grad) -> (loss
#: float32 rows, grad)``, a ``torch.library`` custom op (opaque to torch.compile, with a
#: fake implementation). Used for CPU float32 tensors outside torch.func transforms when
#: the labels need no gradient; the torch-ops code below serves everything else.
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


def _softmax_compute(x: Tensor, labels: Tensor, dense: bool, want_grad: bool,
                     label_grad: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    kernel = CPU_KERNELS.get("softmax_rows")
    functorch = bool(torch._C._are_functorch_transforms_active())  # vmap: no batching rule for the op
    if kernel is not None and x.device.type == "cpu" and not label_grad and not functorch:
        loss, grad = kernel(x, labels, dense, want_grad)
        return loss, grad, x.new_empty(0), x.new_empty(0, dtype=torch.float64)
    return softmax_rows(x, labels, dense, want_grad)


def _register_compiled_softmax() -> None:
    """Serve CPU float32 softmax rows with the compiled one-pass kernels, where they are built."""
    try:
        from . import _native_softmax
    except ImportError:  # pragma: no cover - the module ships with probloss
        return
    if not _native_softmax.AVAILABLE:
        return

    @torch.library.custom_op("probloss::softmax_rows_cpu", mutates_args=(), device_types="cpu")
    def softmax_rows_cpu(x: Tensor, labels: Tensor, dense: bool, want_grad: bool) -> tuple[Tensor, Tensor]:
        x = x.contiguous()
        grad = torch.empty_like(x) if want_grad else x.new_empty(0)
        kernel = _native_softmax.softmax_cross_entropy if dense else _native_softmax.softmax_cross_entropy_sparse
        # Zero-copy: the NumPy views share the tensors' memory; the kernel writes grad in place.
        loss = torch.from_numpy(kernel(x.detach().numpy(), labels.detach().contiguous().numpy(),
                                       grad_out=grad.numpy() if want_grad else None))
        bad = ~torch.isfinite(loss)
        if bool(bad.any()):  # rows the kernel leaves to the reference (NaN/+inf logits, no finite logit)
            redo = softmax_rows(x[bad], labels[bad], dense, want_grad)
            loss[bad] = redo[0].to(loss.dtype)
            if want_grad:
                grad[bad] = redo[1]
        return loss, grad

    @softmax_rows_cpu.register_fake
    def _(x: Tensor, labels: Tensor, dense: bool, want_grad: bool) -> tuple[Tensor, Tensor]:
        return x.new_empty(x.shape[0]), (torch.empty_like(x) if want_grad else x.new_empty(0))

    CPU_KERNELS["softmax_rows"] = softmax_rows_cpu


_register_compiled_softmax()


class SoftmaxCrossEntropy(torch.autograd.Function):
    """Per-row softmax cross-entropy of ``(R, C)`` float32 logits; dense or sparse labels."""

    generate_vmap_rule = True

    @staticmethod
    def forward(labels: Tensor, x: Tensor, dense: bool, want_grad: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        loss, grad, maxima, log_rest = _softmax_compute(x, labels, dense, want_grad, labels.requires_grad)
        return loss.to(x.dtype), grad, maxima, log_rest

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, ...]) -> None:
        labels, x, dense, _ = inputs
        _, grad, maxima, log_rest = output
        ctx.dense = dense
        ctx.label_grad = dense and ctx.needs_input_grad[0]
        if ctx.label_grad:  # x is the caller's tensor: keeping it costs no memory
            ctx.save_for_backward(grad, labels, x, maxima, log_rest)
        else:
            ctx.save_for_backward(grad)
        ctx.set_materialize_grads(False)  # no zero tensors for the gradient outputs' own gradients
        ctx.mark_non_differentiable(grad, maxima, log_rest)

    @staticmethod
    def backward(ctx: Any, grad_loss: Tensor, *_: Any) -> tuple[Tensor | None, Tensor | None, None, None]:
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
        return grad_labels, grad_x, None, None


def _wants_grad(*tensors: Tensor) -> bool:
    """Whether autograd will ask for a gradient (decided when the graph is built)."""
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def _softmax_cross_entropy(labels: Tensor, x: Tensor, axis: int, dense: bool) -> Tensor:
    rows_x = _to_rows(x, axis)
    rows_labels = _to_rows(labels, axis) if dense else labels.reshape(-1)
    loss = SoftmaxCrossEntropy.apply(rows_labels, rows_x, dense, _wants_grad(x))[0]
    return _from_rows(loss, x, axis)


def _invalid_to_nan(loss: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    valid = (labels >= 0) & (labels < num_classes)
    return torch.where(valid, loss, torch.full_like(loss, math.nan))


@fast_path("categorical_crossentropy", backend="torch")
def categorical_crossentropy(y_true: Tensor, y_pred: Tensor, *, from_logits: bool, axis: int,
                             epsilon: float, xp: Any) -> Any:
    if not from_logits or not _native(y_true, y_pred) or y_pred.numel() == 0:
        return NotImplemented
    return _softmax_cross_entropy(y_true, y_pred, axis, dense=True)


@fast_path("sparse_categorical_crossentropy", backend="torch")
def sparse_categorical_crossentropy(y_true: Tensor, y_pred: Tensor, *, from_logits: bool, axis: int,
                                    epsilon: float, xp: Any) -> Any:
    if not from_logits or not _native(y_pred) or y_pred.numel() == 0:
        return NotImplemented
    num_classes = y_pred.shape[axis]
    # Clamped so that an invalid label can be gathered; it is marked NaN below.
    index = torch.clamp(y_true, 0, num_classes - 1).to(torch.int64)
    loss = _softmax_cross_entropy(index, y_pred, axis, dense=False)
    return _invalid_to_nan(loss, y_true, num_classes)


# The binary family (binary CE, binary focal CE, Poisson, KL) lives in its own module.
from . import _torch_binary  # noqa: E402, F401 - registers its fast paths
