"""PyTorch fast paths (probloss._backends._torch) against the generic kernel.

Every fast path on torch tensors is an autograd.Function with an analytic
backward; the generic array-API kernel, differentiated by autograd, is the
reference (``probloss.fast_paths(False)``). Values and gradients (with respect
to the predictions and to soft labels) are compared for every option, for
non-finite inputs, ties, float16/bfloat16 and the Loss classes' reductions and
sample weights; torch.compile must trace each loss as one graph, and
torch.func.grad / vmap must give autograd's gradients.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import probloss  # noqa: E402
from probloss import _dispatch  # noqa: E402

EPS32 = float(np.finfo(np.float32).eps)


def _run(fn: Callable[..., Any], y_true: Any, y_pred: Any, *, fast: bool, label_grad: bool = False,
         **kwargs: Any) -> tuple[Any, Any, Any]:
    """Return ``(values, d sum(values)/d y_pred, d/d y_true)`` with the fast paths on or off."""
    yt = y_true.detach().clone().requires_grad_(label_grad)
    yp = y_pred.detach().clone().requires_grad_(True)
    with probloss.fast_paths(fast):
        values = fn(yt, yp, validate="off", **kwargs)
    # A fixed, uneven upstream gradient, so that backward's scaling is checked too.
    upstream = torch.linspace(0.5, 1.5, values.numel()).reshape(values.shape).to(values.dtype)
    (values * upstream).sum().backward()
    return values.detach(), yp.grad, yt.grad if label_grad else None


def _close(got: Any, want: Any, *, rtol: float, what: str) -> None:
    got64, want64 = got.double().numpy(), want.double().numpy()
    # Entries far below the largest are compared to it: a softmax gradient's tiny
    # entries are sums of terms of both signs in the generic kernel's float32 autodiff.
    finite = np.abs(want64[np.isfinite(want64)])
    atol = rtol * float(finite.max(initial=0.0))
    np.testing.assert_allclose(got64, want64, rtol=rtol, atol=atol, equal_nan=True, err_msg=what)


def _compare(fn: Callable[..., Any], y_true: Any, y_pred: Any, *, label_grad: bool = False,
             rtol: float = 8 * EPS32, **kwargs: Any) -> None:
    fast = _run(fn, y_true, y_pred, fast=True, label_grad=label_grad, **kwargs)
    generic = _run(fn, y_true, y_pred, fast=False, label_grad=label_grad, **kwargs)
    assert fast[0].dtype == generic[0].dtype
    assert fast[0].shape == generic[0].shape
    _close(fast[0], generic[0], rtol=rtol, what="values")
    _close(fast[1], generic[1], rtol=rtol, what="gradient w.r.t. y_pred")
    if label_grad:
        _close(fast[2], generic[2], rtol=rtol, what="gradient w.r.t. y_true")


def _gen(seed: int) -> Any:
    return torch.Generator().manual_seed(seed)


def _logits(shape: tuple[int, ...], seed: int, scale: float = 4.0) -> Any:
    return torch.randn(shape, generator=_gen(seed)) * scale


def _distribution(shape: tuple[int, ...], axis: int, seed: int) -> Any:
    return torch.softmax(torch.randn(shape, generator=_gen(seed)) * 2, dim=axis)


def test_every_torch_fast_path_is_tested_here():
    _dispatch.import_backend("torch")
    tested = {"binary_crossentropy", "categorical_crossentropy", "sparse_categorical_crossentropy", "poisson",
              "kl_divergence", "binary_focal_crossentropy", "categorical_focal_crossentropy",
              "ctc_loss"}  # CTC: values and gradients in test_ctc.py
    assert {name for name, library in _dispatch.FAST if library == "torch"} == tested


def test_calls_go_through_the_fast_path(monkeypatch):
    from probloss._backends import _torch

    calls = []
    original = _torch._softmax_forward  # run by both Function classes (eager CPU and the rest)
    monkeypatch.setattr(_torch, "_softmax_forward", lambda *a: calls.append(1) or original(*a))
    probloss.sparse_categorical_crossentropy(torch.tensor([1]), torch.tensor([[0.5, 2.0]]), from_logits=True)
    assert calls == [1]
    with probloss.fast_paths(False):
        probloss.sparse_categorical_crossentropy(torch.tensor([1]), torch.tensor([[0.5, 2.0]]), from_logits=True)
    assert calls == [1]


# ------------------------------------------------------------------ softmax cross-entropy


@pytest.mark.parametrize("axis", [-1, 0, 1])
@pytest.mark.parametrize("shape", [(6, 5, 7), (40, 3, 300)])
def test_sparse_softmax_parity(axis, shape):
    logits = _logits(shape, 1)
    label_shape = tuple(d for i, d in enumerate(shape) if i != axis % len(shape))
    labels = torch.randint(0, shape[axis], label_shape, generator=_gen(2))
    _compare(probloss.sparse_categorical_crossentropy, labels, logits, from_logits=True, axis=axis)


def test_sparse_softmax_parity_over_several_chunks(monkeypatch):
    from probloss._backends import _torch

    monkeypatch.setattr(_torch, "CHUNK_ELEMENTS", 64)  # rows of 30 classes: 2 rows a chunk, 29 chunks
    logits = _logits((57, 30), 3, scale=10.0)
    labels = torch.randint(0, 30, (57,), generator=_gen(4))
    _compare(probloss.sparse_categorical_crossentropy, labels, logits, from_logits=True)
    dense = _distribution((57, 30), -1, 5)
    _compare(probloss.categorical_crossentropy, dense, logits, from_logits=True, label_grad=True)


@pytest.mark.parametrize("axis", [-1, 0, 1])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
def test_dense_softmax_parity_soft_labels_differentiable(axis, label_smoothing):
    logits = _logits((6, 5, 7), 6)
    labels = _distribution((6, 5, 7), axis, 7)
    _compare(probloss.categorical_crossentropy, labels, logits, from_logits=True, axis=axis,
             label_smoothing=label_smoothing, label_grad=True)


def test_dense_softmax_one_hot_labels_with_zeros():
    logits = _logits((50, 9), 8)
    labels = torch.nn.functional.one_hot(torch.randint(0, 9, (50,), generator=_gen(9)), 9).float()
    _compare(probloss.categorical_crossentropy, labels, logits, from_logits=True, label_grad=True)


@pytest.mark.parametrize("kind", ["dense", "sparse", "focal"])
@pytest.mark.parametrize("backward", [False, True])
def test_softmax_checks_read_the_kernels_bounds(kind, backward, monkeypatch):
    """On CPU tensors the data checks take y_pred's bounds, and dense labels' range, from the kernel's passes.

    Bad data is still caught, with the first offending position, before any
    result is returned; rows the kernel does not vouch for (a -0.0 label) are
    checked by reading the labels, and pass. ``focal``: categorical focal CE,
    whose kernel reports the same bounds (the checks then make no pass of their
    own either).
    """
    from probloss._validation import DataChecker

    learned = []
    original = DataChecker.learn_bounds

    def spy(self, x, low, high):
        learned.append((low, high))
        original(self, x, low, high)

    monkeypatch.setattr(DataChecker, "learn_bounds", spy)
    logits = _logits((40, 9), 30)
    logits[5, 2] = -np.inf
    labels = torch.softmax(_logits((40, 9), 31), dim=1)
    labels[::3] = torch.nn.functional.one_hot(torch.randint(0, 9, (14,), generator=_gen(32)), 9).float()
    indices = torch.randint(0, 9, (40,), generator=_gen(33))

    sparse = kind == "sparse"

    def run(t, x, **kwargs):
        x = x.clone().requires_grad_(backward)
        if sparse:
            loss = probloss.SparseCategoricalCrossentropy(from_logits=True, **kwargs)(indices, x)
        elif kind == "focal":
            loss = probloss.CategoricalFocalCrossentropy(from_logits=True, **kwargs)(t, x)
        else:
            loss = probloss.CategoricalCrossentropy(from_logits=True, **kwargs)(t, x)
        if backward:
            loss.backward()
            return loss.detach(), x.grad
        return loss, None

    value, grad = run(labels, logits)
    from_labels = [] if sparse else [(float(labels.min()), float(labels.max()))]
    assert sorted(learned) == sorted([(-np.inf, float(logits.max())), *from_labels])
    unchecked = run(labels, logits, validate="off")
    # (focal: the soft label on row 5's -inf logit makes its loss inf and its gradient NaN, as the generic kernel's)
    torch.testing.assert_close(value, unchecked[0], rtol=0, atol=0, equal_nan=True)
    if backward:
        torch.testing.assert_close(grad, unchecked[1], rtol=0, atol=0, equal_nan=True)
    if not sparse:
        for bad_value, where in ((1.5, (3, 4)), (np.nan, (8, 0)), (-0.25, (39, 8)), (np.inf, (12, 3))):
            wrong = labels.clone()
            wrong[where] = bad_value
            with pytest.raises(ValueError, match=rf"`y_true` must be .*position \({where[0]}, {where[1]}\)"):
                run(wrong, logits)
        signed_zero = labels.clone()
        signed_zero[signed_zero == 0] = -0.0  # valid, though the kernel does not vouch for it
        learned.clear()
        torch.testing.assert_close(run(signed_zero, logits)[0], value, rtol=0, atol=0, equal_nan=True)
        assert (-np.inf, float(logits.max())) in learned  # the logits' bounds, from the kernel still
    bad = logits.clone()
    bad[7, 3] = np.nan
    with pytest.raises(ValueError, match=r"position \(7, 3\)"):
        run(labels, bad)
    masked = logits.clone()
    masked[11] = -np.inf
    with pytest.raises(ValueError, match=r"-inf for every class.*position \(11,\)"):
        run(labels, masked)


@pytest.mark.parametrize(("loss_class", "op_name"),
                         [("CategoricalCrossentropy", "probloss.softmax_rows_cpu"),
                          ("CategoricalFocalCrossentropy", "probloss.focal_softmax_rows_cpu")])
def test_softmax_eager_skips_the_op_and_modes_see_it(loss_class, op_name):
    """Plain eager CPU calls run the op's function directly; a dispatch mode still sees one custom op, same values."""
    from torch.utils._python_dispatch import TorchDispatchMode

    seen = []

    class Recorder(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            seen.append(str(func))
            return func(*args, **(kwargs or {}))

    logits = _logits((30, 11), 40)
    labels = torch.softmax(_logits((30, 11), 41), dim=1)
    for backward in (False, True):
        x = logits.clone().requires_grad_(backward)
        plain = getattr(probloss, loss_class)(from_logits=True)(labels, x)
        if backward:
            plain.backward()
        with Recorder():
            y = logits.clone().requires_grad_(backward)
            recorded = getattr(probloss, loss_class)(from_logits=True)(labels, y)
            if backward:
                recorded.backward()
        assert any(op_name in name for name in seen)
        torch.testing.assert_close(recorded.detach(), plain.detach(), rtol=0, atol=0)
        if backward:
            torch.testing.assert_close(y.grad, x.grad, rtol=0, atol=0)
        seen.clear()


def test_softmax_dominant_label_keeps_its_tiny_gradient():
    # The label is the maximum by 30..90: loss and gradient ~1e-13..1e-39, not rounded to 0.
    gaps = torch.linspace(30.0, 90.0, 13)
    logits = torch.stack([torch.zeros(13), -gaps, -gaps - 1.0], dim=1)
    labels = torch.zeros(13, dtype=torch.int64)
    values, grad, _ = _run(probloss.sparse_categorical_crossentropy, labels, logits, fast=True, from_logits=True)
    rest = torch.exp(-gaps.double()) + torch.exp(-gaps.double() - 1)
    upstream = torch.linspace(0.5, 1.5, 13).double()
    exact_value = torch.log1p(rest)
    exact_grad = -rest / (1 + rest) * upstream
    normal = exact_value > torch.finfo(torch.float32).tiny
    _close(values[normal], exact_value[normal].float(), rtol=4 * EPS32, what="dominant loss")
    _close(grad[normal, 0], exact_grad[normal].float(), rtol=4 * EPS32, what="dominant label gradient")
    assert (grad[normal, 0] < 0).all()


def test_softmax_ties_give_softmax_minus_onehot():
    logits = torch.tensor([[2.0, 2.0, 0.0, -1.0], [2.0, 2.0, 0.0, -1.0], [0.5, 3.0, 3.0, 3.0], [1.0, 1.0, 1.0, 1.0]])
    labels = torch.tensor([0, 3, 2, 1])
    _compare(probloss.sparse_categorical_crossentropy, labels, logits, from_logits=True)
    _compare(probloss.categorical_crossentropy, torch.eye(4)[labels], logits, from_logits=True, label_grad=True)


@pytest.mark.parametrize("name", ["sparse", "dense"])
def test_softmax_non_finite_logits(name):
    """-inf logits (masked classes), a zero label on one, rows with no softmax (+inf, NaN, all -inf)."""
    inf, nan = float("inf"), float("nan")
    logits = torch.tensor([[2.0, -inf, 0.5, 1.0], [-inf, -inf, -inf, -inf], [inf, 0.0, 1.0, 2.0],
                           [nan, 0.0, 1.0, 2.0], [3.0, 3.0, -1.0, -inf], [1.0, 2.0, 3.0, 4.0], [0.0, -inf, 1.0, 2.0]])
    labels = torch.tensor([0, 0, 1, 2, 1, 1, 1])
    if name == "sparse":
        fn = probloss.sparse_categorical_crossentropy
    else:
        fn, labels = probloss.categorical_crossentropy, torch.eye(4)[labels]
    fast = _run(fn, labels, logits, fast=True, from_logits=True)
    generic = _run(fn, labels, logits, fast=False, from_logits=True)
    _close(fast[0], generic[0], rtol=4 * EPS32, what="values")
    assert torch.isnan(fast[0][1:4]).all()
    assert torch.isfinite(fast[0][[0, 4, 5]]).all()
    assert fast[0][6] == float("inf")  # the label on a -inf logit
    finite_rows = [0, 4, 5]  # the gradient where the loss is finite
    _close(fast[1][finite_rows], generic[1][finite_rows], rtol=8 * EPS32, what="gradient")


def test_sparse_invalid_labels_and_ignore_class():
    logits = _logits((12, 6), 10)
    labels = torch.randint(0, 6, (12,), generator=_gen(11))
    labels[[2, 7]] = 4
    _compare(probloss.sparse_categorical_crossentropy, labels, logits, from_logits=True, ignore_class=4)
    bad = labels.clone()
    bad[[1, 5]] = torch.tensor([-1, 6])
    values, _, _ = _run(probloss.sparse_categorical_crossentropy, bad, logits, fast=True, from_logits=True)
    assert torch.isnan(values[[1, 5]]).all()
    assert torch.isfinite(values[[0, 2, 3, 4]]).all()


@pytest.mark.parametrize("axis", [-1, 0])
def test_probabilities_without_gradient_parity(axis):
    """From probabilities with no gradient wanted: the compiled kernels; zero, NaN and invalid rows included."""
    from probloss._backends import _torch

    calls = []
    rows, classes = (7, 9) if axis == 0 else (9, 7)
    probs = _distribution((rows, classes), -1, 40)
    probs[2] = 0.0  # a zero row: left to the generic kernel
    probs[5, 1] = float("nan")
    labels = torch.randint(0, classes, (rows,), generator=_gen(41))
    labels[3] = classes  # outside [0, classes): NaN in both
    dense = torch.nn.functional.one_hot(labels.clamp(0, classes - 1), classes).float() * 0.9 + 0.1 / classes
    if axis == 0:
        probs, dense = probs.T, dense.T
    original = _torch._probability_rows
    for fn, y_true in ((probloss.sparse_categorical_crossentropy, labels),
                       (probloss.categorical_crossentropy, dense)):
        def spy(*a: Any, **k: Any) -> Any:
            calls.append(1)
            return original(*a, **k)

        _torch._probability_rows = spy
        try:
            fast = fn(y_true, probs, axis=axis, validate="off")
        finally:
            _torch._probability_rows = original
        with probloss.fast_paths(False):
            generic = fn(y_true, probs, axis=axis, validate="off")
        _close(fast, generic, rtol=4 * EPS32, what=fn.__name__)
    assert len(calls) == 2


@pytest.mark.parametrize("compiled", [True, False])
@pytest.mark.parametrize("axis", [-1, 0])
def test_categorical_probabilities_gradient_parity(axis, compiled, monkeypatch):
    """From probabilities with a gradient (CPU: compiled loss and float32 gradient passes; elsewhere float64
    torch ops in chunks), a confident and a clipped row included."""
    from probloss._backends import _torch

    if not compiled:  # the torch-ops code that CUDA tensors take
        monkeypatch.setattr(_torch, "CPU_KERNELS", {})

    probs = _distribution((30, 9), -1, 60)
    probs[0] = torch.tensor([0.9999, 2e-5, 2e-5, 2e-5, 2e-5, 2e-5, 0.0, 0.0, 0.0])  # near 1, and zeros
    probs[1] = torch.tensor([0.5, 0.25, 0.25, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]) * 3  # unnormalised
    labels = torch.nn.functional.one_hot(torch.randint(0, 9, (30,), generator=_gen(61)), 9).float()
    labels[0, 0], labels[2] = 1.0, _distribution((9,), -1, 62)
    if axis == 0:
        probs, labels = probs.T.contiguous(), labels.T.contiguous()
    monkeypatch.setattr(_torch, "CHUNK_ELEMENTS", 64)  # several chunks
    calls = []
    original = _torch.NormalizedCrossEntropy.apply
    monkeypatch.setattr(_torch.NormalizedCrossEntropy, "apply", lambda *a: calls.append(1) or original(*a))
    _compare(probloss.categorical_crossentropy, labels, probs, axis=axis, label_smoothing=0.1 * (axis == 0))
    assert calls == [1]
    # A second backward through a retained graph recomputes the gradient.
    x = probs.clone().requires_grad_()
    value = probloss.CategoricalCrossentropy(axis=axis, validate="off")(labels, x)
    value.backward(retain_graph=True)
    first = x.grad.clone()
    value.backward()
    _close(x.grad, 2 * first, rtol=2 * EPS32, what="second backward")


# ------------------------------------------------------------------ categorical focal cross-entropy


@pytest.mark.parametrize(("gamma", "alpha"), [(2.0, 0.25), (0.0, 1.0), (0.5, (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)),
                                              (3.0, 0.4)])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_focal_parity(gamma, alpha, label_smoothing):
    logits = _logits((33, 7), 50, scale=6.0)
    logits[0] = torch.tensor([40.0, 0.0, -1.0, -2.0, 1.0, 0.5, -30.0])  # a confident row: tiny loss and gradient
    labels = torch.nn.functional.one_hot(torch.randint(0, 7, (33,), generator=_gen(51)), 7).float()
    labels[0] = torch.eye(7)[0]
    labels[1] = _distribution((7,), -1, 52)  # soft labels
    _compare(probloss.categorical_focal_crossentropy, labels, logits, from_logits=True, gamma=gamma, alpha=alpha,
             label_smoothing=label_smoothing)


def test_focal_parity_class_axis_first_and_uses_the_kernel(monkeypatch):
    from probloss._backends import _torch_focal

    calls = []
    original = _torch_focal._kernel_rows
    monkeypatch.setattr(_torch_focal, "_kernel_rows", lambda *a: calls.append(1) or original(*a))
    logits = _logits((6, 20), 53)
    labels = torch.softmax(_logits((6, 20), 54), dim=0)
    _compare(probloss.categorical_focal_crossentropy, labels, logits, from_logits=True, axis=0)
    assert calls


@pytest.mark.parametrize("classes", [37, 100, 1000])
@pytest.mark.parametrize("labels_kind", ["one_hot", "two_hot", "soft"])
def test_focal_parity_wide_rows(classes, labels_kind):
    """Rows of many vectors: the kernel's list of label blocks (one-hot, two labels per row, labels
    in the tail after the last group of four vectors) and its every-block fallback (soft labels:
    more blocks than the list holds), against the generic kernel with autograd."""
    rows = 12
    logits = _logits((rows, classes), 58, scale=3.0)
    logits[0, 5] = 30.0  # a confident row whose label is the maximum
    picks = torch.randint(0, classes, (rows,), generator=_gen(59))
    picks[1] = classes - 1  # a label in the last, partial block
    labels = torch.nn.functional.one_hot(picks, classes).float()
    labels[0] = torch.eye(classes)[5]
    if labels_kind == "two_hot":
        labels = 0.7 * labels + 0.3 * torch.nn.functional.one_hot(torch.flip(picks, (0,)), classes).float()
    elif labels_kind == "soft":
        labels = _distribution((rows, classes), -1, 60)
    for gamma, alpha in ((2.0, 0.25), (1.5, 0.6)):
        _compare(probloss.categorical_focal_crossentropy, labels, logits, from_logits=True, gamma=gamma,
                 alpha=alpha)
    # Through the Loss class (the fused forward, whose gradient backward hands over as it is).
    grads = []
    for fast in (True, False):
        x = logits.clone().requires_grad_()
        with probloss.fast_paths(fast):
            probloss.CategoricalFocalCrossentropy(from_logits=True, validate="off")(labels, x).backward()
        grads.append(x.grad)
    _close(grads[0], grads[1], rtol=8 * EPS32, what="Loss class gradient")


def test_focal_non_finite_logits():
    inf, nan = float("inf"), float("nan")
    logits = torch.tensor([[2.0, -inf, 0.5, 1.0], [-inf, -inf, -inf, -inf], [inf, 0.0, 1.0, 2.0],
                           [nan, 0.0, 1.0, 2.0], [3.0, 3.0, -1.0, -inf], [1.0, 2.0, 3.0, 4.0], [0.0, -inf, 1.0, 2.0]])
    labels = torch.eye(4)[torch.tensor([0, 0, 1, 2, 1, 1, 1])]
    fast = _run(probloss.categorical_focal_crossentropy, labels, logits, fast=True, from_logits=True)
    generic = _run(probloss.categorical_focal_crossentropy, labels, logits, fast=False, from_logits=True)
    _close(fast[0], generic[0], rtol=4 * EPS32, what="values")
    _close(fast[1], generic[1], rtol=8 * EPS32, what="gradient")


@pytest.mark.parametrize("classes", [7, 37, 1000])
@pytest.mark.parametrize("want_grad", [False, True])
def test_focal_kernel_label_bounds(classes, want_grad):
    """The focal kernel's per-row label ranges: each row's minimum and maximum label where every
    label is a finite number >= 0 other than -0.0, else NaN, NaN (the checks then read the labels);
    asking for them changes neither the loss nor the gradient, bit for bit."""
    from probloss._backends import _torch_focal

    if not _torch_focal.AVAILABLE:
        pytest.skip("compiled extension not built")
    rows = 12
    logits = _logits((rows, classes), 61)
    labels = _distribution((rows, classes), -1, 62)
    labels[0] = torch.eye(classes)[3]  # one-hot: whole vectors of +0.0
    labels[1, classes - 1] = float("nan")  # in the last, partial vector
    labels[2, 0] = -0.0
    labels[3, 1] = -0.25
    labels[4, classes // 2] = float("inf")
    labels[5, 2] = 1.75  # out of [0, 1] but finite: reported, the check rejects it
    logits[6, 0] = float("nan")  # a row the kernel leaves to the generic kernel: its labels still ranged
    logits[7] = -float("inf")
    labels[7, 1] = -1.0
    labels[8] = 0.0  # an all-zero row
    alpha, gamma = [0.25], 2.0
    outputs = []
    for with_bounds in (False, True):
        grad = torch.empty_like(logits) if want_grad else None
        bounds = torch.full((2, rows, 2), 123.0) if with_bounds else None
        loss = _torch_focal._kernel_rows(logits, labels, alpha, gamma, grad, None, 1.0, bounds)
        outputs.append((loss, grad, bounds))
    torch.testing.assert_close(outputs[1][0], outputs[0][0], rtol=0, atol=0, equal_nan=True)
    if want_grad:
        torch.testing.assert_close(outputs[1][1], outputs[0][1], rtol=0, atol=0, equal_nan=True)
    bounds = outputs[1][2].numpy()
    t = labels.numpy()
    for r in range(rows):
        row = t[r]
        vouched = np.all(np.isfinite(row)) and np.all(row >= 0) and not np.any(np.signbit(row))
        want = (row.min(), row.max()) if vouched else (np.nan, np.nan)
        np.testing.assert_array_equal(bounds[1, r], np.array(want, np.float32), err_msg=f"row {r}")
        x = logits.numpy()[r]
        np.testing.assert_array_equal(bounds[0, r, 1], x.max() if not np.isnan(x).any() else bounds[0, r, 1])
        assert np.isnan(bounds[0, r, 0]) == bool(np.isnan(x).any())


@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "sum", "mean_with_sample_weight", "none"])
def test_focal_loss_class_reductions_and_retained_graph(reduction):
    logits = _logits((8, 6), 55)
    labels = torch.nn.functional.one_hot(torch.randint(0, 6, (8,), generator=_gen(56)), 6).float()
    weight = torch.rand(8, generator=_gen(57))
    loss = probloss.CategoricalFocalCrossentropy(from_logits=True, reduction=reduction)
    results = []
    for fast in (True, False):
        x = logits.detach().clone().requires_grad_()
        with probloss.fast_paths(fast):
            value = loss(labels, x, sample_weight=weight)
        total = value.sum()
        total.backward(retain_graph=True)
        first = x.grad.clone()
        (3 * total).backward()  # a second pass through the same graph, with another upstream factor
        results.append((value.detach(), first, x.grad - first))
    for got, want, what in zip(results[0], results[1], ("value", "gradient", "second gradient"), strict=True):
        _close(got, want, rtol=8 * EPS32, what=what)


# ------------------------------------------------------------------ binary, Poisson, KL


@pytest.mark.parametrize("axis", [-1, 0])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_binary_from_logits_parity(axis, label_smoothing):
    logits = _logits((30, 9), 12, scale=8.0)
    labels = (torch.rand((30, 9), generator=_gen(13)) < 0.5).float()
    _compare(probloss.binary_crossentropy, labels, logits, from_logits=True, axis=axis,
             label_smoothing=label_smoothing)


def test_binary_soft_labels_gradient_is_minus_x():
    # Soft labels strictly inside (0, 1), and hard labels (y = 1 below): d/dy = -x/n, as the
    # generic kernel's autograd (test_generic_label_gradient_at_hard_labels_is_the_slope).
    logits = _logits((20, 7), 14, scale=6.0)
    labels = torch.rand((20, 7), generator=_gen(15)) * 0.98 + 0.01
    _compare(probloss.binary_crossentropy, labels, logits, from_logits=True, label_grad=True)
    _, _, label_grad = _run(probloss.binary_crossentropy, torch.ones(20, 7), logits, fast=True, from_logits=True,
                            label_grad=True)
    upstream = torch.linspace(0.5, 1.5, 20)[:, None]
    _close(label_grad, -logits * upstream / 7, rtol=2 * EPS32, what="d/dy at y = 1")


def test_binary_non_finite_logits():
    inf, nan = float("inf"), float("nan")
    logits = torch.tensor([[inf, -inf, 60.0, -60.0, 0.0], [nan, 1.0, 2.0, 3.0, 4.0], [inf, inf, -inf, 1.0, 2.0]])
    labels = torch.tensor([[1.0, 0.0, 1.0, 0.0, 1.0], [1.0, 0.0, 1.0, 0.0, 1.0], [0.0, 1.0, 1.0, 0.0, 0.5]])
    fast = _run(probloss.binary_crossentropy, labels, logits, fast=True, from_logits=True)
    generic = _run(probloss.binary_crossentropy, labels, logits, fast=False, from_logits=True)
    _close(fast[0], generic[0], rtol=4 * EPS32, what="values")
    assert torch.isfinite(fast[0][0])
    assert torch.isnan(fast[0][1])
    assert fast[0][2] == inf
    _close(fast[1][0], generic[1][0], rtol=4 * EPS32, what="gradient, confident infinite logits")


@pytest.mark.parametrize("label_grad", [False, True])
def test_poisson_parity(label_grad):
    rates = torch.rand((25, 8), generator=_gen(16)) * 3
    rates[0, :2] = 0.0  # p + epsilon
    counts = torch.poisson(torch.rand((25, 8), generator=_gen(17)) * 3, generator=_gen(18))
    _compare(probloss.poisson, counts, rates, label_grad=label_grad)


def test_kl_divergence_parity():
    t = _distribution((30, 12), -1, 19)
    p = _distribution((30, 12), -1, 20)
    p[0] = t[0]  # KL 0: terms of both signs cancel
    t[1, :3] = torch.tensor([0.0, 0.0, 0.0])  # clipped to epsilon
    _compare(probloss.kl_divergence, t, p, label_grad=True, rtol=16 * EPS32)


# ------------------------------------------------------------------ dtypes, Loss classes


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_inputs_computed_in_float32(dtype):
    logits = _logits((16, 10), 21).to(dtype)
    labels = torch.randint(0, 10, (16,), generator=_gen(22))
    fast = _run(probloss.sparse_categorical_crossentropy, labels, logits, fast=True, from_logits=True)
    generic = _run(probloss.sparse_categorical_crossentropy, labels, logits, fast=False, from_logits=True)
    assert fast[0].dtype == dtype
    assert fast[1].dtype == dtype
    assert torch.equal(fast[0], generic[0])  # both round the same float32 value once
    _close(fast[1].float(), generic[1].float(), rtol=float(torch.finfo(dtype).eps), what="gradient")
    binary = _logits((16, 10), 23).to(dtype)
    targets = (torch.rand((16, 10), generator=_gen(24)) < 0.5).to(dtype)
    fast = _run(probloss.binary_crossentropy, targets, binary, fast=True, from_logits=True)
    generic = _run(probloss.binary_crossentropy, targets, binary, fast=False, from_logits=True)
    assert torch.equal(fast[0], generic[0])


_CLASSES = [
    (probloss.SparseCategoricalCrossentropy, {"from_logits": True}, "sparse"),
    (probloss.SparseCategoricalCrossentropy, {"from_logits": True, "ignore_class": 2}, "sparse"),
    (probloss.CategoricalCrossentropy, {"from_logits": True, "label_smoothing": 0.1}, "dense"),
    (probloss.BinaryCrossentropy, {"from_logits": True}, "binary"),
    (probloss.Poisson, {}, "counts"),
    (probloss.KLDivergence, {}, "dense"),
]


@pytest.mark.parametrize(("cls", "options", "kind"), _CLASSES, ids=lambda v: getattr(v, "__name__", str(v)))
@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "sum", "mean_with_sample_weight", "none"])
def test_loss_classes_reductions_and_sample_weights(cls, options, kind, reduction):
    logits = _logits((8, 6), 25)
    y_pred = {"counts": logits.abs(), "dense": torch.softmax(logits, -1)}.get(kind, logits)
    y_pred = logits if kind == "dense" and options.get("from_logits") else y_pred
    y_true = {"sparse": torch.randint(0, 6, (8,), generator=_gen(26)),
              "dense": _distribution((8, 6), -1, 27),
              "binary": (torch.rand((8, 6), generator=_gen(28)) < 0.5).float(),
              "counts": torch.poisson(torch.ones(8, 6) * 2, generator=_gen(29))}[kind]
    weight = torch.rand(8, generator=_gen(30))
    loss = cls(reduction=reduction, **options)
    grads = []
    for fast in (True, False):
        x = y_pred.detach().clone().requires_grad_()
        with probloss.fast_paths(fast):
            value = loss(y_true, x, sample_weight=weight)
        value.sum().backward()
        grads.append((value.detach(), x.grad))
    _close(grads[0][0], grads[1][0], rtol=8 * EPS32, what="reduced value")
    _close(grads[0][1], grads[1][1], rtol=8 * EPS32, what="gradient")


# ------------------------------------------------------------------ torch.compile, torch.func

_FAMILIES = {
    "sparse": lambda y, x: probloss.sparse_categorical_crossentropy(y["sparse"], x, from_logits=True),
    "dense": lambda y, x: probloss.categorical_crossentropy(y["dense"], x, from_logits=True),
    "binary": lambda y, x: probloss.binary_crossentropy(y["binary"], x, from_logits=True),
    "binary_probs": lambda y, x: probloss.binary_crossentropy(y["binary"], torch.sigmoid(x)),
    "binary_focal": lambda y, x: probloss.binary_focal_crossentropy(y["binary"], x, from_logits=True),
    "poisson": lambda y, x: probloss.poisson(y["binary"] * 3, x.abs()),
    "kl": lambda y, x: probloss.kl_divergence(y["dense"], torch.softmax(x, -1)),
    "class": lambda y, x: probloss.SparseCategoricalCrossentropy(from_logits=True)(y["sparse"], x),
    "categorical_focal": lambda y, x: probloss.categorical_focal_crossentropy(y["dense"], x, from_logits=True),
}


def _family_inputs() -> tuple[dict[str, Any], Any]:
    x = _logits((6, 10), 31)
    labels = {"sparse": torch.randint(0, 10, (6,), generator=_gen(32)), "dense": _distribution((6, 10), -1, 33),
              "binary": torch.rand((6, 10), generator=_gen(34))}
    return labels, x


def _explain_and_compile(f: Callable[[Any], Any], x: Any) -> tuple[Any, Any]:
    """``torch._dynamo.explain(f)(x)`` and ``torch.compile(f, backend="eager")(x)``, dynamo reset before and after."""
    import torch._dynamo

    torch._dynamo.reset()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch._dynamo.explain(f)(x), torch.compile(f, backend="eager")(x)
    finally:
        torch._dynamo.reset()


@pytest.mark.parametrize("family", sorted(_FAMILIES))
def test_torch_compile_traces_one_graph(family):
    import torch._dynamo

    labels, x = _family_inputs()

    def f(v: Any) -> Any:
        return _FAMILIES[family](labels, v).mean()

    explanation, compiled = _explain_and_compile(f, x)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1
    torch.testing.assert_close(compiled, f(x), rtol=4 * EPS32, atol=0)


@pytest.mark.parametrize("family", sorted(_FAMILIES))
def test_torch_func_grad_and_vmap(family):
    labels, x = _family_inputs()

    def f(v: Any) -> Any:
        return _FAMILIES[family](labels, v).sum()

    v = x.clone().requires_grad_()
    f(v).backward()
    grad = torch.func.grad(f)(x)
    # torch.func runs the torch-ops path; plain autograd may take the compiled CPU kernel, which folds
    # a Loss's reduction into its gradient (one rounding instead of two): a few ulps apart (of the
    # largest entry, where sigmoid(x) - y cancels).
    torch.testing.assert_close(grad, v.grad, rtol=8 * EPS32, atol=8 * EPS32 * float(v.grad.abs().max()))
    batch = torch.stack([x, 2 * x, -x])
    per_sample = torch.func.vmap(torch.func.grad(f))(batch)
    for i in range(3):
        # Under vmap the torch-ops path runs; plain grad may take the compiled CPU kernel: a few ulps apart.
        torch.testing.assert_close(per_sample[i], torch.func.grad(f)(batch[i]), rtol=8 * EPS32, atol=1e-12)
    values = torch.func.vmap(f)(batch)
    torch.testing.assert_close(values, torch.stack([f(b) for b in batch]), rtol=4 * EPS32, atol=0)


# ------------------------------------------------------------------ generic kernel: label gradient at 0 and 1


def _label_grad_generic(fn: Callable[..., Any], y_true: Any, y_pred: Any, **kwargs: Any) -> Any:
    yt = y_true.detach().clone().requires_grad_(True)
    with probloss.fast_paths(False):
        fn(yt, y_pred, validate="off", **kwargs).sum().backward()
    return yt.grad


def test_generic_label_gradient_at_hard_labels_is_the_slope():
    """At labels exactly 0 and 1 the label's slope is the loss's term, not 0 (zero_safe_multiply)."""
    logits = _logits((12, 5), 40)
    hard = (torch.rand((12, 5), generator=_gen(41)) < 0.5).float()
    x64 = logits.double()
    # d/dy mean(log1p(e) + y·relu(-x) + (1-y)·relu(x)) = -x / n
    _close(_label_grad_generic(probloss.binary_crossentropy, hard, logits, from_logits=True), -x64 / 5,
           rtol=2 * EPS32, what="binary from logits")
    probs = torch.sigmoid(logits)
    p64 = probs.double().clamp(1e-7, 1 - 1e-7)
    # d/dy of -(y·log p + (1-y)·log(1-p)), averaged: -(log p - log1p(-p)) / n
    _close(_label_grad_generic(probloss.binary_crossentropy, hard, probs), -(p64.log() - torch.log1p(-p64)) / 5,
           rtol=8 * EPS32, what="binary from probabilities")
    one_hot = torch.nn.functional.one_hot(torch.randint(0, 5, (12,), generator=_gen(42)), 5).float()
    # d/dt_i of sum(t·-log_softmax(x)) = -log_softmax(x)_i, zero labels included
    _close(_label_grad_generic(probloss.categorical_crossentropy, one_hot, logits, from_logits=True),
           -torch.log_softmax(x64, -1), rtol=8 * EPS32, what="categorical from logits")


# ------------------------------------------------------------------ the compiled CPU op of the binary family


def _binary_cases() -> list[tuple[str, Callable[..., Any], dict[str, Any], str]]:
    focal = probloss.binary_focal_crossentropy
    return [
        ("bce-probs", probloss.binary_crossentropy, {}, "probs"),
        ("bce-probs-smoothed", probloss.binary_crossentropy, {"label_smoothing": 0.2}, "probs"),
        ("focal-logits-g2", focal, {"from_logits": True}, "logits"),
        ("focal-logits-g0-balanced", focal, {"from_logits": True, "gamma": 0.0, "apply_class_balancing": True},
         "logits"),
        ("focal-logits-g1.5", focal, {"from_logits": True, "gamma": 1.5, "alpha": 0.3,
                                      "apply_class_balancing": True}, "logits"),
        ("focal-probs-g2", focal, {"apply_class_balancing": True}, "probs"),
        ("focal-probs-g1", focal, {"gamma": 1.0}, "probs"),
        ("poisson", probloss.poisson, {}, "rates"),
        ("kl", probloss.kl_divergence, {}, "dist"),
    ]


def _binary_inputs(kind: str, shape: tuple[int, ...], seed: int) -> tuple[Any, Any]:
    logits = _logits(shape, seed)
    if kind == "rates":
        return torch.poisson(torch.rand(shape, generator=_gen(seed + 1)) * 3, generator=_gen(seed + 2)), logits.abs()
    if kind == "dist":
        return _distribution(shape, -1, seed + 1), torch.softmax(logits, -1)
    labels = torch.rand(shape, generator=_gen(seed + 1))
    labels = torch.where(labels < 0.3, torch.zeros_like(labels), torch.where(labels > 0.7, 1.0, labels))
    y_pred = logits if kind == "logits" else torch.sigmoid(logits)
    if kind == "probs":  # the clip bounds and beyond them
        y_pred.view(-1)[:4] = torch.tensor([0.0, 1.0, 1e-9, 1 - 1e-9])
    return labels, y_pred


@pytest.mark.parametrize(("name", "fn", "options", "kind"), _binary_cases(), ids=[c[0] for c in _binary_cases()])
@pytest.mark.parametrize(("shape", "axis"), [((9, 13), -1), ((4, 7, 5), 1), ((3, 40000), -1)])
def test_compiled_binary_op_parity(name, fn, options, kind, shape, axis):
    """CPU float32: the compiled op (values and gradients) against the generic kernel by autograd."""
    y_true, y_pred = _binary_inputs(kind, shape, 50)
    if kind in ("rates", "dist"):  # no axis argument: the reduced axis moved last, a non-contiguous view
        _compare(fn, torch.movedim(y_true, axis, -1), torch.movedim(y_pred, axis, -1), rtol=16 * EPS32, **options)
    else:
        _compare(fn, y_true, y_pred, axis=axis, rtol=16 * EPS32, **options)


@pytest.mark.parametrize(("name", "fn", "options", "kind"), _binary_cases(), ids=[c[0] for c in _binary_cases()])
def test_compiled_binary_op_non_finite_and_strided(name, fn, options, kind):
    """NaN/inf inputs (rows recomputed by the generic kernel) and a transposed, non-contiguous view."""
    y_true, y_pred = _binary_inputs(kind, (6, 11), 60)
    y_pred = y_pred.clone()
    y_pred[1, 2] = float("nan")
    y_pred[3, 4] = float("inf")
    y_pred[4, 0] = -float("inf")
    if kind in ("rates", "dist"):  # no axis argument: a non-contiguous view with rows along the last axis
        y_true, y_pred = y_true.T.contiguous().T, y_pred.T.contiguous().T
    else:
        y_true, y_pred, options = y_true.T, y_pred.T, {**options, "axis": 0}
    fast = _run(fn, y_true, y_pred, fast=True, **options)
    generic = _run(fn, y_true, y_pred, fast=False, **options)
    _close(fast[0], generic[0], rtol=16 * EPS32, what="values")
    finite = [0, 2, 5]  # samples without a non-finite input: gradients of the compiled kernel
    pick = (lambda g: g[:, finite]) if "axis" in options else (lambda g: g[finite])
    _close(pick(fast[1]), pick(generic[1]), rtol=16 * EPS32, what="gradient")


def test_compiled_binary_op_backward_twice_and_in_place():
    """The saved gradient is scaled in place once; a retained graph's second backward recomputes it."""
    y_true, y_pred = _binary_inputs("logits", (8, 6), 70)
    x = y_pred.clone().requires_grad_()
    loss = probloss.BinaryCrossentropy(from_logits=True)(y_true, x)
    loss.backward(retain_graph=True)
    first = x.grad.clone()
    x.grad = None
    loss.backward()
    torch.testing.assert_close(x.grad, first, rtol=0, atol=0)
    want = (torch.sigmoid(y_pred.double()) - y_true.double()) / y_pred.numel()
    _close(first, want, rtol=4 * EPS32, what="d mean / dx")


def test_compiled_binary_op_serves_cpu_float32_and_observes(monkeypatch):
    from probloss._backends import _torch_binary

    calls = []
    original = _torch_binary._compute_rows
    monkeypatch.setattr(_torch_binary, "_compute_rows", lambda *a: calls.append(a[0]) or original(*a))
    y_true, y_pred = _binary_inputs("probs", (5, 4), 80)
    probloss.binary_crossentropy(y_true, y_pred)
    probloss.poisson(y_true, y_pred.abs())
    assert calls == [_torch_binary.BCE_PROBS, _torch_binary.POISSON]
    with pytest.raises(ValueError, match="y_true"):  # the checks read the op's bounds
        probloss.binary_crossentropy(y_true + 2, y_pred)


# ------------------------------------------------------------------ CategoricalCrossentropy's short way (eager CPU)


def _cce_lane_inputs(shape: tuple[int, ...], seed: int, soft: bool) -> tuple[Any, Any]:
    x = _logits(shape, seed)
    if soft:
        t = _distribution(shape, -1, seed + 1)
    else:
        t = torch.nn.functional.one_hot(torch.randint(0, shape[-1], shape[:-1], generator=_gen(seed + 2)),
                                        shape[-1]).to(torch.float32)
    return t, x


def _run_cce(loss: Any, t: Any, x: Any, grad: bool = True, style: str = "plain") -> tuple[Any, Any]:
    """The loss and the gradient of: the loss ("plain"), 2.5 times it ("scaled"), or twice the loss through a
    retained graph ("retained": the prescaled gradient is handed over once, then recomputed)."""
    x = x.detach().clone().requires_grad_(grad)
    value = loss(t, x)
    if grad:
        total = value.sum() if value.ndim else value
        if style == "scaled":
            (total * 2.5).backward()
        elif style == "retained":
            total.backward(retain_graph=True)
            total.backward()
        else:
            total.backward()
    return value.detach(), (x.grad if grad else None)


def _lanes() -> dict[str, tuple[Any, Any, str]]:
    """The classes with a short way: (class, the module holding the short way, its name)."""
    from probloss._backends import _torch, _torch_focal

    return {"cce": (probloss.CategoricalCrossentropy, _torch, "categorical_loss_direct"),
            "focal": (probloss.CategoricalFocalCrossentropy, _torch_focal, "categorical_focal_loss_direct")}


LANES = ["cce", "focal"]


def _lane_loss(lane: str, **kwargs: Any) -> Any:
    return _lanes()[lane][0](**kwargs)


@contextmanager
def _lane_spy(monkeypatch: Any, lane: str) -> Iterator[list[Any]]:
    """Record each result of the short way (None: it handed the call to the general path)."""
    _, module, name = _lanes()[lane]
    results: list[Any] = []
    original = getattr(module, name)
    monkeypatch.setattr(module, name, lambda *a: results.append(original(*a)) or results[-1])
    yield results


@contextmanager
def _general_only(monkeypatch: Any, lane: str) -> Iterator[None]:
    """The short way switched off: every call takes the general path."""
    _, module, name = _lanes()[lane]
    with monkeypatch.context() as m:
        m.setattr(module, name, lambda *a: None)
        yield


@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "sum", "none", "mean_with_sample_weight"])
@pytest.mark.parametrize("validate", [None, "off", "warn"])
@pytest.mark.parametrize(("shape", "soft"), [((64, 300), False), ((6, 5, 7), True), ((1, 2), True)])
@pytest.mark.parametrize("lane", LANES)
def test_cce_short_way_is_the_general_path_bit_for_bit(monkeypatch, reduction, validate, shape, soft, lane):
    """Value and gradient bit-identical to the general path's, which the short way must not have taken."""
    t, x = _cce_lane_inputs(shape, 40, soft)
    loss = _lane_loss(lane, from_logits=True, reduction=reduction, validate=validate)
    for grad, style in ((True, "plain"), (True, "scaled"), (True, "retained"), (False, "plain")):
        with _lane_spy(monkeypatch, lane) as taken:
            fast = _run_cce(loss, t, x, grad, style)
        assert len(taken) == 1
        assert taken[0] is not None  # the short way served it
        with _general_only(monkeypatch, lane):
            general = _run_cce(loss, t, x, grad, style)
        assert fast[0].dtype == general[0].dtype
        assert fast[0].shape == general[0].shape
        assert torch.equal(fast[0], general[0])
        if grad:
            assert torch.equal(fast[1], general[1])


def _cce_outcome(loss: Any, t: Any, x: Any) -> tuple[str, Any]:
    """('error', message), ('warning', messages and value) or ('value', value)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            value = loss(t, x)
        except ValueError as error:
            return "error", str(error)
    if caught:
        return "warning", ([str(w.message) for w in caught], value)
    return "value", value


@pytest.mark.parametrize("validate", [None, "raise", "warn", "off"])
@pytest.mark.parametrize("case", ["label_above_one", "negative_label", "nan_label", "minus_zero_label", "nan_logit",
                                  "inf_logit", "masked_row", "neg_inf_logit", "probabilities"])
@pytest.mark.parametrize("lane", LANES)
def test_cce_short_way_errors_and_warnings(monkeypatch, validate, case, lane):
    """Data the checks refuse or warn about: the same error (first position), warning and value as the general path."""
    t, x = _cce_lane_inputs((8, 6), 50, True)
    t, x = t.clone(), x.clone()
    if case == "label_above_one":
        t[3, 2] = 1.5
    elif case == "negative_label":
        t[5, 1] = -0.25
    elif case == "nan_label":
        t[2, 4] = math.nan
    elif case == "minus_zero_label":
        t[1] = torch.tensor([-0.0, 1.0, 0.0, 0.0, 0.0, 0.0])  # valid: the checks read the labels themselves
    elif case == "nan_logit":
        x[4, 3] = math.nan
    elif case == "inf_logit":
        x[6, 0] = math.inf
    elif case == "masked_row":
        x[7] = -math.inf
    elif case == "neg_inf_logit":
        x[0, 5] = -math.inf  # valid
    else:
        x = torch.rand((8, 6), generator=_gen(51))
    loss = _lane_loss(lane, from_logits=True, validate=validate)
    fast = _cce_outcome(loss, t, x)
    with _general_only(monkeypatch, lane):
        general = _cce_outcome(loss, t, x)
    assert fast[0] == general[0]
    if fast[0] == "error":
        assert fast[1] == general[1]
    else:
        value_fast, value_general = (fast[1][1], general[1][1]) if fast[0] == "warning" else (fast[1], general[1])
        if fast[0] == "warning":
            assert fast[1][0] == general[1][0]
        assert torch.equal(value_fast, value_general) or (value_fast.isnan() and value_general.isnan())


@pytest.mark.parametrize("case", ["sample_weight", "smoothing", "float64", "non_contiguous", "label_grad", "axis0",
                                  "class_weight", "dtype", "one_class", "probabilities_input", "subclass"])
@pytest.mark.parametrize("lane", LANES)
def test_cce_short_way_declines_other_calls(monkeypatch, case, lane):
    """Calls outside the common one go to the general path (None before any work), with its result."""
    t, x = _cce_lane_inputs((5, 4), 60, True)
    kwargs: dict[str, Any] = {"from_logits": True}
    call_kwargs: dict[str, Any] = {}
    if case == "sample_weight":
        call_kwargs["sample_weight"] = torch.rand(5, generator=_gen(61))
    elif case == "smoothing":
        kwargs["label_smoothing"] = 0.1
    elif case == "float64":
        t, x = t.double(), x.double()
    elif case == "non_contiguous":
        t, x = t.T.contiguous().T, x.T.contiguous().T
    elif case == "label_grad":
        t = t.clone().requires_grad_()
    elif case == "axis0":
        kwargs["axis"] = 0
    elif case == "class_weight":
        kwargs["class_weight"] = [1.0, 2.0, 0.5, 1.0]
    elif case == "dtype":
        kwargs["dtype"] = "float64"
    elif case == "one_class":
        t, x = t[:, :1], x[:, :1]
    elif case == "probabilities_input":
        kwargs["from_logits"] = False
        x = torch.softmax(x, -1)
    base_cls = _lanes()[lane][0]
    cls = base_cls
    if case == "subclass":  # its own compute_values must run

        class Doubled(base_cls):
            def compute_values(self, inputs: Any) -> Any:
                values, mask = super().compute_values(inputs)
                return 2 * values, mask

        cls = Doubled
    loss = cls(**kwargs)
    with _lane_spy(monkeypatch, lane) as taken, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fast = loss(t, x, **call_kwargs)
    assert taken in ([], [None])
    with _general_only(monkeypatch, lane), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        general = loss(t, x, **call_kwargs)
    assert torch.equal(fast.detach(), general.detach())
    if case == "subclass":
        plain = base_cls(**kwargs)(t, x)
        assert torch.equal(fast.detach(), 2 * plain.detach())


@pytest.mark.parametrize("lane", LANES)
def test_cce_class_under_torch_compile_and_func(lane):
    """Under torch.compile (one graph) and torch.func the class takes the general path's traceable ops."""
    import torch._dynamo

    t, x = _cce_lane_inputs((6, 10), 70, True)
    loss = _lane_loss(lane, from_logits=True)

    def f(v: Any) -> Any:
        return loss(t, v)

    explanation, compiled = _explain_and_compile(f, x)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    torch.testing.assert_close(compiled, f(x), rtol=4 * EPS32, atol=0)
    grad = torch.func.grad(f)(x)
    x_eager = x.clone().requires_grad_()
    f(x_eager).backward()
    # torch.func runs the torch-ops path, plain autograd the compiled kernel: a few ulps of the largest entry apart
    torch.testing.assert_close(grad, x_eager.grad, rtol=8 * EPS32, atol=8 * EPS32 * float(x_eager.grad.abs().max()))
