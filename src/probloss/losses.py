"""``keras.losses``'s probabilistic losses: ``from probloss import losses``.

A one-line migration: code written against ``keras.losses`` (or tf.keras's
``tf.keras.losses``) keeps its names, signatures and configs.

Examples:
    >>> from probloss import losses
    >>> float(losses.BinaryCrossentropy()([[0.0, 1.0]], [[0.2, 0.7]])).__round__(4)
    0.2899
"""

from ._ctc import ctc
from ._functional import (
    binary_crossentropy,
    binary_focal_crossentropy,
    categorical_crossentropy,
    categorical_focal_crossentropy,
    kl_divergence,
    poisson,
    sparse_categorical_crossentropy,
)
from ._loss import Loss, LossFunctionWrapper
from ._losses import (
    CTC,
    BinaryCrossentropy,
    BinaryFocalCrossentropy,
    CategoricalCrossentropy,
    CategoricalFocalCrossentropy,
    KLDivergence,
    Poisson,
    SparseCategoricalCrossentropy,
)
from ._reduction import Reduction
from ._registry import deserialize, get, serialize

# Keras's module-level aliases.
bce = BCE = binary_crossentropy
kld = KLD = kullback_leibler_divergence = kl_divergence

__all__ = [
    "BCE",
    "CTC",
    "KLD",
    "BinaryCrossentropy",
    "BinaryFocalCrossentropy",
    "CategoricalCrossentropy",
    "CategoricalFocalCrossentropy",
    "KLDivergence",
    "Loss",
    "LossFunctionWrapper",
    "Poisson",
    "Reduction",
    "SparseCategoricalCrossentropy",
    "bce",
    "binary_crossentropy",
    "binary_focal_crossentropy",
    "categorical_crossentropy",
    "categorical_focal_crossentropy",
    "ctc",
    "deserialize",
    "get",
    "kl_divergence",
    "kld",
    "kullback_leibler_divergence",
    "poisson",
    "serialize",
    "sparse_categorical_crossentropy",
]
