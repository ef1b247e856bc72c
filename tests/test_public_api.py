"""The public surface: light import, ``__all__`` and documentation.

* ``import probloss`` in a fresh interpreter imports none of the optional array
  libraries (torch, jax, dask, keras, cupy, array_api_strict), also after a
  NumPy loss has been computed;
* ``probloss.__all__`` lists exactly the public names the package defines;
* every public function and class has a docstring with an Examples section.
"""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
import types

import pytest

import probloss

OPTIONAL = ("torch", "jax", "jaxlib", "dask", "keras", "cupy", "array_api_strict", "tensorflow", "ml_dtypes",
            "xgboost", "lightgbm")

_SCRIPT = """
import json, sys
import probloss
after_import = sorted(m for m in {optional!r} if m in sys.modules)
import numpy as np
loss = probloss.CategoricalCrossentropy(from_logits=True)(np.eye(3), np.ones((3, 3)))
probloss.sparse_categorical_crossentropy(np.array([0, 1]), np.full((2, 2), 0.5))
probloss.binary_focal_crossentropy([[0.0, 1.0]], [[0.2, 0.7]])
probloss.get("poisson")([[1.0]], [[2.0]])
after_loss = sorted(m for m in {optional!r} if m in sys.modules)
print(json.dumps({{"after_import": after_import, "after_loss": after_loss, "loss": float(loss)}}))
"""


def test_import_pulls_in_no_optional_library() -> None:
    result = subprocess.run([sys.executable, "-c", _SCRIPT.format(optional=OPTIONAL)], capture_output=True,
                            text=True, check=True, timeout=120)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["after_import"] == []
    assert report["after_loss"] == []
    assert report["loss"] == pytest.approx(1.0986122886681098, rel=1e-6)  # log(3): uniform logits


def _defined_public_names() -> set[str]:
    """Public names bound in the package namespace, excluding imported modules other than submodules."""
    names = set()
    for name, value in vars(probloss).items():
        if name.startswith("_") and name != "__version__":
            continue
        if isinstance(value, types.ModuleType):
            # Public submodules (probloss.losses) are public API; private ones are not.
            if value.__name__ == f"probloss.{name}":
                names.add(name)
            continue
        names.add(name)
    return names


def test_all_matches_public_names() -> None:
    assert len(probloss.__all__) == len(set(probloss.__all__))
    assert set(probloss.__all__) == _defined_public_names()
    for name in probloss.__all__:
        assert hasattr(probloss, name), name


PUBLIC_CALLABLES = sorted(
    name for name in probloss.__all__
    if inspect.isclass(getattr(probloss, name)) or inspect.isfunction(getattr(probloss, name))
)


def test_the_seven_losses_are_public() -> None:
    expected = {
        "binary_crossentropy", "binary_focal_crossentropy", "categorical_crossentropy",
        "categorical_focal_crossentropy", "sparse_categorical_crossentropy", "poisson", "kl_divergence",
        "BinaryCrossentropy", "BinaryFocalCrossentropy", "CategoricalCrossentropy",
        "CategoricalFocalCrossentropy", "SparseCategoricalCrossentropy", "Poisson", "KLDivergence",
    }
    assert expected <= set(PUBLIC_CALLABLES)


def test_linear_cross_entropy_is_public() -> None:
    expected = {"linear_cross_entropy", "linear_cross_entropy_with_grad", "LinearCrossEntropy"}
    assert expected <= set(PUBLIC_CALLABLES)
    assert probloss.get("LinearCrossEntropy").__class__ is probloss.LinearCrossEntropy


@pytest.mark.parametrize("name", PUBLIC_CALLABLES)
def test_docstring_has_examples(name: str) -> None:
    obj = getattr(probloss, name)
    doc = inspect.getdoc(obj)
    assert doc, f"probloss.{name} has no docstring"
    assert "Examples:" in doc or "Example:" in doc, f"probloss.{name}'s docstring has no Examples section"
    assert ">>> " in doc, f"probloss.{name}'s Examples section has no doctest"
