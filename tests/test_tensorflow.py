"""TensorFlow tensors: eager, in ``tf.function``, under XLA, with ``GradientTape``, and in tf.keras.

Values are compared with probloss on NumPy (the reference the rest of the suite
checks against Keras) and with ``tf_keras.losses`` (tf.keras 2.x); gradients
with formulas written here in float64 NumPy, or with tf_keras's own gradients
on float64 inputs. Training parity: a small tf_keras model trained for three
epochs with ``probloss.to_keras(loss, keras="tf_keras")`` reaches the weights
it reaches with tf_keras's loss. What needs a fresh process (a second logical
CPU for ``MirroredStrategy``; Keras 3 on its TensorFlow backend, while the suite's
Keras runs on JAX) runs in one subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from conftest import library
from test_seeds import EXAMPLES, _close_to_printed

import probloss

RNG = np.random.default_rng(20261202)
B, C = 5, 4


def _tf() -> Any:
    return library("tensorflow").module


def _tf_keras() -> Any:
    _tf()  # skips unless TensorFlow is selected
    import tf_keras

    return tf_keras


# ------------------------------------------------------------------ data and cases


def _data(kind: str, dtype: str = "float32") -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    if kind == "binary_logits":
        return rng.integers(0, 2, (B, C)).astype(dtype), rng.normal(0, 3, (B, C)).astype(dtype)
    if kind == "binary_probs":
        return rng.uniform(0, 1, (B, C)).astype(dtype), rng.uniform(0.01, 0.99, (B, C)).astype(dtype)
    if kind == "onehot_logits":
        return np.eye(C, dtype=dtype)[rng.integers(0, C, B)], rng.normal(0, 3, (B, C)).astype(dtype)
    if kind == "onehot_probs":
        return np.eye(C, dtype=dtype)[rng.integers(0, C, B)], rng.dirichlet(np.ones(C), B).astype(dtype)
    if kind == "sparse_logits":
        return rng.integers(0, C, B).astype(np.int64), rng.normal(0, 3, (B, C)).astype(dtype)
    if kind == "sparse_probs":
        return rng.integers(0, C, B).astype(np.int64), rng.dirichlet(np.ones(C), B).astype(dtype)
    if kind == "counts":
        return rng.integers(0, 4, (B, C)).astype(dtype), rng.uniform(0.1, 3, (B, C)).astype(dtype)
    return rng.dirichlet(np.ones(C), B).astype(dtype), rng.dirichlet(np.ones(C), B).astype(dtype)


# id -> (probloss loss, the tf_keras loss's name and options, data kind)
CASES: dict[str, tuple[Callable[[], Any], tuple[str, dict[str, Any]], str]] = {
    "bce_logits": (lambda: probloss.BinaryCrossentropy(from_logits=True, label_smoothing=0.1),
                   ("BinaryCrossentropy", {"from_logits": True, "label_smoothing": 0.1}), "binary_logits"),
    "bce_probs": (lambda: probloss.BinaryCrossentropy(), ("BinaryCrossentropy", {}), "binary_probs"),
    "cce_logits": (lambda: probloss.CategoricalCrossentropy(from_logits=True),
                   ("CategoricalCrossentropy", {"from_logits": True}), "onehot_logits"),
    "cce_probs": (lambda: probloss.CategoricalCrossentropy(label_smoothing=0.05),
                  ("CategoricalCrossentropy", {"label_smoothing": 0.05}), "onehot_probs"),
    "sparse_logits": (lambda: probloss.SparseCategoricalCrossentropy(from_logits=True),
                      ("SparseCategoricalCrossentropy", {"from_logits": True}), "sparse_logits"),
    "sparse_probs": (lambda: probloss.SparseCategoricalCrossentropy(),
                     ("SparseCategoricalCrossentropy", {}), "sparse_probs"),
    "bfce_logits": (lambda: probloss.BinaryFocalCrossentropy(gamma=2.0, from_logits=True, apply_class_balancing=True),
                    ("BinaryFocalCrossentropy", {"gamma": 2.0, "from_logits": True, "apply_class_balancing": True}),
                    "binary_logits"),
    "cfce_probs": (lambda: probloss.CategoricalFocalCrossentropy(),
                   ("CategoricalFocalCrossentropy", {}), "onehot_probs"),
    "poisson": (lambda: probloss.Poisson(), ("Poisson", {}), "counts"),
    "kld": (lambda: probloss.KLDivergence(), ("KLDivergence", {}), "dist"),
}
WEIGHTS = np.linspace(0.5, 1.5, B).astype(np.float32)


def _modes(tf: Any, fn: Callable[..., Any], *specs: Any) -> dict[str, Callable[..., Any]]:
    """``fn`` eager, as a ``tf.function`` and with XLA, the last two traced with unknown batch sizes."""
    return {
        "eager": fn,
        "function": tf.function(fn, input_signature=specs),
        "xla": tf.function(fn, input_signature=specs, jit_compile=True),
    }


def _spec(tf: Any, x: np.ndarray) -> Any:
    return tf.TensorSpec((None, *x.shape[1:]), tf.as_dtype(x.dtype))


# ------------------------------------------------------------------ values


def test_values_eager_function_xla() -> None:
    """Every case in one traced function per mode (one trace, one XLA compilation), unknown batch size."""
    tf, tf_keras = _tf(), _tf_keras()
    data = {case: _data(kind) for case, (_, _, kind) in CASES.items()}
    losses = {case: make() for case, (make, _, _) in CASES.items()}
    expected = {}
    for case, (y, p) in data.items():
        loss = losses[case]
        expected[case] = (np.asarray(loss(y, p, WEIGHTS)), np.asarray(loss.call(y, p)))
        keras_name, keras_options = CASES[case][1]
        keras_loss = getattr(tf_keras.losses, keras_name)(**keras_options)
        keras_value = keras_loss(tf.constant(y), tf.constant(p), sample_weight=tf.constant(WEIGHTS)).numpy()
        np.testing.assert_allclose(expected[case][0], keras_value, rtol=2e-6, atol=1e-7, err_msg=case)

    def compute(*arrays: Any) -> dict[str, Any]:
        weight, arrays = arrays[0], arrays[1:]
        traced = not tf.executing_eagerly()
        # Traced: the reduced values only, to keep the graphs (and XLA's compile time) small.
        return {case: (losses[case](arrays[2 * i], arrays[2 * i + 1], weight),
                       None if traced else losses[case].call(arrays[2 * i], arrays[2 * i + 1]))
                for i, case in enumerate(data)}

    specs = [_spec(tf, WEIGHTS)] + [_spec(tf, a) for y, p in data.values() for a in (y, p)]
    inputs = [tf.constant(WEIGHTS)] + [tf.constant(a) for y, p in data.values() for a in (y, p)]
    for mode, run in _modes(tf, compute, *specs).items():
        results = run(*inputs)
        for case, (value, values) in results.items():
            assert isinstance(value, tf.Tensor), (mode, case)
            assert value.dtype == tf.float32, (mode, case)
            np.testing.assert_allclose(value.numpy(), expected[case][0], rtol=2e-6, atol=1e-7, err_msg=f"{mode} {case}")
            if mode == "eager":
                assert values.dtype == tf.float32, case
                np.testing.assert_allclose(values.numpy(), expected[case][1], rtol=2e-6, atol=1e-7, err_msg=case)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float64"])
def test_dtypes_kept(dtype: str) -> None:
    tf = _tf()
    y, p = _data("onehot_logits", "float32")
    labels = np.argmax(y, axis=-1)
    losses = ((probloss.CategoricalCrossentropy(from_logits=True), y),
              (probloss.SparseCategoricalCrossentropy(from_logits=True), labels),
              (probloss.BinaryFocalCrossentropy(from_logits=True), y),
              (probloss.BinaryCrossentropy(), None))
    soft = 1 / (1 + np.exp(-y.astype(np.float64)))
    expected = [np.asarray(loss(target, p.astype(np.float64)) if i < 3 else loss(soft, soft))
                for i, (loss, target) in enumerate(losses)]

    def compute(logits: Any, onehot: Any, sparse: Any) -> list[Any]:
        probs = tf.cast(tf.constant(soft), dtype)  # the reference's own float64 probabilities
        return [losses[0][0](onehot, logits), losses[1][0](sparse, logits), losses[2][0](onehot, logits),
                losses[3][0](probs, probs)]

    specs = (tf.TensorSpec((None, C), dtype), _spec(tf, y), _spec(tf, labels))
    for mode, run in _modes(tf, compute, *specs).items():
        if mode == "function":
            continue  # eager and XLA suffice here: the plain graph is covered by the other tests
        outs = run(tf.cast(tf.constant(p), dtype), tf.constant(y), tf.constant(labels))
        for out, want in zip(outs, expected, strict=True):
            assert out.dtype == tf.as_dtype(dtype), (mode, out.dtype)
            tolerance = {"float16": 1e-3, "bfloat16": 8e-3, "float64": 1e-13}[dtype]
            np.testing.assert_allclose(tf.cast(out, tf.float64).numpy(), want, rtol=tolerance, err_msg=mode)


def test_documented_examples_on_tensorflow() -> None:
    tf, lib = _tf(), library("tensorflow")
    for name, builder, printed, decimals in EXAMPLES:
        eager = builder(lib)
        assert isinstance(eager, tf.Tensor), name
        _close_to_printed(eager.numpy(), printed, decimals)
    # All examples in one traced function (XLA's are in test_values_eager_function_xla).
    traced = tf.function(lambda: [builder(lib) for _, builder, _, _ in EXAMPLES])()
    for (_, _, printed, decimals), value in zip(EXAMPLES, traced, strict=True):
        _close_to_printed(value.numpy(), printed, decimals)


def test_xla_mean_of_many_values_is_accurate() -> None:
    """XLA on CPU sums float32 sequentially (1.5% low at 10M); the namespace accumulates in float64."""
    tf = _tf()
    n = 1 << 20
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, n).astype(np.float32)
    x = rng.normal(0, 2, n).astype(np.float32)
    exact = np.mean(np.logaddexp(0, x.astype(np.float64)) - y * x.astype(np.float64))
    loss = probloss.BinaryCrossentropy(from_logits=True)
    for jit in (False, True):
        value = tf.function(loss, jit_compile=jit)(tf.constant(y), tf.constant(x)).numpy()
        np.testing.assert_allclose(value, exact, rtol=2e-7)
        # the generic kernel too (no fast path), through the namespace's sum
        with probloss.fast_paths(False):
            generic = tf.function(loss, jit_compile=jit)(tf.constant(y), tf.constant(x)).numpy()
        np.testing.assert_allclose(generic, exact, rtol=2e-7)


# ------------------------------------------------------------------ gradients


def _tape_gradient(tf: Any, loss: Any, y: Any, p: Any, mode: str, weight: Any = None) -> np.ndarray:
    def value_and_gradient(a: Any, b: Any) -> Any:
        with tf.GradientTape() as tape:
            tape.watch(b)
            value = loss(a, b, weight)
        return tape.gradient(value, b)

    run = _modes(tf, value_and_gradient, _spec(tf, y), _spec(tf, p))[mode]
    return run(tf.constant(y), tf.constant(p)).numpy()


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@pytest.mark.parametrize("mode", ["eager", "xla"])
def test_gradients_match_float64_formulas(mode: str) -> None:
    tf = _tf()
    y, x = _data("binary_logits")
    x[0, :2] = 0.0  # logit 0, where tf.maximum's tie rule made the gradient 1 - 2y
    onehot, logits = _data("onehot_logits")
    labels = np.argmax(onehot, axis=-1)
    t, p = _data("binary_probs")
    weight = tf.constant(WEIGHTS)
    cases = [(probloss.BinaryCrossentropy(from_logits=True), y, x, None),
             (probloss.CategoricalCrossentropy(from_logits=True), onehot, logits, None),
             (probloss.SparseCategoricalCrossentropy(from_logits=True), labels, logits, weight),
             (probloss.BinaryCrossentropy(), t, p, None)]

    def gradients(*arrays: Any) -> list[Any]:
        out = []
        for i, (loss, _, _, w) in enumerate(cases):
            target, pred = arrays[2 * i], arrays[2 * i + 1]
            with tf.GradientTape() as tape:
                tape.watch(pred)
                value = loss(target, pred, w)
            out.append(tape.gradient(value, pred))
        return out

    specs = [_spec(tf, a) for _, target, pred, _ in cases for a in (target, pred)]
    run = _modes(tf, gradients, *specs)[mode]
    grads = [g.numpy() for g in run(*[tf.constant(a) for _, target, pred, _ in cases for a in (target, pred)])]
    x64, p64 = x.astype(np.float64), p.astype(np.float64)
    np.testing.assert_allclose(grads[0], (1 / (1 + np.exp(-x64)) - y) / y.size, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(grads[0][0, :2], (0.5 - y[0, :2]) / y.size, rtol=1e-7)
    expected = (_softmax(logits.astype(np.float64)) - onehot) / B
    np.testing.assert_allclose(grads[1], expected, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(grads[2], expected * WEIGHTS[:, None], rtol=1e-6, atol=1e-9)
    # d/dp of -(t log p + (1 - t) log(1 - p)), averaged (tf_keras adds ε inside its logs)
    np.testing.assert_allclose(grads[3], (p64 - t) / (p64 * (1 - p64)) / t.size, rtol=1e-6, atol=1e-9)


def test_gradients_match_tf_keras_in_float64() -> None:
    tf, tf_keras = _tf(), _tf_keras()
    for case in ("cce_probs", "sparse_probs", "cfce_probs", "bfce_logits", "poisson", "kld"):
        make, (keras_name, keras_options), kind = CASES[case]
        y, p = _data(kind, "float64")
        keras_loss = getattr(tf_keras.losses, keras_name)(**keras_options)
        expected = _tape_gradient(tf, lambda a, b, w, k=keras_loss: k(a, b), y, p, "eager")
        grad = _tape_gradient(tf, make(), y, p, "eager")
        np.testing.assert_allclose(grad, expected, rtol=1e-9, atol=1e-13, err_msg=case)


def test_variables_and_ties() -> None:
    tf = _tf()
    logits = tf.Variable([[0.0, 0.0, 2.0]])
    with tf.GradientTape() as tape:
        value = probloss.SparseCategoricalCrossentropy(from_logits=True)(tf.constant([0]), logits)
    grad = tape.gradient(value, logits).numpy()
    np.testing.assert_allclose(grad, _softmax(np.array([[0.0, 0.0, 2.0]])) - [[1, 0, 0]], rtol=1e-6)
    # Tied logits at the row maximum share the softmax gradient equally.
    logits = tf.Variable([[3.0, 3.0, 1.0]])
    with tf.GradientTape() as tape:
        value = probloss.CategoricalCrossentropy(from_logits=True)(tf.constant([[0.0, 1.0, 0.0]]), logits)
    grad = tape.gradient(value, logits).numpy()
    np.testing.assert_allclose(grad, _softmax(np.array([[3.0, 3.0, 1.0]])) - [[0, 1, 0]], rtol=1e-6)


# ------------------------------------------------------------------ validation and libraries


def test_eager_validation_and_nan_in_graphs() -> None:
    tf = _tf()
    loss = probloss.SparseCategoricalCrossentropy(from_logits=True, reduction="none")
    labels, logits = tf.constant([0, 7, 1]), tf.constant(RNG.normal(size=(3, C)).astype(np.float32))
    with pytest.raises(ValueError, match="label value of 7 at position"):
        loss(labels, logits)
    with pytest.raises(ValueError, match=r"must be a finite number in \[0, 1\]"):
        probloss.BinaryCrossentropy()(tf.constant([1.0]), tf.constant([1.5]))
    for jit in (False, True):
        out = tf.function(loss, jit_compile=jit)(labels, logits).numpy()
        assert np.isnan(out[1]), out
        assert np.all(np.isfinite(out[[0, 2]])), out
        # XLA's max reduction skips NaN; the namespace's does not: a NaN logit gives a NaN loss.
        nan_row = tf.constant([[0.0, float("nan"), 1.0, 2.0]])
        out = tf.function(probloss.CategoricalCrossentropy(from_logits=True), jit_compile=jit)(
            tf.constant([[0.0, 0.0, 0.0, 1.0]]), nan_row).numpy()
        assert np.isnan(out)


def test_numpy_beside_tensors_is_converted_other_libraries_refused() -> None:
    tf = _tf()
    out = probloss.binary_crossentropy(np.array([[0.0, 1.0]]), tf.constant([[0.3, 0.6]]))
    assert isinstance(out, tf.Tensor)
    assert out.dtype == tf.float32
    torch = library("torch").module
    with pytest.raises(TypeError, match="different array libraries"):
        probloss.binary_crossentropy(torch.tensor([[0.0, 1.0]]), tf.constant([[0.3, 0.6]]))


def test_import_probloss_imports_no_tensorflow() -> None:
    code = ("import sys, numpy, probloss; probloss.BinaryCrossentropy()([[0.0, 1.0]], [[0.2, 0.7]]); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tf_keras')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert result.stdout.strip() == "[]", result.stdout


# ------------------------------------------------------------------ tf.keras (tf_keras)


def _train_tf_keras(tf_keras: Any, loss: Any, kind: str, weighted: bool) -> list[np.ndarray]:
    tf_keras.utils.set_random_seed(11)
    rng = np.random.default_rng(5)
    x = rng.normal(size=(48, 6)).astype(np.float32)
    units = 3
    if kind == "binary":
        y = rng.integers(0, 2, (48, units)).astype(np.float32)
    else:
        y = rng.integers(0, units, (48,)).astype(np.int64)
    w = rng.uniform(0.2, 2.0, 48).astype(np.float32) if weighted else None
    model = tf_keras.Sequential([tf_keras.Input((6,)), tf_keras.layers.Dense(units)])
    model.compile(optimizer=tf_keras.optimizers.SGD(learning_rate=0.3), loss=loss)
    model.fit(x, y, sample_weight=w, batch_size=16, epochs=3, shuffle=False, verbose=0)
    return model.get_weights()


def test_tf_keras_training_parity() -> None:
    """Three epochs with and without sample weights reach tf_keras's own weights (8 trainings in all)."""
    tf_keras = _tf_keras()
    pairs = [(probloss.BinaryCrossentropy(from_logits=True), tf_keras.losses.BinaryCrossentropy(from_logits=True),
              "binary"),
             (probloss.SparseCategoricalCrossentropy(from_logits=True),
              tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True), "sparse")]
    for ours, theirs, kind in pairs:
        adapter = probloss.to_keras(ours, keras="tf_keras")
        assert isinstance(adapter, tf_keras.losses.Loss)
        assert adapter.reduction == "auto"
        runs = {weighted: (_train_tf_keras(tf_keras, adapter, kind, weighted),
                           _train_tf_keras(tf_keras, theirs, kind, weighted)) for weighted in (False, True)}
        for mine, reference in runs.values():
            for a, b in zip(mine, reference, strict=True):
                np.testing.assert_allclose(a, b, rtol=0, atol=1e-6, err_msg=kind)
        # the weights really changed the training
        weighted, unweighted = runs[True][0], runs[False][1]
        assert max(np.abs(a - b).max() for a, b in zip(weighted, unweighted, strict=True)) > 1e-3


def test_tf_keras_reductions_and_saving(tmp_path: Any) -> None:
    tf, tf_keras = _tf(), _tf_keras()
    for reduction, expected in (("sum", "sum"), ("none", "none"), ("mean_with_sample_weight", "sum_over_batch_size"),
                                ("sum_over_batch_size", "auto")):
        adapter = probloss.to_keras(probloss.Poisson(reduction=reduction), keras="tf_keras")
        assert adapter.reduction == expected
    loss = probloss.to_keras(probloss.SparseCategoricalCrossentropy(from_logits=True, ignore_class=-1),
                             keras="tf_keras")
    model = tf_keras.Sequential([tf_keras.Input((2,)), tf_keras.layers.Dense(3)])
    model.compile(optimizer="sgd", loss=loss)
    x, y = np.ones((4, 2), np.float32), np.array([0, -1, 2, 1])
    before = model.evaluate(x, y, verbose=0)
    for name in ("model.keras", "model.h5"):
        path = str(tmp_path / name)
        if name.endswith(".h5"):
            with pytest.warns(UserWarning, match="HDF5"):
                model.save(path)
        else:
            model.save(path)
        loaded = tf_keras.models.load_model(path)
        assert type(loaded.loss).__name__ == "ProblossTfKerasLoss"
        assert loaded.loss.probloss_loss.get_config() == loss.probloss_loss.get_config()
        np.testing.assert_allclose(loaded.evaluate(x, y, verbose=0), before, rtol=1e-6)
    value = loss(tf.constant(y), model(x))
    assert isinstance(value, tf.Tensor)
    assert value.shape == ()
    with pytest.raises(ValueError, match="`keras` must be"):
        probloss.to_keras(probloss.Poisson(), keras="tf.keras")


# ------------------------------------------------------------------ a fresh process

_WORKER = r"""
import json
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
import tf_keras
import probloss

def data(kind, weighted):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(64, 6)).astype("float32")
    y = rng.integers(0, 2, (64, 3)).astype("float32") if kind == "binary" else rng.integers(0, 3, 64)
    w = rng.uniform(0.2, 2.0, 64).astype("float32") if weighted else None
    return x, y, w

def train(api, loss, kind, weighted, strategy=None):
    api.utils.set_random_seed(11)
    x, y, w = data(kind, weighted)
    def build():
        model = api.Sequential([api.Input((6,)), api.layers.Dense(3)])
        model.compile(optimizer=api.optimizers.SGD(learning_rate=0.3), loss=loss())
        return model
    if strategy is None:
        model = build()
    else:
        with strategy.scope():
            model = build()
    model.fit(x, y, sample_weight=w, batch_size=16, epochs=3, shuffle=False, verbose=0)
    return [v.tolist() for v in model.get_weights()]

BCE = dict(from_logits=True)
out = {"keras_backend": keras.backend.backend(), "replicas": None}
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
out["replicas"] = strategy.num_replicas_in_sync
for kind, weighted, ours, theirs_tfk, theirs_k3 in (
        ("binary", True, lambda: probloss.BinaryCrossentropy(**BCE), lambda: tf_keras.losses.BinaryCrossentropy(**BCE),
         lambda: keras.losses.BinaryCrossentropy(**BCE)),
        ("sparse", False, lambda: probloss.SparseCategoricalCrossentropy(**BCE),
         lambda: tf_keras.losses.SparseCategoricalCrossentropy(**BCE),
         lambda: keras.losses.SparseCategoricalCrossentropy(**BCE))):
    if True:
        key = f"{kind}-{'weighted' if weighted else 'unweighted'}"
        out[key] = {
            "mirrored_probloss": train(tf_keras, lambda: probloss.to_keras(ours(), keras="tf_keras"), kind, weighted,
                                       strategy),
            "mirrored_tf_keras": train(tf_keras, theirs_tfk, kind, weighted, strategy),
            "keras3_probloss": train(keras, lambda: probloss.to_keras(ours()), kind, weighted),
            "keras3_keras": train(keras, theirs_k3, kind, weighted),
        }
# probloss's TensorFlow modules were first imported while tf_keras traced a train step:
# eager tensors must still reach the compiled kernels.
from probloss._backends import _tensorflow_native
ones = tf.ones((2, 3))
out["compiled_after_traced_import"] = _tensorflow_native.binary_applies(ones, ones)
print("RESULT " + json.dumps(out))
"""

_RESULT: dict[str, Any] = {}


def _fresh_process() -> dict[str, Any]:
    if not _RESULT:
        env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONWARNINGS": "ignore"}
        result = subprocess.run([sys.executable, "-c", _WORKER], capture_output=True, text=True, env=env,
                                timeout=600, check=False)
        lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
        failure = f"{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
        assert result.returncode == 0, failure
        assert lines, failure
        _RESULT.update(json.loads(lines[-1].removeprefix("RESULT ")))
    return _RESULT


def _same_weights(ours: list[Any], theirs: list[Any], atol: float = 1e-6) -> None:
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=atol)


KEYS = ["binary-weighted", "sparse-unweighted"]


def test_mirrored_strategy_and_keras3_tensorflow_backend() -> None:
    """One subprocess (on one xdist worker) for the four trainings of each kind: probloss and
    tf_keras under MirroredStrategy, probloss and Keras on Keras 3's TensorFlow backend."""
    _tf()
    result = _fresh_process()
    assert result["keras_backend"] == "tensorflow"
    assert result["replicas"] == 2
    assert result["compiled_after_traced_import"]
    for key in KEYS:
        runs = result[key]
        # Two replicas, each with half of every batch: tf_keras scales the mean by 1/2 per
        # replica for its own loss, and for probloss's as well (reduction "auto"), so the
        # weights are tf_keras's own under the strategy (which it checks against one device).
        _same_weights(runs["mirrored_probloss"], runs["mirrored_tf_keras"])
        _same_weights(runs["keras3_probloss"], runs["keras3_keras"])


# ------------------------------------------------------------------ fast paths


def _values_and_gradients(tf: Any, loss: Any, target: np.ndarray, pred: np.ndarray, jit: bool | None) -> Any:
    def run(t: Any, x: Any) -> Any:
        with tf.GradientTape() as tape:
            tape.watch(x)
            value = loss(t, x)
        return value, tape.gradient(value, x)

    fn = run if jit is None else tf.function(run, jit_compile=jit)
    value, grad = fn(tf.constant(target), tf.constant(pred))
    return value.numpy(), grad.numpy()


def _same(a: np.ndarray, b: np.ndarray, rtol: float) -> None:
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
    np.testing.assert_allclose(np.nan_to_num(a), np.nan_to_num(b), rtol=rtol, atol=1e-30)


def test_fast_paths_match_generic_kernels() -> None:
    """The custom-gradient paths (BCE and sparse CE from logits) against the generic kernels, edge values included."""
    tf = _tf()
    rng = np.random.default_rng(9)
    x = rng.normal(0, 4, (6, 8)).astype(np.float32)
    x[0, :4] = [0.0, 30.0, -30.0, np.inf]
    x[1, :3] = [-np.inf, 90.0, -90.0]
    y = rng.uniform(0, 1, (6, 8)).astype(np.float32)
    y[0, :4] = [1.0, 1.0, 0.0, 1.0]
    y[1, :3] = [0.0, 1.0, 0.0]
    logits = rng.normal(0, 3, (6, 5)).astype(np.float32)
    logits[0] = [20.0, -5.0, -np.inf, 0.0, 1.0]  # confident, with a masked class
    logits[1] = [2.0, 2.0, 1.0, 0.0, -1.0]  # a tie at the maximum
    logits[2, 1] = np.nan
    labels = np.array([0, 1, 3, 7, 2, -1])  # 7 and -1 out of range: NaN in their slot
    cases = [(probloss.BinaryCrossentropy(from_logits=True, reduction="none"), y, x),
             (probloss.BinaryCrossentropy(from_logits=True, label_smoothing=0.2), y[2:], x[2:]),
             (probloss.SparseCategoricalCrossentropy(from_logits=True, reduction="none"), labels, logits),
             (probloss.SparseCategoricalCrossentropy(from_logits=True, ignore_class=-1), labels[:3], logits[:3])]
    for loss, target, pred in cases:
        for jit in (None, True):
            with probloss.validation("off"):
                fast = _values_and_gradients(tf, loss, target, pred, jit)
                with probloss.fast_paths(False):
                    generic = _values_and_gradients(tf, loss, target, pred, jit)
            _same(fast[0], generic[0], rtol=5e-7)
            # A row holding a NaN logit has a NaN loss; its gradient is NaN on the fast
            # path and partly finite on the generic one: compared on the other rows.
            rows = ~np.isnan(pred).any(axis=-1)
            _same(fast[1][rows], generic[1][rows], rtol=2e-6)


# ------------------------------------------------------------------ compiled kernels (eager CPU float32)


def _edge_data() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(21)
    x = rng.normal(0, 4, (2, 3, 8)).astype(np.float32)
    x[0, 0, :5] = [0.0, 30.0, -30.0, 90.0, -90.0]
    y = rng.uniform(0, 1, (2, 3, 8)).astype(np.float32)
    y[0, 0, :5] = [1.0, 1.0, 0.0, 0.0, 1.0]
    logits = rng.normal(0, 3, (2, 3, 6)).astype(np.float32)
    logits[0, 0] = [40.0, -5.0, -np.inf, 0.0, 1.0, 2.0]  # confident label 0, a masked class
    logits[0, 1] = [2.0, 2.0, 1.0, 0.0, -1.0, 2.0]  # ties at the maximum
    labels = rng.integers(0, 6, (2, 3))
    labels[0, :2] = [0, 1]
    return {"y": y, "x": x, "labels": labels, "logits": logits}


def _non_finite_data(d: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """BCE logits with +-inf and NaN, sparse labels with one out of range, sparse logits with NaN and inf."""
    x = d["x"].copy()
    x[1, 2, :3] = [np.inf, -np.inf, np.nan]
    logits = d["logits"].copy()
    logits[1, 0, 2], logits[1, 1, 0] = np.nan, np.inf
    labels = d["labels"].copy()
    labels[1, 2] = 9  # outside [0, 6): NaN in its slot
    return x, labels, logits


def _compiled_cases(tf: Any, d: dict[str, np.ndarray]) -> list[tuple[str, Callable[..., Any], Any, Any]]:
    """(id, f(target, pred) -> value, target, pred): every option the compiled paths serve."""
    weights = tf.constant(np.linspace(0.5, 2.0, 6).reshape(2, 3).astype(np.float32))
    labels32 = d["labels"].astype(np.int32)
    bce = probloss.BinaryCrossentropy
    sce = probloss.SparseCategoricalCrossentropy
    return [
        ("bce_mean", bce(from_logits=True), d["y"], d["x"]),
        ("bce_sum_smoothed", bce(from_logits=True, reduction="sum", label_smoothing=0.2), d["y"], d["x"]),
        ("bce_weighted", lambda a, b: bce(from_logits=True)(a, b, weights), d["y"], d["x"]),
        ("bce_none_scaled", lambda a, b: tf.reduce_sum(bce(from_logits=True, reduction="none")(a, b) * weights),
         d["y"], d["x"]),
        ("bce_1d", bce(from_logits=True), d["y"][0, 0], d["x"][0, 0]),
        ("sce_mean", sce(from_logits=True), d["labels"], d["logits"]),
        ("sce_sum_int32", sce(from_logits=True, reduction="sum"), labels32, d["logits"]),
        ("sce_weighted", lambda a, b: sce(from_logits=True)(a, b, weights), d["labels"], d["logits"]),
        ("sce_mean_with_weights", lambda a, b: sce(from_logits=True, reduction="mean_with_sample_weight")(
            a, b, weights), d["labels"], d["logits"]),
        ("sce_twice", lambda a, b: 2.0 * sce(from_logits=True)(a, b), d["labels"], d["logits"]),
        ("sce_ignore_class", sce(from_logits=True, ignore_class=3), d["labels"], d["logits"]),
    ]


def _value_grads(tf: Any, f: Callable[..., Any], target: Any, pred: Any, label_grad: bool = False) -> Any:
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(pred)
        if label_grad:
            tape.watch(target)
        value = f(target, pred)
    grads = [tape.gradient(value, pred), tape.gradient(value, pred)]  # the second one recomputes
    if label_grad:
        grads.append(tape.gradient(value, target))
    return [value.numpy()] + [g.numpy() for g in grads]


def test_compiled_eager_paths_match_tf_ops_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    """Eager CPU float32 BCE and sparse CE run the C kernels; same values and gradients as the TF-ops
    paths, the generic kernels (eager) and the traced paths (tf.function, XLA), for every option."""
    tf = _tf()
    from probloss._backends import _tensorflow_native as native

    ran: list[str] = []
    for name in ("binary_crossentropy", "sparse_categorical_crossentropy"):
        real = getattr(native, name)
        monkeypatch.setattr(native, name, lambda *a, _real=real, _name=name: ran.append(_name) or _real(*a))
    data = _edge_data()
    cases = _compiled_cases(tf, data)
    results: dict[str, dict[str, Any]] = {}
    for case, f, target, pred in cases:
        t, p = tf.constant(target), tf.constant(pred)
        ran.clear()
        results[case] = {"compiled": _value_grads(tf, f, t, p)}
        assert ran, case  # the compiled kernel served it
        with probloss.fast_paths(False):
            results[case]["generic"] = _value_grads(tf, f, t, p)
        with monkeypatch.context() as m:
            m.setattr(native, "binary_applies", lambda *a: False)
            m.setattr(native, "softmax_applies", lambda *a: False)
            results[case]["tf_ops"] = _value_grads(tf, f, t, p)
    # the traced paths (TF ops), one case per loss and reduction kind, all in one function per mode
    traced_cases = [case for case in cases if case[0] in ("bce_sum_smoothed", "bce_none_scaled", "sce_mean",
                                                          "sce_mean_with_weights")]
    for jit in (False, True):
        def traced(*arrays: Any) -> list[Any]:
            out = []
            for i, (_, f, _, _) in enumerate(traced_cases):
                with tf.GradientTape() as tape:
                    tape.watch(arrays[2 * i + 1])
                    value = f(arrays[2 * i], arrays[2 * i + 1])
                out.append((value, tape.gradient(value, arrays[2 * i + 1])))
            return out

        outs = tf.function(traced, jit_compile=jit)(*[tf.constant(a) for _, _, t, p in traced_cases for a in (t, p)])
        for (case, *_), (value, grad) in zip(traced_cases, outs, strict=True):
            results[case]["xla" if jit else "function"] = [value.numpy(), grad.numpy(), grad.numpy()]
    for case, got in results.items():
        ours = got["compiled"]
        # A persistent tape's second gradient is recomputed exactly (rounded once); the first may be the
        # kernel's gradient times the incoming one (rounded twice): one ulp apart at most.
        np.testing.assert_allclose(ours[1], ours[2], rtol=2.4e-7, atol=1e-38, err_msg=case)
        for other in ("tf_ops", "generic", "function", "xla"):
            if other not in got:
                continue
            _same(ours[0], got[other][0], rtol=5e-7)
            _same(ours[1], got[other][1], rtol=2e-6)


def test_compiled_eager_paths_edge_cases(monkeypatch: pytest.MonkeyPatch) -> None:
    """Labels' gradient, non-finite logits (left to the TF-ops paths), invalid labels and the data checks."""
    tf = _tf()
    from probloss._backends import _tensorflow_native as native

    def both(f: Callable[..., Any], target: Any, pred: Any, label_grad: bool = False) -> Any:
        compiled = _value_grads(tf, f, tf.constant(target), tf.constant(pred), label_grad)
        with monkeypatch.context() as m:
            m.setattr(native, "binary_applies", lambda *a: False)
            m.setattr(native, "softmax_applies", lambda *a: False)
            reference = _value_grads(tf, f, tf.constant(target), tf.constant(pred), label_grad)
        return compiled, reference

    d = _edge_data()
    # soft labels under the tape: their gradient -x/cols (scaled)
    ours, ref = both(probloss.BinaryCrossentropy(from_logits=True), d["y"], d["x"], label_grad=True)
    for a, b in zip(ours, ref, strict=True):
        _same(a, b, rtol=2e-6)
    x, labels, logits = _non_finite_data(d)
    with probloss.validation("off"):
        for f, target, pred in ((probloss.BinaryCrossentropy(from_logits=True, reduction="none"), d["y"], x),
                                (probloss.SparseCategoricalCrossentropy(from_logits=True, reduction="none"),
                                 labels, logits)):
            ours, ref = both(f, target, pred)
            _same(ours[0], ref[0], rtol=5e-7)
            rows = ~np.isnan(pred).any(axis=-1)  # as in test_fast_paths_match_generic_kernels
            _same(ours[1][rows], ref[1][rows], rtol=2e-6)
        assert np.isnan(ours[0][1, 2])
        assert np.isnan(ours[0][1, 0])
    # the data checks read the kernels' bounds
    with pytest.raises(ValueError, match=r"must be a finite number in \[0, 1\]"):
        probloss.BinaryCrossentropy(from_logits=True)(tf.constant(d["y"] + 1.0), tf.constant(d["x"]))
    with pytest.raises(ValueError, match="y_pred"):
        probloss.SparseCategoricalCrossentropy(from_logits=True)(tf.constant(d["labels"]), tf.constant(logits))
    with pytest.raises(ValueError, match="label value of 9"):
        probloss.SparseCategoricalCrossentropy(from_logits=True)(tf.constant(labels), tf.constant(d["logits"]))


# ------------------------------------------------------------------ compiled kernels inside tf.function


def _traced_value_grads(tf: Any, f: Callable[..., Any], target: Any, pred: Any, *, jit: bool = False,
                        label_grad: bool = False) -> list[np.ndarray]:
    """Value and gradients of ``f`` computed inside one freshly traced ``tf.function``."""
    def run(t: Any, p: Any) -> Any:
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(p)
            if label_grad:
                tape.watch(t)
            value = f(t, p)
        grads = [tape.gradient(value, p)]
        if label_grad:
            grads.append(tape.gradient(value, t))
        return [value, *grads]

    outs = tf.function(run, jit_compile=jit)(tf.constant(target), tf.constant(pred))
    return [o.numpy() for o in outs]


def _count_graph_kernels(monkeypatch: pytest.MonkeyPatch, native: Any) -> list[str]:
    ran: list[str] = []
    for name in ("binary_crossentropy_graph", "sparse_categorical_crossentropy_graph"):
        real = getattr(native, name)
        monkeypatch.setattr(native, name, lambda *a, _real=real, _name=name: ran.append(_name) or _real(*a))
    return ran


def test_compiled_graph_paths_match_tf_ops_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    """Inside tf.function (not XLA) BCE and sparse CE run the C kernels through tf.numpy_function: the same
    values and gradients as the TF-ops paths in the same graph mode and as the eager compiled paths."""
    tf = _tf()
    from probloss._backends import _tensorflow_native as native

    ran = _count_graph_kernels(monkeypatch, native)
    for case, f, target, pred in _compiled_cases(tf, _edge_data()):
        ran.clear()
        ours = _traced_value_grads(tf, f, target, pred)
        assert ran, case  # the compiled kernel served it
        with monkeypatch.context() as m:
            m.setattr(native, "binary_graph_applies", lambda *a: False)
            m.setattr(native, "softmax_graph_applies", lambda *a: False)
            reference = _traced_value_grads(tf, f, target, pred)
        eager = _value_grads(tf, f, tf.constant(target), tf.constant(pred))
        for other in (reference, eager):
            _same(ours[0], other[0], rtol=5e-7)
            _same(ours[1], other[1], rtol=2e-6)
    # Soft labels watched by the tape: their gradient -x/cols, as the TF-ops path gives it.
    d = _edge_data()
    bce = probloss.BinaryCrossentropy(from_logits=True, reduction="sum")
    ours = _traced_value_grads(tf, bce, d["y"], d["x"], label_grad=True)
    with monkeypatch.context() as m:
        m.setattr(native, "binary_graph_applies", lambda *a: False)
        reference = _traced_value_grads(tf, bce, d["y"], d["x"], label_grad=True)
    for a, b in zip(ours, reference, strict=True):
        _same(a, b, rtol=2e-6)


def test_compiled_graph_paths_non_finite_and_xla(monkeypatch: pytest.MonkeyPatch) -> None:
    """A NaN or infinite logit inside tf.function gets the TF-ops path's values and gradients; XLA
    (jit_compile=True) never sees the Python call; an unknown batch size is served."""
    tf = _tf()
    from probloss._backends import _tensorflow_native as native

    ran = _count_graph_kernels(monkeypatch, native)
    d = _edge_data()
    x, labels, logits = _non_finite_data(d)
    cases = ((probloss.BinaryCrossentropy(from_logits=True, reduction="none"), d["y"], x),
             (probloss.SparseCategoricalCrossentropy(from_logits=True, reduction="none"), labels, logits))
    with probloss.validation("off"):
        for f, target, pred in cases:
            ran.clear()
            ours = _traced_value_grads(tf, f, target, pred)
            assert ran
            with monkeypatch.context() as m:
                m.setattr(native, "binary_graph_applies", lambda *a: False)
                m.setattr(native, "softmax_graph_applies", lambda *a: False)
                reference = _traced_value_grads(tf, f, target, pred)
            _same(ours[0], reference[0], rtol=5e-7)
            rows = ~np.isnan(pred).any(axis=-1)
            _same(ours[1][rows], reference[1][rows], rtol=2e-6)
            assert np.isnan(ours[0][1, 2])  # a NaN logit (BCE), a label out of range (sparse CE)
    # XLA: the TF-ops paths, no graph kernel
    for f, target, pred in ((probloss.BinaryCrossentropy(from_logits=True), d["y"], d["x"]),
                            (probloss.SparseCategoricalCrossentropy(from_logits=True), d["labels"], d["logits"])):
        ran.clear()
        xla = _traced_value_grads(tf, f, target, pred, jit=True)
        assert not ran
        plain = _traced_value_grads(tf, f, target, pred)
        assert ran
        _same(xla[0], plain[0], rtol=5e-7)
        _same(xla[1], plain[1], rtol=2e-6)
    # a batch size known only at run time
    loss = probloss.SparseCategoricalCrossentropy(from_logits=True)
    spec = (tf.TensorSpec([None, 3], tf.int64), tf.TensorSpec([None, 3, 6], tf.float32))
    traced = tf.function(lambda t, p: loss(t, p), input_signature=spec)
    ran.clear()
    got = traced(tf.constant(d["labels"]), tf.constant(d["logits"])).numpy()
    assert ran
    _same(got, loss(tf.constant(d["labels"]), tf.constant(d["logits"])).numpy(), rtol=5e-7)
