"""The examples printed on the Keras 3 and tf.keras loss pages (/work/shared/seeds), on every backend.

Each test reproduces one documented example and compares probloss with the value the
page prints. The pages print 3 or 4 decimals and sometimes truncate rather than round
(the BCE ``sample_weight`` example prints 0.243 for 0.24364), so a value agrees when it
is within one unit of the last printed decimal. The Poisson and KL divergence pages use
random inputs and assert against a formula; those tests do the same, with the formula
written here in float64 NumPy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import probloss

# ------------------------------------------------------------------ documented data
BCE_TRUE_1D = [0, 1, 0, 0]
BCE_LOGITS_1D = [-18.6, 0.51, 2.94, -12.8]
BCE_TRUE = [[0, 1], [0, 0]]
BCE_LOGITS = [[-18.6, 0.51], [2.94, -12.8]]
BCE_PROBS = [[0.6, 0.4], [0.4, 0.6]]
CCE_TRUE = [[0, 1, 0], [0, 0, 1]]
CCE_PRED = [[0.05, 0.95, 0], [0.1, 0.8, 0.1]]
SPARSE_TRUE = [1, 2]


def _close_to_printed(value: Any, printed: list[float] | float, decimals: int) -> None:
    """Assert ``value`` agrees with a printed value to one unit of its last decimal."""
    actual = np.asarray(value, dtype=np.float64)
    expected = np.asarray(printed, dtype=np.float64)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    np.testing.assert_allclose(actual, expected, rtol=0, atol=10.0 ** -decimals)


# Each example: (id, builder(backend) -> result, printed value, decimals printed).
# ``arr`` converts the page's Python lists to the backend's float32 (or int) arrays.
Example = tuple[str, Callable[[Any], Any], Any, int]


def _f(backend: Any, x: Any) -> Any:
    return backend.asarray(np.asarray(x, dtype=np.float32))


def _i(backend: Any, x: Any) -> Any:
    return backend.asarray(np.asarray(x, dtype=np.int64))


EXAMPLES: list[Example] = [
    # keras.losses.binary_crossentropy / tf.keras.losses.binary_crossentropy
    ("binary_crossentropy_function",
     lambda b: probloss.binary_crossentropy(_f(b, BCE_TRUE), _f(b, BCE_PROBS)), [0.916, 0.714], 3),
    # BinaryCrossentropy, "Recommended usage" (from_logits=True)
    ("BinaryCrossentropy_example1_1d",
     lambda b: probloss.BinaryCrossentropy(from_logits=True)(_f(b, BCE_TRUE_1D), _f(b, BCE_LOGITS_1D)),
     0.865, 3),
    ("BinaryCrossentropy_example2_sum_over_batch_size",
     lambda b: probloss.BinaryCrossentropy(from_logits=True)(_f(b, BCE_TRUE), _f(b, BCE_LOGITS)),
     0.865, 3),
    ("BinaryCrossentropy_sample_weight",
     lambda b: probloss.BinaryCrossentropy(from_logits=True)(
         _f(b, BCE_TRUE), _f(b, BCE_LOGITS), sample_weight=_f(b, [0.8, 0.2])),
     0.243, 3),
    ("BinaryCrossentropy_sum",
     lambda b: probloss.BinaryCrossentropy(from_logits=True, reduction="sum")(
         _f(b, BCE_TRUE), _f(b, BCE_LOGITS)),
     1.730, 3),
    ("BinaryCrossentropy_none",
     lambda b: probloss.BinaryCrossentropy(from_logits=True, reduction=None)(
         _f(b, BCE_TRUE), _f(b, BCE_LOGITS)),
     [0.235, 1.496], 3),
    # tf.keras spells the same examples with Reduction.SUM / Reduction.NONE.
    ("BinaryCrossentropy_tf_keras_Reduction_SUM",
     lambda b: probloss.BinaryCrossentropy(from_logits=True, reduction=probloss.Reduction.SUM)(
         _f(b, BCE_TRUE), _f(b, BCE_LOGITS)),
     1.730, 3),
    ("BinaryCrossentropy_tf_keras_Reduction_NONE",
     lambda b: probloss.BinaryCrossentropy(from_logits=True, reduction=probloss.Reduction.NONE)(
         _f(b, BCE_TRUE), _f(b, BCE_LOGITS)),
     [0.235, 1.496], 3),
    # CategoricalCrossentropy
    ("CategoricalCrossentropy_sum_over_batch_size",
     lambda b: probloss.CategoricalCrossentropy()(_f(b, CCE_TRUE), _f(b, CCE_PRED)), 1.177, 3),
    ("CategoricalCrossentropy_sample_weight",
     lambda b: probloss.CategoricalCrossentropy()(
         _f(b, CCE_TRUE), _f(b, CCE_PRED), sample_weight=_f(b, [0.3, 0.7])),
     0.814, 3),
    ("CategoricalCrossentropy_sum",
     lambda b: probloss.CategoricalCrossentropy(reduction="sum")(_f(b, CCE_TRUE), _f(b, CCE_PRED)),
     2.354, 3),
    ("CategoricalCrossentropy_none",
     lambda b: probloss.CategoricalCrossentropy(reduction=None)(_f(b, CCE_TRUE), _f(b, CCE_PRED)),
     [0.0513, 2.303], 3),  # mixed: 0.0513 has 4 decimals, 2.303 has 3; the looser bound applies
    ("categorical_crossentropy_function",
     lambda b: probloss.categorical_crossentropy(_f(b, CCE_TRUE), _f(b, CCE_PRED)),
     [0.0513, 2.303], 3),
    # SparseCategoricalCrossentropy
    ("SparseCategoricalCrossentropy_sum_over_batch_size",
     lambda b: probloss.SparseCategoricalCrossentropy()(_i(b, SPARSE_TRUE), _f(b, CCE_PRED)), 1.177, 3),
    ("SparseCategoricalCrossentropy_sample_weight",
     lambda b: probloss.SparseCategoricalCrossentropy()(
         _i(b, SPARSE_TRUE), _f(b, CCE_PRED), sample_weight=_f(b, [0.3, 0.7])),
     0.814, 3),
    ("SparseCategoricalCrossentropy_sum",
     lambda b: probloss.SparseCategoricalCrossentropy(reduction="sum")(_i(b, SPARSE_TRUE), _f(b, CCE_PRED)),
     2.354, 3),
    ("SparseCategoricalCrossentropy_none",
     lambda b: probloss.SparseCategoricalCrossentropy(reduction=None)(_i(b, SPARSE_TRUE), _f(b, CCE_PRED)),
     [0.0513, 2.303], 3),
    ("sparse_categorical_crossentropy_function",
     lambda b: probloss.sparse_categorical_crossentropy(_i(b, SPARSE_TRUE), _f(b, CCE_PRED)),
     [0.0513, 2.303], 3),
]


@pytest.mark.parametrize(("builder", "printed", "decimals"),
                         [pytest.param(b, p, d, id=i) for i, b, p, d in EXAMPLES])
def test_documented_example(backend: Any, builder: Callable[[Any], Any], printed: Any, decimals: int) -> None:
    result = builder(backend)
    assert backend.is_native(result)
    _close_to_printed(backend.to_numpy(result), printed, decimals)


def test_documented_0513_to_four_decimals(backend: Any) -> None:
    """The 0.0513 entries are printed with 4 decimals: check that one to 1e-4."""
    for result in (
        probloss.categorical_crossentropy(_f(backend, CCE_TRUE), _f(backend, CCE_PRED)),
        probloss.sparse_categorical_crossentropy(_i(backend, SPARSE_TRUE), _f(backend, CCE_PRED)),
        probloss.CategoricalCrossentropy(reduction=None)(_f(backend, CCE_TRUE), _f(backend, CCE_PRED)),
    ):
        _close_to_printed(backend.to_numpy(result)[0], 0.0513, 4)


def test_documented_shape_assertions(backend: Any) -> None:
    """The function pages assert ``loss.shape == (2,)``."""
    assert tuple(probloss.binary_crossentropy(_f(backend, BCE_TRUE), _f(backend, BCE_PROBS)).shape) == (2,)
    assert tuple(probloss.categorical_crossentropy(_f(backend, CCE_TRUE), _f(backend, CCE_PRED)).shape) == (2,)
    assert tuple(probloss.sparse_categorical_crossentropy(
        _i(backend, SPARSE_TRUE), _f(backend, CCE_PRED)).shape) == (2,)


def test_default_usage_probabilities_1d_and_2d_agree(backend: Any) -> None:
    """BCE "Default usage": y_pred = [0.6, 0.3, 0.2, 0.8] OR [[0.6, 0.3], [0.2, 0.8]] (no value printed).

    Checked against the float64 clipped-BCE formula: both layouts give the same mean.
    """
    y = np.array([0, 1, 0, 0], dtype=np.float64)
    p = np.clip(np.array([0.6, 0.3, 0.2, 0.8]), 1e-7, 1 - 1e-7)
    expected = np.mean(-(y * np.log(p) + (1 - y) * np.log(1 - p)))
    loss = probloss.BinaryCrossentropy()
    flat = loss(_f(backend, BCE_TRUE_1D), _f(backend, [0.6, 0.3, 0.2, 0.8]))
    grid = loss(_f(backend, [[0, 1], [0, 0]]), _f(backend, [[0.6, 0.3], [0.2, 0.8]]))
    np.testing.assert_allclose(backend.to_numpy(flat), expected, rtol=1e-6)
    np.testing.assert_allclose(backend.to_numpy(grid), expected, rtol=1e-6)


@pytest.mark.parametrize("seed", range(5))
def test_poisson_page_formula(backend: Any, seed: int) -> None:
    """keras.losses.poisson page: random counts in {0, 1} and rates in [0, 1), shape (2, 3)."""
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 2, size=(2, 3))
    y_pred = rng.random(size=(2, 3))
    loss = probloss.poisson(backend.asarray(y_true), backend.asarray(y_pred))
    assert tuple(loss.shape) == (2,)
    shifted = y_pred + 1e-7  # as the page: y_pred + 1e-7 in both terms, atol 1e-5
    expected = np.mean(shifted - y_true * np.log(shifted), axis=-1)
    np.testing.assert_allclose(backend.to_numpy(loss), expected, rtol=0, atol=1e-5)
    # And the exact Keras formula, mean(p - y log(p + eps)), to float64 precision.
    exact = np.mean(y_pred - y_true * np.log(y_pred + 1e-7), axis=-1)
    np.testing.assert_allclose(backend.to_numpy(loss), exact, rtol=1e-12, atol=0)


@pytest.mark.parametrize("seed", range(5))
def test_kl_divergence_page_formula(backend: Any, seed: int) -> None:
    """keras.losses.kl_divergence page: float32 targets in {0, 1}, float64 random predictions.

    The page asserts exact equality with NumPy's ``sum(t·log(t/p))`` after clipping both
    to [1e-7, 1]. probloss computes the ratio as a difference of logs, so the agreement
    asked here is float64 rounding (rtol 1e-12), not bit equality.
    """
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 2, size=(2, 3)).astype(np.float32)
    y_pred = rng.random(size=(2, 3))
    loss = probloss.kl_divergence(backend.asarray(y_true), backend.asarray(y_pred))
    assert tuple(loss.shape) == (2,)
    t = np.clip(y_true.astype(np.float64), 1e-7, 1)
    p = np.clip(y_pred, 1e-7, 1)
    expected = np.sum(t * np.log(t / p), axis=-1)
    np.testing.assert_allclose(backend.to_numpy(loss), expected, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("seed", range(3))
def test_class_forms_of_poisson_and_kl(backend: Any, seed: int) -> None:
    """The Poisson and KLDivergence classes (pages with no printed value): the mean of the formula."""
    rng = np.random.default_rng(100 + seed)
    y_true = rng.integers(0, 2, size=(2, 3)).astype(np.float32)
    y_pred = rng.random(size=(2, 3)).astype(np.float32)
    t64, p64 = y_true.astype(np.float64), y_pred.astype(np.float64)
    poisson = np.mean(np.mean(p64 - t64 * np.log(p64 + 1e-7), axis=-1))
    tc, pc = np.clip(t64, 1e-7, 1), np.clip(p64, 1e-7, 1)
    kl = np.mean(np.sum(tc * np.log(tc / pc), axis=-1))
    got_poisson = probloss.Poisson()(backend.asarray(y_true), backend.asarray(y_pred))
    got_kl = probloss.KLDivergence()(backend.asarray(y_true), backend.asarray(y_pred))
    np.testing.assert_allclose(backend.to_numpy(got_poisson), poisson, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(backend.to_numpy(got_kl), kl, rtol=1e-5, atol=1e-6)
