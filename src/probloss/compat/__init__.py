"""Other libraries' loss functions, with their signatures and numbers, on any array library.

* :mod:`probloss.compat.torch`: ``torch.nn.functional``'s ``cross_entropy``,
  ``nll_loss``, ``binary_cross_entropy``, ``binary_cross_entropy_with_logits``,
  ``kl_div`` and ``poisson_nll_loss``;
* :mod:`probloss.compat.optax`: ``optax.losses``' ``sigmoid_binary_cross_entropy``,
  ``sigmoid_focal_loss``, ``softmax_cross_entropy``,
  ``softmax_cross_entropy_with_integer_labels``, ``safe_softmax_cross_entropy``
  and ``kl_divergence``;
* :mod:`probloss.compat.sklearn`: ``sklearn.metrics.log_loss``.

Each function takes the original's arguments, in its order and with its
defaults, and computes the original's definition on NumPy, PyTorch, JAX, Dask,
CuPy or array-api-strict arrays, returning an array of the same library (a
Python float for ``log_loss``, as scikit-learn). None of them imports the
library it imitates. Where the original rounds a confident loss to 0, forms
``0·inf`` (NaN) or loses bits in ``log(1 - p)``, the definition is kept and
computed accurately; each such difference is listed in docs/porting.md.
"""

from . import optax, sklearn, torch

__all__ = ["optax", "sklearn", "torch"]
