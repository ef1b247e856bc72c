"""Hypothesis properties of every loss, checked against the float64 reference (tests/reference.py).

On NumPy (float32 and float64), over random shapes, options and data:
agreement with the reference; non-negativity where the math says so;
focal with gamma=0 (alpha=1 / no balancing) equals plain CE; label smoothing
equals the same loss on hand-smoothed labels (and 0 is the identity);
reduction "sum" equals the sum of reduction "none"; sparse CE equals CCE on
one-hot labels; CE from logits is invariant to adding a constant per row;
KL(p, p) = 0. A smaller sweep runs the reference agreement on every backend.
"""

from __future__ import annotations

import numpy as np
import pytest
import reference as ref
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import probloss

NAMES = list(ref.LOSSES)
NONNEGATIVE = [n for n in NAMES if n not in ("poisson", "kl_divergence")]  # Poisson/KL (clipped) may be < 0


def _data(name: str, seed: int, dtype: str, from_logits: bool) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(1, 5)), int(rng.integers(2, 5)))
    if from_logits:
        y_pred = rng.normal(scale=rng.choice([1.0, 10.0]), size=shape)
        y_pred[0, 0] = -2.5  # real logits: not all inside [0, 1] (that would warn)
    else:
        y_pred = rng.random(shape) * 0.998 + 1e-3
        if "categorical" in name:
            y_pred /= y_pred.sum(-1, keepdims=True)
    if name == "sparse_categorical_crossentropy":
        y_true = rng.integers(0, shape[1], size=shape[0])
    elif name == "poisson":
        y_true, y_pred = rng.poisson(2.0, shape).astype(float), rng.random(shape) * 4
    elif "categorical" in name or name == "kl_divergence":
        y_true = np.eye(shape[1])[rng.integers(0, shape[1], shape[0])] if rng.random() < 0.7 else \
            rng.dirichlet(np.ones(shape[1]), shape[0])
    else:
        y_true = (rng.random(shape) < 0.5).astype(float)
    return (y_true if y_true.dtype.kind == "i" else y_true.astype(dtype)), y_pred.astype(dtype)


def _options(name: str, draw: st.DataObject) -> dict:
    opts: dict = {}
    if name in ("poisson", "kl_divergence"):
        return opts
    opts["from_logits"] = draw.draw(st.booleans())
    if name != "sparse_categorical_crossentropy":
        opts["label_smoothing"] = draw.draw(st.sampled_from([0.0, 0.1, 0.5, 1.0]))
    if "focal" in name:
        opts["gamma"] = draw.draw(st.sampled_from([0.0, 0.5, 2.0, 3.5]))
        opts["alpha"] = draw.draw(st.sampled_from([0.25, 1.0, 0.6]))
    if name == "binary_focal_crossentropy":
        opts["apply_class_balancing"] = draw.draw(st.booleans())
    return opts


def _reference(name: str, y_true, y_pred, dtype: str, **opts) -> np.ndarray:
    clip = "float64" if dtype == "float64" else "float32"
    out = ref.LOSSES[name](y_true, y_pred, clip_dtype=clip, **opts)
    return out[0] if name == "sparse_categorical_crossentropy" else out


def _tolerance(dtype: str) -> dict:
    return {"rtol": 2e-5, "atol": 1e-6} if dtype == "float32" else {"rtol": 1e-10, "atol": 1e-12}


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=80)
@given(seed=st.integers(0, 2**32 - 1), dtype=st.sampled_from(["float32", "float64"]), draw=st.data())
def test_agrees_with_reference_and_sign(name: str, seed: int, dtype: str, draw: st.DataObject) -> None:
    opts = _options(name, draw)
    y_true, y_pred = _data(name, seed, dtype, opts.get("from_logits", False))
    got = getattr(probloss, name)(y_true, y_pred, **opts)
    assert got.dtype == np.dtype(dtype)
    want = _reference(name, y_true, y_pred, dtype, **opts)
    np.testing.assert_allclose(got, want, **_tolerance(dtype))
    if name in NONNEGATIVE:
        assert np.all(got >= 0)


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=40)
@given(seed=st.integers(0, 2**32 - 1), draw=st.data(),
       reduction=st.sampled_from(["sum", "sum_over_batch_size", "mean_with_sample_weight"]))
def test_reductions_against_reference(name: str, seed: int, draw: st.DataObject, reduction: str) -> None:
    opts = _options(name, draw)
    y_true, y_pred = _data(name, seed, "float64", opts.get("from_logits", False))
    weight = np.random.default_rng(seed + 1).random(y_pred.shape[0])
    cls = probloss.get(name)
    per_sample = probloss.LossFunctionWrapper(cls, reduction="none", **opts)(y_true, y_pred, sample_weight=weight)
    total = probloss.LossFunctionWrapper(cls, reduction=reduction, **opts)(y_true, y_pred, sample_weight=weight)
    if reduction == "sum":
        np.testing.assert_allclose(total, np.sum(per_sample), rtol=1e-12)
    values = _reference(name, y_true, y_pred, "float64", **opts)
    np.testing.assert_allclose(total, ref.reduce(values, weight, None, reduction), rtol=1e-10, atol=1e-12)


@settings(max_examples=60)
@given(seed=st.integers(0, 2**32 - 1), from_logits=st.booleans(), dtype=st.sampled_from(["float32", "float64"]))
def test_focal_with_gamma_zero_is_plain_crossentropy(seed: int, from_logits: bool, dtype: str) -> None:
    y_true, y_pred = _data("categorical_crossentropy", seed, dtype, from_logits)
    np.testing.assert_allclose(
        probloss.categorical_focal_crossentropy(y_true, y_pred, alpha=1.0, gamma=0.0, from_logits=from_logits),
        probloss.categorical_crossentropy(y_true, y_pred, from_logits=from_logits), **_tolerance(dtype))
    y_true, y_pred = _data("binary_crossentropy", seed, dtype, from_logits)
    np.testing.assert_allclose(
        probloss.binary_focal_crossentropy(y_true, y_pred, gamma=0.0, from_logits=from_logits),
        probloss.binary_crossentropy(y_true, y_pred, from_logits=from_logits), **_tolerance(dtype))


@pytest.mark.parametrize("name", ["binary_crossentropy", "binary_focal_crossentropy", "categorical_crossentropy",
                                  "categorical_focal_crossentropy"])
@settings(max_examples=40)
@given(seed=st.integers(0, 2**32 - 1), smoothing=st.floats(0.0, 1.0), from_logits=st.booleans())
def test_label_smoothing_is_smoothing_the_labels(name: str, seed: int, smoothing: float, from_logits: bool) -> None:
    y_true, y_pred = _data(name, seed, "float64", from_logits)
    fn = getattr(probloss, name)
    k = 2.0 if "binary" in name else y_pred.shape[-1]
    by_hand = y_true * (1 - smoothing) + smoothing / k
    np.testing.assert_allclose(fn(y_true, y_pred, from_logits=from_logits, label_smoothing=smoothing),
                               fn(by_hand, y_pred, from_logits=from_logits), rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(fn(y_true, y_pred, from_logits=from_logits, label_smoothing=0.0),
                                  fn(y_true, y_pred, from_logits=from_logits))


@settings(max_examples=60)
@given(seed=st.integers(0, 2**32 - 1), from_logits=st.booleans(), dtype=st.sampled_from(["float32", "float64"]))
def test_sparse_equals_categorical_on_one_hot(seed: int, from_logits: bool, dtype: str) -> None:
    labels, y_pred = _data("sparse_categorical_crossentropy", seed, dtype, from_logits)
    one_hot = np.eye(y_pred.shape[-1], dtype=dtype)[labels]
    np.testing.assert_allclose(probloss.sparse_categorical_crossentropy(labels, y_pred, from_logits=from_logits),
                               probloss.categorical_crossentropy(one_hot, y_pred, from_logits=from_logits),
                               **_tolerance(dtype))


@pytest.mark.parametrize("name", ["categorical_crossentropy", "categorical_focal_crossentropy",
                                  "sparse_categorical_crossentropy"])
@settings(max_examples=40)
@given(seed=st.integers(0, 2**32 - 1), shift=st.floats(-100.0, 100.0))
def test_logits_invariant_to_a_constant(name: str, seed: int, shift: float) -> None:
    y_true, y_pred = _data(name, seed, "float64", True)
    fn = getattr(probloss, name)
    np.testing.assert_allclose(fn(y_true, y_pred + shift, from_logits=True), fn(y_true, y_pred, from_logits=True),
                               rtol=1e-9, atol=1e-11)


@settings(max_examples=60)
@given(seed=st.integers(0, 2**32 - 1), dtype=st.sampled_from(["float32", "float64"]))
def test_kl_of_a_distribution_with_itself_is_zero(seed: int, dtype: str) -> None:
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.ones(int(rng.integers(1, 6))), int(rng.integers(1, 4))).astype(dtype)
    p[rng.random(p.shape) < 0.2] = 0.0
    assert np.all(probloss.kl_divergence(p, p) == 0.0)


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=6, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), draw=st.data())
def test_backends_agree_with_reference(backend, name: str, seed: int, draw: st.DataObject) -> None:
    opts = _options(name, draw)
    y_true, y_pred = _data(name, seed, "float32", opts.get("from_logits", False))
    got = getattr(probloss, name)(backend.asarray(y_true), backend.asarray(y_pred), **opts)
    assert backend.is_native(got)
    np.testing.assert_allclose(backend.to_numpy(got), _reference(name, y_true, y_pred, "float32", **opts),
                               rtol=2e-5, atol=1e-6)
