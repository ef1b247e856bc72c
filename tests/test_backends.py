"""Every loss on every array library: library, dtype, device, value, laziness.

For each of the seven losses, as a function and as a class (with
representative options and sample weights), on each library of the
``backend`` fixture, this module checks that:

* the result is an array of the inputs' library (``backend.is_native``), on
  the inputs' device (array-api-strict's second device ``device1`` included);
* the dtype policy holds: float32 in -> float32 out, float64 -> float64,
  integer ``y_pred`` -> float32, float16/bfloat16 -> the same dtype whose value
  is the float32 result rounded once; Python lists behave as NumPy float32;
* the value equals a float64 NumPy formula written here (a few simple formula
  checks; the thorough value tests live in the other modules);
* inputs from two libraries raise ``TypeError`` naming both;
* Dask stays lazy (a scheduler that fails on compute is installed while the
  loss is built) and ``.compute()`` gives the value, also with the class axis
  split into several chunks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import array_api_compat
import numpy as np
import pytest
from conftest import Library, _numpy_dtype, library

import probloss

EPS = 1e-7
B, C = 4, 3

# ----------------------------------------------------------------- float64 formulas


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _log_softmax(x: np.ndarray) -> np.ndarray:
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def _probabilities(p: np.ndarray, logits: bool) -> tuple[np.ndarray, np.ndarray]:
    """Return (p, log p) of a categorical prediction, as Keras computes them."""
    if logits:
        logp = _log_softmax(p)
        return np.exp(logp), logp
    q = np.clip(p / p.sum(axis=-1, keepdims=True), EPS, 1 - EPS)
    return q, np.log(q)


def _bce_elements(y: np.ndarray, p: np.ndarray, logits: bool) -> np.ndarray:
    if logits:
        return y * _softplus(-p) + (1 - y) * _softplus(p)
    q = np.clip(p, EPS, 1 - EPS)
    return -(y * np.log(q) + (1 - y) * np.log(1 - q))


def f_bce(y: np.ndarray, p: np.ndarray, *, from_logits: bool = False,
          label_smoothing: float = 0.0) -> np.ndarray:
    y = y * (1 - label_smoothing) + 0.5 * label_smoothing
    return _bce_elements(y, p, from_logits).mean(axis=-1)


def f_bfce(y: np.ndarray, p: np.ndarray, *, apply_class_balancing: bool = False, alpha: float = 0.25,
           gamma: float = 2.0, from_logits: bool = False, label_smoothing: float = 0.0) -> np.ndarray:
    y = y * (1 - label_smoothing) + 0.5 * label_smoothing
    s = _sigmoid(p) if from_logits else p
    p_t = y * s + (1 - y) * (1 - s)
    loss = (1 - p_t) ** gamma * _bce_elements(y, p, from_logits)
    if apply_class_balancing:
        loss = (y * alpha + (1 - y) * (1 - alpha)) * loss
    return loss.mean(axis=-1)


def f_cce(y: np.ndarray, p: np.ndarray, *, from_logits: bool = False,
          label_smoothing: float = 0.0) -> np.ndarray:
    y = y * (1 - label_smoothing) + label_smoothing / y.shape[-1]
    return -(y * _probabilities(p, from_logits)[1]).sum(axis=-1)


def f_cfce(y: np.ndarray, p: np.ndarray, *, alpha: Any = 0.25, gamma: float = 2.0,
           from_logits: bool = False, label_smoothing: float = 0.0) -> np.ndarray:
    y = y * (1 - label_smoothing) + label_smoothing / y.shape[-1]
    q, logq = _probabilities(p, from_logits)
    return (np.asarray(alpha) * (1 - q) ** gamma * -y * logq).sum(axis=-1)


def f_scce(labels: np.ndarray, p: np.ndarray, *, from_logits: bool = False,
           ignore_class: int | None = None) -> np.ndarray:
    logq = _probabilities(p, from_logits)[1]
    safe = np.where(labels == ignore_class, 0, labels).astype(int)
    loss = -np.take_along_axis(logq, safe[..., None], axis=-1)[..., 0]
    return np.where(labels == ignore_class, 0.0, loss)


def f_poisson(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    return (p - y * np.log(p + EPS)).mean(axis=-1)


def f_kld(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    t, q = np.clip(y, EPS, 1), np.clip(p, EPS, 1)
    return (t * np.log(t / q)).sum(axis=-1)


def reduce64(values: np.ndarray, weight: np.ndarray | None, reduction: str | None,
             mask: np.ndarray | None = None) -> np.ndarray:
    """Keras's reductions, in float64: weights multiply, means divide by the (valid) count."""
    w = np.ones_like(values) if weight is None else np.broadcast_to(weight, values.shape)
    m = np.ones_like(values) if mask is None else mask.astype(float)
    if reduction in (None, "none"):
        return values * w * m
    total = (values * w * m).sum()
    return total if reduction == "sum" else total / m.sum()


# ----------------------------------------------------------------------- inputs

_rng = np.random.default_rng(20240611)
BINARY_TRUE = _rng.integers(0, 2, (B, C)).astype(np.float64)
PROBS = _rng.uniform(0.05, 0.95, (B, C))
LOGITS = _rng.uniform(-3.0, 3.0, (B, C))
LABELS = np.array([0, 2, 1, 2])
ONE_HOT = np.eye(C)[LABELS]
COUNTS = _rng.integers(0, 4, (B, C)).astype(np.float64)
RATES = _rng.uniform(0.2, 3.0, (B, C))
DIST_TRUE = _rng.dirichlet(np.ones(C), B)
DIST_PRED = _rng.dirichlet(np.ones(C), B)
WEIGHTS = np.array([0.5, 1.0, 2.0, 0.25])

# kind -> (y_true, y_pred) for probabilities and logits
INPUTS: dict[str, dict[bool, tuple[np.ndarray, np.ndarray]]] = {
    "binary": {False: (BINARY_TRUE, PROBS), True: (BINARY_TRUE, LOGITS)},
    "categorical": {False: (ONE_HOT, PROBS), True: (ONE_HOT, LOGITS)},
    "sparse": {False: (LABELS, PROBS), True: (LABELS, LOGITS)},
    "poisson": {False: (COUNTS, RATES)},
    "kl": {False: (DIST_TRUE, DIST_PRED)},
}


@dataclass(frozen=True)
class Case:
    """One loss with options: the probloss callable and its float64 formula."""

    id: str
    kind: str
    formula: Callable[..., np.ndarray]
    function: Callable[..., Any] | None = None
    loss_class: type | None = None
    options: dict[str, Any] = field(default_factory=dict)
    class_options: dict[str, Any] = field(default_factory=dict)

    @property
    def logits(self) -> bool:
        return bool(self.options.get("from_logits", False))

    def inputs(self) -> tuple[np.ndarray, np.ndarray]:
        return INPUTS[self.kind][self.logits]

    def probloss(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> Any:
        if self.function is not None:
            return self.function(y_true, y_pred, **self.options)
        assert self.loss_class is not None
        loss = self.loss_class(**self.options, **self.class_options)
        return loss(y_true, y_pred, sample_weight=sample_weight)

    def expected(self, sample_weight: np.ndarray | None = None) -> np.ndarray:
        y_true, y_pred = self.inputs()
        values = self.formula(y_true, y_pred, **self.options)
        if self.function is not None:
            return values
        mask = None
        if self.options.get("ignore_class") is not None:
            mask = y_true != self.options["ignore_class"]
        reduction = self.class_options.get("reduction", "sum_over_batch_size")
        return reduce64(values, sample_weight, reduction, mask)


FUNCTION_CASES = [
    Case("bce", "binary", f_bce, probloss.binary_crossentropy),
    Case("bce_logits_ls", "binary", f_bce, probloss.binary_crossentropy,
         options={"from_logits": True, "label_smoothing": 0.1}),
    Case("bfce_balanced", "binary", f_bfce, probloss.binary_focal_crossentropy,
         options={"apply_class_balancing": True, "alpha": 0.3, "gamma": 1.5}),
    Case("bfce_logits", "binary", f_bfce, probloss.binary_focal_crossentropy,
         options={"from_logits": True, "gamma": 2.0, "label_smoothing": 0.2}),
    Case("cce", "categorical", f_cce, probloss.categorical_crossentropy),
    Case("cce_logits_ls", "categorical", f_cce, probloss.categorical_crossentropy,
         options={"from_logits": True, "label_smoothing": 0.1}),
    Case("cfce_alpha_list", "categorical", f_cfce, probloss.categorical_focal_crossentropy,
         options={"alpha": [0.2, 0.3, 0.5], "gamma": 1.0}),
    Case("cfce_logits", "categorical", f_cfce, probloss.categorical_focal_crossentropy,
         options={"from_logits": True}),
    Case("scce", "sparse", f_scce, probloss.sparse_categorical_crossentropy),
    Case("scce_logits_ignore", "sparse", f_scce, probloss.sparse_categorical_crossentropy,
         options={"from_logits": True, "ignore_class": 1}),
    Case("poisson", "poisson", f_poisson, probloss.poisson),
    Case("kld", "kl", f_kld, probloss.kl_divergence),
]

CLASS_CASES = [
    Case("BinaryCrossentropy", "binary", f_bce, loss_class=probloss.BinaryCrossentropy,
         options={"from_logits": True, "label_smoothing": 0.2}),
    Case("BinaryFocalCrossentropy", "binary", f_bfce, loss_class=probloss.BinaryFocalCrossentropy,
         options={"apply_class_balancing": True, "alpha": 0.4, "gamma": 3.0},
         class_options={"reduction": "sum"}),
    Case("CategoricalCrossentropy", "categorical", f_cce, loss_class=probloss.CategoricalCrossentropy,
         options={"label_smoothing": 0.1}),
    Case("CategoricalFocalCrossentropy", "categorical", f_cfce,
         loss_class=probloss.CategoricalFocalCrossentropy,
         options={"alpha": [0.2, 0.3, 0.5], "from_logits": True}),
    Case("SparseCategoricalCrossentropy", "sparse", f_scce,
         loss_class=probloss.SparseCategoricalCrossentropy,
         options={"from_logits": True, "ignore_class": 2}),
    Case("Poisson", "poisson", f_poisson, loss_class=probloss.Poisson,
         class_options={"reduction": "sum"}),
    Case("KLDivergence", "kl", f_kld, loss_class=probloss.KLDivergence,
         class_options={"reduction": "none"}),
]

ALL_CASES = FUNCTION_CASES + CLASS_CASES
CASE_IDS = [c.id for c in ALL_CASES]


def _arrays(lib: Library, case: Case, dtype: str) -> tuple[Any, Any]:
    """The case's inputs in ``lib``: float labels in ``dtype``, sparse labels as int64."""
    y_true, y_pred = case.inputs()
    true_dtype = "int64" if case.kind == "sparse" else dtype
    return lib.asarray(y_true, true_dtype), lib.asarray(y_pred, dtype)


def _dtype(lib: Library, x: Any) -> str:
    """The dtype's short name ("float32"), from any library's dtype object."""
    return str(x.dtype).rsplit(".", 1)[-1].removeprefix("<dtype: '").removesuffix("'>")  # TF: <dtype: 'float32'>


def _close(actual: np.ndarray, expected: np.ndarray, dtype: str) -> None:
    tol = {"float64": (1e-12, 1e-14), "float32": (2e-6, 1e-6)}[dtype]
    np.testing.assert_allclose(actual, expected, rtol=tol[0], atol=tol[1])


# ---------------------------------------------------------- library, dtype, value


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", ALL_CASES, ids=CASE_IDS)
def test_library_dtype_device_and_value(backend: Library, case: Case, dtype: str) -> None:
    y_true, y_pred = _arrays(backend, case, dtype)
    weight = None if case.function is not None else backend.asarray(WEIGHTS, dtype)
    out = case.probloss(y_true, y_pred, weight)
    assert backend.is_native(out), type(out)
    assert _dtype(backend, out) == dtype
    assert array_api_compat.device(out) == array_api_compat.device(y_pred)
    expected = case.expected(None if weight is None else WEIGHTS)
    assert tuple(out.shape) == expected.shape
    _close(backend.to_numpy(out), expected, dtype)


# (library, dtype) pairs where float16 / bfloat16 exist in that library.
LOW_PRECISION = [("numpy", "float16"), ("torch", "float16"), ("torch", "bfloat16"),
                 ("jax", "float16"), ("jax", "bfloat16")]


@pytest.mark.parametrize(("name", "dtype"), LOW_PRECISION, ids=[f"{n}-{d}" for n, d in LOW_PRECISION])
@pytest.mark.parametrize("case", ALL_CASES, ids=CASE_IDS)
def test_low_precision_is_float32_rounded_once(name: str, dtype: str, case: Case, jax_x64: None) -> None:
    lib = library(name)
    y_true, y_pred = _arrays(lib, case, dtype)
    weight = None if case.function is not None else lib.asarray(WEIGHTS, dtype)
    out = case.probloss(y_true, y_pred, weight)
    assert lib.is_native(out)
    assert _dtype(lib, out) == dtype
    # The documented policy: the float32 computation on the same (rounded) inputs,
    # rounded once to the low-precision dtype at the end.
    up = lib.asarray(lib.to_numpy(y_pred), "float32")
    up_true = y_true if case.kind == "sparse" else lib.asarray(lib.to_numpy(y_true), "float32")
    up_weight = None if weight is None else lib.asarray(lib.to_numpy(weight), "float32")
    reference32 = lib.to_numpy(case.probloss(up_true, up, up_weight))
    rounded = reference32.astype(_numpy_dtype(dtype)).astype(np.float32)
    np.testing.assert_array_equal(lib.to_numpy(out).astype(np.float32), rounded)
    # And both are close to the float64 formula on the rounded inputs.
    expected = case.expected(None if weight is None else WEIGHTS)
    np.testing.assert_allclose(rounded, expected, rtol=2e-2, atol=2e-2)


INTEGER_PREDICTIONS = {
    "binary": (BINARY_TRUE, np.array([[1, 0, 1], [0, 0, 1], [1, 1, 0], [0, 1, 1]])),
    "categorical": (ONE_HOT, np.array([[1, 0, 1], [0, 1, 1], [1, 1, 1], [0, 0, 1]])),
    "sparse": (LABELS, np.array([[1, 0, 1], [0, 1, 1], [1, 1, 1], [0, 0, 1]])),
    "poisson": (COUNTS, np.array([[1, 2, 1], [3, 1, 1], [2, 4, 1], [1, 1, 3]])),
    "kl": (DIST_TRUE, np.array([[1, 0, 1], [0, 1, 1], [1, 1, 0], [0, 0, 1]])),
}


@pytest.mark.parametrize("case", [c for c in ALL_CASES if not c.logits], ids=lambda c: c.id)
def test_integer_predictions_give_float32(backend: Library, case: Case) -> None:
    y_true64, y_pred_int = INTEGER_PREDICTIONS[case.kind]
    y_true = backend.asarray(y_true64, "int64" if case.kind == "sparse" else "float32")
    y_pred = backend.asarray(y_pred_int, "int32")
    weight = None if case.function is not None else backend.asarray(WEIGHTS, "float32")
    out = case.probloss(y_true, y_pred, weight)
    assert backend.is_native(out)
    assert _dtype(backend, out) == "float32"
    y_pred64 = y_pred_int.astype(np.float64)
    if case.kind == "binary":
        # 0 and 1 are clipped to [eps, 1 - eps] in float32, whose bounds differ from the
        # float64 ones by ~1e-8; log(1 - p) at p = 1 - eps magnifies that, so start from them.
        y_pred64 = np.clip(y_pred64, np.float32(EPS), np.float32(1 - EPS))
    values = case.formula(y_true64, y_pred64, **case.options)
    if case.function is None:
        values = reduce64(values, WEIGHTS, case.class_options.get("reduction", "sum_over_batch_size"))
    _close(backend.to_numpy(out), values, "float32")


@pytest.mark.parametrize("case", ALL_CASES, ids=CASE_IDS)
def test_python_lists_work_as_numpy_float32(case: Case) -> None:
    y_true, y_pred = case.inputs()
    weight = None if case.function is not None else WEIGHTS.tolist()
    out = case.probloss(y_true.tolist(), y_pred.tolist(), weight)
    assert isinstance(out, np.ndarray | np.generic)
    assert out.dtype == np.float32
    _close(np.asarray(out), case.expected(None if weight is None else WEIGHTS), "float32")


def test_python_scalars_work_as_numpy_float32() -> None:
    out = probloss.BinaryCrossentropy()([[1.0]], [[0.25]], sample_weight=3.0)
    assert isinstance(out, np.ndarray | np.generic)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, -3 * np.log(0.25), rtol=1e-6)
    out = probloss.poisson([2], [0.5])
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, 0.5 - 2 * np.log(0.5 + EPS), rtol=1e-6)


# ----------------------------------------------------------------------- devices


@pytest.mark.parametrize("case", ALL_CASES, ids=CASE_IDS)
def test_array_api_strict_second_device_is_kept(case: Case) -> None:
    lib = library("array_api_strict")
    xps = lib.module
    device = xps.Device("device1")
    y_true64, y_pred64 = case.inputs()
    true_dtype = xps.int64 if case.kind == "sparse" else xps.float32
    y_true = xps.asarray(y_true64, dtype=true_dtype, device=device)
    y_pred = xps.asarray(y_pred64, dtype=xps.float32, device=device)
    weight = None
    if case.function is None:
        weight = xps.asarray(WEIGHTS, dtype=xps.float32, device=device)
    out = case.probloss(y_true, y_pred, weight)
    assert array_api_compat.device(out) == device
    _close(lib.to_numpy(out), case.expected(None if weight is None else WEIGHTS), "float32")


def test_array_api_strict_python_weight_follows_device() -> None:
    xps = library("array_api_strict").module
    device = xps.Device("device1")
    y_true = xps.asarray(BINARY_TRUE, dtype=xps.float32, device=device)
    y_pred = xps.asarray(PROBS, dtype=xps.float32, device=device)
    out = probloss.BinaryCrossentropy()(y_true, y_pred, sample_weight=WEIGHTS.tolist())
    assert array_api_compat.device(out) == device
    _close(np.asarray(out._array), reduce64(f_bce(BINARY_TRUE, PROBS), WEIGHTS, "sum_over_batch_size"),
           "float32")


# ------------------------------------------------------------------ mixed inputs

MIXED = [("torch", "jax"), ("numpy", "torch"), ("jax", "numpy"), ("array_api_strict", "numpy"),
         ("dask", "torch"), ("torch", "array_api_strict"), ("numpy", "dask")]


@pytest.mark.parametrize(("first", "second"), MIXED, ids=[f"{a}-{b}" for a, b in MIXED])
@pytest.mark.parametrize("case", [FUNCTION_CASES[0], CLASS_CASES[4]], ids=lambda c: c.id)
def test_mixed_libraries_raise_type_error(first: str, second: str, case: Case) -> None:
    a, b = library(first), library(second)
    y_true, _ = _arrays(a, case, "float32")
    _, y_pred = _arrays(b, case, "float32")
    with pytest.raises(TypeError) as error:
        case.probloss(y_true, y_pred)
    assert first in str(error.value)
    assert second in str(error.value)


@pytest.mark.parametrize(("first", "second"), MIXED[:3], ids=[f"{a}-{b}" for a, b in MIXED[:3]])
def test_mixed_sample_weight_raises_type_error(first: str, second: str) -> None:
    a, b = library(first), library(second)
    with pytest.raises(TypeError) as error:
        probloss.BinaryCrossentropy()(a.asarray(BINARY_TRUE, "float32"), a.asarray(PROBS, "float32"),
                                      sample_weight=b.asarray(WEIGHTS, "float32"))
    assert first in str(error.value)
    assert second in str(error.value)
    assert "sample_weight" in str(error.value)


# -------------------------------------------------------------------------- Dask


def _forbid_compute(*args: Any, **kwargs: Any) -> Any:
    msg = "a Dask graph was computed while the loss was being built"
    raise AssertionError(msg)


@pytest.mark.parametrize("case", ALL_CASES, ids=CASE_IDS)
def test_dask_stays_lazy(case: Case) -> None:
    lib = library("dask")
    import dask
    y_true, y_pred = _arrays(lib, case, "float64")
    weight = None if case.function is not None else lib.asarray(WEIGHTS, "float64")
    with dask.config.set(scheduler=_forbid_compute):
        out = case.probloss(y_true, y_pred, weight)
        # The forbidding scheduler is really in force: computing now fails.
        with pytest.raises(AssertionError, match="was computed"):
            out.compute()
    assert lib.is_native(out)
    value = out.compute(scheduler="sync")
    _close(np.asarray(value), case.expected(None if weight is None else WEIGHTS), "float64")


def _dask_chunked(x: np.ndarray, chunks: tuple[int, ...]) -> Any:
    return library("dask").module.array.from_array(x, chunks=chunks)


@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize("ignore_class", [None, 3])
def test_dask_sparse_ce_with_chunked_class_axis(from_logits: bool, ignore_class: int | None) -> None:
    dask = library("dask").module
    rng = np.random.default_rng(7)
    classes = 10
    labels = rng.integers(0, classes, (12,))
    labels[::4] = 3
    y_pred = rng.uniform(-4, 4, (12, classes)) if from_logits else rng.uniform(0.01, 1.0, (12, classes))
    lazy_pred = _dask_chunked(y_pred, (5, 3))  # 4 chunks along the class axis
    assert len(lazy_pred.chunks[1]) == 4
    lazy_labels = _dask_chunked(labels, (5,))
    with dask.config.set(scheduler=_forbid_compute):
        per_sample = probloss.sparse_categorical_crossentropy(lazy_labels, lazy_pred, from_logits=from_logits,
                                                              ignore_class=ignore_class)
        reduced = probloss.SparseCategoricalCrossentropy(from_logits=from_logits, ignore_class=ignore_class)(
            lazy_labels, lazy_pred)
    expected = f_scce(labels, y_pred, from_logits=from_logits, ignore_class=ignore_class)
    _close(per_sample.compute(scheduler="sync"), expected, "float64")
    mask = None if ignore_class is None else labels != ignore_class
    _close(reduced.compute(scheduler="sync"), reduce64(expected, None, "sum_over_batch_size", mask), "float64")


@pytest.mark.parametrize("from_logits", [False, True])
def test_dask_categorical_ce_with_chunked_class_axis(from_logits: bool) -> None:
    dask = library("dask").module
    rng = np.random.default_rng(8)
    classes = 9
    y_true = rng.dirichlet(np.ones(classes), 10)
    y_pred = rng.uniform(-4, 4, (10, classes)) if from_logits else rng.uniform(0.01, 1.0, (10, classes))
    lazy_true, lazy_pred = _dask_chunked(y_true, (4, 2)), _dask_chunked(y_pred, (4, 2))
    assert len(lazy_pred.chunks[1]) == 5
    with dask.config.set(scheduler=_forbid_compute):
        per_sample = probloss.categorical_crossentropy(lazy_true, lazy_pred, from_logits=from_logits,
                                                       label_smoothing=0.1)
        focal = probloss.categorical_focal_crossentropy(lazy_true, lazy_pred, from_logits=from_logits)
        reduced = probloss.CategoricalCrossentropy(from_logits=from_logits)(
            lazy_true, lazy_pred, sample_weight=_dask_chunked(np.arange(10.0), (3,)))
    _close(per_sample.compute(scheduler="sync"),
           f_cce(y_true, y_pred, from_logits=from_logits, label_smoothing=0.1), "float64")
    _close(focal.compute(scheduler="sync"), f_cfce(y_true, y_pred, from_logits=from_logits), "float64")
    _close(reduced.compute(scheduler="sync"),
           reduce64(f_cce(y_true, y_pred, from_logits=from_logits), np.arange(10.0), "sum_over_batch_size"),
           "float64")


def test_dask_invalid_label_is_nan_in_its_slot() -> None:
    """Lazy arrays skip data validation; an out-of-range label gives NaN only in its slot."""
    labels = np.array([0, 5, 1])
    y_pred = np.full((3, 3), 1 / 3)
    out = probloss.sparse_categorical_crossentropy(_dask_chunked(labels, (2,)), _dask_chunked(y_pred, (2, 2)))
    values = out.compute(scheduler="sync")
    assert np.isnan(values[1])
    np.testing.assert_allclose(values[[0, 2]], np.log(3.0), rtol=1e-12)
