"""TensorFlow's graph and XLA fast paths (BCE and sparse CE from logits) against float64 formulas, in ulps.

The fast paths sum each row's non-negative terms in float32 blocks of 16 and only the block
sums in float64 (``probloss/_backends/_tensorflow.py``, ``_row_sum``). Here every per-sample
value and every gradient entry of ``tf.function`` (with the compiled C kernels through
``tf.numpy_function``, and with them declined, as on an accelerator) and ``tf.function(jit_compile=True)``
(batch size unknown while tracing) is compared with a reference computed in float64 NumPy in this
file, on rows long enough to take many blocks (1001 classes: not a multiple of 16), with
confident rows (the label's logit far above the rest: a loss of 1e-7 to 1e-17, kept to its
last bits by ``log1p`` of the other classes' sum), ties at the maximum, ``ignore_class``,
sample weights and every reduction.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from conftest import library

import probloss

ROWS, K = 24, 1001


def _ulps(got: np.ndarray, exact: np.ndarray) -> np.ndarray:
    """``|got - exact|`` in ulps of the float32 nearest ``exact`` (entries whose exact value is 0: 0 or not)."""
    exact = np.asarray(exact, np.float64)
    spacing = np.spacing(np.abs(exact).astype(np.float32)).astype(np.float64)
    return np.abs(np.asarray(got, np.float64) - exact) / spacing


def _sparse_data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(14)
    x = rng.normal(0, 3, (ROWS, K)).astype(np.float32)
    labels = rng.integers(0, K, ROWS)
    for i, margin in enumerate(np.linspace(16, 38, 8)):  # confident rows: the label's logit leads by `margin`
        x[i, labels[i]] = x[i].max() + np.float32(margin)
    x[8, labels[8]] = x[8].max()  # the label ties the maximum
    x[9, :2] = x[9].max() + 1  # a tie at the maximum, elsewhere than the label
    labels[9] = 2
    x[10] = rng.normal(0, 30, K)  # wide logits (terms from 1 down to far below float32's range)
    labels[10] = int(np.argmax(x[10]))
    return labels.astype(np.int64), x


def _sparse_reference(labels: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-row loss and ``softmax - onehot`` in float64, ``log1p`` of the non-maximal classes' sum."""
    z = x.astype(np.float64)
    rows = np.arange(len(z))
    top = np.argmax(z, axis=-1)
    m = z[rows, top]
    e = np.exp(z - m[:, None])
    e[rows, top] = 0.0
    rest = e.sum(-1)
    loss = (m - z[rows, labels]) + np.log1p(rest)
    grad = e / (1 + rest)[:, None]
    grad[rows, top] = 1 / (1 + rest)
    grad[rows, labels] -= 1
    confident = labels == top  # the label's entry is -rest/(1 + rest) exactly, not 1/(1 + rest) - 1
    grad[rows[confident], labels[confident]] = -rest[confident] / (1 + rest[confident])
    return loss, grad


def _bce_data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(15)
    x = rng.normal(0, 4, (ROWS, K)).astype(np.float32)
    y = rng.integers(0, 2, (ROWS, K)).astype(np.float32)
    x[0] = np.where(y[0] == 1, 1, -1) * rng.uniform(20, 60, K)  # confident and right: a loss near 1e-12
    x[1, :4] = [0.0, 0.0, 90.0, -90.0]
    return y, x


def _bce_reference(y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    z, t = x.astype(np.float64), y.astype(np.float64)
    per_element = np.log1p(np.exp(-np.abs(z))) + np.abs(z) * np.where(z >= 0, 1 - t, t)
    # sigmoid(z) - t = (1 - t)·sigmoid(z) - t·sigmoid(-z): no cancellation for hard labels
    return per_element.mean(-1), ((1 - t) / (1 + np.exp(-z)) - t / (1 + np.exp(z))) / z.shape[-1]


def _run(tf: Any, loss: Any, target: np.ndarray, pred: np.ndarray, weights: np.ndarray | None,
         jit: bool) -> tuple[np.ndarray, np.ndarray]:
    spec = [tf.TensorSpec([None, *t.shape[1:]], tf.as_dtype(t.dtype)) for t in (target, pred)]  # batch unknown

    def value_and_gradient(t: Any, x: Any) -> Any:
        with tf.GradientTape() as tape:
            tape.watch(x)
            value = loss(t, x) if weights is None else loss(t, x, tf.constant(weights))
        return value, tape.gradient(value, x)

    fn = tf.function(value_and_gradient, input_signature=spec, jit_compile=jit)
    value, grad = fn(tf.constant(target), tf.constant(pred))
    return value.numpy(), grad.numpy()


# (jit_compile, the compiled C kernels allowed): inside a plain tf.function on CPU the kernels run
# through tf.numpy_function; with them declined (as on an accelerator) and under XLA the TF ops.
MODES = ((False, True), (False, False), (True, False))


def _decline_graph_kernels(m: pytest.MonkeyPatch) -> None:
    from probloss._backends import _tensorflow_native as native

    m.setattr(native, "binary_graph_applies", lambda *a: False)
    m.setattr(native, "softmax_graph_applies", lambda *a: False)


def _modes(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Each of :data:`MODES` as ``(jit, kernels)``, the graph kernels declined inside the step where asked."""
    for jit, kernels in MODES:
        with monkeypatch.context() as m:
            if not kernels:
                _decline_graph_kernels(m)
            yield jit, kernels


def _reduce(per_row: np.ndarray, weights: np.ndarray, reduction: str) -> tuple[np.ndarray, np.ndarray]:
    """Reduced float64 value and each row's factor in the gradient."""
    if reduction == "none":
        return per_row * weights, weights
    total = np.sum(per_row * weights)
    divisor = {"sum": 1.0, "sum_over_batch_size": len(per_row), "mean_with_sample_weight": weights.sum()}[reduction]
    return total / divisor, weights / divisor


def _check(value: np.ndarray, grad: np.ndarray, want_value: np.ndarray, want_grad: np.ndarray, what: str,
           scaled: bool = False) -> None:
    """Values within 4 ulps; gradient entries within 4 ulps, 5 when ``scaled``: the chain rule then
    multiplies the (rounded) per-sample gradient by a weight or ``1/N``, a second rounding."""
    assert _ulps(value, want_value).max() <= 4, (what, _ulps(value, want_value).max())
    normal = np.abs(want_grad) >= np.finfo(np.float32).tiny
    worst = _ulps(grad[normal], want_grad[normal]).max()
    assert worst <= (5 if scaled else 4), (what, worst)
    # subnormal entries: XLA on CPU flushes them to 0 (docs/backends.md)
    np.testing.assert_allclose(grad[~normal], want_grad[~normal], rtol=0, atol=np.finfo(np.float32).tiny)


def test_sparse_ce_graph_and_xla_against_float64(monkeypatch: pytest.MonkeyPatch) -> None:
    tf = library("tensorflow").module
    labels, x = _sparse_data()
    per_row, per_row_grad = _sparse_reference(labels, x)
    assert per_row[:8].max() < 1e-5  # the confident rows are there
    assert per_row[:8].min() < 1e-15
    weights = np.linspace(0.25, 2.0, ROWS).astype(np.float32)
    for jit, kernels in _modes(monkeypatch):
        for reduction in ("none", "sum", "sum_over_batch_size", "mean_with_sample_weight"):
            for w in (None, weights):
                loss = probloss.SparseCategoricalCrossentropy(from_logits=True, reduction=reduction)
                value, grad = _run(tf, loss, labels, x, w, jit)
                want, factor = _reduce(per_row, np.ones(ROWS) if w is None else w.astype(np.float64), reduction)
                _check(value, grad, want, per_row_grad * factor[:, None],
                       f"jit={jit} kernels={kernels} {reduction} weights={w is not None}",
                       scaled=w is not None or reduction not in ("none", "sum"))
        # ignore_class: those rows weigh 0 and get a zero gradient
        ignored = labels.copy()
        ignored[[3, 12, 20]] = -1
        keep = (ignored != -1).astype(np.float64)
        loss = probloss.SparseCategoricalCrossentropy(from_logits=True, ignore_class=-1, reduction="none")
        value, grad = _run(tf, loss, ignored, x, None, jit)
        _check(value, grad, per_row * keep, per_row_grad * keep[:, None],
               f"jit={jit} kernels={kernels} ignore_class")


def test_bce_logits_graph_and_xla_against_float64(monkeypatch: pytest.MonkeyPatch) -> None:
    tf = library("tensorflow").module
    y, x = _bce_data()
    per_row, per_element_grad = _bce_reference(y, x)
    assert per_row[0] < 1e-8  # the confident row is there
    weights = np.linspace(0.25, 2.0, ROWS).astype(np.float32)
    for jit, kernels in _modes(monkeypatch):
        for reduction in ("none", "sum", "sum_over_batch_size", "mean_with_sample_weight"):
            for w in (None, weights):
                loss = probloss.BinaryCrossentropy(from_logits=True, reduction=reduction)
                value, grad = _run(tf, loss, y, x, w, jit)
                want, factor = _reduce(per_row, np.ones(ROWS) if w is None else w.astype(np.float64), reduction)
                # BCE's per-row gradient is (sigmoid - y)/K: scaled by 1/K always
                _check(value, grad, want, per_element_grad * factor[:, None],
                       f"jit={jit} kernels={kernels} {reduction} weights={w is not None}", scaled=True)


def test_row_sum_blocks_and_padding() -> None:
    """Row sums of lengths around the block size (a divisor, a prime: a tail block; unknown while tracing:
    padded), against float64 sums."""
    tf = library("tensorflow").module
    from probloss._backends._tensorflow import _BLOCK, _row_sum

    rng = np.random.default_rng(16)
    fns = {jit: tf.function(_row_sum, input_signature=[tf.TensorSpec([None, None], tf.float32)], jit_compile=jit)
           for jit in (False, True)}
    for k in (1, 3, _BLOCK - 1, _BLOCK, _BLOCK + 1, 3 * _BLOCK + 5, 1000, 1001, 32000):
        terms = np.exp(rng.normal(0, 3, (3, k))).astype(np.float32)
        exact = terms.astype(np.float64).sum(-1)
        for jit, fn in fns.items():
            got = fn(tf.constant(terms)).numpy()
            assert got.dtype == np.float64
            # float32 blocks of 16 non-negative terms: relative error below 15·2⁻²⁴ per block
            np.testing.assert_allclose(got, exact, rtol=15 * 2.0**-24, err_msg=f"k={k} jit={jit}")
        for jit in (False, True):  # known length: blocks of a divisor of k, or a tail block
            got = tf.function(_row_sum, jit_compile=jit)(tf.constant(terms)).numpy()
            np.testing.assert_allclose(got, exact, rtol=15 * 2.0**-24, err_msg=f"k={k} jit={jit} static")


def test_row_sum_beats_one_float32_sum() -> None:
    """On 64 rows of 32000 skewed terms the blocks are off by at most 1.0·2⁻²⁴ (measured), where one
    float32 sum of each row is off by 4.9·2⁻²⁴ in a graph and 19·2⁻²⁴ under XLA (its sequential chains)."""
    tf = library("tensorflow").module
    from probloss._backends._tensorflow import _row_sum

    terms = np.exp(np.random.default_rng(16).normal(0, 3, (64, 32000))).astype(np.float32)
    exact = terms.astype(np.float64).sum(-1)
    for jit in (False, True):
        got = tf.function(_row_sum, jit_compile=jit)(tf.constant(terms)).numpy()
        np.testing.assert_allclose(got, exact, rtol=2 * 2.0**-24, atol=0, err_msg=f"jit={jit}")
