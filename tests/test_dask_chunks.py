"""Dask arrays run chunk by chunk through NumPy's kernels (probloss._backends._dask).

Each chunk of rows must give exactly what NumPy gives for the same rows (bit
for bit: per-row values do not depend on the split), whatever the chunking
(rows only, the class axis split too, uneven chunks), and the graph must hold
one probloss task layer rather than the generic kernel's many small
operations. With ``fast_paths(False)`` the generic kernel runs on the dask
arrays and gives the same values.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from conftest import library

import probloss

CLASSES = 37
ROWS = 203  # uneven chunks below

LOSSES: list[tuple[str, Callable[..., Any], dict[str, Any], str, str]] = [
    ("bce-logits", probloss.binary_crossentropy, {"from_logits": True}, "hard", "logits"),
    ("bce-probs-ls", probloss.binary_crossentropy, {"label_smoothing": 0.1}, "hard", "uniform"),
    ("binary-focal", probloss.binary_focal_crossentropy,
     {"from_logits": True, "apply_class_balancing": True, "gamma": 1.5}, "hard", "logits"),
    ("cce-logits", probloss.categorical_crossentropy, {"from_logits": True, "label_smoothing": 0.1}, "onehot",
     "logits"),
    ("cce-probs", probloss.categorical_crossentropy, {}, "soft", "rows"),
    ("categorical-focal", probloss.categorical_focal_crossentropy, {"from_logits": True}, "onehot", "logits"),
    ("scce-logits", probloss.sparse_categorical_crossentropy, {"from_logits": True}, "labels", "logits"),
    ("scce-probs-ignore", probloss.sparse_categorical_crossentropy, {"ignore_class": 3}, "labels", "rows"),
    ("poisson", probloss.poisson, {}, "counts", "uniform"),
    ("kl", probloss.kl_divergence, {}, "soft", "rows"),
]


def _data(target: str, prediction: str, dtype: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(y_true, y_pred)``: targets of kind ``target`` and predictions of kind ``prediction``."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, CLASSES, ROWS)
    labels[::5] = 3
    y_true = {
        "hard": lambda: (rng.random((ROWS, CLASSES)) < 0.5).astype(dtype),
        "onehot": lambda: np.eye(CLASSES, dtype=dtype)[labels],
        "soft": lambda: rng.dirichlet(np.ones(CLASSES), ROWS).astype(dtype),
        "labels": lambda: labels,
        "counts": lambda: rng.poisson(2.0, (ROWS, CLASSES)).astype(dtype),
    }[target]()
    y_pred = {
        "logits": lambda: rng.standard_normal((ROWS, CLASSES)) * 4,
        "uniform": lambda: rng.uniform(0.001, 0.999, (ROWS, CLASSES)),
        "rows": lambda: rng.dirichlet(np.ones(CLASSES), ROWS),
    }[prediction]()
    return y_true, y_pred.astype(dtype)


def _chunked(x: np.ndarray, rows: int, classes: int | None = None) -> Any:
    dask_array = library("dask").module.array
    chunks = (rows,) if x.ndim == 1 else (rows, classes or x.shape[1])
    return dask_array.from_array(x, chunks=chunks)


def _has_chunk_layer(result: Any) -> bool:
    return any(str(name).startswith("probloss-") for name in result.dask.layers)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(("name", "loss", "options", "target", "prediction"), LOSSES,
                         ids=[case[0] for case in LOSSES])
@pytest.mark.parametrize("class_chunks", [None, 10], ids=["rows", "rows-and-classes"])
def test_chunks_equal_numpy(name: str, loss: Callable[..., Any], options: dict[str, Any], target: str,
                            prediction: str, dtype: str, class_chunks: int | None) -> None:
    y_true, y_pred = _data(target, prediction, dtype)
    expected = loss(y_true, y_pred, **options)
    lazy = loss(_chunked(y_true, 50, class_chunks), _chunked(y_pred, 50, class_chunks), **options)
    assert _has_chunk_layer(lazy), "the loss did not take the chunk-by-chunk path"
    value = lazy.compute(scheduler="threads")
    assert value.dtype == expected.dtype
    np.testing.assert_array_equal(value, expected)


@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "sum", "none"])
def test_reduced_loss_with_weights(reduction: str) -> None:
    y_true, y_pred = _data("labels", "logits", "float32", seed=1)
    weights = np.random.default_rng(2).random(ROWS).astype(np.float32)
    loss = probloss.SparseCategoricalCrossentropy(from_logits=True, ignore_class=3, reduction=reduction)
    expected = loss(y_true, y_pred, sample_weight=weights)
    lazy = loss(_chunked(y_true, 64), _chunked(y_pred, 64), sample_weight=_chunked(weights, 64))
    # The reduction's own sums are split differently by Dask: equal to a few ulps, not bits.
    np.testing.assert_allclose(lazy.compute(), expected, rtol=4 * np.finfo(np.float32).eps)


def test_generic_path_where_fast_paths_are_off() -> None:
    y_true, y_pred = _data("hard", "logits", "float64", seed=3)
    expected = probloss.binary_crossentropy(y_true, y_pred, from_logits=True)
    with probloss.fast_paths(False):
        lazy = probloss.binary_crossentropy(_chunked(y_true, 50), _chunked(y_pred, 50), from_logits=True)
    assert not _has_chunk_layer(lazy)
    np.testing.assert_allclose(lazy.compute(), expected, rtol=1e-14)


def test_invalid_sparse_labels_give_nan_per_row() -> None:
    y_true, y_pred = _data("labels", "logits", "float32", seed=5)
    y_true[[7, 120]] = CLASSES  # out of range
    with probloss.validation("off"):
        expected = probloss.sparse_categorical_crossentropy(y_true, y_pred, from_logits=True)
        lazy = probloss.sparse_categorical_crossentropy(_chunked(y_true, 50), _chunked(y_pred, 50), from_logits=True)
    value = lazy.compute()
    assert np.isnan(value[[7, 120]]).all()
    np.testing.assert_array_equal(value, expected)


def test_chunk_kernels_run_on_their_task_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """Off the main thread (the threaded scheduler's pool) a chunk's kernel takes one thread; on it, every thread."""
    from probloss import _native
    from probloss._backends import _native_softmax

    if not _native_softmax.AVAILABLE:
        pytest.skip("the compiled softmax kernels are not built")
    seen: list[tuple[str, int]] = []
    original = _native_softmax.softmax_cross_entropy_sparse
    y_true, y_pred = _data("labels", "logits", "float32", seed=6)

    def spy(logits: Any, labels: Any, **kwargs: Any) -> np.ndarray:
        seen.append((threading.current_thread().name, _native.threads()))
        return original(logits, labels, **kwargs)

    monkeypatch.setattr(_native_softmax, "softmax_cross_entropy_sparse", spy)
    expected = original(y_pred, y_true)
    lazy = probloss.sparse_categorical_crossentropy(_chunked(y_true, 50), _chunked(y_pred, 50), from_logits=True)
    for scheduler, main in (("threads", False), ("synchronous", True)):
        seen.clear()
        np.testing.assert_array_equal(lazy.compute(scheduler=scheduler), expected)
        assert len(seen) == 5  # one per chunk
        for name, threads in seen:
            on_main = name == threading.main_thread().name
            assert on_main == main or not main  # the threaded scheduler may run a chunk on the caller
            assert threads == (_native.threads() if on_main else 1)
    assert _native.threads() == probloss.get_num_threads() or _native._forked_after_parallel_use
