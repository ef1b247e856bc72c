"""``probloss score``: one streaming metric over prediction files of any size.

The files are read in chunks of bounded size (:mod:`probloss._readers`); each chunk
is checked (NaN rows, labels out of range, matching lengths), scored by the
matching :mod:`probloss.metrics` object (float64 state, so the chunking does not
change the value) and, for categorical losses, added to per-class sums (the mean
loss of the samples of each true class). Every problem with the data raises
:class:`~probloss._readers.InputError` naming the file and the row.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import zip_longest
from typing import Any

import numpy as np

from . import _metrics
from ._readers import InputError, Source

__all__ = ["ScoreResult", "make_metric", "score"]

# Loss names (as probloss.get takes them) -> the metric class of the same loss.
_CLASS_OF_FUNCTION = {
    "binary_crossentropy": "BinaryCrossentropy",
    "binary_focal_crossentropy": "BinaryFocalCrossentropy",
    "categorical_crossentropy": "CategoricalCrossentropy",
    "categorical_focal_crossentropy": "CategoricalFocalCrossentropy",
    "sparse_categorical_crossentropy": "SparseCategoricalCrossentropy",
    "poisson": "Poisson",
    "kl_divergence": "KLDivergence",
}
_PER_CLASS = ("CategoricalCrossentropy", "CategoricalFocalCrossentropy", "SparseCategoricalCrossentropy")
DEFAULT_CHUNK_BYTES = 32 * 2**20


@dataclass
class ScoreResult:
    """What ``score`` found: the loss, the weight sum and rows read, per-class means."""

    name: str
    config: dict[str, Any]
    loss: float
    count: float
    rows: int
    per_class: list[dict[str, float]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The JSON form: ``{"loss", "count", "rows", "metric", "config", "per_class"}``."""
        out: dict[str, Any] = {"loss": self.loss, "count": self.count, "rows": self.rows,
                               "metric": self.name, "config": self.config}
        if self.per_class is not None:
            out["per_class"] = self.per_class
        out.update(self.extra)
        return out


def make_metric(name: str, *, from_logits: bool = False, label_smoothing: float | None = None,
                ignore_class: int | None = None) -> _metrics.MeanMetricWrapper:
    """The float64 metric for a loss name (any name ``probloss.get`` takes)."""
    from ._registry import OBJECTS

    obj = OBJECTS.get(name)
    if obj is None:
        msg = f"unknown loss {name!r}; `probloss list` shows the names"
        raise InputError(msg)
    class_name = obj.__name__ if isinstance(obj, type) else _CLASS_OF_FUNCTION.get(obj.__name__)
    if class_name is None or not hasattr(_metrics, class_name):
        msg = f"{name!r} is not a loss that can be scored"
        raise InputError(msg)
    cls = getattr(_metrics, class_name)
    options: dict[str, Any] = {"dtype": "float64"}
    for option, value, default in (("from_logits", from_logits, False),
                                   ("label_smoothing", label_smoothing, None),
                                   ("ignore_class", ignore_class, None)):
        if value is default:
            continue
        if option not in cls.__init__.__code__.co_varnames:
            flag = "--" + option.replace("_", "-")
            msg = f"{flag} does not apply to {class_name}"
            raise InputError(msg)
        options[option] = value
    try:
        return cls(**options)
    except (TypeError, ValueError) as error:
        raise InputError(str(error)) from None


def _chunk_rows(chunk_bytes: int, *sources: Source | None) -> int:
    widest = max(s.bytes_per_row for s in sources if s is not None)
    return max(1, chunk_bytes // max(widest, 1))


def score(metric: _metrics.MeanMetricWrapper, y_true: Source, y_pred: Source,
          sample_weight: Source | None = None, *, chunk_bytes: int = DEFAULT_CHUNK_BYTES,
          progress: Callable[[int], None] | None = None) -> ScoreResult:
    """Stream the three sources through ``metric``; see the module docstring."""
    for other in (y_true, sample_weight):
        if other is not None and other.rows is not None and y_pred.rows is not None \
                and other.rows != y_pred.rows:
            msg = f"{other.label} has {other.rows} rows but {y_pred.label} has {y_pred.rows}"
            raise InputError(msg)
    rows = _chunk_rows(chunk_bytes, y_true, y_pred, sample_weight)
    streams: list[Iterator[np.ndarray]] = [y_true.chunks(rows), y_pred.chunks(rows)]
    if sample_weight is not None:
        streams.append(sample_weight.chunks(rows))
    sums: BlockSums | None = None
    start = 0
    labels_of = (y_true.label, y_pred.label, None if sample_weight is None else sample_weight.label)
    for parts in zip_longest(*streams):
        if any(p is None for p in parts) or len({len(p) for p in parts}) > 1:
            raise InputError(_length_message(parts, start, y_true, y_pred, sample_weight))
        weight = parts[2] if sample_weight is not None else None
        block = block_sums(metric, parts[0], parts[1], weight, start, labels_of)
        sums = block if sums is None else sums + block
        start += len(parts[1])
        if progress is not None:
            progress(len(parts[1]))
    return finish(metric, sums, start)


@dataclass
class BlockSums:
    """One block's float64 sums: the total, the weight sum, and per class (or None)."""

    total: float
    count: float
    class_totals: np.ndarray | None
    class_counts: np.ndarray | None

    def __add__(self, other: BlockSums) -> BlockSums:
        def add(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
            return b if a is None else a if b is None else a + b

        return BlockSums(self.total + other.total, self.count + other.count,
                         add(self.class_totals, other.class_totals),
                         add(self.class_counts, other.class_counts))


def block_sums(metric: _metrics.MeanMetricWrapper, labels: np.ndarray, predictions: np.ndarray,
               weight: np.ndarray | None, start: int, labels_of: tuple[str, str, str | None]) -> BlockSums:
    """Check and score one block of rows starting at row ``start``; no state changes."""
    class_name = type(metric).__name__
    sparse = class_name == "SparseCategoricalCrossentropy"
    _check_finite(predictions, labels_of[1], start)
    _check_finite(labels, labels_of[0], start)
    if weight is not None:
        _check_finite(weight, str(labels_of[2]), start)
    if predictions.ndim == 1 and not sparse:
        # A vector of probabilities: one sample per row, not one sample per block.
        labels, predictions = labels.reshape(-1, 1), predictions.reshape(-1, 1)
    if sparse:
        labels = _class_labels(labels, predictions, labels_of[0], start, metric)
    try:
        total, count, per_total, per_count = metric.batch_sums(labels, predictions, weight)
    except (ValueError, TypeError) as error:
        message = " ".join(str(error).split())
        msg = f"{labels_of[1]}, rows {start}-{start + len(predictions) - 1}: {message}"
        raise InputError(msg) from None
    if class_name not in _PER_CLASS or predictions.ndim != 2:
        return BlockSums(total, count, None, None)
    classes = labels if sparse else np.argmax(labels, axis=-1)
    keep = per_count > 0
    n = predictions.shape[1]
    return BlockSums(total, count,
                     np.bincount(classes[keep], weights=per_total[keep], minlength=n),
                     np.bincount(classes[keep], weights=per_count[keep], minlength=n))


def finish(metric: _metrics.MeanMetricWrapper, sums: BlockSums | None, rows: int) -> ScoreResult:
    """Add the sums to ``metric`` and report."""
    per_class = None
    if sums is not None:
        metric.total += sums.total
        metric.count += sums.count
        if sums.class_totals is not None and sums.class_counts is not None:
            per_class = [{"class": k, "count": float(c), "loss": float(t / c) if c else 0.0}
                         for k, (t, c) in enumerate(zip(sums.class_totals, sums.class_counts, strict=True))]
    return ScoreResult(metric.name, metric.get_config(), float(metric.result()), metric.count,
                       rows, per_class)


def _length_message(parts: tuple[Any, ...], start: int, *sources: Source | None) -> str:
    lengths = [start + (0 if p is None else len(p)) for p in parts]
    named = [s for s in sources if s is not None]
    return (f"{named[0].label} and {named[1].label}"
            + (f" and {named[2].label}" if len(named) > 2 else "")
            + f" differ in length: they end at rows {', '.join(map(str, lengths))}"
            + " (or later) respectively")


def _check_finite(x: np.ndarray, label: str, start: int) -> None:
    if not np.issubdtype(x.dtype, np.floating) or not np.isnan(np.sum(x)):
        return  # a NaN anywhere makes the sum NaN; only then (or for inf - inf) look closer
    bad = np.isnan(x)
    if bad.any():
        row = int(np.flatnonzero(bad.reshape(len(x), -1).any(axis=1))[0])
        where = ""
        if x.ndim > 1:
            where = f", column {int(np.flatnonzero(bad[row].reshape(-1))[0])}"
        msg = f"{label}: NaN at row {start + row}{where}"
        raise InputError(msg)


def _class_labels(labels: np.ndarray, predictions: np.ndarray, label: str, start: int,
                  metric: Any) -> np.ndarray:
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        msg = f"{label}: expected one integer label per row, got rows of shape {labels.shape[1:]}"
        raise InputError(msg)
    if predictions.ndim != 2:
        msg = f"{label}: sparse labels need one row of class scores per sample in Y_PRED"
        raise InputError(msg)
    if not np.issubdtype(labels.dtype, np.integer):
        whole = labels == np.round(labels)
        if not whole.all():
            row = int(np.flatnonzero(~whole)[0])
            msg = f"{label}: label {labels[row]} at row {start + row} is not a whole number"
            raise InputError(msg)
        labels = labels.astype(np.int64)
    classes = predictions.shape[1]
    bad = (labels < 0) | (labels >= classes)
    if metric.ignore_class is not None:
        bad &= labels != metric.ignore_class
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        msg = (
            f"{label}: label {labels[row]} at row {start + row} is outside [0, {classes}) "
            f"(the predictions have {classes} classes)"
        )
        raise InputError(msg)
    return labels


def progress_bar(total: int | None, description: str) -> tuple[Callable[[int], None] | None,
                                                               Callable[[], None]]:
    """A rich progress bar on a terminal's stderr; ``(None, no-op)`` elsewhere or without rich."""
    if not sys.stderr.isatty():
        return None, lambda: None
    try:
        from rich.console import Console
        from rich.progress import Progress
    except ImportError:
        return None, lambda: None
    bar = Progress(transient=True, console=Console(stderr=True))  # stdout stays the result
    bar.start()
    task = bar.add_task(description, total=total)
    return (lambda n: bar.advance(task, n)), bar.stop
