"""Ulp accuracy of probloss, PyTorch, optax and Keras 3 on the sweep of tests/test_accuracy.py.

Rerun: ``.venv/bin/python benchmarks/accuracy_table.py`` (writes docs/accuracy.md).
All inputs are float32; exact values come from the mpmath references in the test.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import test_accuracy as sweep  # noqa: E402

import probloss  # noqa: E402


def _torch() -> dict[str, Callable[..., np.ndarray]]:
    import torch
    import torch.nn.functional as F  # noqa: N812

    def bce(t: np.ndarray, x: np.ndarray) -> np.ndarray:
        out = F.binary_cross_entropy_with_logits(torch.asarray(x), torch.asarray(t), reduction="none")
        return out.mean(-1).numpy()

    def cce(t: np.ndarray, z: np.ndarray) -> np.ndarray:
        return F.cross_entropy(torch.asarray(z), torch.asarray(t), reduction="none").numpy()

    def scce(t: np.ndarray, z: np.ndarray) -> np.ndarray:
        return F.cross_entropy(torch.asarray(z), torch.asarray(t), reduction="none").numpy()

    return {"bce": bce, "cce": cce, "scce": scce}


def _optax() -> dict[str, Callable[..., np.ndarray]]:
    import jax.numpy as jnp
    import optax

    return {
        "bce": lambda t, x: np.asarray(optax.sigmoid_binary_cross_entropy(jnp.asarray(x), jnp.asarray(t)).mean(-1)),
        "cce": lambda t, z: np.asarray(optax.softmax_cross_entropy(jnp.asarray(z), jnp.asarray(t))),
        "scce": lambda t, z: np.asarray(optax.softmax_cross_entropy_with_integer_labels(jnp.asarray(z),
                                                                                        jnp.asarray(t))),
    }


def _keras() -> dict[str, Callable[..., np.ndarray]]:
    import keras

    return {
        "bce": lambda t, x: np.asarray(keras.losses.binary_crossentropy(t, x, from_logits=True)),
        "cce": lambda t, z: np.asarray(keras.losses.categorical_crossentropy(t, z, from_logits=True)),
        "scce": lambda t, z: np.asarray(keras.losses.sparse_categorical_crossentropy(t, z, from_logits=True)),
    }


def _probloss() -> dict[str, Callable[..., np.ndarray]]:
    return {
        "bce": lambda t, x: np.asarray(probloss.binary_crossentropy(t, x, from_logits=True, validate="off")),
        "cce": lambda t, z: np.asarray(probloss.categorical_crossentropy(t, z, from_logits=True, validate="off")),
        "scce": lambda t, z: np.asarray(probloss.sparse_categorical_crossentropy(t, z, from_logits=True,
                                                                                validate="off")),
    }


LOSS_OF_CASE = {"binary_crossentropy": "bce", "categorical_crossentropy": "cce",
                "sparse_categorical_crossentropy": "scce"}


def main() -> None:
    libraries: dict[str, dict[str, Callable[..., np.ndarray]]] = {
        "probloss": _probloss(), "PyTorch": _torch(), "optax": _optax(), "Keras 3 (JAX)": _keras()}
    cases = [c for c in sweep.all_cases() if c.loss in LOSS_OF_CASE and dict(c.kwargs)["from_logits"]]
    rows: list[tuple[str, str, float, float, int, int]] = []
    for case in cases:
        kind = LOSS_OF_CASE[case.loss]
        for lib, fns in libraries.items():
            got: Any = fns[kind](case.y_true, case.y_pred)
            r = sweep.ulp_errors(np.asarray(got, np.float32), case.name, "float32")
            rows.append((case.name, lib, r.worst, r.median, r.zero_for_positive, r.checked))
            print(f"{case.name:50s} {lib:15s} worst {r.worst:12.2f} median {r.median:6.2f} "
                  f"zeros {r.zero_for_positive}", flush=True)
    _write(rows, libraries)


def _versions() -> str:
    import jax
    import keras
    import optax
    import torch

    return (f"Python {platform.python_version()}, NumPy {np.__version__}, PyTorch {torch.__version__}, "
            f"JAX {jax.__version__}, optax {optax.__version__}, Keras {keras.__version__}, "
            f"probloss {probloss.__version__}; {platform.machine()} {platform.system()} (CPU)")


def _write(rows: list[tuple[str, str, float, float, int, int]], libraries: dict[str, Any]) -> None:
    libs = list(libraries)
    lines = [
        "# Accuracy of the logits paths, in float32 ulps",
        "",
        "Error of a point: `|loss - exact| / ulp(exact)`, the exact value from mpmath at 120 bits",
        "(tests/test_accuracy.py). Cells: worst / median ulp error over the points whose exact",
        "loss is a normal float32; `z`: points where the library returns 0 but the exact loss is",
        "> 0 (all points, subnormal ones included). Inputs: logits ±[1e-6, 1e4] on a log grid",
        "(8 a decade) and 0; K classes with the label class at `v + max(others)` (the maximum for",
        "v > 0, not for v < 0); hard labels 0/1 (one-hot), soft labels 0.1/0.5/0.9/0.999 (binary)",
        "or Dirichlet (categorical). All arrays float32, per-sample losses.",
        "",
        "| case | " + " | ".join(libs) + " |",
        "|---|" + "---|" * len(libs),
    ]
    by_case: dict[str, dict[str, tuple[float, float, int]]] = {}
    for name, lib, worst, median, zeros, _ in rows:
        by_case.setdefault(name, {})[lib] = (worst, median, zeros)
    for name, cells in by_case.items():
        text = [f"{cells[lib][0]:.3g} / {cells[lib][1]:.2g} (z {cells[lib][2]})" for lib in libs]
        lines.append(f"| {name} | " + " | ".join(text) + " |")
    lines += [
        "",
        "Keras's NumPy backend is not in the table (not run).",
        "",
        "## What probloss guarantees (tests/test_accuracy.py)",
        "",
        "- <= 4 ulps, float32 and float64: BCE (logits and probabilities), CCE and sparse CCE on the",
        "  probability path (hard and soft labels, 2-1000 classes), CCE with soft labels from logits,",
        "  Poisson and KL in float32.",
        "- CCE / sparse CCE / categorical focal from logits, label the maximum with the other logits",
        "  more than ~16 below it (loss < ~1e-7): up to ~35 ulps measured (limit 48 in the test). The",
        "  float32 rounding of `z - max` is carried by `exp` into each term of the tiny loss.",
        "- Binary and categorical focal: up to ~8 ulps measured (limit 12): several rounded factors.",
        "- Poisson and KL in float32 are computed in float64 internally and rounded once (where the",
        "  library has float64: not JAX without x64, not PyTorch on MPS). In float64 they are held to",
        "  4 ulps plus the rounding that float64 cannot avoid where terms cancel (4·2⁻⁵³ times the sum",
        "  of the terms' magnitudes, plus y or t): the loss near the zeros of `p - y·log(p + ε)`, and KL",
        "  of close distributions, is not accurate to 4 ulps in float64.",
        "- Gradients: probloss has no hand-written backward pass (no fast path with a custom gradient);",
        "  gradients come from the array library's autodiff of these formulas and are not swept here.",
        "",
        "## Rerun",
        "",
        "    .venv/bin/python benchmarks/accuracy_table.py",
        "",
        f"Measured with: {_versions()}.",
        "",
    ]
    out = ROOT / "docs" / "accuracy.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text("\n".join(lines))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
