"""Keras interoperability: hand a probloss loss to ``keras.Model.compile``.

Keras treats any loss that is not a ``keras.losses.Loss`` as a plain function:
it calls it without the sample weight and weights the (already reduced) result
itself, which is wrong for weighted training. :func:`to_keras` wraps a probloss
loss in a ``keras.losses.Loss`` subclass whose ``__call__`` is probloss's, so
Keras passes ``sample_weight`` through. Keras is imported only when this
function is called.
"""

from __future__ import annotations

import functools
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


def to_keras(loss: Loss) -> Any:
    """Return ``loss`` as a ``keras.losses.Loss``, for ``keras.Model.compile``.

    A probloss object also works directly in ``compile`` when no sample weights
    are used; with ``sample_weight`` Keras would weight the reduced value, so
    pass ``to_keras(loss)`` instead. Keras masks attached to ``y_pred``
    (``Embedding(mask_zero=True)``) are not read; use ``sample_weight``.

    Args:
        loss: a probloss ``Loss`` object.

    Returns:
        A ``keras.losses.Loss`` whose call is probloss's, sample weight included.

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
    return _adapter_class()(loss)
