"""The examples documented on the Keras and tf.keras loss pages, as data.

Each entry is (title, expression, builder, documented values, decimals printed on the page).
The demo prints probloss's value beside the documented one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._functional import (
    binary_crossentropy,
    categorical_crossentropy,
    sparse_categorical_crossentropy,
)
from ._losses import BinaryCrossentropy, CategoricalCrossentropy, SparseCategoricalCrossentropy

__all__ = ["EXAMPLES", "SeedExample"]


@dataclass(frozen=True)
class SeedExample:
    """One documented example: what it computes and the value the page gives."""

    source: str
    expression: str
    compute: Callable[[], Any]
    documented: tuple[float, ...]
    decimals: int


_BCE_TRUE_1D = [0, 1, 0, 0]
_BCE_LOGITS_1D = [-18.6, 0.51, 2.94, -12.8]
_BCE_TRUE = [[0, 1], [0, 0]]
_BCE_LOGITS = [[-18.6, 0.51], [2.94, -12.8]]
_CCE_TRUE = [[0, 1, 0], [0, 0, 1]]
_CCE_PRED = [[0.05, 0.95, 0], [0.1, 0.8, 0.1]]
_SPARSE_TRUE = np.array([1, 2])

EXAMPLES: tuple[SeedExample, ...] = (
    SeedExample("keras binary_crossentropy", "binary_crossentropy([[0,1],[0,0]], [[.6,.4],[.4,.6]])",
                lambda: binary_crossentropy(_BCE_TRUE, [[0.6, 0.4], [0.4, 0.6]]), (0.916, 0.714), 3),
    SeedExample("BinaryCrossentropy example 1", "BinaryCrossentropy(from_logits=True)(y, x)",
                lambda: BinaryCrossentropy(from_logits=True)(_BCE_TRUE_1D, _BCE_LOGITS_1D), (0.865,), 3),
    SeedExample("BinaryCrossentropy example 2", "BinaryCrossentropy(from_logits=True)(y, x)",
                lambda: BinaryCrossentropy(from_logits=True)(_BCE_TRUE, _BCE_LOGITS), (0.865,), 3),
    SeedExample("BinaryCrossentropy sample_weight", "bce(y, x, sample_weight=[0.8, 0.2])",
                lambda: BinaryCrossentropy(from_logits=True)(_BCE_TRUE, _BCE_LOGITS, [0.8, 0.2]),
                (0.243,), 3),
    SeedExample("BinaryCrossentropy sum", "BinaryCrossentropy(from_logits=True, reduction='sum')",
                lambda: BinaryCrossentropy(from_logits=True, reduction="sum")(_BCE_TRUE, _BCE_LOGITS),
                (1.730,), 3),
    SeedExample("BinaryCrossentropy none", "BinaryCrossentropy(from_logits=True, reduction=None)",
                lambda: BinaryCrossentropy(from_logits=True, reduction=None)(_BCE_TRUE, _BCE_LOGITS),
                (0.235, 1.496), 3),
    SeedExample("CategoricalCrossentropy", "CategoricalCrossentropy()(y, p)",
                lambda: CategoricalCrossentropy()(_CCE_TRUE, _CCE_PRED), (1.177,), 3),
    SeedExample("CategoricalCrossentropy sample_weight", "cce(y, p, sample_weight=[0.3, 0.7])",
                lambda: CategoricalCrossentropy()(_CCE_TRUE, _CCE_PRED, np.array([0.3, 0.7])),
                (0.814,), 3),
    SeedExample("CategoricalCrossentropy sum", "CategoricalCrossentropy(reduction='sum')",
                lambda: CategoricalCrossentropy(reduction="sum")(_CCE_TRUE, _CCE_PRED), (2.354,), 3),
    SeedExample("CategoricalCrossentropy none", "CategoricalCrossentropy(reduction=None)",
                lambda: CategoricalCrossentropy(reduction=None)(_CCE_TRUE, _CCE_PRED),
                (0.0513, 2.303), 3),
    SeedExample("keras categorical_crossentropy", "categorical_crossentropy(y, p)",
                lambda: categorical_crossentropy(_CCE_TRUE, _CCE_PRED), (0.0513, 2.303), 3),
    SeedExample("SparseCategoricalCrossentropy", "SparseCategoricalCrossentropy()([1, 2], p)",
                lambda: SparseCategoricalCrossentropy()(_SPARSE_TRUE, _CCE_PRED), (1.177,), 3),
    SeedExample("SparseCategoricalCrossentropy sample_weight", "scce(y, p, sample_weight=[0.3, 0.7])",
                lambda: SparseCategoricalCrossentropy()(_SPARSE_TRUE, _CCE_PRED, np.array([0.3, 0.7])),
                (0.814,), 3),
    SeedExample("SparseCategoricalCrossentropy sum", "SparseCategoricalCrossentropy(reduction='sum')",
                lambda: SparseCategoricalCrossentropy(reduction="sum")(_SPARSE_TRUE, _CCE_PRED),
                (2.354,), 3),
    SeedExample("SparseCategoricalCrossentropy none", "SparseCategoricalCrossentropy(reduction=None)",
                lambda: SparseCategoricalCrossentropy(reduction=None)(_SPARSE_TRUE, _CCE_PRED),
                (0.0513, 2.303), 3),
    SeedExample("keras sparse_categorical_crossentropy", "sparse_categorical_crossentropy([1, 2], p)",
                lambda: sparse_categorical_crossentropy(_SPARSE_TRUE, _CCE_PRED), (0.0513, 2.303), 3),
)
