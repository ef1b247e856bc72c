"""The public cross-entropies', Poisson's and KL's short way to the compiled kernels (probloss._backends._numpy_direct).

The reference is the general path itself (the same public function with the
short way switched off): on every call the result must be the same, bit for
bit (NaN, inf and dtype included), and so must every error message (the first
offending position) and warning. The short way must actually serve the common
calls (checked by counting its kernel calls and the general path's), and hand
every other call to the general path: options it does not take, layouts and
dtypes it does not take, rows the kernel leaves to the generic kernel, data
the checks refuse, logits that look like probabilities.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest

import probloss
from probloss import _functional
from probloss._backends import _native_softmax as native
from probloss._backends import _numpy_direct as direct

pytestmark = pytest.mark.skipif(not native.AVAILABLE, reason="probloss's compiled kernels are not built")

CCE, SCCE = probloss.categorical_crossentropy, probloss.sparse_categorical_crossentropy
BCE = probloss.binary_crossentropy
POISSON, KL = probloss.poisson, probloss.kl_divergence


@contextmanager
def general_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Switch the short way off inside the block: every call takes the general path."""
    with monkeypatch.context() as m:
        m.setattr(direct, "categorical_crossentropy", lambda *args: None)
        m.setattr(direct, "sparse_categorical_crossentropy", lambda *args: None)
        m.setattr(direct, "binary_crossentropy", lambda *args: None)
        m.setattr(direct, "poisson", lambda *args: None)
        m.setattr(direct, "kl_divergence", lambda *args: None)
        yield


class Spy:
    """Counts the short way's kernel calls and the general path's calls."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.kernel = 0
        self.general = 0
        self.counts = (0, 0)  # (kernel, general) after the call that assert_same_as_general checks
        real_kernels, real_binary, real_evaluate = direct._kernels, direct._binary_kernel, _functional.evaluate

        class Module:
            def __init__(self, compiled: Any) -> None:
                self.compiled = compiled

            def __getattr__(self, name: str) -> Any:
                if name.startswith("KIND_"):
                    return getattr(self.compiled, name)

                def counted(*args: Any) -> Any:
                    spy.kernel += 1
                    return getattr(self.compiled, name)(*args)

                return counted

        spy = self

        def kernels() -> Any:
            found = real_kernels()
            return None if found is None else (Module(found[0]), found[1])

        def binary_kernel() -> Any:
            found = real_binary()
            return None if found is None else (Module(found[0]), found[1])

        def evaluate(*args: Any, **kwargs: Any) -> Any:
            spy.general += 1
            return real_evaluate(*args, **kwargs)

        monkeypatch.setattr(direct, "_kernels", kernels)
        monkeypatch.setattr(direct, "_binary_kernel", binary_kernel)
        monkeypatch.setattr(_functional, "evaluate", evaluate)


def outcome(call: Callable[[], Any]) -> tuple[str, Any, list[str]]:
    """("value", result, warnings) or ("error", "Type: message", warnings) of ``call``."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result: Any = call()
            kind = "value"
        except (ValueError, TypeError) as error:
            result, kind = f"{type(error).__name__}: {error}", "error"
    return kind, result, [f"{w.category.__name__}: {w.message}" for w in caught]


def assert_same_as_general(call: Callable[[], Any], monkeypatch: pytest.MonkeyPatch,
                           spy: Spy | None = None) -> tuple[str, Any, list[str]]:
    """``call`` gives the general path's result, error or warnings, bit for bit; returns them.

    ``spy`` (if given) counts the first call only, the one with the short way on.
    """
    got = outcome(call)
    if spy is not None:
        spy.counts = (spy.kernel, spy.general)
    with general_only(monkeypatch):
        want = outcome(call)
    assert got[0] == want[0], (got, want)
    assert got[2] == want[2]
    if got[0] == "error":
        assert got[1] == want[1]
    else:
        a, b = np.asarray(got[1]), np.asarray(want[1])
        assert a.dtype == b.dtype
        assert a.shape == b.shape
        np.testing.assert_array_equal(a.view(np.uint32), b.view(np.uint32))  # the same bits, NaN included
    return got


def logits(rng: np.random.Generator, shape: tuple[int, ...], scale: float = 3.0) -> np.ndarray:
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def one_hot(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    t = np.zeros(shape, np.float32)
    np.put_along_axis(t, rng.integers(0, shape[-1], (*shape[:-1], 1)), 1.0, axis=-1)
    return t


def soft(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    t = rng.random(shape).astype(np.float32)
    return t / t.sum(axis=-1, keepdims=True)


SHAPES = [(5, 2), (33, 3), (64, 17), (300, 1000), (2, 3, 9), (4, 1, 2, 40)]
MODES = ["off", "raise", "warn", None]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("validate", MODES)
def test_categorical_common_calls_take_the_short_way(shape: tuple[int, ...], validate: str | None,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(sum(shape))
    x = logits(rng, shape)
    x.reshape(-1, shape[-1])[0, 0] = -np.inf  # a masked logit is an ordinary input
    for t in (one_hot(rng, shape), soft(rng, shape)):
        t.reshape(-1, shape[-1])[0, 0] = 0.0
        spy = Spy(monkeypatch)
        kind, _, caught = assert_same_as_general(lambda t=t: CCE(t, x, from_logits=True, validate=validate),
                                                 monkeypatch, spy)
        assert (kind, caught) == ("value", [])
        assert spy.counts == (1, 0)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("validate", MODES)
@pytest.mark.parametrize("label_layout", ["int64", "int32", "trailing", "strided"])
def test_sparse_common_calls_take_the_short_way(shape: tuple[int, ...], validate: str | None, label_layout: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(len(shape) + shape[-1])
    x = logits(rng, shape)
    labels = rng.integers(0, shape[-1], shape[:-1])
    x[(..., 0)] = -np.inf
    labels[labels == 0] = 1
    if label_layout == "int32":
        labels = labels.astype(np.int32)
    elif label_layout == "trailing":
        labels = labels[..., None]
    elif label_layout == "strided":
        labels = np.stack([labels, labels], -1)[..., 0]  # converted, as the general path converts them
    spy = Spy(monkeypatch)
    kind, _, caught = assert_same_as_general(lambda: SCCE(labels, x, from_logits=True, validate=validate),
                                             monkeypatch, spy)
    assert (kind, caught) == ("value", [])
    assert spy.counts == (1, 0)


def test_validation_context_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    x, t = logits(rng, (20, 6)), one_hot(rng, (20, 6))
    x[4, 2] = np.nan
    for mode in ("raise", "warn", "off"):
        with probloss.validation(mode):
            kind, _, caught = assert_same_as_general(lambda: CCE(t, x, from_logits=True), monkeypatch)
            assert kind == ("error" if mode == "raise" else "value")
            assert bool(caught) == (mode == "warn")
            assert_same_as_general(lambda: SCCE(t.argmax(-1), x, from_logits=True), monkeypatch)


# Data the kernel leaves to the generic kernel or the checks refuse: the general path decides.
def _dense_cases() -> list[tuple[str, Callable[[np.ndarray, np.ndarray], None]]]:
    def put(index: tuple[int, ...], value: float, into: str) -> Callable[[np.ndarray, np.ndarray], None]:
        def change(x: np.ndarray, t: np.ndarray) -> None:
            (x if into == "x" else t)[index] = value
        return change

    def masked_row(x: np.ndarray, t: np.ndarray) -> None:
        x[7] = -np.inf

    def label_on_masked_logit(x: np.ndarray, t: np.ndarray) -> None:
        x[3, 1], t[3, 1] = -np.inf, 0.5  # an infinite loss

    def signed_zeros(x: np.ndarray, t: np.ndarray) -> None:
        t[t == 0] = -0.0

    def probabilities(x: np.ndarray, t: np.ndarray) -> None:
        x[...] = np.abs(x) / (1 + np.abs(x))

    return [("nan logit", put((2, 3), np.nan, "x")), ("+inf logit", put((9, 0), np.inf, "x")),
            ("masked row", masked_row), ("label on a masked logit", label_on_masked_logit),
            ("label > 1", put((5, 5), 1.5, "t")), ("negative label", put((11, 2), -0.25, "t")),
            ("nan label", put((0, 4), np.nan, "t")), ("inf label", put((1, 1), np.inf, "t")),
            ("-0.0 labels", signed_zeros), ("logits like probabilities", probabilities)]


@pytest.mark.parametrize("case", _dense_cases(), ids=lambda c: c[0])
@pytest.mark.parametrize("validate", MODES)
def test_categorical_data_the_general_path_decides(case: tuple[str, Callable[..., None]], validate: str | None,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(11)
    x, t = logits(rng, (24, 8)), soft(rng, (24, 8))
    case[1](x, t)
    with np.errstate(all="ignore"):
        assert_same_as_general(lambda: CCE(t, x, from_logits=True, validate=validate), monkeypatch)


@pytest.mark.parametrize("validate", MODES)
@pytest.mark.parametrize("change", ["nan logit", "+inf logit", "masked row", "label -1", "label = classes",
                                    "logits like probabilities", "huge label"])
def test_sparse_data_the_general_path_decides(change: str, validate: str | None,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(12)
    x, labels = logits(rng, (24, 8)), rng.integers(0, 8, 24)
    if change == "nan logit":
        x[6, 6] = np.nan
    elif change == "+inf logit":
        x[6, 1] = np.inf
    elif change == "masked row":
        x[13] = -np.inf
    elif change == "label -1":
        labels[17] = -1
    elif change == "label = classes":
        labels[3] = 8
    elif change == "huge label":
        labels[3] = 2**40
    else:
        x = rng.random((24, 8)).astype(np.float32)
    with np.errstate(all="ignore"):
        assert_same_as_general(lambda: SCCE(labels, x, from_logits=True, validate=validate), monkeypatch)


def _other_calls() -> list[tuple[str, Callable[[np.ndarray, np.ndarray, np.ndarray], Any]]]:
    """Calls the short way does not take (options, layouts, dtypes), as (name, call(t, labels, x))."""
    big_endian = np.dtype(">f4")
    return [
        ("probabilities", lambda t, k, x: CCE(t, np.abs(x) / np.abs(x).sum(-1, keepdims=True))),
        ("from_logits=1", lambda t, k, x: CCE(t, x, from_logits=1)),
        ("label_smoothing", lambda t, k, x: CCE(t, x, from_logits=True, label_smoothing=0.1)),
        ("class_weight", lambda t, k, x: CCE(t, x, from_logits=True, class_weight=list(range(1, 8)))),
        ("axis 0", lambda t, k, x: CCE(t.T.copy(), x.T.copy(), from_logits=True, axis=0)),
        ("axis=True", lambda t, k, x: CCE(t, x, from_logits=True, axis=True)),
        ("strided", lambda t, k, x: CCE(t[::2], x[::2], from_logits=True)),
        ("big-endian", lambda t, k, x: CCE(t, x.astype(big_endian), from_logits=True)),
        ("float64", lambda t, k, x: CCE(t, x.astype(np.float64), from_logits=True)),
        ("float64 labels", lambda t, k, x: CCE(t.astype(np.float64), x, from_logits=True)),
        ("lists", lambda t, k, x: CCE(t.tolist(), x.tolist(), from_logits=True)),
        ("one class", lambda t, k, x: CCE(t[:, :1], x[:, :1], from_logits=True)),
        ("1-D", lambda t, k, x: CCE(t[0], x[0], from_logits=True)),
        ("empty", lambda t, k, x: CCE(t[:0], x[:0], from_logits=True)),
        ("shape mismatch", lambda t, k, x: CCE(t[:, :6], x, from_logits=True)),
        ("bad validate", lambda t, k, x: CCE(t, x, from_logits=True, validate="loud")),
        ("sparse ignore_class", lambda t, k, x: SCCE(k, x, from_logits=True, ignore_class=2)),
        ("sparse class_weight", lambda t, k, x: SCCE(k, x, from_logits=True, class_weight=[1.0] * 7)),
        ("sparse float labels", lambda t, k, x: SCCE(k.astype(np.float32), x, from_logits=True)),
        ("sparse uint8 labels", lambda t, k, x: SCCE(k.astype(np.uint8), x, from_logits=True)),
        ("sparse label shape", lambda t, k, x: SCCE(k[:5], x, from_logits=True)),
        ("sparse axis 0", lambda t, k, x: SCCE(k, x.T.copy(), from_logits=True, axis=0)),
    ]


@pytest.mark.parametrize("case", _other_calls(), ids=lambda c: c[0])
def test_other_calls_take_the_general_path(case: tuple[str, Callable[..., Any]],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(13)
    x, t, labels = logits(rng, (10, 7)), soft(rng, (10, 7)), rng.integers(0, 7, 10)
    spy = Spy(monkeypatch)
    with np.errstate(all="ignore"):
        assert_same_as_general(lambda: case[1](t, labels, x), monkeypatch, spy)
    assert spy.counts[0] == 0


def test_fast_paths_off_and_no_extension(monkeypatch: pytest.MonkeyPatch) -> None:
    """``fast_paths(False)`` gives the generic kernels, and a missing extension the general path's fallback."""
    rng = np.random.default_rng(14)
    x, t = logits(rng, (10, 7)), soft(rng, (10, 7))
    spy = Spy(monkeypatch)
    with probloss.fast_paths(False):
        CCE(t, x, from_logits=True)
        SCCE(t.argmax(-1), x, from_logits=True)
    assert (spy.kernel, spy.general) == (0, 2)
    monkeypatch.setattr(native, "AVAILABLE", False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        CCE(t, x, from_logits=True)
    assert (spy.kernel, spy.general) == (0, 3)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_bit_identical_for_every_thread_count(threads: int) -> None:
    rng = np.random.default_rng(15)
    x, t, labels = logits(rng, (700, 333)), soft(rng, (700, 333)), rng.integers(0, 333, 700)
    reference = CCE(t, x, from_logits=True), SCCE(labels, x, from_logits=True)
    previous = probloss.get_num_threads()
    probloss.set_num_threads(threads)
    try:
        got = CCE(t, x, from_logits=True), SCCE(labels, x, from_logits=True)
    finally:
        probloss.set_num_threads(previous)
    for a, b in zip(got, reference, strict=True):
        np.testing.assert_array_equal(a.view(np.uint32), b.view(np.uint32))


def test_calls_from_several_threads_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Threads racing on the first call (modules loaded lazily) and sharing the task pool: the same bits."""
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(16)
    x, t, labels = logits(rng, (300, 500)), soft(rng, (300, 500)), rng.integers(0, 500, 300)
    reference = CCE(t, x, from_logits=True), SCCE(labels, x, from_logits=True, validate="off")
    monkeypatch.setattr(direct, "_loaded", None)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda i: (CCE(t, x, from_logits=True),
                                           SCCE(labels, x, from_logits=True, validate="off")), range(16)))
    for got in results:
        for a, b in zip(got, reference, strict=True):
            np.testing.assert_array_equal(a.view(np.uint32), b.view(np.uint32))


# Binary cross-entropy from logits.
BINARY_SHAPES = [(5, 2), (64, 17), (300, 1000), (2, 3, 9), (4, 1, 2, 40)]


def binary_labels(rng: np.random.Generator, shape: tuple[int, ...], hard: bool) -> np.ndarray:
    return (rng.random(shape) < 0.5).astype(np.float32) if hard else rng.random(shape).astype(np.float32)


@pytest.mark.parametrize("shape", BINARY_SHAPES)
@pytest.mark.parametrize("validate", MODES)
def test_binary_common_calls_take_the_short_way(shape: tuple[int, ...], validate: str | None,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(sum(shape) + 1)
    x = logits(rng, shape, scale=8.0)
    x.reshape(-1)[-1] = 0.0
    for hard in (True, False):
        t = binary_labels(rng, shape, hard)
        t.reshape(-1)[0] = 0.0
        spy = Spy(monkeypatch)
        kind, _, caught = assert_same_as_general(lambda t=t: BCE(t, x, from_logits=True, validate=validate),
                                                 monkeypatch, spy)
        assert (kind, caught) == ("value", [])
        assert spy.counts == (1, 0)


@pytest.mark.parametrize("change", ["nan logit", "+inf logit", "-inf logit", "-inf logit, label 1/2", "label > 1",
                                    "negative label", "nan label", "inf label", "-0.0 labels",
                                    "logits like probabilities", "constant logits"])
@pytest.mark.parametrize("validate", MODES)
def test_binary_data_the_general_path_decides(change: str, validate: str | None,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(21)
    x, t = logits(rng, (24, 8)), binary_labels(rng, (24, 8), hard=False)
    if change == "nan logit":
        x[3, 5] = np.nan
    elif change == "+inf logit":
        x[7, 0] = np.inf
    elif change == "-inf logit":
        x[2, 2], t[2, 2] = -np.inf, 0.0  # a finite loss: the kernel leaves the row to the generic kernel
    elif change == "-inf logit, label 1/2":
        x[2, 2], t[2, 2] = -np.inf, 0.5
    elif change == "label > 1":
        t[5, 5] = 1.5
    elif change == "negative label":
        t[11, 2] = -0.25
    elif change == "nan label":
        t[0, 4] = np.nan
    elif change == "inf label":
        t[1, 1] = np.inf
    elif change == "-0.0 labels":
        t[t < 0.5] = -0.0
    elif change == "logits like probabilities":
        x = rng.random((24, 8)).astype(np.float32)
    else:
        x[...] = 0.5  # constant: not flagged as probabilities
    with np.errstate(all="ignore"):
        assert_same_as_general(lambda: BCE(t, x, from_logits=True, validate=validate), monkeypatch)


def _other_binary_calls() -> list[tuple[str, Callable[[np.ndarray, np.ndarray], Any]]]:
    """Binary calls the short way does not take, as (name, call(t, x))."""
    big_endian = np.dtype(">f4")
    return [
        ("probabilities", lambda t, x: BCE(t, 1 / (1 + np.exp(-x)))),
        ("from_logits=1", lambda t, x: BCE(t, x, from_logits=1)),
        ("label_smoothing", lambda t, x: BCE(t, x, from_logits=True, label_smoothing=0.1)),
        ("pos_weight", lambda t, x: BCE(t, x, from_logits=True, pos_weight=2.0)),
        ("axis 0", lambda t, x: BCE(t.T.copy(), x.T.copy(), from_logits=True, axis=0)),
        ("strided", lambda t, x: BCE(t[::2], x[::2], from_logits=True)),
        ("big-endian", lambda t, x: BCE(t, x.astype(big_endian), from_logits=True)),
        ("float64", lambda t, x: BCE(t, x.astype(np.float64), from_logits=True)),
        ("float64 labels", lambda t, x: BCE(t.astype(np.float64), x, from_logits=True)),
        ("lists", lambda t, x: BCE(t.tolist(), x.tolist(), from_logits=True)),
        ("one column", lambda t, x: BCE(t[:, :1], x[:, :1], from_logits=True)),
        ("1-D", lambda t, x: BCE(t[0], x[0], from_logits=True)),
        ("empty", lambda t, x: BCE(t[:0], x[:0], from_logits=True)),
        ("shape mismatch", lambda t, x: BCE(t[:, :6], x, from_logits=True)),
        ("bad validate", lambda t, x: BCE(t, x, from_logits=True, validate="loud")),
    ]


@pytest.mark.parametrize("case", _other_binary_calls(), ids=lambda c: c[0])
def test_other_binary_calls_take_the_general_path(case: tuple[str, Callable[..., Any]],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(22)
    x, t = logits(rng, (10, 7)), binary_labels(rng, (10, 7), hard=False)
    spy = Spy(monkeypatch)
    with np.errstate(all="ignore"):
        assert_same_as_general(lambda: case[1](t, x), monkeypatch, spy)
    assert spy.counts[0] == 0


def test_binary_fast_paths_off_and_no_extension(monkeypatch: pytest.MonkeyPatch) -> None:
    from probloss import _native

    rng = np.random.default_rng(23)
    x, t = logits(rng, (10, 7)), binary_labels(rng, (10, 7), hard=True)
    spy = Spy(monkeypatch)
    with probloss.fast_paths(False):
        BCE(t, x, from_logits=True)
    assert (spy.kernel, spy.general) == (0, 1)
    monkeypatch.setattr(_native, "binary", None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = BCE(t, x, from_logits=True)
    assert (spy.kernel, spy.general) == (0, 2)
    # the general path's fallback: the float64 formula within float32 rounding
    x64, t64 = x.astype(np.float64), t.astype(np.float64)
    want = np.mean(np.maximum(x64, 0) - x64 * t64 + np.log1p(np.exp(-np.abs(x64))), axis=-1)
    np.testing.assert_allclose(got, want, rtol=2e-6)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_binary_bit_identical_for_every_thread_count(threads: int) -> None:
    rng = np.random.default_rng(24)
    x, t = logits(rng, (700, 333)), binary_labels(rng, (700, 333), hard=False)
    reference = BCE(t, x, from_logits=True)
    previous = probloss.get_num_threads()
    probloss.set_num_threads(threads)
    try:
        got = BCE(t, x, from_logits=True)
    finally:
        probloss.set_num_threads(previous)
    np.testing.assert_array_equal(got.view(np.uint32), reference.view(np.uint32))


# Poisson and KL divergence.
RATE_SHAPES = [(1,), (7,), (5, 2), (64, 17), (300, 256), (2, 3, 9)]


def counts_and_rates(rng: np.random.Generator, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    return rng.poisson(2.0, shape).astype(np.float32), rng.uniform(0.0, 5.0, shape).astype(np.float32)


def distributions(rng: np.random.Generator, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    return soft(rng, shape), soft(rng, shape)


RATE_LOSSES = {"poisson": (POISSON, counts_and_rates), "kl": (KL, distributions)}


@pytest.mark.parametrize("loss", RATE_LOSSES)
@pytest.mark.parametrize("shape", RATE_SHAPES)
@pytest.mark.parametrize("validate", MODES)
def test_rate_common_calls_take_the_short_way(loss: str, shape: tuple[int, ...], validate: str | None,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    fn, data = RATE_LOSSES[loss]
    t, x = data(np.random.default_rng(sum(shape) + 31), shape)
    t.reshape(-1)[0] = 0.0  # a zero count / probability: 0·log(...) and KL's clip at ε
    x.reshape(-1)[-1] = 0.0  # a zero rate / probability: log(ε), the clip at ε
    spy = Spy(monkeypatch)
    kind, _, caught = assert_same_as_general(lambda: fn(t, x, validate=validate), monkeypatch, spy)
    assert (kind, caught) == ("value", [])
    assert spy.counts == (1, 0)


@pytest.mark.parametrize("loss", RATE_LOSSES)
@pytest.mark.parametrize("change", ["nan y_true", "nan y_pred", "inf y_true", "inf y_pred", "negative y_true",
                                    "negative y_pred", "-0.0 y_pred", "y_true > 1", "y_pred > 1", "huge y_pred"])
@pytest.mark.parametrize("validate", MODES)
def test_rate_data_the_general_path_decides(loss: str, change: str, validate: str | None,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    fn, data = RATE_LOSSES[loss]
    t, x = data(np.random.default_rng(32), (24, 8))
    if change == "nan y_true":
        t[3, 5] = np.nan
    elif change == "nan y_pred":
        x[3, 5] = np.nan
    elif change == "inf y_true":
        t[7, 0] = np.inf
    elif change == "inf y_pred":
        x[7, 0] = np.inf
    elif change == "negative y_true":
        t[11, 2] = -0.25
    elif change == "negative y_pred":
        x[11, 2] = -0.25
    elif change == "-0.0 y_pred":
        x[x < 0.1] = -0.0
    elif change == "y_true > 1":
        t[5, 5] = 1.5
    elif change == "y_pred > 1":
        x[5, 5] = 1.5
    else:
        x[2, 2] = 3e38
    with np.errstate(all="ignore"):
        assert_same_as_general(lambda: fn(t, x, validate=validate), monkeypatch)


def _other_rate_calls() -> list[tuple[str, Callable[[Callable[..., Any], np.ndarray, np.ndarray], Any]]]:
    """Poisson / KL calls the short way does not take, as (name, call(fn, t, x))."""
    big_endian = np.dtype(">f4")
    return [
        ("strided", lambda fn, t, x: fn(t[::2], x[::2])),
        ("transposed", lambda fn, t, x: fn(t.T, x.T)),
        ("big-endian", lambda fn, t, x: fn(t, x.astype(big_endian))),
        ("float64", lambda fn, t, x: fn(t, x.astype(np.float64))),
        ("float64 y_true", lambda fn, t, x: fn(t.astype(np.float64), x)),
        ("float16", lambda fn, t, x: fn(t.astype(np.float16), x.astype(np.float16))),
        ("lists", lambda fn, t, x: fn(t.tolist(), x.tolist())),
        ("empty", lambda fn, t, x: fn(t[:0], x[:0])),
        ("no columns", lambda fn, t, x: fn(t[:, :0], x[:, :0])),
        ("scalar", lambda fn, t, x: fn(t[0, 0], x[0, 0])),
        ("shape mismatch", lambda fn, t, x: fn(t[:, :6], x)),
        ("bad validate", lambda fn, t, x: fn(t, x, validate="loud")),
    ]


@pytest.mark.parametrize("loss", RATE_LOSSES)
@pytest.mark.parametrize("case", _other_rate_calls(), ids=lambda c: c[0])
def test_other_rate_calls_take_the_general_path(loss: str, case: tuple[str, Callable[..., Any]],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    fn, data = RATE_LOSSES[loss]
    t, x = data(np.random.default_rng(33), (10, 7))
    spy = Spy(monkeypatch)
    with np.errstate(all="ignore"):
        assert_same_as_general(lambda: case[1](fn, t, x), monkeypatch, spy)
    assert spy.counts[0] == 0


@pytest.mark.parametrize("option", ["log_input", "full", "log_target"])
def test_rate_options_take_the_general_path(option: str, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(34)
    if option == "log_target":
        t, x = distributions(rng, (10, 7))
        call = lambda: KL(np.log(t), x, log_target=True)  # noqa: E731
    else:
        t, x = counts_and_rates(rng, (10, 7))
        call = lambda: POISSON(t, x, **{option: True})  # noqa: E731
    spy = Spy(monkeypatch)
    assert_same_as_general(call, monkeypatch, spy)
    assert spy.counts[0] == 0


@pytest.mark.parametrize("loss", RATE_LOSSES)
def test_rate_short_way_reads_epsilon_and_switches(loss: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from probloss import _native

    fn, data = RATE_LOSSES[loss]
    t, x = data(np.random.default_rng(35), (10, 7))
    x[0, 0] = 0.0  # where ε acts: log(0 + ε), the clip of p at ε
    previous = probloss.epsilon()
    probloss.set_epsilon(1e-3)
    try:
        got = assert_same_as_general(lambda: fn(t, x), monkeypatch)[1]
    finally:
        probloss.set_epsilon(previous)
    assert not np.array_equal(got, fn(t, x))  # ε changed the result, and the short way followed it
    spy = Spy(monkeypatch)
    with probloss.fast_paths(False):
        fn(t, x)
    assert (spy.kernel, spy.general) == (0, 1)
    monkeypatch.setattr(_native, "binary", None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fn(t, x)
    assert (spy.kernel, spy.general) == (0, 2)


@pytest.mark.parametrize("loss", RATE_LOSSES)
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_rate_bit_identical_for_every_thread_count(loss: str, threads: int) -> None:
    fn, data = RATE_LOSSES[loss]
    t, x = data(np.random.default_rng(36), (700, 333))
    # an independent float64 reference: Keras's formulas
    t64, x64, eps = t.astype(np.float64), x.astype(np.float64), probloss.epsilon()
    if loss == "poisson":
        want = np.mean(x64 - t64 * np.log(x64 + np.float32(eps)), axis=-1)
    else:
        tc, xc = np.clip(t64, np.float32(eps), 1.0), np.clip(x64, np.float32(eps), 1.0)
        want = np.sum(tc * np.log(tc / xc), axis=-1)
    previous = probloss.get_num_threads()
    probloss.set_num_threads(threads)
    try:
        got = fn(t, x)
    finally:
        probloss.set_num_threads(previous)
    np.testing.assert_allclose(got, want, rtol=4 * 2.0**-24, atol=0)
    np.testing.assert_array_equal(got.view(np.uint32), fn(t, x).view(np.uint32))
