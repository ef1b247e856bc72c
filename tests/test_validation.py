"""Data validation: every invalid input raises a ValueError that says what, where and why.

Checks, table-driven over the eager backends (``backend`` fixture):

* each bad input (sparse labels out of range, binary labels outside [0, 1],
  probabilities outside [0, 1], NaN/inf, negative weights, negative Poisson
  inputs, KL inputs outside [0, 1], all-zero probability rows, shape
  mismatches) raises ``ValueError`` whose message names the argument, the
  offending value, its position and the valid range;
* ``validate="warn"`` gives a ``ValidationWarning`` and the value of the
  float64 reference (tests/reference.py); ``validate="off"`` and
  ``probloss.validation("off")`` check nothing; an explicit ``validate=`` beats
  the context; bad modes raise;
* ``from_logits=True`` with values wholly inside [0, 1] gives one
  ``ProbabilitiesAsLogitsWarning`` per call, never an error;
* lazy arrays (Dask, ``jax.jit``) skip data validation, never raise on data,
  and give NaN in the slot of an invalid sparse label (documented probloss
  behaviour, deliberate difference 7).

Deliberate differences from Keras 3 checked here: Keras validates none of this
data (keras-semantics.md, Part F); probloss raises by default (difference 7),
requires equal shapes for CFCE/Poisson/KL (difference 5) and reads a lower-rank
sample weight as per-sample (difference 1), so a ``(T,)`` weight on ``(B, T)``
losses is an error rather than a silent per-timestep weight.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import reference as ref
from conftest import library

import probloss

F32 = "float32"
UNIFORM3 = np.full((2, 3), 1 / 3)


@dataclass(frozen=True)
class Case:
    """One invalid input: the call, and the words its error message must contain."""

    id: str
    call: Callable[..., Any]  # (backend) -> result
    words: tuple[str, ...]
    data: bool = True  # a data check (skipped on lazy arrays), not a static one
    extra: dict[str, Any] = field(default_factory=dict)


def _fn(name: str, y_true: Any, y_pred: Any, true_dtype: str = F32, **options: Any) -> Callable[..., Any]:
    function = getattr(probloss, name)
    return lambda b, **kw: function(b.asarray(y_true, true_dtype), b.asarray(y_pred, F32), **options, **kw)


def _cls(cls: type, y_true: Any, y_pred: Any, weight: Any, true_dtype: str = F32,
         **options: Any) -> Callable[..., Any]:
    return lambda b, **kw: cls(**options, **kw)(b.asarray(y_true, true_dtype), b.asarray(y_pred, F32),
                                                sample_weight=b.asarray(weight, F32))


_BCE_T = [[0.0, 1.0], [1.0, 0.0]]
_BCE_P = [[0.2, 0.7], [0.6, 0.1]]
_CCE_T = [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]
_CCE_P = [[0.2, 0.7, 0.1], [0.5, 0.3, 0.2]]


def _with(base: list[list[float]], where: tuple[int, int], value: float) -> list[list[float]]:
    out = [list(row) for row in base]
    out[where[0]][where[1]] = value
    return out


CASES = [
    # sparse labels
    Case("scce-label-too-large", _fn("sparse_categorical_crossentropy", [0, 3], UNIFORM3, "int64"),
         ("y_true", "3", "(1,)", "[0, 3)")),
    Case("scce-label-negative", _fn("sparse_categorical_crossentropy", [-1, 2], UNIFORM3, "int64"),
         ("y_true", "-1", "(0,)", "[0, 3)")),
    Case("scce-label-not-ignore-class",
         _fn("sparse_categorical_crossentropy", [-1, 7], UNIFORM3, "int64", ignore_class=-1),
         ("y_true", "7", "(1,)", "[0, 3)", "ignore_class=-1")),
    Case("scce-label-fraction", _fn("sparse_categorical_crossentropy", [0.0, 1.5], UNIFORM3),
         ("y_true", "1.5", "(1,)", "integer")),
    Case("scce-label-nan", _fn("sparse_categorical_crossentropy", [np.nan, 1.0], UNIFORM3),
         ("y_true", "nan", "(0,)")),
    Case("scce-class-label-too-large",
         _cls(probloss.SparseCategoricalCrossentropy, [0, 3], UNIFORM3, [1.0, 1.0], "int64"),
         ("y_true", "3", "(1,)", "[0, 3)")),
    # binary labels
    Case("bce-y_true-2", _fn("binary_crossentropy", _with(_BCE_T, (0, 1), 2.0), _BCE_P),
         ("y_true", "2", "(0, 1)", "[0, 1]")),
    Case("bfce-y_true-negative", _fn("binary_focal_crossentropy", _with(_BCE_T, (1, 1), -0.5), _BCE_P),
         ("y_true", "-0.5", "(1, 1)", "[0, 1]")),
    Case("bce-logits-y_true-2", _fn("binary_crossentropy", _with(_BCE_T, (1, 0), 2.0), _BCE_P, from_logits=True),
         ("y_true", "2", "(1, 0)", "[0, 1]")),
    # probabilities outside [0, 1]
    Case("bce-y_pred-1.5", _fn("binary_crossentropy", _BCE_T, _with(_BCE_P, (0, 1), 1.5)),
         ("y_pred", "1.5", "(0, 1)", "[0, 1]", "from_logits=True")),
    Case("bfce-y_pred-negative", _fn("binary_focal_crossentropy", _BCE_T, _with(_BCE_P, (1, 0), -0.25)),
         ("y_pred", "-0.25", "(1, 0)", "[0, 1]", "from_logits=True")),
    Case("cce-y_pred-negative", _fn("categorical_crossentropy", _CCE_T, _with(_CCE_P, (1, 2), -0.5)),
         ("y_pred", "-0.5", "(1, 2)", "[0, 1]", "from_logits=True")),
    Case("cfce-y_pred-2", _fn("categorical_focal_crossentropy", _CCE_T, _with(_CCE_P, (0, 0), 2.0)),
         ("y_pred", "2", "(0, 0)", "[0, 1]", "from_logits=True")),
    Case("scce-y_pred-1.25", _fn("sparse_categorical_crossentropy", [0, 1], _with(_CCE_P, (0, 2), 1.25), "int64"),
         ("y_pred", "1.25", "(0, 2)", "[0, 1]", "from_logits=True")),
    Case("cce-all-zero-row", _fn("categorical_crossentropy", _CCE_T, [[0.0, 0.0, 0.0], [0.5, 0.3, 0.2]]),
         ("y_pred", "sums to 0", "(0,)")),
    Case("scce-all-zero-row", _fn("sparse_categorical_crossentropy", [0, 1], [[0.5, 0.3, 0.2], [0.0, 0.0, 0.0]],
                                  "int64"), ("y_pred", "sums to 0", "(1,)")),
    # NaN and inf
    Case("bce-y_true-nan", _fn("binary_crossentropy", _with(_BCE_T, (1, 0), np.nan), _BCE_P),
         ("y_true", "nan", "(1, 0)", "[0, 1]")),
    Case("cce-y_pred-nan", _fn("categorical_crossentropy", _CCE_T, _with(_CCE_P, (0, 1), np.nan)),
         ("y_pred", "nan", "(0, 1)", "[0, 1]")),
    Case("bce-logits-inf", _fn("binary_crossentropy", _BCE_T, _with(_BCE_P, (1, 1), np.inf), from_logits=True),
         ("y_pred", "inf", "(1, 1)", "finite", "-inf")),
    Case("cfce-logits-nan", _fn("categorical_focal_crossentropy", _CCE_T, _with(_CCE_P, (1, 0), np.nan),
                                from_logits=True), ("y_pred", "nan", "(1, 0)", "finite")),
    Case("scce-logits-inf", _fn("sparse_categorical_crossentropy", [0, 1], _with(_CCE_P, (1, 1), np.inf), "int64",
                                from_logits=True), ("y_pred", "inf", "(1, 1)", "finite")),
    Case("poisson-y_pred-nan", _fn("poisson", _BCE_T, _with(_BCE_P, (0, 0), np.nan)),
         ("y_pred", "nan", "(0, 0)", "[0, inf)")),
    Case("kl-y_true-inf", _fn("kl_divergence", _with(_BCE_T, (1, 1), np.inf), _BCE_P),
         ("y_true", "inf", "(1, 1)", "[0, 1]")),
    # sample weights
    Case("weight-negative", _cls(probloss.BinaryCrossentropy, _BCE_T, _BCE_P, [1.0, -2.0]),
         ("sample_weight", "-2", "(1,)", "[0, inf)")),
    Case("weight-nan", _cls(probloss.CategoricalCrossentropy, _CCE_T, _CCE_P, [np.nan, 1.0]),
         ("sample_weight", "nan", "(0,)", "[0, inf)")),
    Case("weight-inf", _cls(probloss.Poisson, _BCE_T, _BCE_P, [1.0, np.inf]),
         ("sample_weight", "inf", "(1,)", "[0, inf)")),
    # Poisson and KL ranges
    Case("poisson-negative-count", _fn("poisson", _with(_BCE_T, (1, 0), -1.0), _BCE_P),
         ("y_true", "-1", "(1, 0)", "[0, inf)")),
    Case("poisson-negative-rate", _fn("poisson", _BCE_T, _with(_BCE_P, (0, 1), -0.5)),
         ("y_pred", "-0.5", "(0, 1)", "[0, inf)")),
    Case("kl-y_pred-1.5", _fn("kl_divergence", _BCE_T, _with(_BCE_P, (0, 0), 1.5)),
         ("y_pred", "1.5", "(0, 0)", "[0, 1]")),
    Case("kl-y_true-negative", _fn("kl_divergence", _with(_BCE_T, (0, 0), -0.1), _BCE_P),
         ("y_true", "-0.1", "(0, 0)", "[0, 1]")),
    # shapes (static checks: they raise on lazy arrays too)
    Case("bce-shape", _fn("binary_crossentropy", np.zeros((2, 3)), np.full((2, 4), 0.5)),
         ("y_true", "y_pred", "(2, 3)", "(2, 4)"), data=False),
    Case("cfce-shape", _fn("categorical_focal_crossentropy", np.zeros((2, 1)), np.full((2, 3), 0.5)),
         ("y_true", "y_pred", "(2, 1)", "(2, 3)"), data=False),
    Case("poisson-shape", _fn("poisson", np.zeros((3, 2)), np.full((2, 2), 0.5)),
         ("y_true", "y_pred", "(3, 2)", "(2, 2)"), data=False),
    Case("kl-shape", _fn("kl_divergence", np.zeros((2, 1)), np.full((2, 2), 0.5)),
         ("y_true", "y_pred", "(2, 1)", "(2, 2)"), data=False),
    Case("scce-label-shape", _fn("sparse_categorical_crossentropy", [0, 1, 2], UNIFORM3, "int64"),
         ("y_true", "y_pred", "(3,)", "(2, 3)"), data=False),
    Case("weight-length", _cls(probloss.BinaryCrossentropy, _BCE_T, _BCE_P, [1.0, 1.0, 1.0]),
         ("sample_weight", "(3,)", "(2,)"), data=False),
    # A (T,) weight on per-timestep losses (B, T) with T != B: not one weight per sample.
    Case("weight-per-timestep", _cls(probloss.BinaryCrossentropy, np.zeros((2, 3, 4)), np.full((2, 3, 4), 0.5),
                                     [1.0, 2.0, 3.0]), ("sample_weight", "(3,)", "(2, 3)"), data=False),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_invalid_input_raises_with_argument_value_position_and_range(backend, case: Case) -> None:
    if backend.lazy and case.data:
        # Lazy arrays: data checks are skipped (never compute the graph to validate).
        result = case.call(backend)
        assert backend.is_native(result)
        return
    with pytest.raises(ValueError) as error:  # noqa: PT011 - the words are checked below
        case.call(backend)
    message = str(error.value)
    for word in case.words:
        assert word in message, f"{word!r} missing from: {message}"


@pytest.mark.parametrize("case", [c for c in CASES if c.data], ids=lambda c: c.id)
def test_validation_off_checks_nothing(case: Case) -> None:
    numpy = library("numpy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # NumPy's own, e.g. 0/0 on an all-zero row
        case.call(numpy, validate="off")
        with probloss.validation("off"):
            case.call(numpy)


@pytest.mark.parametrize("case", [c for c in CASES if c.data], ids=lambda c: c.id)
def test_validation_warn_warns_once_and_returns(case: Case) -> None:
    numpy = library("numpy")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        case.call(numpy, validate="warn")
    validation = [w for w in caught if issubclass(w.category, probloss.ValidationWarning)]
    assert len(validation) == 1
    assert all(word in str(validation[0].message) for word in case.words)


def test_warn_mode_returns_the_clipped_reference_value() -> None:
    y_true = np.array([[0.0, 1.0], [1.0, 0.0]], np.float32)
    y_pred = np.array([[0.2, 1.5], [0.6, -0.5]], np.float32)
    with pytest.warns(probloss.ValidationWarning, match=r"`y_pred`.*1\.5.*\(0, 1\)"):
        got = probloss.binary_crossentropy(y_true, y_pred, validate="warn")
    # Keras clips the probabilities to [eps, 1 - eps]; the float32 bounds apply.
    want = ref.binary_crossentropy(y_true, y_pred, clip_dtype="float32")
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_off_mode_returns_the_clipped_reference_value_and_no_warning() -> None:
    y_true = np.array([[0.0, 1.0]], np.float64)
    y_pred = np.array([[1.5, 0.5]], np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with probloss.validation("off"):
            got = probloss.binary_crossentropy(y_true, y_pred)
    np.testing.assert_allclose(got, ref.binary_crossentropy(y_true, y_pred), rtol=1e-12)


def test_explicit_validate_beats_the_context() -> None:
    y_true, y_pred = np.array([[0.0, 1.0]]), np.array([[1.5, 0.5]])
    with probloss.validation("off"):
        with pytest.raises(ValueError, match="y_pred"):
            probloss.binary_crossentropy(y_true, y_pred, validate="raise")
        with pytest.raises(ValueError, match="y_pred"):
            probloss.BinaryCrossentropy(validate="raise")(y_true, y_pred)
        with pytest.warns(probloss.ValidationWarning):
            probloss.BinaryCrossentropy(validate="warn")(y_true, y_pred)
    with probloss.validation("warn"):
        probloss.binary_crossentropy(y_true, y_pred, validate="off")  # no warning (filterwarnings=error)
        with pytest.warns(probloss.ValidationWarning):
            probloss.binary_crossentropy(y_true, y_pred)
    with pytest.raises(ValueError, match="y_pred"):  # the context is restored on exit
        probloss.binary_crossentropy(y_true, y_pred)


def test_context_is_restored_after_an_exception() -> None:
    with pytest.raises(RuntimeError), probloss.validation("off"):
        raise RuntimeError
    with pytest.raises(ValueError, match="y_pred"):
        probloss.binary_crossentropy([[0.0]], [[2.0]])


@pytest.mark.parametrize("mode", ["Raise", "error", "", "none", True, 1, 0.5])
def test_bad_validate_values_raise(mode: object) -> None:
    with pytest.raises(ValueError, match=r"Invalid value for argument `validate`.*Received: validate="):
        probloss.binary_crossentropy([[0.0]], [[0.5]], validate=mode)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"argument `validate`"):
        probloss.CategoricalCrossentropy(validate=mode)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"argument `validate`"), probloss.validation(mode):  # type: ignore[arg-type]
        pass


LOGITS_LOSSES = [
    ("binary_crossentropy", _BCE_T, _BCE_P, F32),
    ("binary_focal_crossentropy", _BCE_T, _BCE_P, F32),
    ("categorical_crossentropy", _CCE_T, _CCE_P, F32),
    ("categorical_focal_crossentropy", _CCE_T, _CCE_P, F32),
    ("sparse_categorical_crossentropy", [1, 0], _CCE_P, "int64"),
]


@pytest.mark.parametrize(("name", "y_true", "y_pred", "true_dtype"), LOGITS_LOSSES, ids=lambda v: str(v)[:12])
def test_probabilities_passed_as_logits_warn_once(backend, name, y_true, y_pred, true_dtype) -> None:
    function = getattr(probloss, name)
    yt, yp = backend.asarray(y_true, true_dtype), backend.asarray(y_pred, F32)
    if backend.lazy:
        function(yt, yp, from_logits=True)  # no data look-up on lazy arrays: no warning
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = function(yt, yp, from_logits=True)
    assert [w.category for w in caught] == [probloss.ProbabilitiesAsLogitsWarning]
    assert "from_logits=False" in str(caught[0].message)
    reference = ref.LOSSES[name](np.asarray(y_true), np.asarray(y_pred, np.float32), from_logits=True)
    if name == "sparse_categorical_crossentropy":
        reference = reference[0]
    np.testing.assert_allclose(backend.to_numpy(got), reference, rtol=1e-5)
    # Real logits (outside [0, 1]) and constant logits (all zeros) do not warn.
    function(yt, backend.asarray(np.asarray(y_pred) * 8 - 4, F32), from_logits=True)
    function(yt, backend.asarray(np.zeros_like(np.asarray(y_pred)), F32), from_logits=True)


def test_dask_invalid_sparse_label_gives_nan_in_its_slot() -> None:
    dask = library("dask")
    labels = np.array([0, 3, -2, 1])
    logits = np.random.default_rng(0).normal(size=(4, 3))
    want = ref.sparse_categorical_crossentropy(labels, logits, from_logits=True)[0]
    assert np.isnan(want[1])
    assert np.isnan(want[2])
    got = probloss.sparse_categorical_crossentropy(dask.asarray(labels), dask.asarray(logits), from_logits=True)
    assert dask.is_native(got)
    np.testing.assert_allclose(dask.to_numpy(got), want, rtol=1e-12, equal_nan=True)
    per_sample = probloss.SparseCategoricalCrossentropy(reduction="none", ignore_class=-2)(
        dask.asarray(labels), dask.asarray(np.full((4, 3), 1 / 3)))
    values = dask.to_numpy(per_sample)
    assert np.isnan(values[1])
    assert values[2] == 0.0
    np.testing.assert_allclose(values[[0, 3]], np.log(3.0), rtol=1e-12)


def test_jit_invalid_label_gives_nan_without_raising(jax_x64: None) -> None:
    jax = library("jax").module
    labels = jax.numpy.asarray([0, 3, -1, 2])
    probs = jax.numpy.asarray(np.full((4, 3), 1 / 3))
    for from_logits in (False, True):
        got = jax.jit(lambda t, p, f=from_logits: probloss.sparse_categorical_crossentropy(t, p, from_logits=f))(
            labels, probs)
        got = np.asarray(got)
        assert np.isnan(got[1])
        assert np.isnan(got[2])
        np.testing.assert_allclose(got[[0, 3]], np.log(3.0), rtol=1e-12)
    loss = probloss.SparseCategoricalCrossentropy()
    assert np.isnan(float(jax.jit(loss)(labels, probs)))  # the invalid slot poisons the mean: not a plausible number


def test_jit_skips_data_checks(jax_x64: None) -> None:
    jax = library("jax").module
    y_true = jax.numpy.asarray([[0.0, 2.0]])
    y_pred = jax.numpy.asarray([[0.5, 0.25]])
    got = jax.jit(probloss.binary_crossentropy)(y_true, y_pred)  # y_true=2 is invalid, but no raise under jit
    np.testing.assert_allclose(np.asarray(got), ref.binary_crossentropy(np.asarray(y_true), np.asarray(y_pred)),
                               rtol=1e-12)


def test_torch_tensor_requiring_grad_is_validated() -> None:
    torch = library("torch").module
    y_pred = torch.tensor([[0.2, 1.5]], requires_grad=True)
    with pytest.raises(ValueError, match=r"`y_pred`.*1\.5.*\(0, 1\)"):
        probloss.binary_crossentropy(torch.tensor([[0.0, 1.0]]), y_pred)


def test_per_sample_weight_on_per_timestep_losses_weights_samples(backend) -> None:
    """(B,) weights on (B, T) losses weight samples (tf.keras's rule; Keras 3 weights the last axis)."""
    rng = np.random.default_rng(3)
    y_true = (rng.random((2, 2, 4)) < 0.5).astype(np.float32)
    y_pred = rng.random((2, 2, 4)).astype(np.float32)
    weight = np.array([0.5, 2.0], np.float32)  # T == B == 2: the ambiguous case
    got = probloss.BinaryCrossentropy(reduction="none")(backend.asarray(y_true), backend.asarray(y_pred),
                                                        sample_weight=backend.asarray(weight))
    values = ref.binary_crossentropy(y_true, y_pred, clip_dtype="float32")
    np.testing.assert_allclose(backend.to_numpy(got), values * weight[:, None], rtol=1e-5)
