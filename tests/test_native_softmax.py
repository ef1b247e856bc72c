"""The compiled softmax-family kernels against the generic kernels and float64 references.

Values: every public loss of the family with float32 NumPy inputs runs on the
compiled kernels (checked by counting calls), and must agree with the generic
array-API kernel (``probloss.fast_paths(False)``) for every option (label
smoothing, ignore_class, axis, alpha, gamma), non-finite inputs, ties, odd
shapes, non-contiguous and big-endian arrays: the same NaN and inf pattern, and
finite values within ``MAX_ULPS`` of each other (each is within a few ulps of
the exact value: docs/accuracy.md, tests/test_accuracy.py).

Gradients (which the public functions do not expose; the array-level functions
of probloss._backends._native_softmax do) are checked against softmax - target
computed in float64 here, with the confident entries written in their
cancellation-free form. Thread counts: bit-identical results for 1, 2 and 3
threads. The baseline (non-AVX2) build runs in a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest

import probloss
from probloss._backends import _native_softmax as native

pytestmark = pytest.mark.skipif(not native.AVAILABLE, reason="probloss's compiled kernels are not built")

# The compiled kernels are within ~3 ulps of the exact loss and the generic
# kernels within 4: their difference stays well inside this.
MAX_ULPS = 6.0
TINY = float(np.finfo(np.float32).tiny)


def assert_close_ulps(fast: Any, generic: Any, max_ulps: float = MAX_ULPS) -> None:
    """Same NaN and ±inf positions; finite values within ``max_ulps`` float32 ulps."""
    fast, generic = np.asarray(fast), np.asarray(generic)
    assert fast.shape == generic.shape
    assert fast.dtype == generic.dtype  # float32, in the input's byte order
    assert fast.dtype.kind == "f"
    assert fast.dtype.itemsize == 4
    np.testing.assert_array_equal(np.isnan(fast), np.isnan(generic))
    np.testing.assert_array_equal(np.isinf(fast) * np.sign(fast), np.isinf(generic) * np.sign(generic))
    finite = np.isfinite(generic)
    a, b = fast[finite].astype(np.float64), generic[finite].astype(np.float64)
    spacing = np.spacing(np.maximum(np.maximum(np.abs(a), np.abs(b)), TINY).astype(np.float32)).astype(np.float64)
    ulps = np.abs(a - b) / spacing
    assert ulps.size == 0 or ulps.max() <= max_ulps, f"max {ulps.max()} ulps at {np.argmax(ulps)}"


def fast_and_generic(call: Callable[[], Any]) -> tuple[np.ndarray, np.ndarray]:
    """Run ``call`` with the fast paths (the compiled kernels) and without (the generic kernels)."""
    # Keras's one-class warning (K = 1); NumPy's on the NaN rows of the generic kernel
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", SyntaxWarning)
        fast = np.asarray(call())
        with probloss.fast_paths(False):
            generic = np.asarray(call())
    return fast, generic


@contextmanager
def counting(name: str) -> Iterator[list[int]]:
    """Count the calls of ``native.<name>`` inside the block."""
    calls = [0]
    original = getattr(native, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return original(*args, **kwargs)

    setattr(native, name, counted)
    try:
        yield calls
    finally:
        setattr(native, name, original)


def logit_rows(rng: np.random.Generator, rows: int, k: int, special: bool = True) -> np.ndarray:
    """Random float32 logits at several scales, with the awkward rows first."""
    x = rng.standard_normal((rows, k)) * rng.choice([1e-3, 1.0, 10.0, 60.0], (rows, 1))
    x = x.astype(np.float32)
    if special and k > 1 and rows >= 12:
        x[0] = 3.0  # all tied
        x[1, : k // 2 + 1] = 7.5  # ties at the maximum
        x[2, 1] = -np.inf  # one -inf logit
        x[3] = -np.inf
        x[3, 0] = 1.0  # one finite logit
        x[4, 0] = np.nan
        x[5, 1] = np.inf
        x[6] = -np.inf  # no finite logit
        x[7] = 1e30
        x[7, 1] = np.float32(1e30) * np.float32(1 - 2**-23)  # a gap of ~1e23 that float32 m - 150 would lose
        x[8] = -3e38
        x[9, 0] = 40.0  # a confident row
        x[9, 1:] = 0.0
        x[10] = 0.0  # uniform
        x[11, -1] = 500.0  # maximum in the tail
    return x


def probability_rows(rng: np.random.Generator, rows: int, k: int) -> np.ndarray:
    p = (rng.random((rows, k)) ** 4).astype(np.float32)
    if k > 1 and rows >= 8:
        p[0] = 0.0  # zero row
        p[1, 0], p[1, 1:] = 1.0, 1e-9  # near-certain
        p[2, 0] = np.nan
        p[3] = 1.0 / k  # ties
        p[4] /= p[4].sum()  # normalised
        p[5, 0] = 1.0 - 2**-24  # p near 1 without renormalisation
        p[5, 1:] = 2**-24 / (k - 1)
    return p


def soft_labels(rng: np.random.Generator, rows: int, k: int) -> np.ndarray:
    t = rng.random((rows, k)).astype(np.float32)
    t /= t.sum(axis=1, keepdims=True)
    hot = np.arange(0, rows, 3)  # every third row one-hot
    t[hot] = 0.0
    t[hot, rng.integers(0, k, hot.size)] = 1.0
    if k > 2 and rows >= 3:
        t[2, 1] = 0.0  # a zero label on the -inf logit of logit_rows
        t[2] /= t[2].sum()
    return t


CLASSES = [1, 2, 3, 7, 8, 9, 16, 17, 100, 1000]


# --------------------------------------------------------------------------- values


@pytest.mark.parametrize("k", CLASSES)
def test_sparse_logits(k: int) -> None:
    rng = np.random.default_rng(k)
    x = logit_rows(rng, 40, k)
    labels = rng.integers(0, k, 40)
    labels[9] = 0  # the confident row's label is its maximum
    labels[12:14] = (-1, k)  # invalid: NaN in their slots
    with counting("softmax_cross_entropy_sparse") as calls:
        fast, generic = fast_and_generic(lambda: probloss.sparse_categorical_crossentropy(
            labels, x, from_logits=True, validate="off"))
    assert calls[0] == 1
    assert_close_ulps(fast, generic)
    assert np.isnan(fast[12:14]).all()


@pytest.mark.parametrize("k", CLASSES)
def test_sparse_probabilities(k: int) -> None:
    rng = np.random.default_rng(100 + k)
    p = probability_rows(rng, 30, k)
    labels = rng.integers(0, k, 30)
    labels[1] = 0
    labels[5] = 0
    labels[9] = -2
    with counting("normalized_cross_entropy_sparse") as calls:
        fast, generic = fast_and_generic(lambda: probloss.sparse_categorical_crossentropy(
            labels, p, validate="off"))
    assert calls[0] == 1
    assert_close_ulps(fast, generic)


@pytest.mark.parametrize("from_logits", [True, False])
def test_sparse_ignore_class(from_logits: bool) -> None:
    rng = np.random.default_rng(7)
    pred = logit_rows(rng, 30, 10, special=False) if from_logits else probability_rows(rng, 30, 10)[8:]
    labels = rng.integers(0, 10, pred.shape[0])
    labels[::4] = -1
    fast, generic = fast_and_generic(lambda: probloss.SparseCategoricalCrossentropy(
        from_logits=from_logits, ignore_class=-1, reduction=None)(labels, pred))
    assert_close_ulps(fast, generic)
    assert (fast[::4] == 0).all()


@pytest.mark.parametrize("k", CLASSES)
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_categorical_logits(k: int, label_smoothing: float) -> None:
    rng = np.random.default_rng(200 + k)
    x = logit_rows(rng, 40, k)
    t = soft_labels(rng, 40, k)
    with counting("softmax_cross_entropy") as calls:
        fast, generic = fast_and_generic(lambda: probloss.categorical_crossentropy(
            t, x, from_logits=True, label_smoothing=label_smoothing, validate="off"))
    assert calls[0] == 1
    assert_close_ulps(fast, generic)


@pytest.mark.parametrize("k", CLASSES)
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_categorical_probabilities(k: int, label_smoothing: float) -> None:
    rng = np.random.default_rng(300 + k)
    p = probability_rows(rng, 30, k)
    t = soft_labels(rng, 30, k)
    with counting("normalized_cross_entropy") as calls:
        fast, generic = fast_and_generic(lambda: probloss.categorical_crossentropy(
            t, p, label_smoothing=label_smoothing, validate="off"))
    assert calls[0] == 1
    assert_close_ulps(fast, generic)


@pytest.mark.parametrize("k", CLASSES)
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0, 1.7])
@pytest.mark.parametrize("per_class", [False, True])
def test_focal_logits(k: int, gamma: float, per_class: bool) -> None:
    rng = np.random.default_rng(400 + k)
    x = logit_rows(rng, 40, k)
    t = soft_labels(rng, 40, k)
    alpha = tuple(float(a) for a in rng.random(k)) if per_class else 0.25
    with counting("focal_softmax_cross_entropy") as calls:
        fast, generic = fast_and_generic(lambda: probloss.categorical_focal_crossentropy(
            t, x, alpha=alpha, gamma=gamma, from_logits=True, label_smoothing=0.05, validate="off"))
    assert calls[0] == 1
    assert_close_ulps(fast, generic)


@pytest.mark.parametrize("k", [9, 1000])
def test_focal_logits_sparse_label_rows(k: int) -> None:
    """Rows that are mostly zero labels (the kernel skips their vectors), with odd values among them."""
    rng = np.random.default_rng(420 + k)
    rows = 30
    x = logit_rows(rng, rows, k)
    t = np.zeros((rows, k), np.float32)
    t[np.arange(rows), rng.integers(0, k, rows)] = 1.0
    t[12, -1] = 0.5  # a second label, in the tail
    t[13, k // 2] = -0.0  # a signed zero: adds 0, as 0
    t[14, k - 3] = np.nan
    t[15, 1] = np.inf
    t[16, k // 3] = -0.5  # negative (validate="off" computes it anyway)
    t[17] = 0.0  # no label at all
    t[18, :] = 0.0
    t[18, 0] = 2.0  # on the row's maximum? logit_rows' row 18 is random: both cases over the seeds
    alpha = tuple(float(a) for a in rng.random(k))
    for weights in (0.25, alpha):
        with counting("focal_softmax_cross_entropy") as calls:
            fast, generic = fast_and_generic(lambda w=weights: probloss.categorical_focal_crossentropy(
                t, x, alpha=w, gamma=2.0, from_logits=True, validate="off"))
        assert calls[0] == 1
        assert_close_ulps(fast, generic)


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_class_axis(axis: int) -> None:
    """A class axis that is not last is moved last (a copy); the result is the generic one."""
    rng = np.random.default_rng(11)
    shape = [4, 5, 6]
    k = shape[axis]
    x = rng.standard_normal(shape).astype(np.float32) * 4
    t = rng.random(shape).astype(np.float32)
    labels = rng.integers(0, k, [s for i, s in enumerate(shape) if i != axis % 3])
    p = rng.random(shape).astype(np.float32)
    calls = [
        lambda: probloss.sparse_categorical_crossentropy(labels, x, from_logits=True, axis=axis),
        lambda: probloss.sparse_categorical_crossentropy(labels, p, axis=axis),
        lambda: probloss.categorical_crossentropy(t, x, from_logits=True, axis=axis),
        lambda: probloss.categorical_crossentropy(t, p, axis=axis),
        lambda: probloss.categorical_focal_crossentropy(t, x, from_logits=True, axis=axis),
    ]
    for call in calls:
        fast, generic = fast_and_generic(call)
        assert_close_ulps(fast, generic)


def test_layouts_non_contiguous_and_big_endian() -> None:
    rng = np.random.default_rng(12)
    x = rng.standard_normal((30, 40)).astype(np.float32) * 5
    t = soft_labels(rng, 30, 40)
    labels = rng.integers(0, 20, 30)
    reference = probloss.sparse_categorical_crossentropy(labels, np.ascontiguousarray(x[:, ::2]), from_logits=True)
    for view in (x[:, ::2], np.asfortranarray(x[:, ::2]), x[:, ::2].astype(">f4")):
        fast, generic = fast_and_generic(lambda v=view: probloss.sparse_categorical_crossentropy(
            labels, v, from_logits=True))
        assert_close_ulps(fast, generic)
        np.testing.assert_array_equal(fast, reference)  # the same rows give the same bits
    big = x.astype(">f4"), t.astype(">f4"), rng.random(x.shape).astype(">f4")
    for call in (lambda: probloss.categorical_crossentropy(big[1], big[0], from_logits=True),
                 lambda: probloss.categorical_focal_crossentropy(big[1], big[0], from_logits=True),
                 lambda: probloss.categorical_crossentropy(big[1][:, ::-1], big[2][:, ::-1]),
                 lambda: probloss.sparse_categorical_crossentropy(labels, big[2][::-1])):
        assert_close_ulps(*fast_and_generic(call))


def test_empty_and_huge_rows() -> None:
    rng = np.random.default_rng(13)
    empty = np.zeros((0, 5), np.float32)
    fast, generic = fast_and_generic(lambda: probloss.sparse_categorical_crossentropy(
        np.zeros(0, np.int64), empty, from_logits=True))
    assert fast.shape == generic.shape == (0,)
    x = rng.standard_normal((3, 70001)).astype(np.float32) * 3
    labels = np.array([0, 35000, 70000])
    assert_close_ulps(*fast_and_generic(lambda: probloss.sparse_categorical_crossentropy(
        labels, x, from_logits=True)))
    t = rng.random(x.shape).astype(np.float32)
    assert_close_ulps(*fast_and_generic(lambda: probloss.categorical_crossentropy(t, x, from_logits=True)))


def test_confident_rows_with_subnormal_terms() -> None:
    """S' made of terms below float32's normal range: the loss keeps its bits (float64 reference)."""
    rng = np.random.default_rng(14)
    k = 1000
    x = (rng.standard_normal((64, k)) - rng.uniform(80, 100, (64, 1))).astype(np.float32)
    x[:, 0] = 0.0
    loss = native.softmax_cross_entropy_sparse(x, np.zeros(64, np.int64))
    x64 = x.astype(np.float64)
    exact = np.log1p(np.exp(x64[:, 1:]).sum(axis=1))  # float64 is exact enough here (2^-50)
    normal = exact >= TINY
    assert normal.sum() > 10
    ulps = np.abs(loss[normal] - exact[normal]) / np.spacing(exact[normal].astype(np.float32))
    assert ulps.max() <= 3.0


@pytest.mark.parametrize("k", [1, 3, 16, 33, 1000])
def test_loss_alone_across_the_exp_paths(k: int) -> None:
    """Row maxima on both sides of each exp path's range (direct for |max| <= 128, TwoSum to 2^20, wide beyond).

    The loss alone, with and without a gradient, against the float64 loss: within
    3 ulps; entries 150 and more below the maximum, and -inf, included.
    """
    rng = np.random.default_rng(700 + k)
    tops = np.float32([0.0, 1.0, -1.0, 100.0, 127.99, 128.0, -128.0, 128.01, -128.01, 129.0, 300.0, -300.0,
                       2.0**20, -(2.0**20), 2.0**20 + 1, 3e7, -3e7, 1e30, -1e30])
    rows = len(tops) * 4
    spread = np.repeat(np.float32([0.5, 5.0, 60.0, 400.0]), len(tops))  # the last spans past m - 150
    x = (np.tile(tops, 4)[:, None] - spread[:, None] * rng.random((rows, k))).astype(np.float32)
    x[np.arange(rows), rng.integers(0, k, rows)] = np.tile(tops, 4)  # the maximum is a top
    if k > 2:
        x[::3, 1] = -np.inf
    labels = rng.integers(0, k, rows)
    labels[::2] = np.argmax(x[::2], axis=1)  # confident rows: a tiny loss
    x64 = x.astype(np.float64)
    top = np.argmax(x64, axis=1)
    m = x64[np.arange(rows), top]
    e = np.exp(x64 - m[:, None])
    e[np.arange(rows), top] = 0.0
    exact = (m - x64[np.arange(rows), labels]) + np.log1p(e.sum(axis=1))
    dense_t = np.zeros_like(x)
    dense_t[np.arange(rows), labels] = 1.0
    grad = np.empty_like(x)
    normal = (exact >= TINY) & (exact < np.inf)  # a label on -inf: an inf loss
    for values in (native.softmax_cross_entropy_sparse(x, labels), native.softmax_cross_entropy(x, dense_t),
                   native.softmax_cross_entropy_sparse(x, labels, grad_out=grad)):
        np.testing.assert_array_equal(values[exact == np.inf], np.inf)
        np.testing.assert_array_equal(values[exact < TINY] <= TINY, True)
        ulps = np.abs(values[normal] - exact[normal]) / np.spacing(exact[normal].astype(np.float32))
        assert ulps.max(initial=0.0) <= 3.0


# --------------------------------------------------------------------------- gradients


def _softmax_parts(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """float64 (p, argmax, S') per row: p = softmax, S' = sum of exp(x - m) without the argmax."""
    x64 = x.astype(np.float64)
    rows = np.arange(x.shape[0])
    top = np.argmax(x64, axis=1)
    e = np.exp(x64 - x64[rows, top][:, None])
    e[rows, top] = 0.0
    rest = e.sum(axis=1)
    p = e / (1 + rest)[:, None]
    p[rows, top] = 1 / (1 + rest)
    return p, top, rest


def _assert_gradient(grad: np.ndarray, expected: np.ndarray, magnitude: np.ndarray, max_ulps: float = 4.0) -> None:
    """Within ``max_ulps`` float32 ulps of the larger of the terms that make each entry."""
    spacing = np.spacing(np.maximum(magnitude, TINY).astype(np.float32)).astype(np.float64)
    ulps = np.abs(grad - expected) / spacing
    assert ulps.max() <= max_ulps, f"max {ulps.max()} ulps at {np.unravel_index(np.argmax(ulps), ulps.shape)}"


@pytest.mark.parametrize("k", [1, 2, 7, 9, 100, 2000])
def test_sparse_gradient(k: int) -> None:
    rng = np.random.default_rng(500 + k)
    x = logit_rows(rng, 48, k, special=False)
    x[:12] *= 30  # confident rows
    labels = rng.integers(0, k, 48)
    labels[:24] = np.argmax(x[:24], axis=1)  # the label is the maximum: gradient -S'/(1 + S')
    row_scale = rng.uniform(0.5, 2.0, 48).astype(np.float32)
    grad = np.empty_like(x)
    loss = native.softmax_cross_entropy_sparse(x, labels, grad_out=grad, row_scale=row_scale, scale=1 / 48)
    p, top, rest = _softmax_parts(x)
    rows = np.arange(48)
    expected = p.copy()
    at_top = labels == top
    expected[rows, labels] = np.where(at_top, -rest / (1 + rest), p[rows, labels] - 1)
    s = row_scale.astype(np.float64) / 48
    expected *= s[:, None]
    _assert_gradient(grad, expected, np.abs(expected))
    # The loss alone takes the direct exps (no TwoSum), the loss with a gradient the TwoSum
    # path: the two may differ in the last bits, each within 3 ulps of the float64 loss
    # (where that is a normal float32; k = 1 has none).
    x64 = x.astype(np.float64)
    exact = (x64[rows, top] - x64[rows, labels]) + np.log1p(rest)
    normal = exact >= TINY
    for values in (loss, native.softmax_cross_entropy_sparse(x, labels)):
        ulps = np.abs(values[normal] - exact[normal]) / np.spacing(exact[normal].astype(np.float32))
        assert ulps.max(initial=0.0) <= 3.0


@pytest.mark.parametrize("k", [1, 2, 7, 9, 100, 2000])
def test_dense_gradient(k: int) -> None:
    rng = np.random.default_rng(600 + k)
    x = logit_rows(rng, 48, k, special=False)
    x[:12] *= 30
    t = soft_labels(rng, 48, k) * rng.uniform(0.5, 2, (48, 1)).astype(np.float32)  # mass != 1 too
    t[:6] = 0
    t[np.arange(6), np.argmax(x[:6], axis=1)] = 1  # one-hot on a confident maximum
    grad = np.empty_like(x)
    native.softmax_cross_entropy(x, t, grad_out=grad, scale=0.5)
    p, top, rest = _softmax_parts(x)
    rows = np.arange(48)
    t64 = t.astype(np.float64)
    mass = t64.sum(axis=1)
    expected = p * mass[:, None] - t64
    expected[rows, top] = (mass - t64[rows, top]) - mass * rest / (1 + rest)
    expected *= 0.5
    magnitude = 0.5 * np.maximum(p * mass[:, None], t64)
    magnitude[rows, top] = np.abs(expected[rows, top])
    _assert_gradient(grad, expected, magnitude)


def test_gradient_rows_left_to_the_caller_are_nan() -> None:
    x = np.array([[0.0, np.nan, 1.0], [0.0, 1.0, 2.0], [-np.inf, -np.inf, -np.inf], [1.0, -np.inf, 0.0]], np.float32)
    labels = np.array([0, 3, 1, 2])  # 3 is invalid
    grad = np.zeros_like(x)
    loss = native.softmax_cross_entropy_sparse(x, labels, grad_out=grad)
    np.testing.assert_array_equal(np.isnan(loss), [True, True, True, False])
    assert np.isnan(grad[:3]).all()
    p = np.exp(np.float64([1.0, 0.0]))
    p /= p.sum()
    np.testing.assert_allclose(grad[3], [p[0], 0.0, p[1] - 1], rtol=1e-6)  # exp(-inf) = 0


def test_array_interface_checks() -> None:
    x = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match="grad_out"):
        native.softmax_cross_entropy_sparse(x, [0, 1], grad_out=np.zeros((2, 3), np.float64))
    with pytest.raises(ValueError, match="grad_out"):
        native.softmax_cross_entropy(x, x, grad_out=np.zeros((3, 2), np.float32).T)
    with pytest.raises(ValueError, match="labels"):
        native.softmax_cross_entropy_sparse(x, [0, 1, 2])
    with pytest.raises(ValueError, match="2-D"):
        native.softmax_cross_entropy_sparse(np.zeros(3, np.float32), [0])
    with pytest.raises(ValueError, match="alpha"):
        native.focal_softmax_cross_entropy(x, x, alpha=[0.1, 0.2], gamma=2.0)


# --------------------------------------------------------------------------- threads and builds


def _all_outputs(seed: int, rows: int = 300, k: int = 257) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = logit_rows(rng, rows, k)
    t = soft_labels(rng, rows, k)
    p = probability_rows(rng, rows, k)
    labels = rng.integers(0, k, rows)
    grad_sparse, grad_dense = np.empty_like(x), np.empty_like(x)
    return {
        "sparse": native.softmax_cross_entropy_sparse(x, labels, grad_out=grad_sparse, scale=1 / rows),
        "grad_sparse": grad_sparse,
        "dense": native.softmax_cross_entropy(x, t, grad_out=grad_dense),
        "grad_dense": grad_dense,
        "sparse_loss": native.softmax_cross_entropy_sparse(x, labels),  # the loss alone: exps_direct
        "dense_loss": native.softmax_cross_entropy(x, t),
        "focal": native.focal_softmax_cross_entropy(x, t, alpha=0.25, gamma=2.0),
        "focal_general": native.focal_softmax_cross_entropy(x, t, alpha=rng.random(k), gamma=1.3),
        "sparse_probs": native.normalized_cross_entropy_sparse(p, labels, low=1e-7, high=1 - 1e-7),
        "dense_probs": native.normalized_cross_entropy(p, t, low=1e-7, high=1 - 1e-7),
    }


@pytest.mark.parametrize(("rows", "k"), [(2100, 257), (13, 70001)])
def test_bit_identical_for_every_thread_count(rows: int, k: int) -> None:
    """Shapes cut into several tasks (about 2^18 elements each), so that threads share the rows."""
    before = probloss.get_num_threads()
    try:
        results = []
        for threads in (1, 2, 3):
            probloss.set_num_threads(threads)
            results.append(_all_outputs(15, rows, k))
    finally:
        probloss.set_num_threads(before)
    for other in results[1:]:
        for name, value in results[0].items():
            np.testing.assert_array_equal(value, other[name], err_msg=name)


def _outputs_in_subprocess(seed: int, **environment: str) -> dict[str, Any]:
    """``_all_outputs(seed)`` and the build's name, from a subprocess with ``environment`` added."""
    code = ("import json, sys; import numpy as np; sys.path.insert(0, {tests!r}); import test_native_softmax as t; "
            "from probloss._backends import _native_softmax as n; "
            "print(json.dumps({{'isa': n._compiled.softmax_isa(), "
            "'out': {{k: v.view(np.uint32).tolist() for k, v in t._all_outputs({seed}).items()}}}}))")
    env = dict(os.environ, **environment)
    run = subprocess.run([sys.executable, "-c", code.format(tests=os.path.dirname(__file__), seed=seed)], env=env,
                         capture_output=True, text=True, check=True, timeout=300)
    found = json.loads(run.stdout.strip().splitlines()[-1])
    found["out"] = {k: np.asarray(v, np.uint32).view(np.float32) for k, v in found["out"].items()}
    return found


def test_baseline_build_agrees() -> None:
    """The non-AVX2 build (forced in a subprocess) gives the same values within a few ulps (no FMA)."""
    if native._compiled.softmax_isa() not in ("avx2", "avx512"):
        pytest.skip("this CPU runs the baseline build already (tested by every other test)")
    baseline = _outputs_in_subprocess(16, PROBLOSS_NATIVE_BASELINE="1")
    assert baseline["isa"] == "baseline"
    here = _all_outputs(16)
    for name, value in here.items():
        other = baseline["out"][name]
        if name.startswith("grad"):
            finite = np.isfinite(value)
            np.testing.assert_array_equal(finite, np.isfinite(other))
            # entries p·T - t cancel: compared at the scale of the row's largest entry
            np.testing.assert_allclose(other[finite], value[finite], rtol=1e-6,
                                       atol=1e-6 * np.abs(value[finite]).max(), err_msg=name)
        else:
            assert_close_ulps(other, value, max_ulps=4.0)


@pytest.mark.parametrize("seed", [16, 17])
def test_avx512_build_gives_the_avx2_builds_bits(seed: int) -> None:
    """The AVX-512 build (AVX2's 8-lane code with 32 registers) computes the same operations: the same bits."""
    if native._compiled.softmax_isa() != "avx512":
        pytest.skip("this CPU does not run the AVX-512 build")
    avx2 = _outputs_in_subprocess(seed, PROBLOSS_NATIVE_NO_AVX512="1")
    assert avx2["isa"] == "avx2"
    for name, value in _all_outputs(seed).items():
        np.testing.assert_array_equal(value.view(np.uint32), avx2["out"][name].view(np.uint32), err_msg=name)


def test_without_the_extension(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the compiled kernels missing, the fast paths fall back on NumPy (same values) and say so once."""
    from probloss import _native

    monkeypatch.setattr(native, "AVAILABLE", False)
    monkeypatch.setattr(_native, "_warned", False)
    rng = np.random.default_rng(17)
    x = logit_rows(rng, 20, 9, special=False)
    t = soft_labels(rng, 20, 9)
    labels = rng.integers(0, 9, 20)
    calls = [
        lambda: probloss.sparse_categorical_crossentropy(labels, x, from_logits=True),
        lambda: probloss.categorical_crossentropy(t, x, from_logits=True),
        lambda: probloss.categorical_focal_crossentropy(t, x, from_logits=True),
    ]
    with pytest.warns(_native.NativeUnavailableWarning, match="compiled kernels"):
        fast, generic = fast_and_generic(calls[0])
    assert_close_ulps(fast, generic)
    for call in calls[1:]:
        assert_close_ulps(*fast_and_generic(call))
    with pytest.raises(RuntimeError, match="not available"):
        native.softmax_cross_entropy_sparse(x, labels)


@pytest.mark.parametrize("direct", [False, True])
@pytest.mark.parametrize("loss", ["sparse", "categorical", "focal"])
def test_data_checks_read_the_kernels_bounds(loss: str, direct: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """From logits, the checks of validate take y_pred's bounds from the kernel's pass, and still catch bad data.

    ``direct``: with the public functions' short way to the kernels (probloss._backends._numpy_direct),
    which reads the same bounds without a DataChecker, so the spy then sees only the calls it hands
    back to the general path; without it (switched off here), every call takes the general path.
    """
    from probloss._backends import _numpy_direct
    from probloss._validation import DataChecker

    if not direct:
        monkeypatch.setattr(_numpy_direct, "categorical_crossentropy", lambda *args: None)
        monkeypatch.setattr(_numpy_direct, "sparse_categorical_crossentropy", lambda *args: None)
    learned: list[tuple[float, float]] = []
    original = DataChecker.learn_bounds

    def spy(self: DataChecker, x: Any, low: float, high: float) -> None:
        learned.append((low, high))
        original(self, x, low, high)

    monkeypatch.setattr(DataChecker, "learn_bounds", spy)
    rng = np.random.default_rng(18)
    x = rng.standard_normal((40, 9)).astype(np.float32) * 3
    x[5, 2] = -np.inf
    t = soft_labels(rng, 40, 9)
    labels = rng.integers(0, 9, 40)

    def run(logits: np.ndarray) -> Any:
        if loss == "sparse":
            return probloss.sparse_categorical_crossentropy(labels, logits, from_logits=True)
        if loss == "categorical":
            return probloss.categorical_crossentropy(t, logits, from_logits=True)
        return probloss.categorical_focal_crossentropy(t, logits, from_logits=True)

    run(x)
    from_labels = [] if loss == "sparse" else [(float(t.min()), float(t.max()))]  # dense labels: from pass 2
    if not direct or loss == "focal":
        assert sorted(learned) == sorted([(-np.inf, float(x.max())), *from_labels])
    if loss != "sparse":
        for value, where in ((1.5, (3, 4)), (np.nan, (8, 0)), (-0.25, (39, 8))):
            wrong = t.copy()
            wrong[where] = value
            with pytest.raises(ValueError, match=rf"`y_true` must be .*position \({where[0]}, {where[1]}\)"):
                probloss.categorical_crossentropy(wrong, x, from_logits=True)
        signed_zero = t.copy()
        signed_zero[signed_zero == 0] = -0.0  # valid, though the kernel does not vouch for it
        learned.clear()
        assert_close_ulps(run(x), probloss.categorical_crossentropy(signed_zero, x, from_logits=True)
                          if loss == "categorical" else
                          probloss.categorical_focal_crossentropy(signed_zero, x, from_logits=True))
    bad = x.copy()
    bad[7, 3] = np.nan
    with pytest.raises(ValueError, match=r"position \(7, 3\)"):
        run(bad)
    masked = x.copy()
    masked[11] = -np.inf
    with pytest.raises(ValueError, match=r"-inf for every class.*position \(11,\)"):
        run(masked)
    with pytest.warns(probloss.ProbabilitiesAsLogitsWarning):
        run(rng.random((40, 9)).astype(np.float32))


@pytest.mark.parametrize("sparse", [False, True])
def test_probability_checks_read_the_kernels_ranges(sparse: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """From probabilities, the checks take y_pred's (and dense y_true's) range and the rows' positive sums
    from the kernel's passes (no pass of their own), and still name the first offending position."""
    from probloss._validation import DataChecker

    learned: list[tuple[float, float]] = []
    original = DataChecker.learn_bounds

    def spy(self: DataChecker, x: Any, low: float, high: float) -> None:
        learned.append((low, high))
        original(self, x, low, high)

    summed = [0]  # positive_sums calls that had to sum the rows themselves
    original_sums = DataChecker.positive_sums

    def counted_sums(self: DataChecker, y_pred: Any, *args: Any, **kwargs: Any) -> None:
        summed[0] += not any(seen is y_pred for seen in self._positive)
        original_sums(self, y_pred, *args, **kwargs)

    monkeypatch.setattr(DataChecker, "learn_bounds", spy)

    monkeypatch.setattr(DataChecker, "positive_sums", counted_sums)
    rng = np.random.default_rng(19)
    p = rng.random((30, 7)).astype(np.float32)
    p[4, 1] = 0.0
    t = soft_labels(rng, 30, 7)
    labels = rng.integers(0, 7, 30)

    def run(probs: np.ndarray, y: np.ndarray | None = None) -> Any:
        if sparse:
            return probloss.sparse_categorical_crossentropy(labels, probs)
        return probloss.categorical_crossentropy(t if y is None else y, probs)

    run(p)
    expected = [(float(p.min()), float(p.max()))] + ([] if sparse else [(float(t.min()), float(t.max()))])
    assert sorted(learned) == sorted(expected)
    assert summed[0] == 0  # the kernel saw every row sum to more than 0
    for value, where in ((1.25, (2, 3)), (np.nan, (6, 0)), (-0.5, (29, 6)), (np.inf, (0, 0))):
        wrong = p.copy()
        wrong[where] = value
        with pytest.raises(ValueError, match=rf"`y_pred` must be .*position \({where[0]}, {where[1]}\)"):
            run(wrong)
    zero_row = p.copy()
    zero_row[13] = 0.0
    with pytest.raises(ValueError, match=r"sums to 0 .*position \(13,\)"):
        run(zero_row)
    signed_zero = p.copy()
    signed_zero[4, 1] = -0.0  # valid: the checks read the array themselves
    assert_close_ulps(run(signed_zero), run(p))
    if not sparse:
        wrong_t = t.copy()
        wrong_t[9, 2] = 2.0
        with pytest.raises(ValueError, match=r"`y_true` must be .*position \(9, 2\)"):
            run(p, wrong_t)


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("rows", [1, 3, 4, 5, 37])  # the summary's vector loop, its remainder, both
def test_logit_kernels_summary_is_numpys_reduction_of_their_buffers(sparse: bool, rows: int) -> None:
    """softmax_ce and softmax_ce_sparse return (finite, low, high, label_low, label_high).

    Checked against NumPy on the buffers the same call wrote: whether every loss
    is finite, and for each bounds buffer the minimum of its first column and
    the maximum of its second (each NaN where its column holds a NaN; both NaN
    where the buffer was not asked for), the reductions the data checks read.
    probloss's short NumPy path and the eager PyTorch path decide their data
    checks from these (test_numpy_direct.py and test_torch_native.py check the
    public results, errors and warnings).
    """
    from probloss import _native

    module = _native.softmax
    rng = np.random.default_rng(rows + 100 * sparse)
    classes = 11
    specials = (np.nan, np.inf, -np.inf, -0.0, -1.0, 2.0, 0.0)
    for trial in range(60):
        x = (rng.standard_normal((rows, classes)) * (1.0, 30.0, 1e30)[trial % 3]).astype(np.float32)
        t = soft_labels(rng, rows, classes)
        for _ in range(int(rng.integers(0, 3))):  # none, one or two special entries
            target = x if rng.random() < 0.5 else t
            target[rng.integers(rows), rng.integers(classes)] = rng.choice(specials)
        loss = np.empty(rows, np.float32)
        bounds = np.full((rows, 2), 7.0, np.float32) if trial % 4 else None
        label_bounds = None if sparse or trial % 5 == 0 else np.full((rows, 2), 7.0, np.float32)
        if sparse:
            labels = rng.integers(-1 if trial % 7 == 0 else 0, classes, rows)
            summary = module.softmax_ce_sparse(x, labels, classes, loss, None, None, 1.0, 2, bounds)
        else:
            summary = module.softmax_ce(x, t, classes, loss, None, None, 1.0, 2, bounds, label_bounds)
        expected = [bool(np.isfinite(loss).all())]
        for buffer in (bounds, label_bounds):
            expected += [np.nan, np.nan] if buffer is None else [float(buffer[:, 0].min()), float(buffer[:, 1].max())]
        assert type(summary) is tuple
        assert summary[0] is expected[0]
        np.testing.assert_array_equal(np.array(summary[1:]), np.array(expected[1:]))  # NaN where NaN


@pytest.mark.parametrize("classes", [7, 16, 37, 1000])  # the tail alone, pairs alone, both, many pairs
def test_label_bounds_are_each_rows_label_range(classes: int) -> None:
    """The kernel's per-row label range, from its own pass: NumPy's row minimum and maximum.

    One-hot rows (zero vectors the pass skips, whose 0 must still be the
    minimum), rows zero only in the pairs' part or only in the tail, rows with no
    zero at all, and rows the kernel must not vouch for (NaN, inf, a negative
    label, -0.0: NaN, NaN).
    """
    rng = np.random.default_rng(classes)
    rows = 12
    x = rng.standard_normal((rows, classes)).astype(np.float32)
    t = (rng.random((rows, classes)) + 0.01).astype(np.float32)  # no zero
    t[0] = 0.0
    t[0, classes // 2] = 1.0  # one-hot
    t[1, : classes - classes % 16] = 0.0  # zero in the pairs' part only (where there is a tail)
    t[2, classes - 1] = 0.0  # a zero in the last vector only
    t[3, 0] = 0.0  # a zero in the first vector only
    invalid = {6: np.nan, 7: np.inf, 8: -0.5, 9: -0.0}
    for r, value in invalid.items():
        t[r, classes // 3] = value
    loss = np.empty(rows, np.float32)
    label_bounds = np.full((rows, 2), 7.0, np.float32)
    from probloss import _native

    _native.softmax.softmax_ce(x, t, classes, loss, None, None, 1.0, 1, None, label_bounds)
    for r in range(rows):
        if r in invalid:
            assert np.isnan(label_bounds[r]).all(), r
        else:
            assert label_bounds[r, 0] == t[r].min(), r
            assert label_bounds[r, 1] == t[r].max(), r
    focal = np.full((rows, 2), 7.0, np.float32)
    native.focal_softmax_cross_entropy(x, t, alpha=0.25, gamma=2.0, label_bounds=focal)
    np.testing.assert_array_equal(focal, label_bounds)
