"""probloss: Keras 3's probabilistic losses, exact, on every array library.

Examples:
    >>> import probloss
    >>> float(probloss.BinaryCrossentropy()([0, 1, 0, 0], [0.6, 0.3, 0.2, 0.8])).__round__(3)
    0.988
"""

import sys as _sys

from . import _dispatch, compat, lightgbm, losses, metrics, xgboost
from ._config import epsilon, fast_paths, get_num_threads, set_epsilon, set_num_threads, validation
from ._ctc import ctc, ctc_decode, ctc_loss
from ._functional import (
    binary_crossentropy,
    binary_focal_crossentropy,
    categorical_crossentropy,
    categorical_focal_crossentropy,
    kl_divergence,
    poisson,
    sparse_categorical_crossentropy,
    sparse_categorical_focal_crossentropy,
)
from ._grad_hess import grad_hess
from ._interop import to_keras
from ._linear_ce import LinearCrossEntropy, linear_cross_entropy, linear_cross_entropy_with_grad
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
    SparseCategoricalFocalCrossentropy,
)
from ._reduction import Reduction
from ._registry import deserialize, get, serialize
from ._validation import ProbabilitiesAsLogitsWarning, ValidationWarning
from .losses import BCE, KLD, bce, kld, kullback_leibler_divergence

__version__ = "0.1.0"

__all__ = [
    "BCE",
    "CTC",
    "KLD",
    "BinaryCrossentropy",
    "BinaryFocalCrossentropy",
    "CategoricalCrossentropy",
    "CategoricalFocalCrossentropy",
    "KLDivergence",
    "LinearCrossEntropy",
    "Loss",
    "LossFunctionWrapper",
    "Poisson",
    "ProbabilitiesAsLogitsWarning",
    "Reduction",
    "SparseCategoricalCrossentropy",
    "SparseCategoricalFocalCrossentropy",
    "ValidationWarning",
    "__version__",
    "bce",
    "binary_crossentropy",
    "binary_focal_crossentropy",
    "categorical_crossentropy",
    "categorical_focal_crossentropy",
    "compat",
    "ctc",
    "ctc_decode",
    "ctc_loss",
    "deserialize",
    "epsilon",
    "fast_paths",
    "get",
    "get_num_threads",
    "grad_hess",
    "kl_divergence",
    "kld",
    "kullback_leibler_divergence",
    "lightgbm",
    "linear_cross_entropy",
    "linear_cross_entropy_with_grad",
    "losses",
    "metrics",
    "poisson",
    "serialize",
    "set_epsilon",
    "set_num_threads",
    "sparse_categorical_crossentropy",
    "sparse_categorical_focal_crossentropy",
    "to_keras",
    "validation",
    "xgboost",
]

if "torch" in _sys.modules:
    # PyTorch is loaded already: register its fast paths now, so that a first call
    # under torch.compile has nothing to import (an import is a graph break).
    _dispatch.import_backend("torch")
