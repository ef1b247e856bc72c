"""The kernel table: every registered fast path equals its generic kernel.

Parametrized from ``probloss._dispatch.FAST``, so a new fast path gets a parity
test without touching this file. Also checks that a declining fast path falls
through to the generic kernel and that ``probloss.fast_paths(False)`` bypasses
fast paths.
"""

from __future__ import annotations

import importlib
import zlib

import numpy as np
import pytest

import probloss
from probloss import _dispatch
from probloss._backends import _numpy as _numpy_backend

# Import every backend module whose library is installed, so FAST is complete.
for _module in _dispatch._BACKEND_MODULES.values():
    importlib.import_module(_module)

_FUNCTIONS = {
    "sparse_categorical_crossentropy": probloss.sparse_categorical_crossentropy,
    "binary_crossentropy": probloss.binary_crossentropy,
    "categorical_crossentropy": probloss.categorical_crossentropy,
    "categorical_focal_crossentropy": probloss.categorical_focal_crossentropy,
    "binary_focal_crossentropy": probloss.binary_focal_crossentropy,
}


def _inputs(name: str, rng: np.random.Generator, shape: tuple[int, ...], axis: int):
    logits = rng.normal(scale=8.0, size=shape).astype(np.float32)
    probs = np.exp(logits - logits.max(axis=axis, keepdims=True))
    probs = (probs / probs.sum(axis=axis, keepdims=True)).astype(np.float32)
    if name == "sparse_categorical_crossentropy":
        labels = rng.integers(0, shape[axis], size=np.delete(np.array(shape), axis))
        return labels, logits, probs
    targets = (rng.random(shape) < 0.5).astype(np.float32)
    return targets, logits, probs


_WITHOUT_AXIS = {"kl_divergence", "poisson"}  # reduce the last axis, no from_logits: tested here and in test_native
_ELSEWHERE = {"ctc_loss"}  # its own arguments: parity of every CTC path in test_ctc.py


def test_every_fast_path_has_a_parity_test():
    # PyTorch's fast paths (values and gradients) are checked in test_torch_native.py.
    assert {name for name, library in _dispatch.FAST if library == "numpy"} <= (set(_FUNCTIONS) | _WITHOUT_AXIS
                                                                                | _ELSEWHERE)


@pytest.mark.parametrize("gamma", [0.0, 1.0, 1.5, 2.0, 3.0])
@pytest.mark.parametrize("per_class", [False, True])
@pytest.mark.parametrize("axis", [-1, 0])
def test_focal_fast_path_options_equal_generic_kernel(gamma, per_class, axis):
    rng = np.random.default_rng(int(gamma * 10) + per_class)
    logits = rng.normal(scale=6.0, size=(40, 7)).astype(np.float32)
    labels = rng.dirichlet(np.ones(7), size=40).astype(np.float32)
    # Per-class alpha broadcasts against the last axis (7 entries) whatever the class axis.
    alpha = tuple(np.linspace(0.1, 0.9, 7)) if per_class else 0.3
    kwargs = {"gamma": gamma, "alpha": alpha, "from_logits": True, "axis": axis, "validate": "off"}
    fast = probloss.categorical_focal_crossentropy(labels, logits, **kwargs)
    with probloss.fast_paths(False):
        generic = probloss.categorical_focal_crossentropy(labels, logits, **kwargs)
    np.testing.assert_allclose(fast, generic, rtol=2 * np.finfo(np.float32).eps, atol=0)


@pytest.mark.parametrize("gamma", [0.0, 1.0, 1.5, 2.0])
@pytest.mark.parametrize("balanced", [False, True])
def test_binary_focal_fast_path_options_equal_generic_kernel(gamma, balanced):
    rng = np.random.default_rng(int(gamma * 10) + balanced)
    logits = rng.normal(scale=6.0, size=(30, 9)).astype(np.float32)
    logits[0, :4] = [np.inf, -np.inf, 60.0, -60.0]
    labels = rng.random((30, 9)).astype(np.float32)
    labels[0, :4] = [1.0, 0.0, 1.0, 0.0]
    kwargs = {"gamma": gamma, "alpha": 0.3, "apply_class_balancing": balanced, "from_logits": True,
              "validate": "off"}
    fast = probloss.binary_focal_crossentropy(labels, logits, **kwargs)
    with probloss.fast_paths(False):
        generic = probloss.binary_focal_crossentropy(labels, logits, **kwargs)
    np.testing.assert_allclose(fast, generic, rtol=2 * np.finfo(np.float32).eps, atol=0)


def test_kl_divergence_fast_path_equals_generic_kernel():
    rng = np.random.default_rng(11)
    t = rng.dirichlet(np.ones(50), size=300)
    near = t * np.exp(rng.normal(scale=np.logspace(-7, 0, 300)[:, None], size=t.shape))
    p = (near / near.sum(axis=-1, keepdims=True)).astype(np.float32)
    t = t.astype(np.float32)
    t[:5, :3] = [0.0, 1.0, 2.0]  # clipped to [eps, 1] by both
    fast = probloss.kl_divergence(t, p, validate="off")
    with probloss.fast_paths(False):
        generic = probloss.kl_divergence(t, p, validate="off")
    # Both computed in float64 from the same clipped inputs: equal to the last bit or two.
    np.testing.assert_allclose(fast, generic, rtol=2 * np.finfo(np.float32).eps, atol=0)


@pytest.mark.parametrize(("name", "library"),
                         sorted(k for k in _dispatch.FAST
                                if k[0] not in _WITHOUT_AXIS | _ELSEWHERE and k[1] == "numpy"),
                         ids=lambda v: str(v))
@pytest.mark.parametrize("axis", [-1, 0, 1])
@pytest.mark.parametrize("from_logits", [True, False])
def test_fast_path_equals_generic_kernel(name, library, axis, from_logits):
    assert library == "numpy", "only NumPy fast paths exist so far; extend the inputs for others"
    rng = np.random.default_rng(zlib.crc32(f"{name}{axis}{from_logits}".encode()))
    fn = _FUNCTIONS[name]
    for shape in [(7, 5), (3, 4, 6), (2, 3), (300, 400)]:
        y, logits, probs = _inputs(name, rng, shape, axis)
        y_pred = logits if from_logits else probs
        fast = fn(y, y_pred, from_logits=from_logits, axis=axis, validate="off")
        with probloss.fast_paths(False):
            generic = fn(y, y_pred, from_logits=from_logits, axis=axis, validate="off")
        # Both are within a few ulps of the exact loss; the generic kernel sums the
        # per-class terms in float32 (log2(K) roundings), the fused path in float64.
        ulps = 4 if y_pred.shape[axis] < 10 else 16
        np.testing.assert_allclose(fast, generic, rtol=ulps * np.finfo(np.float32).eps, atol=0)
        assert fast.dtype == generic.dtype
        assert fast.shape == generic.shape


@pytest.mark.parametrize("name", ["categorical_crossentropy", "sparse_categorical_crossentropy",
                                  "categorical_focal_crossentropy"])
def test_fused_softmax_rows_with_infinities_match_the_generic_kernel(name):
    """-inf logits (masked classes), a zero label on one, and rows with no softmax at all."""
    logits = np.array([[2.0, -np.inf, 0.5, 1.0], [-np.inf, -np.inf, -np.inf, -np.inf],
                       [np.inf, 0.0, 1.0, 2.0], [np.nan, 0.0, 1.0, 2.0], [3.0, 3.0, -1.0, -np.inf],
                       [1.0, 2.0, 3.0, 4.0]], dtype=np.float32)
    logits = np.tile(logits, (200, 1))  # several blocks
    labels = np.tile(np.array([0, 0, 1, 2, 1, 1]), 200)
    if name != "sparse_categorical_crossentropy":
        labels = np.eye(4, dtype=np.float32)[labels]
        labels[5::6] = [0.0, 0.5, 0.25, 0.25]
    fn = _FUNCTIONS[name]
    fast = fn(labels, logits, from_logits=True, validate="off")
    with probloss.fast_paths(False):
        generic = fn(labels, logits, from_logits=True, validate="off")
    np.testing.assert_allclose(fast, generic, rtol=4 * np.finfo(np.float32).eps, atol=0)
    rows = fast.reshape(-1, 6)
    assert np.isnan(rows[:, 1:4]).all()  # all -inf, a +inf, a NaN: no softmax
    assert np.isfinite(rows[:, [0, 4, 5]]).all()


def test_sparse_fast_path_marks_invalid_labels_like_the_generic_kernel():
    logits = np.array([[0.5, 1.0, -2.0], [3.0, 0.0, 1.0], [1.0, 1.0, 1.0]], dtype=np.float32)
    labels = np.array([3, -1, 2])
    fast = probloss.sparse_categorical_crossentropy(labels, logits, from_logits=True, validate="off")
    with probloss.fast_paths(False):
        generic = probloss.sparse_categorical_crossentropy(labels, logits, from_logits=True,
                                                           validate="off")
    assert np.isnan(fast[:2]).all()
    assert np.isnan(generic[:2]).all()
    np.testing.assert_allclose(fast[2], np.log(3.0), rtol=1e-6)
    np.testing.assert_allclose(generic[2], np.log(3.0), rtol=1e-6)


def test_declining_fast_path_falls_through_and_switch_bypasses(monkeypatch):
    calls: list[str] = []

    def declining(*arrays, xp, **static):
        calls.append("fast")
        return NotImplemented

    name = "binary_crossentropy"
    monkeypatch.setitem(_dispatch.FAST, (name, "numpy"), declining)
    _dispatch._CHAINS.clear()
    try:
        y = np.array([[1.0, 0.0]], dtype=np.float32)
        p = np.array([[0.8, 0.4]], dtype=np.float32)
        got = probloss.binary_crossentropy(y, p)
        assert calls == ["fast"]
        np.testing.assert_allclose(got, [-(np.log(0.8) + np.log(0.6)) / 2], rtol=1e-6)
        with probloss.fast_paths(False):
            probloss.binary_crossentropy(y, p)
        assert calls == ["fast"]  # the switch skipped the fast path
    finally:
        _dispatch._CHAINS.clear()


_SAME_SHAPE = {
    "binary_crossentropy": (probloss.binary_crossentropy, {"label_smoothing": 0.1}),
    "binary_focal_crossentropy": (probloss.binary_focal_crossentropy, {"apply_class_balancing": True}),
    "categorical_crossentropy": (probloss.categorical_crossentropy, {}),
    "categorical_focal_crossentropy": (probloss.categorical_focal_crossentropy, {"gamma": 1.5}),
    "poisson": (probloss.poisson, None),
    "kl_divergence": (probloss.kl_divergence, None),
}


_SHAPES = [((1500, 100), -1), ((100, 1500), 0), ((40, 60, 70), 1)]
_BLOCKED_CASES = [
    (name, shape, axis, from_logits)
    for name, (_, options) in sorted(_SAME_SHAPE.items())
    for shape, axis in (_SHAPES if options is not None else _SHAPES[:1])
    for from_logits in ((True, False) if options is not None else (False,))
]


@pytest.mark.parametrize(("name", "shape", "axis", "from_logits"), _BLOCKED_CASES)
def test_numpy_blocked_execution_equals_one_call(name, shape, axis, from_logits, monkeypatch):
    """The NumPy executor splits large inputs into blocks; the values must not change."""
    fn, options = _SAME_SHAPE[name]
    # poisson and kl_divergence take no options: they reduce the last axis.
    options = {} if options is None else {**options, "from_logits": from_logits, "axis": axis}
    size = int(np.prod(shape))
    assert size > 2 * _numpy_backend.BLOCK_ELEMENTS  # large enough to be blocked
    rng = np.random.default_rng(zlib.crc32(f"{name}{shape}{from_logits}".encode()))
    y = rng.random(shape).astype(np.float32)
    p = rng.normal(size=shape).astype(np.float32) if from_logits else rng.random(shape).astype(np.float32)
    if name == "poisson":
        y = rng.poisson(2.0, size=shape).astype(np.float32)
    blocked = fn(y, p, **options, validate="off")
    # The same implementations (fast paths included) in one block.
    monkeypatch.setattr(_numpy_backend, "BLOCK_ELEMENTS", 1 << 40)
    whole = fn(y, p, **options, validate="off")
    np.testing.assert_array_equal(blocked, whole)
