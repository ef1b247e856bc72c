"""Keras interoperability: hand a probloss loss to ``keras.Model.compile``.

Keras treats any loss that is not a ``keras.losses.Loss`` as a plain function:
it calls it without the sample weight and weights the (already reduced) result
itself, which is wrong for weighted training. :func:`to_keras` wraps a probloss
loss in a ``keras.losses.Loss`` subclass whose ``__call__`` is probloss's, so
Keras passes ``sample_weight`` through. For tf.keras 2.x (the ``tf_keras``
package) the wrapper is a ``tf_keras.losses.Loss`` whose ``reduction`` is
tf_keras's name for probloss's, which is what ``Model.fit`` reads to scale the
loss across ``tf.distribute`` replicas. Keras is imported only when this
function is called.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from ._loss import Loss

__all__ = ["to_keras"]


@functools.cache
def _adapter_class() -> type:
    import keras

    from ._registry import deserialize, serialize

    @keras.saving.register_keras_serializable(package="probloss", name="ProblossKerasLoss")
    class ProblossKerasLoss(keras.losses.Loss):  # type: ignore[misc, name-defined]
        """A ``keras.losses.Loss`` that delegates everything to a probloss loss."""

        def __init__(self, loss: Loss) -> None:
            super().__init__(name=loss.name, reduction=loss.reduction)
            self.probloss_loss = loss

        def __call__(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> Any:
            # Keras may hand over NumPy targets or weights beside backend tensors;
            # bring all three to the backend's tensor type, as Keras's own Loss does.
            convert = keras.ops.convert_to_tensor
            weight = None if sample_weight is None else convert(sample_weight)
            return self.probloss_loss(convert(y_true), convert(y_pred), weight)

        def call(self, y_true: Any, y_pred: Any) -> Any:
            return self.probloss_loss.call(y_true, y_pred)  # type: ignore[attr-defined]

        def get_config(self) -> dict[str, Any]:
            # The probloss config rides along, so a saved Keras model reloads the loss.
            return {"name": self.name, "reduction": self.reduction,
                    "probloss": serialize(self.probloss_loss)}

        @classmethod
        def from_config(cls, config: dict[str, Any]) -> ProblossKerasLoss:
            return cls(deserialize(config["probloss"]))

    return ProblossKerasLoss


# probloss reduction -> tf_keras's Reduction. tf_keras's Model.fit divides the loss by the
# number of replicas for AUTO and SUM_OVER_BATCH_SIZE (each replica's mean is a part of the
# global batch's) and not for SUM or NONE.
_TF_KERAS_REDUCTIONS = {
    "sum_over_batch_size": "auto",
    "mean": "sum_over_batch_size",
    "mean_with_sample_weight": "sum_over_batch_size",
    "sum": "sum",
    "none": "none",
    None: "none",
}


@functools.cache
def _tf_keras_adapter_class() -> type:
    import tf_keras

    from ._registry import deserialize, serialize

    @tf_keras.saving.register_keras_serializable(package="probloss", name="ProblossKerasLoss")
    class ProblossTfKerasLoss(tf_keras.losses.Loss):  # type: ignore[misc, name-defined]
        """A ``tf_keras.losses.Loss`` (tf.keras 2.x) that delegates everything to a probloss loss."""

        def __init__(self, loss: Loss) -> None:
            super().__init__(reduction=_TF_KERAS_REDUCTIONS[loss.reduction], name=loss.name)
            self.probloss_loss = loss

        def __call__(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> Any:
            # probloss reduces and weights; tf_keras's Model.fit then scales the result
            # for tf.distribute according to `self.reduction`.
            return self.probloss_loss(y_true, y_pred, sample_weight)

        def call(self, y_true: Any, y_pred: Any) -> Any:
            return self.probloss_loss.call(y_true, y_pred)  # type: ignore[attr-defined]

        def get_config(self) -> dict[str, Any]:
            return {"name": self.name, "reduction": self.reduction,
                    "probloss": serialize(self.probloss_loss)}

        @classmethod
        def from_config(cls, config: dict[str, Any]) -> ProblossTfKerasLoss:
            return cls(deserialize(config["probloss"]))

    return ProblossTfKerasLoss


def _uses_tf_keras(keras: str | None) -> bool:
    if keras is None:
        # TensorFlow's own switch: with it, `tf.keras` is tf_keras (Keras 2).
        return os.environ.get("TF_USE_LEGACY_KERAS", "").lower() in ("1", "true", "yes")
    if keras not in ("keras", "tf_keras"):
        msg = f"`keras` must be 'keras', 'tf_keras' or None. Received: keras={keras!r}"
        raise ValueError(msg)
    return keras == "tf_keras"


def to_keras(loss: Loss, keras: str | None = None) -> Any:
    """Return ``loss`` as a ``keras.losses.Loss``, for ``keras.Model.compile``.

    A probloss object also works directly in ``compile`` when no sample weights
    are used; with ``sample_weight`` Keras would weight the reduced value, so
    pass ``to_keras(loss)`` instead. Keras masks attached to ``y_pred``
    (``Embedding(mask_zero=True)``) are not read; use ``sample_weight``.

    Keras 3 runs on any backend (JAX, PyTorch, TensorFlow). For tf.keras 2.x
    (the ``tf_keras`` package, or ``tf.keras`` with ``TF_USE_LEGACY_KERAS=1``)
    the result is a ``tf_keras.losses.Loss``; its ``reduction`` is tf_keras's
    (``"auto"`` for ``"sum_over_batch_size"``, ``"sum"``, ``"none"``), so that
    ``Model.fit`` under a ``tf.distribute`` strategy divides the mean
    reductions by the number of replicas, as for tf_keras's own losses. Both
    are registered for saving (``.keras``; ``.h5`` in tf_keras).

    Args:
        loss: a probloss ``Loss`` object.
        keras: ``"keras"`` (Keras 3), ``"tf_keras"`` (tf.keras 2.x), or None:
            ``"tf_keras"`` when ``TF_USE_LEGACY_KERAS`` is set, else ``"keras"``.

    Returns:
        A ``keras.losses.Loss`` (or ``tf_keras.losses.Loss``) whose call is
        probloss's, sample weight included.

    Raises:
        TypeError: if ``loss`` is not a probloss ``Loss``.

    Examples:
        >>> import probloss
        >>> keras_loss = probloss.to_keras(probloss.BinaryCrossentropy(from_logits=True))
        >>> type(keras_loss).__mro__[1].__module__.startswith("keras")
        True
    """
    if not isinstance(loss, Loss):
        msg = f"to_keras expects a probloss Loss object. Received: {type(loss).__name__}"
        raise TypeError(msg)
    if _uses_tf_keras(keras):
        return _tf_keras_adapter_class()(loss)
    return _adapter_class()(loss)
