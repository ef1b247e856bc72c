"""Differential tests: probloss against installed Keras 3 (JAX backend) on random cases.

A seeded NumPy generator builds a fixed grid of small cases per loss (function and class
forms) covering every option (``from_logits``, ``label_smoothing``, ``axis``,
``ignore_class``, ``alpha`` including per-class lists, ``gamma``,
``apply_class_balancing``), every reduction (``"sum_over_batch_size"``, ``"sum"``,
``"mean"``, ``"mean_with_sample_weight"``, ``"none"``, None), sample weights (None, scalar,
``(B,)``, ``(B, 1)``, one per element), ranks 1 to 4, logits up to +-100 and
probabilities of exactly 0 and 1, all in float32. Each Keras reference is computed once
(module cache) and every backend (NumPy, array-api-strict, PyTorch, JAX, Dask) is
compared with it on all 2,030 cases, to rtol 1e-5 / atol 1e-6.

Where probloss deliberately differs from Keras 3 (see the project's list), the reference
is still independent of probloss, and the case says which rule applies:

* ``weight-per-sample``: a ``(B,)`` weight on per-timestep losses ``(B, T, ...)`` weights
  samples (tf.keras's rule); the reference is Keras called with the weight reshaped to
  ``(B, 1, ...)``, which Keras broadcasts per sample.
* ``moved-axis``: sparse CE with a class axis other than the last (Keras's JAX backend
  rejects it), and CCE/CFCE label smoothing on a non-last axis (Keras 3.15.1 counts the
  classes on the last axis; Keras HEAD and probloss on ``axis``): the reference is Keras
  on the arrays with the class axis moved last.
* ``formula``: binary focal CE from logits (probloss is exact, as Keras's TF backend;
  Keras's JAX backend takes the sigmoid in float32 and clips it, which loses digits from
  |logit| of about 4 on), and categorical focal CE from logits where a softmax
  probability lies outside [1e-6, 1 - 1e-6] (Keras clips it to [eps, 1 - eps]): the
  per-sample values are a float64 formula written in this file, and the class form
  reduces them with Keras's own reduction (a ``keras.losses.Loss`` subclass returning
  them). ``test_formulas_agree_with_keras_where_keras_is_exact`` checks the formulas
  against Keras on logits where Keras loses no digits.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

import probloss

os.environ.setdefault("KERAS_BACKEND", "jax")
import keras  # a test dependency: missing Keras is an error, never a skip

RTOL = 1e-5
ATOL = 1e-6
EPS = 1e-7
REDUCTIONS: tuple[str | None, ...] = ("sum_over_batch_size", "sum", "mean", "mean_with_sample_weight",
                                      "none", None)
LOSSES = ("BinaryCrossentropy", "BinaryFocalCrossentropy", "CategoricalCrossentropy",
          "CategoricalFocalCrossentropy", "SparseCategoricalCrossentropy", "Poisson", "KLDivergence")
FUNCTIONS = {
    "BinaryCrossentropy": "binary_crossentropy",
    "BinaryFocalCrossentropy": "binary_focal_crossentropy",
    "CategoricalCrossentropy": "categorical_crossentropy",
    "CategoricalFocalCrossentropy": "categorical_focal_crossentropy",
    "SparseCategoricalCrossentropy": "sparse_categorical_crossentropy",
    "Poisson": "poisson",
    "KLDivergence": "kl_divergence",
}
FUNCTION_CASES = 80  # per loss
CLASS_CASES = 210  # per loss


@dataclass
class Case:
    """One random call: a loss in function or class form, its options and inputs."""

    index: int
    loss: str
    form: str  # "function" or "class"
    options: dict[str, Any]
    reduction: Any
    y_true: np.ndarray
    y_pred: np.ndarray
    sample_weight: Any  # None, a 0-d float32 array, or a float32 array
    rules: list[str] = field(default_factory=list)  # the deliberate differences that apply

    def describe(self) -> str:
        weight = None if self.sample_weight is None else np.shape(self.sample_weight)
        return (f"#{self.index} {self.loss} {self.form} options={self.options} reduction={self.reduction!r} "
                f"y_true{self.y_true.shape}:{self.y_true.dtype} y_pred{self.y_pred.shape} weight={weight} "
                f"rules={self.rules}")


# ------------------------------------------------------------------ case generation


def _probabilities(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Uniform probabilities with some exact 0s and 1s and some within 1e-8 of them."""
    p = rng.random(shape)
    u = rng.random(shape)
    p = np.where(u < 0.1, 0.0, p)
    p = np.where((u >= 0.1) & (u < 0.2), 1.0, p)
    p = np.where((u >= 0.2) & (u < 0.25), 1e-8, p)
    return p.astype(np.float32)


def _logits(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    scale = rng.choice([1.0, 4.0, 20.0])
    x = rng.normal(0.0, scale, shape)
    u = rng.random(shape)
    x = np.where(u < 0.08, 100.0, x)
    x = np.where((u >= 0.08) & (u < 0.16), -100.0, x)
    return x.astype(np.float32)


def _binary_labels(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    if rng.random() < 0.6:
        return rng.integers(0, 2, shape).astype(np.float32)
    return rng.random(shape).astype(np.float32)  # soft labels


# A small pool of shapes: Keras on JAX compiles each operation once per new shape (about
# 0.3 s per call with a fresh shape, 1 ms with a known one), so the grid reuses shapes.
SHAPES = {
    1: [(3,)],
    2: [(2, 3), (3, 1)],
    3: [(2, 3, 2), (2, 2, 1)],
    4: [(2, 2, 3, 2)],
}


def _shape(rng: np.random.Generator, rank: int, low: int) -> tuple[int, ...]:
    pool = [s for s in SHAPES[rank] if min(s) >= low]
    return pool[int(rng.integers(len(pool)))]


def _categorical_pred(rng: np.random.Generator, shape: tuple[int, ...], axis: int,
                      from_logits: bool) -> np.ndarray:
    if from_logits:
        return _logits(rng, shape)
    p = _probabilities(rng, shape)
    # Keras renormalises along the class axis: keep every row's sum positive.
    first = [slice(None)] * len(shape)
    first[axis] = slice(0, 1)
    dead = np.sum(p, axis=axis, keepdims=True) == 0
    p[tuple(first)] = np.where(dead, np.float32(0.5), p[tuple(first)])
    return p


def _categorical_true(rng: np.random.Generator, shape: tuple[int, ...], axis: int) -> np.ndarray:
    if rng.random() < 0.6:
        labels = rng.integers(0, shape[axis], shape[:axis] + shape[axis + 1:])
        return np.moveaxis(np.eye(shape[axis], dtype=np.float32)[labels], -1, axis)
    return rng.random(shape).astype(np.float32)  # soft labels, not normalised


def _per_sample_shape(loss: str, y_true: np.ndarray, y_pred: np.ndarray, axis: int, form: str) -> tuple[int, ...]:
    """The shape of the unreduced loss, from the shapes (Keras's rank adjustment included)."""
    shape = y_pred.shape
    if (form == "class" and y_true.ndim == y_pred.ndim - 1 and shape[-1] == 1
            and loss != "SparseCategoricalCrossentropy"):
        # Keras's wrapper: (B,) vs (B,1) expands y_true; (B,T) vs (B,T,1) squeezes y_pred.
        shape = shape if y_true.ndim == 1 else shape[:-1]
    axis = axis % len(shape)
    return shape[:axis] + shape[axis + 1:]


def _weight(rng: np.random.Generator, per_sample: tuple[int, ...], y_pred: np.ndarray) -> tuple[Any, list[str]]:
    kinds = ["none", "scalar", "per_sample", "per_sample_1", "full"]
    kind = kinds[int(rng.integers(len(kinds)))]
    if not per_sample and kind in ("per_sample_1", "full"):
        kind = "per_sample"
    if len(per_sample) > 2 and kind == "per_sample_1":
        kind = "full"  # (B, 1) broadcasts on the last axis of rank >= 3 losses, in both libraries
    values = lambda shape: np.where(rng.random(shape) < 0.15, 0.0, rng.random(shape) * 2).astype(np.float32)  # noqa: E731
    if kind == "none":
        return None, []
    if kind == "scalar":
        return np.asarray(values(()), dtype=np.float32), []
    batch = per_sample[0] if per_sample else y_pred.shape[0]
    if kind == "per_sample":
        rules = ["weight-per-sample"] if len(per_sample) >= 2 else []
        return values((batch,)), rules
    if kind == "per_sample_1":
        return values((batch, 1)), []
    return values(per_sample), []


def _make_case(rng: np.random.Generator, index: int, loss: str, form: str) -> Case:
    options: dict[str, Any] = {}
    rules: list[str] = []
    categorical = loss in ("CategoricalCrossentropy", "CategoricalFocalCrossentropy")
    rank = int(rng.integers(1, 5))
    # Categorical losses: no axis of size 1 (Keras 3.15.1 warns when the last one is 1).
    shape = _shape(rng, rank, 2 if categorical or loss == "SparseCategoricalCrossentropy" else 1)
    axis = -1
    if loss not in ("Poisson", "KLDivergence"):
        axis = -1 if rng.random() < 0.6 else int(rng.integers(-rank, rank))
        options["axis"] = axis
    if loss in ("BinaryCrossentropy", "BinaryFocalCrossentropy"):
        options["from_logits"] = bool(rng.random() < 0.5)
        options["label_smoothing"] = float(rng.choice([0.0, 0.0, 0.1, 0.35, 1.0]))
        if loss == "BinaryFocalCrossentropy":
            options["apply_class_balancing"] = bool(rng.random() < 0.5)
            options["alpha"] = float(rng.choice([0.25, 0.6, 1.0, 0.0]))
            options["gamma"] = float(rng.choice([0.0, 0.5, 1.0, 2.0, 3.7]))
        y_true = _binary_labels(rng, shape)
        y_pred = _logits(rng, shape) if options["from_logits"] else _probabilities(rng, shape)
    elif categorical:
        options["from_logits"] = bool(rng.random() < 0.5)
        options["label_smoothing"] = float(rng.choice([0.0, 0.0, 0.1, 0.35, 1.0]))
        canonical = axis % rank
        if loss == "CategoricalFocalCrossentropy":
            options["gamma"] = float(rng.choice([0.0, 0.5, 1.0, 2.0, 3.7]))
            if canonical == rank - 1 and rng.random() < 0.35:
                options["alpha"] = [float(a) for a in np.round(rng.random(shape[-1]), 3)]
            else:
                options["alpha"] = float(rng.choice([0.25, 1.0, 0.7]))
        y_true = _categorical_true(rng, shape, canonical)
        y_pred = _categorical_pred(rng, shape, canonical, options["from_logits"])
        if options["label_smoothing"] and canonical != rank - 1:
            rules.append("moved-axis")
    elif loss == "SparseCategoricalCrossentropy":
        options["from_logits"] = bool(rng.random() < 0.5)
        canonical = axis % rank
        num_classes = shape[canonical]
        label_shape = shape[:canonical] + shape[canonical + 1:]
        labels = rng.integers(0, num_classes, label_shape)
        ignore = [None, None, -1, 0, num_classes - 1][int(rng.integers(5))]
        options["ignore_class"] = ignore
        if ignore is not None:
            labels = np.where(rng.random(label_shape) < 0.3, ignore, labels)
        dtype = [np.int64, np.int64, np.int64, np.int32, np.float32][int(rng.integers(5))]
        y_true = np.asarray(labels).astype(dtype)
        if rng.random() < 0.3:
            y_true = np.expand_dims(y_true, canonical)  # the (B, 1) label layout
        y_pred = _categorical_pred(rng, shape, canonical, options["from_logits"])
        if canonical != rank - 1:
            rules.append("moved-axis")
    elif loss == "Poisson":
        y_true = rng.integers(0, 6, shape).astype(np.float32)
        rates = rng.random(shape) * 5
        y_pred = np.where(rng.random(shape) < 0.15, 0.0, rates).astype(np.float32)
    else:  # KLDivergence
        y_true = _probabilities(rng, shape)
        y_pred = _probabilities(rng, shape)
        if rng.random() < 0.5:  # proper distributions on the last axis
            y_true = (y_true / np.maximum(y_true.sum(-1, keepdims=True), 1e-3)).clip(0, 1).astype(np.float32)
    if (form == "class" and loss in ("BinaryCrossentropy", "Poisson", "KLDivergence") and rank >= 2
            and shape[-1] == 1 and axis == -1 and rng.random() < 0.5):
        y_true = y_true[..., 0]  # Keras's wrapper aligns (B, T) with (B, T, 1)
    if (loss == "BinaryFocalCrossentropy" and options["from_logits"]) or (
            loss == "CategoricalFocalCrossentropy" and options["from_logits"]
            and _softmax_saturates(y_pred, axis % rank)):
        rules.append("formula")
    case = Case(index, loss, form, options, None, y_true, y_pred, None, rules)
    if form == "class":
        case.reduction = REDUCTIONS[int(rng.integers(len(REDUCTIONS)))]
        per_sample = _per_sample_shape(loss, y_true, y_pred, axis, form)
        case.sample_weight, weight_rules = _weight(rng, per_sample, y_pred)
        case.rules.extend(weight_rules)
    return case


def _softmax_saturates(x: np.ndarray, axis: int) -> bool:
    logp = x.astype(np.float64) - _logsumexp(x.astype(np.float64), axis)
    p = np.exp(logp)
    return bool(np.any(p < 1e-6) or np.any(p > 1 - 1e-6))


def _logsumexp(x: np.ndarray, axis: int) -> np.ndarray:
    m = np.max(x, axis=axis, keepdims=True)
    return m + np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True))


@functools.cache
def cases_for(loss: str) -> tuple[Case, ...]:
    """The fixed random grid of one loss (seeded by the loss's position)."""
    rng = np.random.default_rng(20240611 + LOSSES.index(loss))
    forms = ["function"] * FUNCTION_CASES + ["class"] * CLASS_CASES
    return tuple(_make_case(rng, i, loss, form) for i, form in enumerate(forms))


# ------------------------------------------------------------------ float64 formulas


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -x))


def _smooth_binary(y: np.ndarray, ls: float) -> np.ndarray:
    return y * (1.0 - ls) + 0.5 * ls if ls else y


def formula_binary_focal_from_logits(y_true: np.ndarray, logits: np.ndarray, *, apply_class_balancing: bool,
                                     alpha: float, gamma: float, label_smoothing: float, axis: int) -> np.ndarray:
    """Exact binary focal CE from logits (Keras's TF-backend semantics), float64."""
    y = _smooth_binary(y_true.astype(np.float64), label_smoothing)
    x = logits.astype(np.float64)
    bce = y * np.logaddexp(0.0, -x) + (1 - y) * np.logaddexp(0.0, x)
    one_minus_pt = y * _sigmoid(-x) + (1 - y) * _sigmoid(x)
    focal = one_minus_pt ** gamma * bce
    if apply_class_balancing:
        focal = (y * alpha + (1 - y) * (1 - alpha)) * focal
    return np.mean(focal, axis=axis)


def formula_categorical_focal_from_logits(y_true: np.ndarray, logits: np.ndarray, *, alpha: Any, gamma: float,
                                          label_smoothing: float, axis: int) -> np.ndarray:
    """Categorical focal CE from an exact float64 log-softmax (no clipping)."""
    axis = axis % logits.ndim
    x = logits.astype(np.float64)
    y = y_true.astype(np.float64)
    if label_smoothing:
        y = y * (1.0 - label_smoothing) + label_smoothing / x.shape[axis]
    logp = x - _logsumexp(x, axis)
    weight = (-np.expm1(logp)) ** gamma * np.asarray(alpha, dtype=np.float64)  # alpha: last axis
    return np.sum(weight * (-y * logp), axis=axis)


# ------------------------------------------------------------------ Keras references


def _keras_inputs(case: Case) -> tuple[np.ndarray, np.ndarray, dict[str, Any], Any]:
    """The arrays, options and weight given to Keras, with the documented rewrites applied."""
    y_true, y_pred, options, weight = case.y_true, case.y_pred, dict(case.options), case.sample_weight
    if "moved-axis" in case.rules:
        axis = options["axis"] % y_pred.ndim
        if case.loss == "SparseCategoricalCrossentropy":
            if y_true.ndim == y_pred.ndim:
                y_true = np.squeeze(y_true, axis)
        else:
            y_true = np.moveaxis(y_true, axis, -1)
        y_pred = np.moveaxis(y_pred, axis, -1)
        options["axis"] = -1
    if "weight-per-sample" in case.rules:
        rank = len(_per_sample_shape(case.loss, case.y_true, case.y_pred, case.options.get("axis", -1), case.form))
        weight = weight.reshape(weight.shape + (1,) * (rank - 1))
    return y_true, y_pred, options, weight


def _formula_values(case: Case) -> np.ndarray:
    options = dict(case.options)
    options.pop("from_logits")
    if case.loss == "BinaryFocalCrossentropy":
        return formula_binary_focal_from_logits(case.y_true, case.y_pred, **options)
    return formula_categorical_focal_from_logits(case.y_true, case.y_pred, **options)


def _keras_values(case: Case, y_true: np.ndarray, y_pred: np.ndarray, options: dict[str, Any]) -> np.ndarray:
    fn = getattr(keras.losses, FUNCTIONS[case.loss])
    return np.asarray(fn(y_true, y_pred, **options))


class _KerasConstant(keras.losses.Loss):
    """A Keras loss whose per-sample values are given: Keras's own reduction of them."""

    def __init__(self, values: np.ndarray, reduction: Any) -> None:
        super().__init__(reduction=reduction)
        self.values = values.astype(np.float32)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        return keras.ops.convert_to_tensor(self.values)


@functools.cache
def keras_reference(loss: str, index: int) -> np.ndarray:
    """Keras's value for one case (computed once per session)."""
    case = cases_for(loss)[index]
    y_true, y_pred, options, weight = _keras_inputs(case)
    if "formula" in case.rules:
        values = _formula_values(case)
        if case.form == "function":
            return values
        return np.asarray(_KerasConstant(values, case.reduction)(y_true, y_pred, sample_weight=weight))
    if case.form == "function":
        return _keras_values(case, y_true, y_pred, options)
    keras_loss = getattr(keras.losses, case.loss)(reduction=case.reduction, **options)
    return np.asarray(keras_loss(y_true, y_pred, sample_weight=weight))


def _probloss_value(case: Case, backend: Any) -> Any:
    y_true = backend.asarray(case.y_true)
    y_pred = backend.asarray(case.y_pred)
    if case.form == "function":
        return getattr(probloss, FUNCTIONS[case.loss])(y_true, y_pred, **case.options)
    weight = None if case.sample_weight is None else backend.asarray(case.sample_weight)
    loss = getattr(probloss, case.loss)(reduction=case.reduction, **case.options)
    return loss(y_true, y_pred, sample_weight=weight)


def compare(loss: str, backend: Any) -> dict[str, float]:
    """Run one loss's cases on ``backend``; return the worst errors, fail on any mismatch."""
    failures: list[str] = []
    worst = {"abs": 0.0, "rel": 0.0, "cases": 0}
    for case in cases_for(loss):
        expected = keras_reference(loss, case.index)
        result = _probloss_value(case, backend)
        assert backend.is_native(result), case.describe()
        actual = backend.to_numpy(result)
        worst["cases"] += 1
        if actual.shape != expected.shape or actual.dtype != np.float32:
            failures.append(f"{case.describe()}: shape/dtype {actual.shape} {actual.dtype} != {expected.shape}")
            continue
        error = np.abs(actual.astype(np.float64) - expected.astype(np.float64))
        if not np.all(np.isfinite(expected)) or not np.all(error <= ATOL + RTOL * np.abs(expected)):
            failures.append(f"{case.describe()}:\n  probloss={actual!r}\n  reference={expected!r}")
            continue
        if error.size:
            worst["abs"] = max(worst["abs"], float(error.max()))
            # Relative error where rtol is the binding bound (|reference| >= atol / rtol).
            large = np.abs(expected) >= ATOL / RTOL
            if np.any(large):
                worst["rel"] = max(worst["rel"], float(np.max(error[large] / np.abs(expected[large]))))
    assert not failures, f"{len(failures)} of {worst['cases']} cases differ; first ones:\n" + "\n".join(failures[:6])
    return worst


@pytest.mark.parametrize("seed", range(6))
def test_formulas_agree_with_keras_where_keras_is_exact(seed: int) -> None:
    """The float64 focal formulas above equal Keras where its float32 sigmoid/softmax loses nothing.

    Logits in [-2, 2] keep every probability far from 0 and 1, so Keras-JAX's
    sigmoid-then-clip (BFCE) and softmax-then-clip (CFCE) are accurate to float32 there.
    """
    rng = np.random.default_rng(seed)
    shape = SHAPES[int(rng.integers(2, 5))][0]
    x = rng.uniform(-2, 2, shape).astype(np.float32)
    y = rng.random(shape).astype(np.float32)
    for balance, gamma, ls in [(False, 2.0, 0.0), (True, 0.5, 0.2), (True, 3.7, 1.0)]:
        ours = formula_binary_focal_from_logits(y, x, apply_class_balancing=balance, alpha=0.3, gamma=gamma,
                                                label_smoothing=ls, axis=-1)
        theirs = keras.losses.binary_focal_crossentropy(y, x, apply_class_balancing=balance, alpha=0.3,
                                                        gamma=gamma, from_logits=True, label_smoothing=ls)
        np.testing.assert_allclose(ours, np.asarray(theirs), rtol=1e-5, atol=1e-6)
    alpha = [float(a) for a in rng.random(shape[-1])]
    for a, gamma, ls, axis in [(0.25, 2.0, 0.0, -1), (alpha, 0.5, 0.3, -1), (1.0, 0.0, 0.1, 0)]:
        ours = formula_categorical_focal_from_logits(y, x, alpha=a, gamma=gamma, label_smoothing=ls, axis=axis)
        y_k, x_k = (np.moveaxis(y, axis, -1), np.moveaxis(x, axis, -1)) if ls else (y, x)
        theirs = keras.losses.categorical_focal_crossentropy(y_k, x_k, alpha=a, gamma=gamma, from_logits=True,
                                                             label_smoothing=ls, axis=-1 if ls else axis)
        np.testing.assert_allclose(ours, np.asarray(theirs), rtol=1e-5, atol=1e-6)


def test_case_grid_is_large_and_covers_every_option() -> None:
    """The grid has >= 2,000 cases and spans every reduction, weight layout, rank and rule."""
    all_cases = [c for loss in LOSSES for c in cases_for(loss)]
    assert len(all_cases) >= 2000
    class_cases = [c for c in all_cases if c.form == "class"]
    assert {c.reduction for c in class_cases} == set(REDUCTIONS)
    weights = {"none" if c.sample_weight is None else np.ndim(c.sample_weight) for c in class_cases}
    assert weights == {"none", 0, 1, 2, 3}
    assert {c.y_pred.ndim for c in all_cases} == {1, 2, 3, 4}
    assert {r for c in all_cases for r in c.rules} == {"weight-per-sample", "moved-axis", "formula"}
    assert any(np.any(np.abs(c.y_pred) == 100) for c in all_cases)
    assert any(np.any(c.y_pred == 0) and np.any(c.y_pred == 1) for c in all_cases)
    options = {(c.loss, k, repr(v)) for c in all_cases for k, v in c.options.items()}
    for loss, key in [("BinaryFocalCrossentropy", "apply_class_balancing"), ("BinaryCrossentropy", "from_logits"),
                      ("SparseCategoricalCrossentropy", "ignore_class")]:
        assert len({v for lo, k, v in options if lo == loss and k == key}) >= 2, (loss, key)
    assert any(isinstance(c.options.get("alpha"), list) for c in all_cases)
    for loss in LOSSES:
        assert {c.form for c in cases_for(loss)} == {"function", "class"}


@pytest.mark.filterwarnings("ignore::probloss.ProbabilitiesAsLogitsWarning")
@pytest.mark.parametrize("loss", LOSSES)
def test_matches_keras(loss: str, backend: Any) -> None:
    """Every case of ``loss`` agrees with Keras 3 (or the documented rule) on ``backend``."""
    worst = compare(loss, backend)
    assert worst["cases"] == len(cases_for(loss))

