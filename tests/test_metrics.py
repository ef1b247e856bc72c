"""Streaming metrics (``probloss.metrics``) against one-shot formulas and Keras 3's metrics.

* Streaming any split of a data set, and merging metrics that each saw a part, give the
  weighted mean of per-sample losses over the whole set, computed here in float64 from
  the loss function's per-sample values (an independent reduction written in the test).
* Keras 3's metric objects (``keras.metrics``, JAX backend) give the same result on the
  same batches where Keras has no pitfall; where probloss deliberately differs
  (``ignore_class`` without weights, scalar weights over several batches), the test
  checks the tf.keras / math rule instead.
"""

from __future__ import annotations

import itertools
import os

import numpy as np
import pytest

import probloss
from probloss import metrics

os.environ.setdefault("KERAS_BACKEND", "jax")
import keras  # a test dependency: missing Keras is an error, never a skip

RNG = np.random.default_rng(12)
B, C = 23, 5


def _data(kind: str, rows: int = B) -> tuple[np.ndarray, np.ndarray]:
    if kind == "binary":
        return (RNG.integers(0, 2, (rows, 3)).astype(np.float32),
                RNG.uniform(0.01, 0.99, (rows, 3)).astype(np.float32))
    if kind == "sparse":
        return RNG.integers(0, C, rows), RNG.dirichlet(np.ones(C), rows).astype(np.float32)
    if kind == "counts":
        return (RNG.poisson(2.0, (rows, 3)).astype(np.float32),
                RNG.uniform(0.1, 4.0, (rows, 3)).astype(np.float32))
    labels = RNG.integers(0, C, rows)
    return np.eye(C, dtype=np.float32)[labels], RNG.dirichlet(np.ones(C), rows).astype(np.float32)


CASES = {
    "BinaryCrossentropy": ("binary", probloss.binary_crossentropy, {"label_smoothing": 0.1}),
    "BinaryFocalCrossentropy": ("binary", probloss.binary_focal_crossentropy, {"gamma": 1.5}),
    "CategoricalCrossentropy": ("onehot", probloss.categorical_crossentropy, {}),
    "CategoricalFocalCrossentropy": ("onehot", probloss.categorical_focal_crossentropy, {}),
    "SparseCategoricalCrossentropy": ("sparse", probloss.sparse_categorical_crossentropy,
                                      {"ignore_class": 3}),
    "Poisson": ("counts", probloss.poisson, {}),
    "KLDivergence": ("onehot", probloss.kl_divergence, {}),
}


def _one_shot(fn, options, y_true, y_pred, weight) -> float:
    """The weighted mean of per-sample losses over the whole set, in float64."""
    values = np.asarray(fn(y_true, y_pred, **options), np.float64)
    valid = np.ones_like(values)
    if "ignore_class" in options:
        valid = (np.asarray(y_true) != options["ignore_class"]).astype(np.float64)
    w = valid * (1.0 if weight is None else np.asarray(weight, np.float64))
    return float(np.sum(values * w) / np.sum(w))


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("weighted", [False, True])
def test_streaming_and_merge_equal_one_shot(name: str, weighted: bool) -> None:
    kind, fn, options = CASES[name]
    y_true, y_pred = _data(kind)
    weight = RNG.uniform(0.0, 2.0, B) if weighted else None
    expected = _one_shot(fn, options, y_true, y_pred, weight)
    cuts = [0, 1, 9, 9, 17, B]  # uneven parts, one empty
    streamed = getattr(metrics, name)(dtype="float64", **options)
    parts = []
    for lo, hi in itertools.pairwise(cuts):
        w = None if weight is None else weight[lo:hi]
        streamed.update_state(y_true[lo:hi], y_pred[lo:hi], sample_weight=w)
        part = getattr(metrics, name)(dtype="float64", **options)
        part.update_state(y_true[lo:hi], y_pred[lo:hi], sample_weight=w)
        parts.append(part)
    np.testing.assert_allclose(float(streamed.result()), expected, rtol=1e-12)
    merged = getattr(metrics, name)(dtype="float64", **options)
    merged.merge_state(parts)
    np.testing.assert_allclose(float(merged.result()), expected, rtol=1e-12)
    merged.reset_state()
    assert float(merged.result()) == 0.0
    assert merged.count == 0.0


@pytest.mark.parametrize("name", list(CASES))
def test_config_round_trip(name: str) -> None:
    _, _, options = CASES[name]
    metric = getattr(metrics, name)(name="m", dtype="float64", **options)
    config = metric.get_config()
    assert config["name"] == "m"
    assert config["dtype"] == "float64"
    rebuilt = type(metric).from_config(config)
    assert rebuilt.get_config() == config
    assert getattr(metrics, name)().get_config()["dtype"] == "float32"


KERAS_METRICS = ("BinaryCrossentropy", "CategoricalCrossentropy", "SparseCategoricalCrossentropy",
                 "Poisson", "KLDivergence")


@pytest.mark.parametrize("name", KERAS_METRICS)
def test_same_result_and_config_as_keras(name: str) -> None:
    kind, _, options = CASES[name]
    options = {k: v for k, v in options.items() if k != "ignore_class"}  # see the next test
    ours, theirs = getattr(metrics, name)(**options), getattr(keras.metrics, name)(**options)
    assert ours.get_config() == theirs.get_config()
    for _ in range(2):  # one shape: Keras compiles each new shape
        y_true, y_pred = _data(kind, 8)
        weight = RNG.uniform(0.0, 2.0, 8).astype(np.float32)
        ours.update_state(y_true, y_pred, sample_weight=weight)
        theirs.update_state(y_true, y_pred, sample_weight=weight)
        ours.update_state(y_true, y_pred)
        theirs.update_state(y_true, y_pred)
    np.testing.assert_allclose(float(ours.result()), float(theirs.result()), rtol=1e-5)
    assert ours.result().dtype == np.float32


def test_ignore_class_leaves_samples_out_of_the_count_with_or_without_weights() -> None:
    y_true = np.array([0, 1, 2])
    y_pred = np.array([[0.9, 0.05, 0.05], [0.05, 0.95, 0.0], [0.1, 0.8, 0.1]], np.float32)
    ours = metrics.SparseCategoricalCrossentropy(ignore_class=0)
    ours.update_state(y_true, y_pred)
    # tf.keras and the math: the mean over the two kept samples, -log(.95) and -log(.1).
    np.testing.assert_allclose(float(ours.result()), (-np.log(0.95) - np.log(0.1)) / 2, rtol=1e-6)
    assert ours.count == 2.0
    # Keras 3 agrees once a weight is given (its pitfall is the unweighted case).
    weight = np.array([0.5, 1.5, 2.0], np.float32)
    ours.reset_state()
    ours.update_state(y_true, y_pred, sample_weight=weight)
    theirs = keras.metrics.SparseCategoricalCrossentropy(ignore_class=0)
    theirs.update_state(y_true, y_pred, sample_weight=weight)
    np.testing.assert_allclose(float(ours.result()), float(theirs.result()), rtol=1e-6)


def test_scalar_weight_weights_every_sample_and_integer_inputs_work() -> None:
    m = metrics.Poisson(dtype="float64")
    y1, p1 = _data("counts", 2)
    y2, p2 = _data("counts", 6)
    m.update_state(y1, p1, sample_weight=3.0)
    m.update_state(y2, p2, sample_weight=1.0)
    values = np.concatenate([np.mean(p - y * np.log(p + 1e-7), axis=-1) for y, p in ((y1, p1), (y2, p2))])
    weights = np.array([3.0] * 2 + [1.0] * 6)
    np.testing.assert_allclose(float(m.result()), np.sum(values * weights) / np.sum(weights), rtol=1e-6)
    integers = metrics.Poisson()
    integers.update_state([[0, 1], [0, 0]], [[1, 1], [0, 0]])  # Keras 3 gives NaN here
    np.testing.assert_allclose(float(integers.result()), 0.5, rtol=1e-6)


def test_sequence_losses_are_averaged_per_sample_as_keras_3() -> None:
    y_true = RNG.integers(0, C, (4, 6))
    y_pred = RNG.dirichlet(np.ones(C), (4, 6)).astype(np.float32)
    weight = RNG.uniform(0.5, 1.5, 4).astype(np.float32)
    ours, theirs = metrics.SparseCategoricalCrossentropy(), keras.metrics.SparseCategoricalCrossentropy()
    ours.update_state(y_true, y_pred, sample_weight=weight)
    theirs.update_state(y_true, y_pred, sample_weight=weight)
    np.testing.assert_allclose(float(ours.result()), float(theirs.result()), rtol=1e-5)
    assert ours.count == pytest.approx(float(np.sum(weight)))


def test_torch_and_jax_inputs_and_aliases() -> None:
    import jax.numpy as jnp
    import torch

    y_true, y_pred = _data("onehot", 8)
    reference = metrics.CategoricalCrossentropy()
    reference.update_state(y_true, y_pred)
    for convert in (torch.from_numpy, jnp.asarray):
        m = metrics.CategoricalCrossentropy()
        m.update_state(convert(y_true), convert(y_pred).requires_grad_() if convert is torch.from_numpy
                       else convert(y_pred))
        np.testing.assert_allclose(float(m.result()), float(reference.result()), rtol=1e-6)
    assert metrics.kld is metrics.KLD is metrics.kullback_leibler_divergence is probloss.kl_divergence
    with pytest.raises(ValueError, match="same class and options"):
        reference.merge_state([metrics.CategoricalCrossentropy(from_logits=True)])


def test_update_from_a_partial_computed_under_jit() -> None:
    import jax
    import jax.numpy as jnp

    labels, probs = _data("sparse", 12)
    weight = RNG.uniform(0.0, 2.0, 12).astype(np.float32)
    labels[3] = 3  # ignored
    loss = probloss.SparseCategoricalCrossentropy(ignore_class=3, reduction="mean_with_sample_weight")
    numerator, denominator = jax.jit(loss.partial)(jnp.asarray(labels), jnp.asarray(probs), jnp.asarray(weight))
    from_partial = metrics.SparseCategoricalCrossentropy(ignore_class=3)
    from_partial.update_from_partial(numerator, denominator)
    eager = metrics.SparseCategoricalCrossentropy(ignore_class=3)
    eager.update_state(labels, probs, sample_weight=weight)
    np.testing.assert_allclose(from_partial.total, eager.total, rtol=1e-6)
    np.testing.assert_allclose(from_partial.count, eager.count, rtol=1e-6)
