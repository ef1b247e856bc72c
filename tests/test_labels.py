"""Sparse labels of every integer dtype, and JAX's default 32-bit mode.

References: float64 NumPy formulas written here. A uint8 label cannot hold
class 300; probloss must still pick the right class for labels of any integer
dtype when the number of classes exceeds that dtype's range.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import probloss


def _sparse_nll64(labels: np.ndarray, logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64)
    top = z.max(axis=-1, keepdims=True)
    lse = top[..., 0] + np.log(np.exp(z - top).sum(axis=-1))
    return lse - np.take_along_axis(z, labels.astype(np.int64)[..., None], axis=-1)[..., 0]


@pytest.mark.parametrize("label_dtype", ["uint8", "int8", "int16", "int32", "int64"])
def test_narrow_integer_labels_with_many_classes(backend, label_dtype):
    num_classes = 300  # more classes than uint8/int8 can count
    rng = np.random.default_rng(7)
    high = min(np.iinfo(label_dtype).max, num_classes - 1)
    labels = rng.integers(0, high + 1, size=6).astype(label_dtype)
    labels[0] = high
    logits = rng.normal(size=(6, num_classes)).astype(np.float32)
    got = probloss.sparse_categorical_crossentropy(backend.asarray(labels), backend.asarray(logits),
                                                   from_logits=True)
    np.testing.assert_allclose(backend.to_numpy(got), _sparse_nll64(labels, logits), rtol=2e-6)
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    got = probloss.SparseCategoricalCrossentropy(reduction=None)(backend.asarray(labels),
                                                                 backend.asarray(probs.astype(np.float32)))
    want = -np.log(np.take_along_axis(probs, labels.astype(np.int64)[:, None], -1)[:, 0])
    np.testing.assert_allclose(backend.to_numpy(got), want, rtol=2e-5)


_JAX_DEFAULT_MODE = r"""
import json, warnings
import numpy as np
warnings.simplefilter("error")
import jax, jax.numpy as jnp
import probloss
assert not jax.config.jax_enable_x64
labels = jnp.asarray(np.array([2, 0, 1], dtype=np.int32))
logits = jnp.asarray(np.array([[0.1, 0.2, 3.0], [2.0, 1.0, 0.0], [0.5, 0.5, 0.5]], np.float32))
scce = probloss.SparseCategoricalCrossentropy(from_logits=True, reduction=None)
values = scce(labels, logits)
float_labels = scce(jnp.asarray([2.0, 0.0, 1.0]), logits)
poisson = probloss.poisson(jnp.asarray([[1.0, 2.0]]), jnp.asarray([[0.5, 3.0]]))
grad = jax.grad(lambda z: probloss.CategoricalCrossentropy(from_logits=True)(
    jax.nn.one_hot(labels, 3), z))(logits)
print(json.dumps({"values": np.asarray(values).tolist(), "dtype": str(values.dtype),
                  "float_labels": np.asarray(float_labels).tolist(),
                  "poisson": np.asarray(poisson).tolist(), "poisson_dtype": str(poisson.dtype),
                  "grad_finite": bool(np.isfinite(np.asarray(grad)).all())}))
"""


def test_jax_default_32_bit_mode():
    """JAX's default (x64 off), in a fresh process: no test or import of this one can have changed it."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env.pop("JAX_ENABLE_X64", None)
    result = subprocess.run([sys.executable, "-c", _JAX_DEFAULT_MODE], capture_output=True, text=True,
                            env=env, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    logits = np.array([[0.1, 0.2, 3.0], [2.0, 1.0, 0.0], [0.5, 0.5, 0.5]])
    want = _sparse_nll64(np.array([2, 0, 1]), logits)
    assert out["dtype"] == "float32"
    np.testing.assert_allclose(out["values"], want, rtol=2e-6)
    np.testing.assert_allclose(out["float_labels"], want, rtol=2e-6)
    assert out["poisson_dtype"] == "float32"
    y, p = np.array([1.0, 2.0]), np.array([0.5, 3.0])
    np.testing.assert_allclose(out["poisson"], [np.mean(p - y * np.log(p + 1e-7))], rtol=2e-6)
    assert out["grad_finite"]


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_labels_are_not_rounded_through_a_low_precision_loss_dtype(backend, dtype):
    # Keras 3 casts labels to the loss dtype: in float16, 2049 becomes 2048, another
    # class (keras-semantics.md A.8). probloss keeps integer labels as integers.
    missing = backend.name == "array_api_strict" or (backend.name == "dask" and dtype == "bfloat16")
    if missing:  # the library has no such dtype: a clear error
        with pytest.raises(TypeError, match=dtype):
            probloss.SparseCategoricalCrossentropy(dtype=dtype)(backend.asarray(np.array([1])),
                                                                backend.asarray(np.ones((1, 3), np.float32)))
        return
    num_classes = 2100
    labels = np.array([2049, 2051, 2099])
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(3, num_classes)).astype(np.float32)
    logits[np.arange(3), labels] += 6.0  # the right class is likely; its neighbours are not
    loss = probloss.SparseCategoricalCrossentropy(from_logits=True, reduction=None, dtype=dtype)
    got = backend.to_numpy(loss(backend.asarray(labels), backend.asarray(logits))).astype(np.float64)
    want = _sparse_nll64(labels, logits.astype(np.float32))
    rounding = 2.0**-8 if dtype == "float16" else 2.0**-7  # one rounding to the loss dtype
    np.testing.assert_allclose(got, want, rtol=rounding)
    # The classes Keras would pick after rounding the labels through the loss dtype:
    import ml_dtypes

    rounded = labels.astype(np.float16 if dtype == "float16" else ml_dtypes.bfloat16).astype(np.int64)
    moved = (rounded != labels) & (rounded < num_classes)
    assert moved.any()
    wrong = _sparse_nll64(rounded[moved], logits[moved])
    assert np.all(np.abs(got[moved] - wrong) > 1.0)
