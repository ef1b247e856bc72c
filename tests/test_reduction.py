"""Reductions, masks and sample weights against Keras 3's documented arithmetic.

References: the measured values and worked examples of keras-semantics.md §A.5,
§A.7 and §B.5, and float64 formulas written here. The deliberate differences
(per-sample weights on per-timestep losses; empty batches) are checked against
their documented probloss values.
"""

from __future__ import annotations

import numpy as np
import pytest

import probloss
from probloss._reduction import reduce_weighted_values

BCE_TRUE = np.array([[0, 1], [0, 0]], dtype=np.float32)
BCE_PRED = np.array([[0.6, 0.4], [0.4, 0.6]], dtype=np.float32)
# Keras's docstring values for this data: [0.916, 0.714] (float64 formula below).
BCE_ROWS = -np.mean(BCE_TRUE * np.log(BCE_PRED.astype(np.float64))
                    + (1 - BCE_TRUE) * np.log1p(-BCE_PRED.astype(np.float64)), axis=-1)


def _bce_logits64(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    return y * np.logaddexp(0, -x) + (1 - y) * np.logaddexp(0, x)


@pytest.mark.parametrize(
    ("reduction", "expected"),
    [
        ("sum_over_batch_size", BCE_ROWS.mean()),
        ("mean", BCE_ROWS.mean()),
        ("sum", BCE_ROWS.sum()),
        ("mean_with_sample_weight", BCE_ROWS.mean()),
        ("auto", BCE_ROWS.mean()),
    ],
)
def test_reductions_unweighted(backend, reduction, expected):
    loss = probloss.BinaryCrossentropy(reduction=reduction)
    result = loss(backend.asarray(BCE_TRUE), backend.asarray(BCE_PRED))
    assert backend.is_native(result)
    np.testing.assert_allclose(backend.to_numpy(result), expected, rtol=1e-6)


@pytest.mark.parametrize("reduction", [None, "none"])
def test_no_reduction_returns_per_sample(backend, reduction):
    result = probloss.BinaryCrossentropy(reduction=reduction)(backend.asarray(BCE_TRUE),
                                                              backend.asarray(BCE_PRED))
    np.testing.assert_allclose(backend.to_numpy(result), BCE_ROWS, rtol=1e-6)


def test_mean_with_sample_weight_scalar_divides_by_the_weight_not_its_broadcast(backend):
    # Keras 3 (measured 1.6298): divisor is sum(w) as passed, so a scalar 2 gives sum(L).
    loss = probloss.BinaryCrossentropy(reduction="mean_with_sample_weight")
    result = loss(backend.asarray(BCE_TRUE), backend.asarray(BCE_PRED),
                  sample_weight=backend.asarray(np.float32(2.0)))
    np.testing.assert_allclose(backend.to_numpy(result), BCE_ROWS.sum(), rtol=1e-6)
    assert abs(float(backend.to_numpy(result)) - 1.6298) < 1e-4


def test_mean_with_sample_weight_per_sample(backend):
    w = np.array([0.3, 0.9], dtype=np.float32)
    loss = probloss.BinaryCrossentropy(reduction="mean_with_sample_weight")
    result = loss(backend.asarray(BCE_TRUE), backend.asarray(BCE_PRED), backend.asarray(w))
    np.testing.assert_allclose(backend.to_numpy(result), (BCE_ROWS * w).sum() / w.sum(), rtol=1e-6)


def test_rank0_per_sample_loss_with_vector_weight(backend):
    # §A.5: a 1-D BCE gives a scalar per-sample loss; a (B,) weight broadcasts it,
    # and the mean is loss * mean(w) (measured 0.8654580 x 0.25 = 0.2163645).
    y = np.array([0, 1, 0, 0], dtype=np.float32)
    x = np.array([-18.6, 0.51, 2.94, -12.8], dtype=np.float32)
    w = np.array([0.1, 0.2, 0.3, 0.4], dtype=np.float32)
    scalar = _bce_logits64(y, x).mean()
    loss = probloss.BinaryCrossentropy(from_logits=True)
    result = loss(backend.asarray(y), backend.asarray(x), backend.asarray(w))
    np.testing.assert_allclose(backend.to_numpy(result), scalar * w.mean(), rtol=1e-6)
    assert abs(float(backend.to_numpy(result)) - 0.2163645) < 1e-6
    per_sample = probloss.BinaryCrossentropy(from_logits=True, reduction=None)(
        backend.asarray(y), backend.asarray(x), backend.asarray(w))
    np.testing.assert_allclose(backend.to_numpy(per_sample), scalar * w, rtol=1e-6)


def test_per_sample_weight_on_per_timestep_losses_weights_samples(backend):
    # Deliberate difference (tf.keras's rule): (B,) weights on (B, T) losses weight
    # samples. Keras 3 would multiply along the last axis: here T == B == 2, where
    # Keras 3 silently weights timesteps instead.
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, size=(2, 2))
    x = rng.normal(size=(2, 2, 3)).astype(np.float32)
    w = np.array([1.0, 3.0], dtype=np.float32)
    x64 = x.astype(np.float64)
    nll = np.log(np.exp(x64).sum(-1)) - np.take_along_axis(x64, y[..., None], -1)[..., 0]
    loss = probloss.SparseCategoricalCrossentropy(from_logits=True, reduction="sum")
    result = loss(backend.asarray(y), backend.asarray(x), backend.asarray(w))
    np.testing.assert_allclose(backend.to_numpy(result), (nll * w[:, None]).sum(), rtol=1e-5)


def test_ignore_class_reductions(backend):
    # §B.5: ignored entries give 0 and are left out of the mean's count.
    y = np.array([[-1, 2], [0, -1]])
    x = np.array([[[0.2, 0.3, 0.5], [0.1, 0.2, 0.7]], [[0.6, 0.3, 0.1], [0.3, 0.3, 0.4]]],
                 dtype=np.float32)
    valid = y != -1
    picked = np.take_along_axis(x.astype(np.float64), np.where(valid, y, 0)[..., None], -1)[..., 0]
    per = np.where(valid, -np.log(picked / x.astype(np.float64).sum(-1)), 0.0)
    yt, yp = backend.asarray(y), backend.asarray(x)
    sobs = probloss.SparseCategoricalCrossentropy(ignore_class=-1)(yt, yp)
    np.testing.assert_allclose(backend.to_numpy(sobs), per.sum() / valid.sum(), rtol=1e-6)
    total = probloss.SparseCategoricalCrossentropy(ignore_class=-1, reduction="sum")(yt, yp)
    np.testing.assert_allclose(backend.to_numpy(total), per.sum(), rtol=1e-6)
    none = probloss.SparseCategoricalCrossentropy(ignore_class=-1, reduction=None)(yt, yp)
    np.testing.assert_allclose(backend.to_numpy(none), per, rtol=1e-6)
    w = np.array([[2.0, 3.0], [4.0, 5.0]], dtype=np.float32)
    weighted = probloss.SparseCategoricalCrossentropy(ignore_class=-1)(yt, yp, backend.asarray(w))
    np.testing.assert_allclose(backend.to_numpy(weighted), (per * w).sum() / valid.sum(), rtol=1e-6)
    mwsw = probloss.SparseCategoricalCrossentropy(ignore_class=-1, reduction="mean_with_sample_weight")
    np.testing.assert_allclose(backend.to_numpy(mwsw(yt, yp, backend.asarray(w))),
                               (per * w).sum() / (w * valid).sum(), rtol=1e-6)


def test_all_ignored_gives_zero(backend):
    y = np.array([-1, -1])
    x = np.array([[0.2, 0.8], [0.5, 0.5]], dtype=np.float32)
    for reduction in ("sum_over_batch_size", "sum", "mean_with_sample_weight"):
        result = probloss.SparseCategoricalCrossentropy(ignore_class=-1, reduction=reduction)(
            backend.asarray(y), backend.asarray(x))
        assert float(backend.to_numpy(result)) == 0.0


def test_zero_weights_give_zero_not_nan(backend):
    w = np.zeros(2, dtype=np.float32)
    for reduction in ("sum_over_batch_size", "mean_with_sample_weight", "sum"):
        result = probloss.BinaryCrossentropy(reduction=reduction)(
            backend.asarray(BCE_TRUE), backend.asarray(BCE_PRED), backend.asarray(w))
        assert float(backend.to_numpy(result)) == 0.0


def test_empty_batch_reduces_to_zero(backend):
    # Deliberate difference: Keras 3 returns the empty array for shape (0,).
    empty = np.zeros((0, 3), dtype=np.float32)
    result = probloss.BinaryCrossentropy()(backend.asarray(empty), backend.asarray(empty))
    assert backend.to_numpy(result).shape == ()
    assert float(backend.to_numpy(result)) == 0.0


def test_masked_mean_worked_example():
    # keras-semantics.md §A.7: squared errors [0.81, 0.04, 0.49, 0.16] with
    # mask [T, F, T, T] give 0.48667, and with weights [.4, .3, .2, .1] give 0.146.
    import array_api_compat.numpy as xp

    values = np.array([0.81, 0.04, 0.49, 0.16])
    mask = np.array([True, False, True, True])
    result = reduce_weighted_values(values, sample_weight=None, mask=mask,
                                    reduction="sum_over_batch_size", xp=xp)
    np.testing.assert_allclose(result, 1.46 / 3)
    weights = np.array([0.4, 0.3, 0.2, 0.1])
    result = reduce_weighted_values(values, sample_weight=weights, mask=mask,
                                    reduction="sum_over_batch_size", xp=xp)
    np.testing.assert_allclose(result, 0.146)
    result = reduce_weighted_values(values, sample_weight=None, mask=np.zeros(4, bool),
                                    reduction="sum_over_batch_size", xp=xp)
    assert float(result) == 0.0


def test_sample_weight_that_cannot_broadcast_names_the_argument():
    with pytest.raises(ValueError, match=r"`sample_weight` of shape \(3,\) cannot be broadcast"):
        probloss.BinaryCrossentropy()(BCE_TRUE, BCE_PRED, sample_weight=np.ones(3, np.float32))


@pytest.mark.parametrize("bad", ["SUM", "Auto", "weighted", 3])
def test_invalid_reduction_names_the_argument(bad):
    with pytest.raises(ValueError, match=r"Invalid value for argument `reduction`.*Received: reduction="):
        probloss.BinaryCrossentropy(reduction=bad)


def test_reduction_namespace_has_tf_keras_values():
    assert probloss.Reduction.AUTO == "auto"
    assert probloss.Reduction.NONE == "none"
    assert probloss.Reduction.SUM == "sum"
    assert probloss.Reduction.SUM_OVER_BATCH_SIZE == "sum_over_batch_size"
    assert set(probloss.Reduction.all()) >= {"auto", "none", "sum", "sum_over_batch_size"}
    assert probloss.BinaryCrossentropy(reduction=probloss.Reduction.AUTO).reduction == "sum_over_batch_size"


_NO_DTYPE = {("array_api_strict", "float16"), ("array_api_strict", "bfloat16"), ("dask", "bfloat16")}


@pytest.mark.parametrize("dtype", ["float64", "float16", "bfloat16"])
def test_class_dtype_argument(backend, dtype):
    loss = probloss.BinaryCrossentropy(dtype=dtype)
    assert loss.dtype == dtype
    if (backend.name, dtype) in _NO_DTYPE:
        # The library has no such dtype: a clear TypeError, not a silent float32.
        with pytest.raises(TypeError, match=dtype):
            loss(backend.asarray(BCE_TRUE), backend.asarray(BCE_PRED))
        return
    result = loss(backend.asarray(BCE_TRUE), backend.asarray(BCE_PRED))
    assert dtype in str(result.dtype)
    tolerance = {"float64": 1e-6, "float16": 1e-3, "bfloat16": 1e-2}[dtype]
    np.testing.assert_allclose(backend.to_numpy(result).astype(np.float64), BCE_ROWS.mean(),
                               rtol=tolerance)
