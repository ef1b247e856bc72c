"""Names and aliases to loss objects: ``get``, ``serialize``, ``deserialize``.

Configs are data, never code: only objects registered here (or passed in
``custom_objects`` by the caller) can be built. No module named in a config is
ever imported and no function it names is called, other than the registered
loss classes' constructors.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from ._ctc import ctc
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
from ._linear_ce import LinearCrossEntropy
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

__all__ = ["ALIASES", "OBJECTS", "deserialize", "get", "get_function", "serialize"]

#: Every name `get` accepts: class names, function names and aliases.
OBJECTS: dict[str, Any] = {}
#: alias -> canonical name, for documentation and the CLI.
ALIASES: dict[str, str] = {}


def _register(obj: Any, *aliases: str) -> None:
    OBJECTS[obj.__name__] = obj
    for alias in aliases:
        OBJECTS[alias] = obj
        ALIASES[alias] = obj.__name__


for _cls in (BinaryCrossentropy, BinaryFocalCrossentropy, CategoricalCrossentropy,
             CategoricalFocalCrossentropy, SparseCategoricalCrossentropy, SparseCategoricalFocalCrossentropy,
             Poisson, KLDivergence, CTC, LossFunctionWrapper, LinearCrossEntropy):
    _register(_cls)
_register(binary_crossentropy, "bce", "BCE")
_register(binary_focal_crossentropy)
_register(categorical_crossentropy)
_register(categorical_focal_crossentropy)
_register(sparse_categorical_crossentropy)
_register(sparse_categorical_focal_crossentropy)
_register(poisson)
_register(ctc)
# `kullback_leibler_divergence` is tf.keras's name (Keras 3 keeps it only in _legacy).
_register(kl_divergence, "kld", "KLD", "kullback_leibler_divergence")

# Registered classes that Keras does not have: their configs name probloss's module.
_PROBLOSS_ONLY = (LinearCrossEntropy,)

# Modules a Keras or tf.keras config may name for these classes; anything else
# is refused rather than imported.
_KNOWN_MODULES = ("keras", "tf_keras", "tensorflow", "probloss", "builtins")


def _unknown(identifier: object) -> ValueError:
    return ValueError(f"Could not interpret loss identifier: {identifier!r}")


def _lookup(name: str, custom_objects: Mapping[str, Any] | None) -> Any:
    if custom_objects and name in custom_objects:
        return custom_objects[name]
    if name in OBJECTS:
        return OBJECTS[name]
    raise _unknown(name)


def get_function(name: str) -> Callable[..., Any]:
    """Return the registered loss function called ``name`` (aliases accepted)."""
    obj = OBJECTS.get(name) if isinstance(name, str) else None
    if obj is None or inspect.isclass(obj):
        msg = f"Unknown loss function: {name!r}. Expected one of the probloss loss functions."
        raise ValueError(msg)
    return obj  # type: ignore[no-any-return]


def serialize(loss: Any) -> dict[str, Any]:
    """Return a Keras 3 style config for a loss object or function.

    The result has Keras 3's shape (``module``, ``class_name``, ``config``,
    ``registered_name``) and names Keras's module for the built-in losses, so
    ``keras.losses.deserialize`` reads it too.

    Examples:
        >>> import probloss
        >>> config = probloss.serialize(probloss.BinaryCrossentropy(from_logits=True))
        >>> config["module"], config["class_name"], config["config"]["from_logits"]
        ('keras.losses', 'BinaryCrossentropy', True)
        >>> probloss.serialize(probloss.binary_crossentropy)["config"]
        'binary_crossentropy'
    """
    if isinstance(loss, Loss):
        builtin = OBJECTS.get(type(loss).__name__) is type(loss)
        module = "probloss" if type(loss) in _PROBLOSS_ONLY else "keras.losses" if builtin else type(loss).__module__
        return {
            "module": module,
            "class_name": type(loss).__name__,
            "config": loss.get_config(),
            "registered_name": None if builtin else type(loss).__name__,
        }
    if callable(loss) and OBJECTS.get(getattr(loss, "__name__", "")) is loss:
        return {"module": "builtins", "class_name": "function", "config": loss.__name__,
                "registered_name": "function"}
    msg = f"Cannot serialize {loss!r}: it is neither a probloss Loss nor a registered loss function."
    raise ValueError(msg)


def deserialize(config: Any, custom_objects: Mapping[str, Any] | None = None) -> Any:
    """Build a loss from a name or a config dict (Keras 3 or tf.keras 2.x).

    Args:
        config: a registered name, or a dict with ``class_name`` and ``config``
            (``module`` and ``registered_name`` are accepted and never imported).
        custom_objects: extra name -> class or function mappings, for the
            caller's own losses.

    Returns:
        A loss object, or a loss function for a function name.

    Raises:
        ValueError: for an unknown name, a module outside Keras/probloss, or a
            config with keys the class does not take.

    Examples:
        >>> import probloss
        >>> tf_keras_config = {"class_name": "BinaryCrossentropy", "config": {
        ...     "reduction": "auto", "name": "binary_crossentropy", "from_logits": True,
        ...     "label_smoothing": 0.0, "axis": -1, "fn": "binary_crossentropy"}}
        >>> loss = probloss.deserialize(tf_keras_config)
        >>> type(loss).__name__, loss.reduction, loss.from_logits
        ('BinaryCrossentropy', 'sum_over_batch_size', True)
    """
    if isinstance(config, str):
        obj = _lookup(config, custom_objects)
        return obj() if inspect.isclass(obj) else obj
    if not isinstance(config, Mapping) or "class_name" not in config:
        msg = f"Could not deserialize {config!r}: expected a name or a dict with 'class_name'."
        raise ValueError(msg)
    module = config.get("module")
    if module is not None and str(module).split(".", 1)[0] not in _KNOWN_MODULES and not (
            custom_objects and config["class_name"] in custom_objects):
        msg = (f"Refusing to deserialize {config['class_name']!r} from module {module!r}: only "
               "Keras and probloss losses (or custom_objects) are built.")
        raise ValueError(msg)
    class_name = config["class_name"]
    inner = config.get("config", {})
    if class_name == "function" and isinstance(inner, str):
        return get_function(inner) if not custom_objects or inner not in custom_objects else (
            custom_objects[inner])
    if not isinstance(class_name, str) or not isinstance(inner, Mapping):
        msg = (f"Could not deserialize {config!r}: 'class_name' must be a string and 'config' "
               "a dict of constructor arguments.")
        raise ValueError(msg)
    cls = _lookup(class_name, custom_objects)
    if not (inspect.isclass(cls) and issubclass(cls, Loss)):
        raise _unknown(class_name)
    arguments = dict(inner)
    if cls is LossFunctionWrapper:
        # The wrapped function is named, never imported: a registered one or the caller's.
        name = arguments.get("fn")
        arguments["fn"] = (custom_objects[name] if custom_objects and isinstance(name, str)
                           and name in custom_objects else get_function(name))
        return LossFunctionWrapper(**arguments)
    # tf.keras records the wrapped function's name; the class implies it.
    arguments.pop("fn", None)
    accepted = inspect.signature(cls.__init__).parameters
    takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in accepted.values())
    unknown = sorted(set(arguments) - set(accepted) - {"self"})
    if unknown and not takes_kwargs:
        msg = f"Unknown key(s) {unknown} in the config of {class_name}. Accepted: {sorted(set(accepted) - {'self'})}"
        raise ValueError(msg)
    return cls.from_config(arguments)


def get(identifier: Any) -> Any:
    """Return a loss function or object from a name, config, class or callable.

    As ``keras.losses.get``: None gives None; a string or dict is looked up;
    a class is instantiated with its defaults; a callable is returned as is.

    Examples:
        >>> import probloss
        >>> probloss.get("bce") is probloss.binary_crossentropy
        True
        >>> probloss.get("KLDivergence")
        KLDivergence(name='kl_divergence', reduction='sum_over_batch_size')
    """
    if identifier is None:
        return None
    obj = deserialize(identifier) if isinstance(identifier, str | Mapping) else identifier
    if inspect.isclass(obj):
        obj = obj()
    if not callable(obj):
        raise _unknown(identifier)
    return obj
