"""Registry, configs and API parity: probloss against Keras 3 and documented tf.keras configs.

Checks: ``get_config``/``from_config`` and ``serialize``/``deserialize`` round trips for
every class; probloss configs read by ``keras.losses.deserialize`` and Keras 3 configs
read by ``probloss.deserialize`` (compared by value with Keras); hand-written tf.keras 2.x
configs (``"reduction": "auto"`` and an ``"fn"`` key, keras-semantics.md part E); every
name and alias of parts C and E.4; the error for unknown identifiers; that configs never
import or call anything outside the registry; ``probloss.Reduction``; and that
``probloss.losses`` has ``keras.losses``'s names and signatures.
"""

from __future__ import annotations

import inspect
import os
import sys
from typing import Any

import numpy as np
import pytest

import probloss
from probloss import losses as plosses

os.environ.setdefault("KERAS_BACKEND", "jax")
import keras  # a test dependency: missing Keras is an error, never a skip

CLASSES = ("BinaryCrossentropy", "BinaryFocalCrossentropy", "CategoricalCrossentropy",
           "CategoricalFocalCrossentropy", "SparseCategoricalCrossentropy", "Poisson", "KLDivergence")
FUNCTIONS = ("binary_crossentropy", "binary_focal_crossentropy", "categorical_crossentropy",
             "categorical_focal_crossentropy", "sparse_categorical_crossentropy", "poisson", "kl_divergence")
CLASS_OF = dict(zip(FUNCTIONS, CLASSES, strict=True))

# Non-default options for each class (every constructor argument Keras has).
OPTIONS: dict[str, dict[str, Any]] = {
    "BinaryCrossentropy": {"from_logits": True, "label_smoothing": 0.2, "axis": -1},
    "BinaryFocalCrossentropy": {"apply_class_balancing": True, "alpha": 0.4, "gamma": 1.5, "from_logits": True,
                                "label_smoothing": 0.1, "axis": -1},
    "CategoricalCrossentropy": {"from_logits": True, "label_smoothing": 0.3, "axis": -1},
    "CategoricalFocalCrossentropy": {"alpha": [0.2, 0.3, 0.5], "gamma": 3.0, "from_logits": False,
                                     "label_smoothing": 0.1, "axis": -1},
    "SparseCategoricalCrossentropy": {"from_logits": True, "ignore_class": 0},
    "Poisson": {},
    "KLDivergence": {},
}

RNG = np.random.default_rng(7)
PROBS = RNG.random((4, 3)).astype(np.float32) * 0.9 + 0.05
LOGITS = RNG.normal(0, 3, (4, 3)).astype(np.float32)
ONE_HOT = np.eye(3, dtype=np.float32)[[0, 2, 1, 2]]
LABELS = np.array([0, 2, 1, 2])
WEIGHT = np.array([0.5, 1.0, 2.0, 0.0], dtype=np.float32)


def data_for(class_name: str, options: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Valid (y_true, y_pred) for a class and its options."""
    y_pred = LOGITS if options.get("from_logits") else PROBS
    if class_name == "SparseCategoricalCrossentropy":
        return LABELS, y_pred
    if class_name == "Poisson":
        return ONE_HOT * 3, PROBS * 4
    if class_name == "KLDivergence":
        return ONE_HOT, PROBS
    return ONE_HOT, y_pred


def probloss_value(loss: Any, y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    return np.asarray(loss(y_true, y_pred, sample_weight=WEIGHT))


def keras_value(loss: Any, y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    if isinstance(loss, keras.losses.SparseCategoricalCrossentropy):
        y_true = y_true.astype(np.float32)  # Keras's class casts labels to its float dtype anyway
    return np.asarray(loss(y_true, y_pred, sample_weight=WEIGHT))


# ------------------------------------------------------------------ round trips


@pytest.mark.parametrize("class_name", CLASSES)
@pytest.mark.parametrize("with_options", [False, True], ids=["defaults", "options"])
def test_get_config_from_config_round_trip(class_name: str, with_options: bool) -> None:
    cls = getattr(probloss, class_name)
    options = OPTIONS[class_name] if with_options else {}
    loss = cls(**options, reduction="sum", name="my_loss") if with_options else cls()
    config = loss.get_config()
    rebuilt = cls.from_config(config)
    assert type(rebuilt) is cls
    assert rebuilt.get_config() == config
    for key, value in options.items():
        assert config[key] == value
    y_true, y_pred = data_for(class_name, options)
    np.testing.assert_array_equal(probloss_value(rebuilt, y_true, y_pred), probloss_value(loss, y_true, y_pred))


@pytest.mark.parametrize("class_name", CLASSES)
def test_serialize_deserialize_round_trip(class_name: str) -> None:
    loss = getattr(probloss, class_name)(**OPTIONS[class_name], reduction="mean_with_sample_weight",
                                         dtype="float64", validate="warn")
    config = probloss.serialize(loss)
    assert config["class_name"] == class_name
    rebuilt = probloss.deserialize(config)
    assert type(rebuilt) is type(loss)
    assert rebuilt.get_config() == loss.get_config()
    assert rebuilt.dtype == "float64"
    # validate is a run-time policy, not part of the config: Keras 3 must read it.
    assert "validate" not in config["config"]
    assert rebuilt.validate is None
    assert type(keras.losses.deserialize(config)).__name__ == class_name


def test_config_keys_match_keras() -> None:
    """probloss's config has Keras 3 HEAD's keys (SCCE keeps ``axis``; 3.15.1 drops it)."""
    for class_name in CLASSES:
        ours = set(getattr(probloss, class_name)().get_config())
        theirs = set(getattr(keras.losses, class_name)().get_config())
        if class_name == "SparseCategoricalCrossentropy":
            theirs.add("axis")  # keras-semantics.md A.10: HEAD includes it
        assert ours == theirs, class_name


@pytest.mark.parametrize("function", FUNCTIONS)
def test_function_serialize_round_trip(function: str) -> None:
    fn = getattr(probloss, function)
    assert probloss.deserialize(probloss.serialize(fn)) is fn
    assert probloss.serialize(fn)["config"] == keras.losses.serialize(getattr(keras.losses, function))["config"]


def test_wrapper_config_round_trip() -> None:
    wrapper = probloss.LossFunctionWrapper(probloss.binary_crossentropy, reduction="sum", from_logits=True)
    config = wrapper.get_config()
    assert config["fn"] == "binary_crossentropy"
    assert config["from_logits"] is True
    rebuilt = probloss.LossFunctionWrapper.from_config(config)
    assert rebuilt.fn is probloss.binary_crossentropy
    np.testing.assert_array_equal(probloss_value(rebuilt, ONE_HOT, LOGITS), probloss_value(wrapper, ONE_HOT, LOGITS))


# ------------------------------------------------------------------ Keras interoperability


@pytest.mark.parametrize("class_name", CLASSES)
@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "sum", "mean_with_sample_weight", None])
def test_probloss_config_builds_equal_keras_loss(class_name: str, reduction: str | None) -> None:
    options = OPTIONS[class_name]
    ours = getattr(probloss, class_name)(**options, reduction=reduction)
    theirs = keras.losses.deserialize(probloss.serialize(ours))
    assert type(theirs) is getattr(keras.losses, class_name)
    for key, value in ours.get_config().items():
        if key != "axis" or class_name != "SparseCategoricalCrossentropy":  # 3.15.1 does not report it
            assert theirs.get_config()[key] == value, key
    y_true, y_pred = data_for(class_name, options)
    np.testing.assert_allclose(probloss_value(ours, y_true, y_pred), keras_value(theirs, y_true, y_pred),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("class_name", CLASSES)
@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "sum", "mean", "none"])
def test_keras_config_builds_equal_probloss_loss(class_name: str, reduction: str) -> None:
    options = OPTIONS[class_name]
    theirs = getattr(keras.losses, class_name)(**options, reduction=reduction, name="from_keras")
    ours = probloss.deserialize(keras.losses.serialize(theirs))
    assert type(ours) is getattr(probloss, class_name)
    assert ours.name == "from_keras"
    assert ours.reduction == reduction
    y_true, y_pred = data_for(class_name, options)
    np.testing.assert_allclose(probloss_value(ours, y_true, y_pred), keras_value(theirs, y_true, y_pred),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("function", FUNCTIONS)
def test_keras_function_config_resolves(function: str) -> None:
    assert probloss.deserialize(keras.losses.serialize(getattr(keras.losses, function))) is getattr(probloss, function)


# Hand-written tf.keras 2.x configs (keras-semantics.md E.2/E.3: reduction "auto", an "fn" key,
# SCCE without "axis").
TF_KERAS_CONFIGS: dict[str, dict[str, Any]] = {
    "BinaryCrossentropy": {"reduction": "auto", "name": "binary_crossentropy", "from_logits": True,
                           "label_smoothing": 0.0, "axis": -1, "fn": "binary_crossentropy"},
    "BinaryFocalCrossentropy": {"reduction": "auto", "name": "binary_focal_crossentropy", "from_logits": False,
                                "label_smoothing": 0.0, "axis": -1, "apply_class_balancing": True, "alpha": 0.3,
                                "gamma": 2.0, "fn": "binary_focal_crossentropy"},
    "CategoricalCrossentropy": {"reduction": "auto", "name": "categorical_crossentropy", "from_logits": False,
                                "label_smoothing": 0.1, "axis": -1, "fn": "categorical_crossentropy"},
    "CategoricalFocalCrossentropy": {"reduction": "sum", "name": "categorical_focal_crossentropy",
                                     "from_logits": False, "label_smoothing": 0.0, "axis": -1, "alpha": 0.25,
                                     "gamma": 2.0, "fn": "categorical_focal_crossentropy"},
    "SparseCategoricalCrossentropy": {"reduction": "auto", "name": "sparse_categorical_crossentropy",
                                      "from_logits": True, "ignore_class": None,
                                      "fn": "sparse_categorical_crossentropy"},
    "Poisson": {"reduction": "none", "name": "poisson", "fn": "poisson"},
    "KLDivergence": {"reduction": "sum_over_batch_size", "name": "kl_divergence", "fn": "kl_divergence"},
}


@pytest.mark.parametrize("class_name", CLASSES)
@pytest.mark.parametrize("wrapped", [True, False], ids=["class_name_config", "bare_config"])
def test_tf_keras_config_deserializes(class_name: str, wrapped: bool) -> None:
    inner = TF_KERAS_CONFIGS[class_name]
    config = {"class_name": class_name, "config": dict(inner)}
    if wrapped:  # tf.keras's serialize_keras_object output also names its module
        config.update(module="keras.losses", registered_name=None)
    ours = probloss.deserialize(config)
    assert type(ours) is getattr(probloss, class_name)
    expected_reduction = "sum_over_batch_size" if inner["reduction"] == "auto" else inner["reduction"]
    assert ours.reduction == expected_reduction
    assert "fn" not in ours.get_config()
    # Same values as the Keras 3 loss built from the same options ("auto" read as its meaning).
    options = {k: v for k, v in inner.items() if k not in ("fn", "reduction")}
    theirs = getattr(keras.losses, class_name)(**options, reduction=expected_reduction)
    y_true, y_pred = data_for(class_name, options)
    np.testing.assert_allclose(probloss_value(ours, y_true, y_pred), keras_value(theirs, y_true, y_pred),
                               rtol=1e-5, atol=1e-6)


def test_tf_keras_reduction_auto_via_get() -> None:
    loss = probloss.get({"class_name": "CategoricalCrossentropy", "config": {"reduction": "auto", "from_logits": True}})
    assert loss.reduction == "sum_over_batch_size"
    assert loss.from_logits is True


# ------------------------------------------------------------------ names and aliases


@pytest.mark.parametrize("name", CLASSES)
def test_get_class_name_gives_default_instance(name: str) -> None:
    loss = probloss.get(name)
    assert type(loss) is getattr(probloss, name)
    # Keras does the same: an instance with defaults, with the same config.
    theirs = keras.losses.get(name)
    expected = theirs.get_config()
    if name == "SparseCategoricalCrossentropy":
        expected["axis"] = -1
    assert loss.get_config() == expected


@pytest.mark.parametrize("name", FUNCTIONS)
def test_get_function_name_gives_function(name: str) -> None:
    assert probloss.get(name) is getattr(probloss, name)
    assert keras.losses.get(name).__name__ == name


@pytest.mark.parametrize(("alias", "target"), [
    ("bce", "binary_crossentropy"), ("BCE", "binary_crossentropy"), ("kld", "kl_divergence"),
    ("KLD", "kl_divergence"), ("kullback_leibler_divergence", "kl_divergence")])
def test_aliases(alias: str, target: str) -> None:
    assert probloss.get(alias) is getattr(probloss, target)
    assert getattr(plosses, alias) is getattr(probloss, target)
    assert getattr(probloss, alias) is getattr(probloss, target)
    assert probloss.deserialize(alias) is getattr(probloss, target)
    if alias != "kullback_leibler_divergence":  # tf.keras only (E.4); Keras 3's get rejects it (C)
        assert keras.losses.get(alias).__name__ == target


def test_get_passes_through_and_none() -> None:
    loss = probloss.BinaryCrossentropy()
    assert probloss.get(loss) is loss
    assert probloss.get(None) is None
    assert probloss.get(probloss.poisson) is probloss.poisson
    assert type(probloss.get(probloss.Poisson)) is probloss.Poisson


@pytest.mark.parametrize("identifier", ["typo", "bce ", "Bce", "crossentropy", "ce", "logcosh", "mse", 0, 1.5,
                                        ["bce"]])
def test_unknown_identifier_raises(identifier: Any) -> None:
    with pytest.raises(ValueError, match=r"^Could not interpret loss identifier: "):
        probloss.get(identifier)


def test_unknown_class_in_config_raises() -> None:
    with pytest.raises(ValueError, match="Could not interpret loss identifier: 'MeanSquaredError'"):
        probloss.deserialize({"class_name": "MeanSquaredError", "config": {}})


def test_unknown_config_key_raises() -> None:
    with pytest.raises(ValueError, match="Unknown key"):
        probloss.deserialize({"class_name": "BinaryCrossentropy", "config": {"form_logits": True}})


# ------------------------------------------------------------------ security


SENTINEL = "probloss_test_sentinel_module_that_must_not_be_imported"

HOSTILE_CONFIGS: list[Any] = [
    {"module": "os", "class_name": "system", "config": "echo hi"},
    {"module": "os", "class_name": "system", "config": {"command": "echo hi"}},
    {"module": SENTINEL, "class_name": "BinaryCrossentropy", "config": {}},
    {"module": SENTINEL, "class_name": "Anything", "config": {}, "registered_name": f"{SENTINEL}>Anything"},
    {"module": "subprocess", "class_name": "Popen", "config": {"args": ["echo", "hi"]}},
    {"module": "builtins", "class_name": "eval", "config": "__import__('os').system('echo hi')"},
    {"module": "builtins", "class_name": "function", "config": "eval"},
    {"module": "keras.losses", "class_name": "os.system", "config": "echo hi"},
    {"class_name": "system", "config": "echo hi"},
    {"class_name": "function", "config": "system"},
    {"class_name": "function", "config": f"{SENTINEL}.loss"},
    {"class_name": "LossFunctionWrapper", "config": {"fn": "system", "reduction": "sum"}},
    {"class_name": "LossFunctionWrapper", "config": {"fn": f"{SENTINEL}.loss"}},
    {"class_name": "Loss", "config": {}},
    f"{SENTINEL}.loss",
    "os.system",
    "__import__",
]


@pytest.mark.parametrize("config", HOSTILE_CONFIGS, ids=range(len(HOSTILE_CONFIGS)))
def test_configs_never_import_or_call(config: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Any] = []
    monkeypatch.setattr(os, "system", lambda *a, **k: calls.append(a))
    import subprocess

    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: calls.append(a))
    before = set(sys.modules)
    for entry in (probloss.deserialize, probloss.get):
        with pytest.raises(ValueError, match=r"Could not|Refusing|Unknown"):
            entry(config)
    assert SENTINEL not in sys.modules
    assert set(sys.modules) - before == set()
    assert calls == []


# ------------------------------------------------------------------ reductions


def test_reduction_constants_have_tf_keras_values() -> None:
    assert probloss.Reduction.AUTO == "auto"
    assert probloss.Reduction.NONE == "none"
    assert probloss.Reduction.SUM == "sum"
    assert probloss.Reduction.SUM_OVER_BATCH_SIZE == "sum_over_batch_size"
    assert set(probloss.Reduction.all()) >= {"auto", "none", "sum", "sum_over_batch_size"}
    assert plosses.Reduction is probloss.Reduction


@pytest.mark.parametrize("class_name", CLASSES)
@pytest.mark.parametrize("reduction", ["SUM", "Auto", "avg", "", 1, True, "sum "])
def test_invalid_reduction_raises(class_name: str, reduction: Any) -> None:
    with pytest.raises(ValueError, match="`reduction`"):
        getattr(probloss, class_name)(reduction=reduction)
    with pytest.raises(ValueError, match="`reduction`"):
        probloss.deserialize({"class_name": class_name, "config": {"reduction": reduction}})


@pytest.mark.parametrize("reduction", ["SUM", "bar"])
def test_reduction_validate(reduction: str) -> None:
    with pytest.raises(ValueError, match="`reduction`"):
        probloss.Reduction.validate(reduction)


@pytest.mark.parametrize("reduction", ["auto", "none", "sum", "sum_over_batch_size", "mean",
                                       "mean_with_sample_weight", None])
def test_valid_reductions_accepted(reduction: str | None) -> None:
    probloss.Reduction.validate(reduction)
    assert probloss.BinaryCrossentropy(reduction=reduction).reduction == (
        "sum_over_batch_size" if reduction == "auto" else reduction)


# ------------------------------------------------------------------ keras.losses mirror


# probloss's keyword-only options beyond Keras's (their defaults give Keras's numbers).
_EXTENSIONS = ("validate", "pos_weight", "class_weight", "normalize_by", "log_input", "log_target", "full")


def _parameters(obj: Any) -> list[tuple[str, Any, Any]]:
    """(name, default, kind) of a callable's parameters, without probloss's keyword-only extensions."""
    signature = inspect.signature(obj)
    return [(p.name, p.default, p.kind) for p in signature.parameters.values()
            if not (p.kind is p.KEYWORD_ONLY and p.name in _EXTENSIONS)]


@pytest.mark.parametrize("name", CLASSES + FUNCTIONS + ("Loss",))
def test_losses_module_mirrors_keras_signatures(name: str) -> None:
    ours, theirs = getattr(plosses, name), getattr(keras.losses, name)
    assert ours is getattr(probloss, name)
    target = (lambda c: c.__init__) if inspect.isclass(ours) else (lambda f: f)
    assert _parameters(target(ours)) == _parameters(target(theirs))


def test_loss_function_wrapper_signature_mirrors_keras() -> None:
    from keras.src.losses.losses import LossFunctionWrapper as KerasWrapper

    assert _parameters(plosses.LossFunctionWrapper.__init__) == _parameters(KerasWrapper.__init__)


def test_losses_module_exports_keras_names() -> None:
    for name in (*CLASSES, *FUNCTIONS, "Loss", "get", "serialize", "deserialize"):
        assert hasattr(keras.losses, name), name
        assert getattr(plosses, name) is getattr(probloss, name)
    # tf.keras's aliases (E.4) are there too.
    for alias in ("bce", "BCE", "kld", "KLD", "kullback_leibler_divergence"):
        assert callable(getattr(plosses, alias))
    assert set(plosses.__all__) <= set(dir(plosses))


@pytest.mark.parametrize("function", FUNCTIONS)
def test_class_and_function_names_agree_with_keras(function: str) -> None:
    """Each class's default ``name`` is Keras's and equals its function's name."""
    class_name = CLASS_OF[function]
    assert getattr(probloss, class_name)().name == getattr(keras.losses, class_name)().name == function


# --------------------------------------------------------------- review fixes


def test_user_subclass_config_and_repr_do_not_need_public_attributes() -> None:
    class Scaled(probloss.Loss):
        def __init__(self, scale: float = 2.0, **kwargs: object) -> None:
            super().__init__(**kwargs)
            self._scale = scale

        def call(self, y_true, y_pred):
            return self._scale * np.mean(np.abs(y_true - y_pred), axis=-1)

    loss = Scaled(name="scaled")
    assert loss.get_config() == {"name": "scaled", "reduction": "sum_over_batch_size"}
    assert "Scaled(" in repr(loss)
    np.testing.assert_allclose(loss(np.array([[1.0, 0.0]]), np.array([[0.5, 0.5]])), 1.0)


def test_wrapper_rejects_unknown_options_when_built() -> None:
    with pytest.raises(TypeError, match=r"poisson takes no argument\(s\) \['foo'\]"):
        probloss.LossFunctionWrapper(probloss.poisson, foo=1)
    with pytest.raises(TypeError, match="takes no argument"):
        probloss.deserialize({"class_name": "LossFunctionWrapper", "config": {"fn": "poisson", "foo": 1}})


def test_wrapper_config_with_custom_function() -> None:
    def doubled_bce(y_true, y_pred):
        return 2 * probloss.binary_crossentropy(y_true, y_pred)

    config = probloss.serialize(probloss.LossFunctionWrapper(doubled_bce))
    rebuilt = probloss.deserialize(config, custom_objects={"doubled_bce": doubled_bce})
    y, p = np.array([[1.0, 0.0]], np.float32), np.array([[0.8, 0.3]], np.float32)
    want = 2 * -np.mean([np.log(0.8), np.log(0.7)])
    np.testing.assert_allclose(rebuilt(y, p), want, rtol=1e-6)
    with pytest.raises(ValueError, match="Unknown loss function"):
        probloss.deserialize(config)  # without custom_objects the name is unknown


@pytest.mark.parametrize("config", [
    {"class_name": ["BinaryCrossentropy"], "config": {}},
    {"class_name": "BinaryCrossentropy", "config": ["from_logits", True]},
    {"class_name": "BinaryCrossentropy", "config": "from_logits"},
])
def test_malformed_configs_get_a_clear_error(config) -> None:
    with pytest.raises(ValueError, match="'class_name' must be a string and 'config' a dict"):
        probloss.deserialize(config)


def test_dtype_objects_of_every_library() -> None:
    import jax.numpy as jnp
    import torch

    for dtype, name in [(jnp.float32, "float32"), (jnp.bfloat16, "bfloat16"), (torch.float16, "float16"),
                        (np.float64, "float64"), (np.dtype("float32"), "float32"), ("mixed_float16", "float16")]:
        assert probloss.BinaryCrossentropy(dtype=dtype).dtype == name
    with pytest.raises(ValueError, match="Invalid value for argument `dtype`"):
        probloss.BinaryCrossentropy(dtype="int32")


def test_to_keras_adapter_round_trips_through_keras_serialization() -> None:
    inner = probloss.SparseCategoricalCrossentropy(from_logits=True, ignore_class=0, reduction="sum")
    adapter = probloss.to_keras(inner)
    assert isinstance(adapter, keras.losses.Loss)
    rebuilt = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(adapter))
    assert rebuilt.probloss_loss.get_config() == inner.get_config()
    again = type(adapter).from_config(adapter.get_config())
    assert again.probloss_loss.get_config() == inner.get_config()
    labels = np.array([0, 2, 1])
    logits = np.array([[1.0, 2.0, 0.5], [0.0, 0.0, 3.0], [1.0, 1.0, 1.0]], np.float32)
    z = logits.astype(np.float64)
    per = np.log(np.exp(z).sum(-1)) - z[np.arange(3), labels]
    np.testing.assert_allclose(np.asarray(rebuilt(labels, logits)), per[1:].sum(), rtol=1e-6)
    with pytest.raises(TypeError, match="to_keras expects a probloss Loss"):
        probloss.to_keras(keras.losses.BinaryCrossentropy())
