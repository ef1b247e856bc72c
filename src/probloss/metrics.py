"""``keras.metrics``'s probabilistic metrics: ``from probloss import metrics``.

Streaming means with Keras 3's API (``update_state``, ``result``,
``reset_state``, ``get_config``/``from_config``) plus ``merge_state``, their
state kept in float64 (see :mod:`probloss._metrics` for the semantics), and the
loss functions under the names ``tf.keras.metrics`` gives them.

Examples:
    >>> from probloss import metrics
    >>> m = metrics.SparseCategoricalCrossentropy()
    >>> m.update_state([1], [[0.05, 0.95, 0.0]])
    >>> m.update_state([2], [[0.1, 0.8, 0.1]])
    >>> float(m.result()).__round__(4)
    1.1769
"""

from ._functional import (
    binary_crossentropy,
    binary_focal_crossentropy,
    categorical_crossentropy,
    categorical_focal_crossentropy,
    kl_divergence,
    poisson,
    sparse_categorical_crossentropy,
)
from ._metrics import (
    BinaryCrossentropy,
    BinaryFocalCrossentropy,
    CategoricalCrossentropy,
    CategoricalFocalCrossentropy,
    KLDivergence,
    MeanMetricWrapper,
    Metric,
    Poisson,
    SparseCategoricalCrossentropy,
)

# tf.keras.metrics's function aliases.
kld = KLD = kullback_leibler_divergence = kl_divergence

__all__ = [
    "KLD",
    "BinaryCrossentropy",
    "BinaryFocalCrossentropy",
    "CategoricalCrossentropy",
    "CategoricalFocalCrossentropy",
    "KLDivergence",
    "MeanMetricWrapper",
    "Metric",
    "Poisson",
    "SparseCategoricalCrossentropy",
    "binary_crossentropy",
    "binary_focal_crossentropy",
    "categorical_crossentropy",
    "categorical_focal_crossentropy",
    "kl_divergence",
    "kld",
    "kullback_leibler_divergence",
    "poisson",
    "sparse_categorical_crossentropy",
]
