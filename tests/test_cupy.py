"""CuPy: a few values, dtypes and devices, run only where CuPy and a GPU are present.

probloss's CuPy support is the generic array-API code path (no CuPy-specific
code); on machines without CuPy or without a GPU this whole module is skipped
with a reason (the one allowed skip in the suite, never counted as a pass).
Values are compared with float64 NumPy formulas written here.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import probloss


def _cupy() -> Any:
    try:
        import cupy
    except ImportError as error:
        pytest.skip(f"CuPy is not installed ({error}); CuPy tests run only on a GPU machine", allow_module_level=True)
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as error:  # any CUDA runtime failure means no usable GPU
        pytest.skip(f"CuPy is installed but no CUDA GPU is usable ({error})", allow_module_level=True)
    if count == 0:
        pytest.skip("CuPy is installed but no CUDA GPU is present", allow_module_level=True)
    return cupy


cp = _cupy()

EPS = 1e-7
rng = np.random.default_rng(3)
Y = rng.integers(0, 2, (5, 4)).astype(np.float64)
LOGITS = rng.uniform(-4, 4, (5, 4))
LABELS = rng.integers(0, 4, (5,))
WEIGHTS = rng.uniform(0.5, 2.0, (5,))


def _log_softmax(x: np.ndarray) -> np.ndarray:
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_values_dtype_and_device(dtype: str) -> None:
    with cp.cuda.Device(0):
        y, x = cp.asarray(Y, dtype=dtype), cp.asarray(LOGITS, dtype=dtype)
        bce = probloss.binary_crossentropy(y, x, from_logits=True)
        scce = probloss.SparseCategoricalCrossentropy(from_logits=True)(
            cp.asarray(LABELS), x, sample_weight=cp.asarray(WEIGHTS, dtype=dtype))
        kld = probloss.kl_divergence(cp.asarray(np.full((5, 4), 0.25), dtype=dtype), cp.asarray(
            np.exp(_log_softmax(LOGITS)), dtype=dtype))
    rtol = 1e-12 if dtype == "float64" else 2e-6
    for out in (bce, scce, kld):
        assert isinstance(out, cp.ndarray)
        assert out.dtype == np.dtype(dtype)
        assert out.device.id == 0
    expected_bce = (Y * np.logaddexp(0, -LOGITS) + (1 - Y) * np.logaddexp(0, LOGITS)).mean(axis=-1)
    np.testing.assert_allclose(bce.get(), expected_bce, rtol=rtol)
    nll = -_log_softmax(LOGITS)[np.arange(5), LABELS]
    np.testing.assert_allclose(scce.get(), (nll * WEIGHTS).mean(), rtol=rtol)
    p = np.clip(np.exp(_log_softmax(LOGITS)), EPS, 1)
    np.testing.assert_allclose(kld.get(), (0.25 * np.log(0.25 / p)).sum(axis=-1), rtol=rtol * 10)


def test_float16_rounds_float32_result() -> None:
    y, x = cp.asarray(Y, dtype="float16"), cp.asarray(LOGITS, dtype="float16")
    out = probloss.binary_crossentropy(y, x, from_logits=True)
    assert out.dtype == np.float16
    reference = probloss.binary_crossentropy(y.astype("float32"), x.astype("float32"), from_logits=True)
    np.testing.assert_array_equal(out.get(), reference.get().astype(np.float16))


def test_mixed_with_numpy_raises() -> None:
    with pytest.raises(TypeError, match="cupy") as error:
        probloss.binary_crossentropy(cp.asarray(Y), LOGITS, from_logits=True)
    assert "numpy" in str(error.value)
