"""Extreme values, gradients, low precision, edge shapes and thread safety.

* Extreme logits (+-1e4, -inf), probabilities of exactly 0 and 1, gamma in
  [0, 1), zero KL targets and zero Poisson rates: finite values equal to the
  float64 reference (tests/reference.py, with Keras's float32 clip bounds on
  the probability paths), and finite gradients under torch autograd and
  jax.grad.
* float16 / bfloat16 inputs give the float32 result rounded to the input
  dtype, never NaN where float32 is finite (probloss difference 6).
* Empty batches reduce to 0 (difference 4), a batch of one, rank-1 inputs,
  all labels ignored (0 with a zero gradient, as Keras 3), one class (CCE
  warns SyntaxWarning as Keras).
* The same loss object called from 8 threads gives the serial results.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import reference as ref
from conftest import library

import probloss

_Y2 = [[1.0, 0.0, 1.0, 0.0, 0.0, 1.0]]
_X2 = [[1e4, -1e4, -1e4, 1e4, -np.inf, 3.0]]
_P2 = [[1.0, 0.0, 0.0, 1.0, 0.0, 1.0]]
_YC = [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]
_XC = [[-1e4, 1e4, -np.inf], [1e4, -1e4, 0.0]]
_PC = [[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]

EXTREME = [
    ("bce-logits", probloss.BinaryCrossentropy(from_logits=True), "binary_crossentropy", _Y2, _X2,
     {"from_logits": True}),
    ("bce-probs", probloss.BinaryCrossentropy(), "binary_crossentropy", _Y2, _P2, {}),
    *[(f"bfce-logits-g{g}", probloss.BinaryFocalCrossentropy(from_logits=True, gamma=g), "binary_focal_crossentropy",
       _Y2, _X2, {"from_logits": True, "gamma": g}) for g in (0.0, 0.5, 2.0)],
    *[(f"bfce-probs-g{g}", probloss.BinaryFocalCrossentropy(gamma=g, label_smoothing=0.1),
       "binary_focal_crossentropy", _Y2, _P2, {"gamma": g, "label_smoothing": 0.1}) for g in (0.0, 0.5)],
    ("cce-logits", probloss.CategoricalCrossentropy(from_logits=True), "categorical_crossentropy", _YC, _XC,
     {"from_logits": True}),
    ("cce-probs", probloss.CategoricalCrossentropy(), "categorical_crossentropy", _YC, _PC, {}),
    *[(f"cfce-logits-g{g}", probloss.CategoricalFocalCrossentropy(from_logits=True, gamma=g),
       "categorical_focal_crossentropy", _YC, _XC, {"from_logits": True, "gamma": g}) for g in (0.0, 0.5, 2.0)],
    *[(f"cfce-probs-g{g}", probloss.CategoricalFocalCrossentropy(gamma=g), "categorical_focal_crossentropy",
       _YC, _PC, {"gamma": g}) for g in (0.0, 0.5)],
    ("scce-logits", probloss.SparseCategoricalCrossentropy(from_logits=True), "sparse_categorical_crossentropy",
     [1, 0], _XC, {"from_logits": True}),
    ("scce-probs", probloss.SparseCategoricalCrossentropy(), "sparse_categorical_crossentropy", [1, 0], _PC, {}),
    ("poisson-zero-rates", probloss.Poisson(), "poisson", [[0.0, 1.0, 3.0]], [[0.0, 0.0, 0.0]], {}),
    ("kl-zero-targets", probloss.KLDivergence(), "kl_divergence", [[0.0, 1.0, 0.0]], [[0.0, 1.0, 0.0]], {}),
    ("kl-zero-preds", probloss.KLDivergence(), "kl_divergence", [[0.5, 0.5, 0.0]], [[0.0, 1.0, 0.0]], {}),
]


def _want(name: str, y_true, y_pred, opts) -> float:
    return float(ref.loss_class(name, np.asarray(y_true), np.asarray(y_pred, np.float32), clip_dtype="float32",
                                **opts))


@pytest.mark.parametrize(("case", "loss", "name", "y_true", "y_pred", "opts"), EXTREME, ids=[c[0] for c in EXTREME])
def test_extreme_values_are_finite_and_match_float64(case, loss, name, y_true, y_pred, opts) -> None:
    true_dtype = np.int64 if name.startswith("sparse") else np.float32
    got = float(loss(np.asarray(y_true, true_dtype), np.asarray(y_pred, np.float32)))
    want = _want(name, y_true, y_pred, opts)
    assert np.isfinite(got)
    assert got == pytest.approx(want, rel=2e-5, abs=1e-6)


@pytest.mark.parametrize(("case", "loss", "name", "y_true", "y_pred", "opts"), EXTREME, ids=[c[0] for c in EXTREME])
def test_extreme_values_have_finite_gradients(case, loss, name, y_true, y_pred, opts, jax_x64) -> None:
    torch, jax = library("torch").module, library("jax").module
    true_dtype = np.int64 if name.startswith("sparse") else np.float32
    yt, yp = np.asarray(y_true, true_dtype), np.asarray(y_pred, np.float32)
    x = torch.asarray(yp.copy(), requires_grad=True)
    value = loss(torch.asarray(yt), x)
    value.backward()
    assert np.isfinite(value.item())
    assert torch.isfinite(x.grad).all()
    grad = jax.grad(lambda p: loss(jax.numpy.asarray(yt), p))(jax.numpy.asarray(yp))
    assert np.isfinite(np.asarray(grad)).all()


LOW = [
    ("binary_crossentropy", [[1, 0, 1, 0]], [[1.0, 0.0, 0.3, 1.0]], {}),
    ("binary_crossentropy", [[1, 0, 1, 0]], [[60000.0, -60000.0, 3.0, 2.0]], {"from_logits": True}),
    ("binary_focal_crossentropy", [[1, 0, 1, 0]], [[0.9, 0.0, 0.3, 1.0]], {"gamma": 0.5}),
    ("categorical_crossentropy", _YC, [[0.0, 1.0, 0.0], [0.2, 0.3, 0.5]], {}),
    ("categorical_crossentropy", _YC, [[-300.0, 300.0, -60000.0], [8.0, -8.0, 0.0]], {"from_logits": True}),
    ("categorical_focal_crossentropy", _YC, [[0.0, 1.0, 0.0], [0.2, 0.3, 0.5]], {"gamma": 0.5}),
    ("sparse_categorical_crossentropy", [1, 0], [[-300.0, 300.0, -60000.0], [8.0, -8.0, 0.0]], {"from_logits": True}),
    ("poisson", [[0.0, 1.0, 3.0]], [[0.0, 0.5, 20.0]], {}),
    ("kl_divergence", [[0.0, 1.0, 0.0]], [[0.2, 0.7, 0.1]], {}),
]


@pytest.mark.parametrize("lib", ["numpy", "torch", "jax"])
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize(("name", "y_true", "y_pred", "opts"), LOW, ids=[f"{c[0]}-{i}" for i, c in enumerate(LOW)])
def test_low_precision_is_float32_rounded_once(lib, dtype, name, y_true, y_pred, opts, jax_x64) -> None:
    b = library(lib)
    true_dtype = "int64" if name.startswith("sparse") else dtype
    got = getattr(probloss, name)(b.asarray(y_true, true_dtype), b.asarray(y_pred, dtype), **opts)
    assert dtype in str(got.dtype)
    # The reference sees the inputs as rounded to the low-precision dtype, computes in float64 with
    # float32 clip bounds, and is rounded once to the low-precision dtype.
    inputs = b.to_numpy(b.asarray(y_pred, dtype)).astype(np.float64)
    want = ref.LOSSES[name](np.asarray(y_true), inputs, clip_dtype="float32", **opts)
    want = want[0] if name.startswith("sparse") else want
    rounded = b.to_numpy(b.asarray(want, dtype)).astype(np.float64)
    got64 = b.to_numpy(got).astype(np.float64)
    assert np.all(np.isfinite(got64))
    np.testing.assert_array_equal(got64, rounded)


@pytest.mark.parametrize("name", list(ref.LOSSES))
def test_empty_batch_reduces_to_zero(backend, name) -> None:
    fn = getattr(probloss, name)
    loss = probloss.LossFunctionWrapper(fn)
    shape = (0, 3)
    y_true = backend.asarray(np.zeros(shape[:1], np.int64)) if name.startswith("sparse") else \
        backend.asarray(np.zeros(shape, np.float32))
    got = loss(y_true, backend.asarray(np.full(shape, 1 / 3, np.float32)))
    assert float(backend.to_numpy(got)) == 0.0  # Keras 3 would return an empty array (difference 4)
    per_sample = probloss.LossFunctionWrapper(fn, reduction="none")(
        y_true, backend.asarray(np.full(shape, 1 / 3, np.float32)))
    assert backend.to_numpy(per_sample).shape == (0,)


def test_batch_of_one_and_rank_one_inputs() -> None:
    y, p = np.array([0.0, 1.0, 1.0], np.float32), np.array([0.2, 0.6, 0.9], np.float32)
    for reduction in ("sum_over_batch_size", "sum", "none"):
        got = probloss.BinaryCrossentropy(reduction=reduction)(y, p)
        np.testing.assert_allclose(got, ref.loss_class("binary_crossentropy", y, p, reduction=reduction,
                                                       clip_dtype="float32"), rtol=1e-6)
        got = probloss.BinaryCrossentropy(reduction=reduction)(y[None], p[None])  # a batch of one
        np.testing.assert_allclose(got, ref.loss_class("binary_crossentropy", y[None], p[None], reduction=reduction,
                                                       clip_dtype="float32"), rtol=1e-6)
    weight = np.array([1.0, 0.5, 2.0], np.float32)  # rank-1: a scalar loss times a (B,) weight, as Keras 3
    np.testing.assert_allclose(probloss.Poisson()(y, p, sample_weight=weight),
                               ref.loss_class("poisson", y, p, weight, clip_dtype="float32"), rtol=1e-6)
    np.testing.assert_allclose(probloss.SparseCategoricalCrossentropy()(np.array([2]), np.array([[0.2, 0.3, 0.5]])),
                               -np.log(0.5), rtol=1e-12)


@pytest.mark.parametrize("from_logits", [False, True])
def test_all_ignored_is_zero_with_zero_gradient(from_logits, jax_x64) -> None:
    torch, jax = library("torch").module, library("jax").module
    labels = np.array([[-1, -1], [-1, -1]])
    y_pred = np.zeros((2, 2, 3), np.float32) if not from_logits else np.full((2, 2, 3), -np.inf, np.float32)
    loss = probloss.SparseCategoricalCrossentropy(ignore_class=-1, from_logits=from_logits)
    x = torch.asarray(y_pred.copy(), requires_grad=True)
    value = loss(torch.asarray(labels), x)
    value.backward()
    assert value.item() == 0.0
    assert torch.equal(x.grad, torch.zeros_like(x))
    grad = jax.grad(lambda p: loss(jax.numpy.asarray(labels), p))(jax.numpy.asarray(y_pred))
    assert not np.asarray(grad).any()


@pytest.mark.parametrize("name", ["categorical_crossentropy", "categorical_focal_crossentropy"])
def test_single_class_warns_like_keras(name) -> None:
    fn = getattr(probloss, name)
    with pytest.warns(SyntaxWarning, match=rf"In loss {name}, expected y_pred.shape.*num_classes > 1"):
        got = fn(np.ones((2, 1), np.float32), np.ones((2, 1), np.float32))
    # One class, probability 1 renormalised and clipped to 1 - eps (float32): -log(1 - 2**-23) each.
    want = ref.LOSSES[name](np.ones((2, 1)), np.ones((2, 1)), clip_dtype="float32")
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_thread_safety_eight_threads() -> None:
    rng = np.random.default_rng(7)
    losses = [probloss.BinaryFocalCrossentropy(from_logits=True, gamma=1.5),
              probloss.SparseCategoricalCrossentropy(ignore_class=0, validate="warn")]
    inputs = [((rng.random((64, 8)) < 0.5).astype(np.float32), rng.normal(size=(64, 8)).astype(np.float32)),
              (rng.integers(0, 5, size=(64, 7)), rng.random((64, 7, 5)).astype(np.float32))]
    serial = [[float(loss(*inputs[i])) for i, loss in enumerate(losses)] for _ in range(4)]
    results: list[list[float]] = [[] for _ in range(8)]
    barrier = threading.Barrier(8)

    def work(k: int) -> None:
        barrier.wait()
        with probloss.validation("off" if k % 2 else "raise"):  # contexts are per thread
            for _ in range(4):
                results[k].extend(float(loss(*inputs[i])) for i, loss in enumerate(losses))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    want = [v for row in serial for v in row]
    assert all(r == want for r in results)
    np.testing.assert_allclose(want[0], ref.loss_class("binary_focal_crossentropy", *inputs[0], from_logits=True,
                                                       gamma=1.5, clip_dtype="float32"), rtol=1e-5)


def test_set_epsilon_is_process_wide_like_keras() -> None:
    # Keras's set_epsilon is global: a value set here must reach worker threads.
    import threading

    y, p = np.array([[1.0]], np.float32), np.array([[0.0]], np.float32)
    seen: list[float] = []
    previous = probloss.epsilon()
    probloss.set_epsilon(1e-3)
    try:
        worker = threading.Thread(target=lambda: seen.append(float(probloss.binary_crossentropy(y, p)[0])))
        worker.start()
        worker.join()
    finally:
        probloss.set_epsilon(previous)
    np.testing.assert_allclose(seen, [-np.log(np.float32(1e-3))], rtol=1e-6)
    assert probloss.epsilon() == previous


_INFINITE_LOGITS = np.array([[np.inf, -np.inf, np.inf, -np.inf, 3.0, -2.0]] * 3, np.float32).T


@pytest.mark.parametrize("name", ["binary_crossentropy", "binary_focal_crossentropy"])
def test_infinite_logits_give_their_limits_without_warnings(backend, name) -> None:
    """validate="off": a logit of ±inf on the right side costs 0, on the wrong side inf (no NaN).

    The limits of the formula in the test: y·softplus(-x) + (1-y)·softplus(x) at x = ±inf.
    Runs under ``filterwarnings = error``: no ``inf - inf`` or ``0 * inf`` is evaluated.
    """
    y = np.array([[1.0, 0.0, 0.0, 1.0, 1.0, 0.0]] * 3, np.float32).T
    fn = getattr(probloss, name)
    got = backend.to_numpy(fn(backend.asarray(y), backend.asarray(_INFINITE_LOGITS), from_logits=True,
                              validate="off"))
    x = _INFINITE_LOGITS[:, 0].astype(np.float64)
    with np.errstate(over="ignore"):
        bce = np.where(y[:, 0] == 1, np.logaddexp(0, -x), np.logaddexp(0, x))
    assert got.shape == (6,)
    np.testing.assert_array_equal(got[:2], [0.0, 0.0])
    np.testing.assert_array_equal(got[2:4], [np.inf, np.inf])
    if name == "binary_crossentropy":
        np.testing.assert_allclose(got[4:], bce[4:], rtol=1e-6)
    else:
        assert np.all((got[4:] > 0) & (got[4:] < bce[4:]))
