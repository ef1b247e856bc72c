"""Ulp accuracy of probloss, PyTorch, optax and Keras 3 on the sweep of tests/test_accuracy.py.

Rerun: ``.venv/bin/python benchmarks/accuracy_table.py`` (writes docs/accuracy.md).
Exact values come from the mpmath references in the test; every case of its sweep is
measured (all losses, both paths), in float32 for every library and in float64 for
probloss. Two columns run in subprocesses, because their configuration is fixed at
import: probloss on JAX without float64 (``JAX_ENABLE_X64`` unset) and Keras 3 on its
NumPy backend (``KERAS_BACKEND=numpy``). The gradient section compares the autodiff
gradients of BCE and sparse CCE from logits with an exact mpmath gradient at 200 bits.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import mpmath
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import test_accuracy as sweep  # noqa: E402

import probloss  # noqa: E402

F32 = np.finfo(np.float32)
GRAD_PREC = 200  # bits: the exact gradients reach 1e-30 and far below
AGREEMENT_RTOL = 1e-5  # a native peer must agree with probloss this well on ordinary inputs
NONE = "—"

# A peer computes a case's per-sample losses from NumPy inputs, or returns None (no equivalent).
Peer = Callable[[Any], "np.ndarray | None"]

COLUMNS = ("probloss (NumPy)", "probloss (JAX, no x64)", "PyTorch", "optax", "Keras 3 (JAX)", "Keras 3 (NumPy)")


def _kwargs(case: Any) -> dict[str, Any]:
    return dict(case.kwargs)


def _labels(case: Any) -> np.ndarray:
    """The case's targets as the libraries take them (integer labels as int32 for JAX)."""
    return case.y_true.astype(np.int32) if case.y_true.dtype.kind in "iu" else case.y_true


# ----------------------------------------------------------------- loss peers


def _torch_peer(case: Any) -> np.ndarray | None:
    """PyTorch's own losses, where one computes the same quantity as the case."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    kw = _kwargs(case)
    t, p = torch.from_numpy(case.y_true), torch.from_numpy(case.y_pred)
    eps = probloss.epsilon()
    out: Any = None
    if case.loss == "binary_crossentropy":
        fn = F.binary_cross_entropy_with_logits if kw["from_logits"] else F.binary_cross_entropy
        out = fn(p, t, reduction="none").mean(-1)
    elif case.loss in ("categorical_crossentropy", "sparse_categorical_crossentropy") and kw["from_logits"]:
        out = F.cross_entropy(p, t, reduction="none")  # class indices, or class probabilities (soft labels)
    elif case.loss == "poisson":
        out = F.poisson_nll_loss(p, t, log_input=False, full=False, eps=eps, reduction="none").mean(-1)
    elif case.loss == "kl_divergence":  # Keras clips both to [eps, 1] first
        out = F.kl_div(p.clamp(eps, 1.0).log(), t.clamp(eps, 1.0), reduction="none").sum(-1)
    return None if out is None else out.numpy()


def _optax_peer(case: Any) -> np.ndarray | None:
    """optax's own losses, where one computes the same quantity as the case."""
    import jax.numpy as jnp
    import optax

    kw = _kwargs(case)
    t, p = jnp.asarray(_labels(case)), jnp.asarray(case.y_pred)
    out: Any = None
    if case.loss == "binary_crossentropy" and kw["from_logits"]:
        out = optax.sigmoid_binary_cross_entropy(p, t).mean(-1)
    elif case.loss == "binary_focal_crossentropy" and kw["from_logits"] and kw["apply_class_balancing"]:
        out = optax.sigmoid_focal_loss(p, t, alpha=kw["alpha"], gamma=kw["gamma"]).mean(-1)
    elif case.loss == "categorical_crossentropy" and kw["from_logits"]:
        out = optax.softmax_cross_entropy(p, t)
    elif case.loss == "sparse_categorical_crossentropy" and kw["from_logits"]:
        out = optax.softmax_cross_entropy_with_integer_labels(p, t)
    elif case.loss == "kl_divergence":  # Keras clips both to [eps, 1] first
        eps = probloss.epsilon()
        out = optax.kl_divergence(jnp.log(jnp.clip(p, eps, 1.0)), jnp.clip(t, eps, 1.0))
    return None if out is None else np.asarray(out)


def _keras_peer(case: Any) -> np.ndarray:
    """``keras.losses.<loss>`` with the case's arguments, on the backend keras was imported with."""
    import keras

    return np.asarray(getattr(keras.losses, case.loss)(case.y_true, case.y_pred, **_kwargs(case)))


def _probloss_float32(case: Any) -> np.ndarray:
    return sweep.run_numpy(case, "float32")


# ----------------------------------------------------------------- gradients


@dataclasses.dataclass(frozen=True)
class GradProblem:
    """Per-sample gradients of a loss from logits: BCE (one label) or sparse CCE (label = the maximum)."""

    name: str
    kind: str  # "binary" or "softmax"
    labels: np.ndarray
    logits: np.ndarray


@functools.cache
def gradient_problems() -> tuple[GradProblem, ...]:
    """BCE with y = 0 and y = 1 over the sweep's logit grid; sparse CCE, K = 2/10/100, label the maximum."""
    x = sweep.logit_grid()[:, None]
    problems = [GradProblem(f"BCE, y = {y:g}", "binary", np.full_like(x, y), x) for y in (0.0, 1.0)]
    for k in (2, 10, 100):
        z, _, _ = sweep._categorical_inputs(k)
        z = z[z[:, 0] >= z[:, 1:].max(axis=1)]  # rows whose label (class 0) is the maximum
        problems.append(GradProblem(f"sparse CCE, K = {k}", "softmax", np.zeros(z.shape[0], np.int64), z))
    return tuple(problems)


def _exact_gradient(problem: GradProblem) -> np.ndarray:
    """sigmoid(x) - y and softmax(z) - onehot in cancellation-free forms, at GRAD_PREC bits."""
    with mpmath.workprec(GRAD_PREC):
        if problem.kind == "binary":
            y = float(problem.labels[0, 0])
            out = [float(-1 / (1 + mpmath.exp(mpmath.mpf(float(v)))) if y == 1
                         else 1 / (1 + mpmath.exp(-mpmath.mpf(float(v))))) for v in problem.logits[:, 0]]
            return np.array(out)[:, None]
        rows = []
        for row, label in zip(problem.logits, problem.labels, strict=True):
            zs = [mpmath.mpf(float(v)) for v in row]
            top = max(range(len(zs)), key=lambda i: zs[i])
            e = [mpmath.exp(v - zs[top]) for v in zs]
            rest = mpmath.fsum(e[i] for i in range(len(zs)) if i != top)
            grad = [ei / (1 + rest) for ei in e]
            grad[label] = -rest / (1 + rest) if label == top else grad[label] - 1
            rows.append([float(g) for g in grad])
        return np.array(rows)


def _probloss_summed(kind: str, labels: Any, logits: Any) -> Any:
    """The sum of probloss's per-sample losses (each sample's gradient is its own)."""
    if kind == "binary":
        return probloss.binary_crossentropy(labels, logits, from_logits=True, validate="off").sum()
    return probloss.sparse_categorical_crossentropy(labels, logits, from_logits=True, validate="off").sum()


def _grad_probloss_jax(problem: GradProblem) -> np.ndarray:
    import jax
    import jax.numpy as jnp

    labels = jnp.asarray(problem.labels.astype(np.int32) if problem.kind == "softmax" else problem.labels)
    fn = functools.partial(_probloss_summed, problem.kind, labels)
    return np.asarray(jax.grad(fn)(jnp.asarray(problem.logits, dtype=jnp.float32)))


def _grad_probloss_torch(problem: GradProblem) -> np.ndarray:
    import torch

    v = torch.tensor(problem.logits, requires_grad=True)
    _probloss_summed(problem.kind, torch.from_numpy(problem.labels), v).backward()
    return v.grad.numpy()


def _grad_torch(problem: GradProblem) -> np.ndarray:
    import torch
    import torch.nn.functional as F  # noqa: N812

    v = torch.tensor(problem.logits, requires_grad=True)
    t = torch.from_numpy(problem.labels)
    loss = (F.binary_cross_entropy_with_logits(v, t, reduction="sum") if problem.kind == "binary"
            else F.cross_entropy(v, t, reduction="sum"))
    loss.backward()
    return v.grad.numpy()


def _grad_optax(problem: GradProblem) -> np.ndarray:
    import jax
    import jax.numpy as jnp
    import optax

    binary = problem.kind == "binary"
    t = jnp.asarray(problem.labels if binary else problem.labels.astype(np.int32))

    def summed(v: Any) -> Any:
        if binary:
            return optax.sigmoid_binary_cross_entropy(v, t).sum()
        return optax.softmax_cross_entropy_with_integer_labels(v, t).sum()

    return np.asarray(jax.grad(summed)(jnp.asarray(problem.logits)))


@dataclasses.dataclass
class GradReport:
    """Worst ulp error over entries whose exact gradient is a normal float32, and zeros returned there."""

    worst: float
    zeros: int
    checked: int


def _grad_report(got: np.ndarray, exact: np.ndarray) -> GradReport:
    rounded = exact.astype(np.float32)
    normal = np.isfinite(rounded) & (np.abs(exact) >= F32.tiny)
    if not normal.any():
        return GradReport(0.0, 0, 0)
    ulp = np.abs(np.spacing(rounded[normal])).astype(np.float64)
    g = np.asarray(got, np.float64)[normal]
    err = np.where(np.isfinite(g), np.abs(g - exact[normal]) / ulp, np.inf)
    return GradReport(float(err.max()), int(np.sum(g == 0)), int(normal.sum()))


def _grad_rows(problem: GradProblem, got: np.ndarray, exact: np.ndarray) -> dict[str, GradReport]:
    """Binary: one row; softmax: the label's entry (softmax - 1) and the other entries, separately."""
    got = np.asarray(got).reshape(exact.shape)
    if problem.kind == "binary":
        return {problem.name: _grad_report(got, exact)}
    rows = np.arange(exact.shape[0])
    mask = np.zeros(exact.shape, bool)
    mask[rows, problem.labels] = True
    return {f"{problem.name}, label entry": _grad_report(got[mask], exact[mask]),
            f"{problem.name}, other entries": _grad_report(got[~mask], exact[~mask])}


# ----------------------------------------------------------------- subprocess workers


def _worker(mode: str, out_dir: str) -> None:
    """Run in a subprocess: 'jax' (probloss on JAX, x64 off) or 'keras' (Keras 3, NumPy backend)."""
    values: dict[str, np.ndarray] = {}
    errors: dict[str, str] = {}
    if mode == "jax":
        import jax
        import jax.numpy as jnp

        assert not jax.config.jax_enable_x64, "JAX must run without float64 here"
        for case in sweep.all_cases():
            got = case.call(jnp.asarray(_labels(case)), jnp.asarray(case.y_pred, dtype=jnp.float32))
            assert got.dtype == jnp.float32, (case.name, got.dtype)
            values[case.name] = np.asarray(got)
        for problem in gradient_problems():
            values["grad:" + problem.name] = _grad_probloss_jax(problem)
    else:
        import keras

        assert keras.backend.backend() == "numpy", keras.backend.backend()
        for case in sweep.all_cases():
            try:
                values[case.name] = _keras_peer(case)
            except Exception as exc:  # reported in the table as "fails"
                errors[case.name] = f"{type(exc).__name__}: {exc}"
    np.savez(Path(out_dir) / "values.npz", **values)
    (Path(out_dir) / "errors.json").write_text(json.dumps(errors))


def _run_worker(mode: str, env_changes: dict[str, str | None]) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    env = dict(os.environ)
    for key, value in env_changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    with tempfile.TemporaryDirectory() as tmp:
        result = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", mode, tmp],
                                capture_output=True, text=True, env=env, timeout=1200, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"worker {mode} failed:\n{result.stderr[-3000:]}")
        with np.load(Path(tmp) / "values.npz") as data:
            values = {k: data[k] for k in data.files}
        errors = json.loads((Path(tmp) / "errors.json").read_text())
    return values, errors


# ----------------------------------------------------------------- the measurement


def _cell(report: Any) -> str:
    return f"{report.worst:.3g} / {report.median:.2g} (z {report.zero_for_positive})"


def _ordinary(case: Any) -> Any:
    """The case with ordinary inputs: moderate logits, probabilities away from 0 and 1, far distributions."""
    rng = np.random.default_rng(0)
    shape, t = case.y_pred.shape, case.y_true

    def probabilities() -> np.ndarray:
        if shape[-1] == 1:
            return rng.uniform(0.05, 0.95, shape)
        return rng.dirichlet(np.ones(shape[-1]), shape[0])

    if case.loss == "poisson":
        p = rng.gamma(2.0, 3.0, shape) + 0.1
    elif case.loss == "kl_divergence":
        t, p = probabilities(), probabilities()
    elif _kwargs(case)["from_logits"]:
        p = rng.normal(0.0, 2.0, shape)
    else:
        p = probabilities()
    return dataclasses.replace(case, y_true=np.asarray(t, case.y_true.dtype), y_pred=p.astype(np.float32))


def _agreement(peer: Peer, case: Any) -> float | None:
    """Median relative difference from probloss (float64) on ordinary inputs; None: no equivalent."""
    ordinary = _ordinary(case)
    got = peer(ordinary)
    if got is None:
        return None
    ref = sweep.run_numpy(ordinary, "float64").reshape(-1)
    return float(np.median(np.abs(np.asarray(got, np.float64).reshape(-1) - ref) / np.abs(ref)))


@dataclasses.dataclass
class Results:
    """Everything docs/accuracy.md shows."""

    float32: dict[str, dict[str, str]] = dataclasses.field(default_factory=dict)  # case -> column -> cell
    float64: dict[str, str] = dataclasses.field(default_factory=dict)
    excess: dict[str, tuple[float, float, float, float, float]] = dataclasses.field(default_factory=dict)
    gradients: dict[str, dict[str, GradReport]] = dataclasses.field(default_factory=dict)  # row -> contender
    grad_no_x64: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)  # from the JAX worker
    notes: list[str] = dataclasses.field(default_factory=list)
    underflow: dict[str, int] = dataclasses.field(default_factory=dict)  # exact > 0 rounding to 0 in float32
    agreement: float = 0.0  # the largest relative difference of a trusted native peer on ordinary inputs
    worst_probloss32: dict[str, tuple[float, str]] = dataclasses.field(default_factory=dict)


def _measure_losses(results: Results) -> None:
    print("subprocess: probloss on JAX without x64 ...", flush=True)
    jax_values, _ = _run_worker("jax", {"JAX_ENABLE_X64": None, "JAX_PLATFORMS": "cpu"})
    print("subprocess: Keras 3 on NumPy ...", flush=True)
    keras_np, keras_np_errors = _run_worker("keras", {"KERAS_BACKEND": "numpy", "JAX_PLATFORMS": "cpu"})
    results.grad_no_x64 = {k[5:]: v for k, v in jax_values.items() if k.startswith("grad:")}

    import jax

    jax.config.update("jax_enable_x64", False)  # the peers in their default configuration
    native: dict[str, Peer] = {"PyTorch": _torch_peer, "optax": _optax_peer}
    for case in sweep.all_cases():
        mine = _probloss_float32(case)
        outputs: dict[str, np.ndarray | str | None] = {
            "probloss (NumPy)": mine, "probloss (JAX, no x64)": jax_values[case.name],
            "Keras 3 (JAX)": _keras_peer(case),
            "Keras 3 (NumPy)": keras_np.get(case.name, keras_np_errors.get(case.name, "missing")),
        }
        for lib, peer in native.items():
            d = _agreement(peer, case)
            if d is not None and d > AGREEMENT_RTOL:
                results.notes.append(f"{lib} on {case.name}: relative difference {d:.2g} from probloss")
                outputs[lib] = f"differs ({d:.1g})"
            else:
                outputs[lib] = None if d is None else peer(case)
                results.agreement = max(results.agreement, d or 0.0)
        row: dict[str, str] = {}
        for lib in COLUMNS:
            got = outputs[lib]
            if isinstance(got, str):
                row[lib] = got if got.startswith("differs") else "fails"
                continue
            row[lib] = NONE if got is None else _cell(sweep.ulp_errors(np.asarray(got, np.float32), case.name,
                                                                       "float32"))
        results.float32[case.name] = row
        hi, _, _ = sweep.exact_values(case.name, "float32")
        results.underflow[case.name] = int(np.sum((hi > 0) & (hi.astype(np.float32) == 0)))
        r32 = sweep.ulp_errors(mine, case.name, "float32")
        loss = case.loss
        if r32.worst > results.worst_probloss32.get(loss, (-1.0, ""))[0]:
            results.worst_probloss32[loss] = (r32.worst, case.name)
        r64 = sweep.ulp_errors(sweep.run_numpy(case, "float64"), case.name, "float64")
        results.float64[case.name] = _cell(r64)
        if case.cancelling:
            rj = sweep.ulp_errors(np.asarray(jax_values[case.name], np.float32), case.name, "float32")
            results.excess[case.name] = (r32.worst, r32.excess, r64.worst, r64.excess, rj.excess)
        print(f"{case.name:52s} " + " | ".join(f"{row[lib]:>24s}" for lib in COLUMNS)
              + f" | f64 {results.float64[case.name]}", flush=True)


def _measure_gradients(results: Results) -> None:
    import jax

    problems = gradient_problems()
    exact = {p.name: _exact_gradient(p) for p in problems}
    contenders: dict[str, Callable[[GradProblem], np.ndarray]] = {
        "PyTorch": _grad_torch, "optax (jax.grad)": _grad_optax, "probloss (torch autograd)": _grad_probloss_torch}
    got: dict[str, dict[str, np.ndarray]] = {name: {} for name in contenders}
    for name, fn in contenders.items():  # optax in JAX's default configuration (no x64)
        for p in problems:
            got[name][p.name] = fn(p)
    jax.config.update("jax_enable_x64", True)  # probloss under jax.grad with x64 enabled (inputs float32)
    got["probloss (jax.grad, x64)"] = {p.name: _grad_probloss_jax(p) for p in problems}
    got["probloss (jax.grad, no x64)"] = results.grad_no_x64
    order = ["probloss (jax.grad, x64)", "probloss (jax.grad, no x64)", "probloss (torch autograd)", "PyTorch",
             "optax (jax.grad)"]
    for name in order:
        for p in problems:
            for row, report in _grad_rows(p, got[name][p.name], exact[p.name]).items():
                results.gradients.setdefault(row, {})[name] = report
    for row, cells in results.gradients.items():
        print(f"{row:40s} " + " | ".join(f"{n}: {c.worst:.3g} (z {c.zeros}/{c.checked})" for n, c in cells.items()),
              flush=True)


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--worker":
        _worker(sys.argv[2], sys.argv[3])
        return
    start = time.perf_counter()
    results = Results()
    _measure_losses(results)
    _measure_gradients(results)
    for note in results.notes:
        print("note:", note)
    for loss, (worst, name) in results.worst_probloss32.items():
        print(f"probloss float32 worst for {loss}: {worst:.3g} ({name})")
    _write(results)
    print(f"done in {time.perf_counter() - start:.0f} s")


# ----------------------------------------------------------------- docs/accuracy.md


def _versions() -> str:
    import jax
    import keras
    import optax
    import torch

    return (f"Python {platform.python_version()}, NumPy {np.__version__}, PyTorch {torch.__version__}, "
            f"JAX {jax.__version__}, optax {optax.__version__}, Keras {keras.__version__}, "
            f"probloss {probloss.__version__}; {platform.machine()} {platform.system()} (CPU)")


def _write(results: Results) -> None:
    lines = [
        "# Accuracy, in ulps",
        "",
        "Error of a point: `|loss - exact| / ulp(exact)`, the exact value from mpmath at 120 bits",
        "(tests/test_accuracy.py). Cells: worst / median ulp error over the points whose exact",
        "loss is a normal float32; `z`: points where the library returns 0 but the exact loss is",
        "> 0 (all points, subnormal ones included). Inputs: logits ±[1e-6, 1e4] on a log grid",
        "(8 a decade) and 0; K classes with the label class at `v + max(others)` (the maximum for",
        "v > 0, not for v < 0); hard labels 0/1 (one-hot), soft labels 0.1/0.5/0.9/0.999 (binary)",
        "or Dirichlet (categorical). All arrays float32, per-sample losses.",
        "",
        "The probability paths (`probs`) take the float32-rounded sigmoid / softmax of those",
        "logits (0 and 1 included); their exact value is that of Keras's formula, probabilities",
        "clipped to [ε, 1-ε] (categorical ones renormalised first). Poisson: rates on the positive",
        "grid and 0 with counts 0 to 1e4, plus rates next to the zeros of `p - y·log(p + ε)`",
        "(`single`), and 300 rows of 8 (`rows8`). KL: every pair of a grid of probabilities",
        "(`single`, both clipped to [ε, 1]) and rows of K classes, close and far distributions.",
        "Focal losses: gamma 2, alpha 0.25 (binary: class balancing on).",
        "",
        # Drawn from the table below by scripts/render_charts.py (rerun it after this script).
        "![Worst float32 error in ulps per loss, path and library](assets/accuracy.svg)",
        "",
        "## Every case, float32",
        "",
        "probloss on NumPy, and on JAX without float64 (`jax_enable_x64` off, its default: float32",
        "arithmetic throughout); the peers' own functions where one computes the same quantity (`—`:",
        "none does): PyTorch `binary_cross_entropy(_with_logits)`, `cross_entropy` (class indices, or",
        "class probabilities for one-hot and soft labels), `poisson_nll_loss(log_input=False, eps=ε)`,",
        "`kl_div(log p, t)` on p and t clipped to [ε, 1]; optax `sigmoid_binary_cross_entropy`,",
        "`sigmoid_focal_loss(alpha, gamma)`, `softmax_cross_entropy(_with_integer_labels)`,",
        "`kl_divergence(log p, t)` on clipped inputs (optax in JAX's default configuration); Keras 3",
        "`keras.losses.<loss>` with the case's arguments, on its JAX and NumPy backends. Each native",
        "peer was first checked against probloss on ordinary inputs (moderate logits, probabilities",
        "away from 0 and 1, random distributions) of the case's shape: median relative difference at",
        f"most {results.agreement:.1g} (required: {AGREEMENT_RTOL:g}).",
        "`exact → 0`: points whose exact loss is > 0 but rounds to 0 in float32 (below half the",
        "smallest subnormal); they are counted in `z`, where 0 is the correctly rounded result, so",
        "only a `z` above that count is a loss flushed to 0 (JAX's one or two more are subnormal",
        "results, which XLA on CPU flushes to 0).",
        "PyTorch's `binary_cross_entropy` does not clip to [ε, 1-ε] (it bounds the log at -100), so",
        "on the probability path it differs from the exact (clipped, Keras) value near 0 and 1: those",
        "errors are a different definition, not inaccuracy.",
        "",
        "| case | exact → 0 | " + " | ".join(COLUMNS) + " |",
        "|---|---|" + "---|" * len(COLUMNS),
    ]
    for name, row in results.float32.items():
        lines.append(f"| {name} | {results.underflow[name]} | " + " | ".join(row[lib] for lib in COLUMNS) + " |")
    if results.notes:
        lines += ["", "Native peers left out (they compute something else on these cases):", ""]
        lines += [f"- {note}" for note in results.notes]
    lines += [
        "",
        "## Poisson and KL beyond the cancellation bound (probloss)",
        "",
        "Their terms have mixed signs and cancel: near the zeros of `p - y·log(p + ε)`, and for close",
        "distributions. Besides the worst error (as above), the error beyond the bound that the",
        "dtype's arithmetic can promise there, `4·u·(sum of the terms' magnitudes, plus y or t)` in",
        "ulps (u = 2⁻²⁴ in float32, 2⁻⁵³ in float64). probloss on NumPy computes float32 inputs in",
        "float64 internally; JAX without x64 cannot. The large Poisson and KL errors in the first",
        "table (probloss on JAX without x64, and every peer) are at such points.",
        "",
        "| case | float32 worst | float32 beyond bound | float64 worst | float64 beyond bound "
        "| float32, JAX no x64, beyond bound |",
        "|---|---|---|---|---|---|",
    ]
    for name, (w32, x32, w64, x64, xj) in results.excess.items():
        lines.append(f"| {name} | {w32:.3g} | {x32:.3g} | {w64:.3g} | {x64:.3g} | {xj:.3g} |")
    lines += [
        "",
        "## probloss in float64",
        "",
        "The same sweep with float64 inputs (probabilities clipped to float64's [ε, 1-ε]); ulps of",
        "float64, over the points whose exact loss is a normal float64.",
        "",
        "| case | probloss (NumPy, float64) |",
        "|---|---|",
    ]
    lines += [f"| {name} | {cell} |" for name, cell in results.float64.items()]
    contenders = list(next(iter(results.gradients.values())))
    lines += [
        "",
        "## Gradients from logits, float32",
        "",
        "The gradient of the summed per-sample losses with respect to float32 logits, against the",
        f"exact gradient (mpmath at {GRAD_PREC} bits) in cancellation-free forms: `sigmoid(x) - y` as",
        "`-1/(1 + e^x)` (y = 1) or `1/(1 + e^-x)` (y = 0); `softmax(z) - onehot` with the label's",
        "entry as `-S/(1 + S)`, S the sum of `exp(z_i - max)` over the other entries. Inputs: the",
        "logit grid above (BCE); the sweep's K-class rows whose label is the maximum (sparse CCE).",
        "Cells: worst ulp error over the entries whose exact gradient is a normal float32",
        "(`z`: of those, entries returned as exactly 0). The gradients are each library's autodiff",
        "(for probloss: JAX's `jax.grad` with float64 enabled and without it, inputs float32 either",
        "way, and PyTorch autograd, through probloss's functions); PyTorch's own",
        "`binary_cross_entropy_with_logits` / `cross_entropy` and optax's losses under `jax.grad`.",
        "",
        "| gradient | " + " | ".join(contenders) + " |",
        "|---|" + "---|" * len(contenders),
    ]
    for row, cells in results.gradients.items():
        checked = next(iter(cells.values())).checked
        text = [f"{c.worst:.3g} (z {c.zeros})" for c in cells.values()]
        lines.append(f"| {row} ({checked} entries) | " + " | ".join(text) + " |")
    lines += [
        "",
        '## What probloss guarantees (tests/test_accuracy.py, run by CI)',
        '',
        '- **float32, every loss and both paths: within 4 ulps** of the exact value wherever the',
        '  exact value is a normal float32 (worst measured: 2.4 ulps), on NumPy, PyTorch, JAX',
        '  (eager and `jax.jit`), Dask and array-api-strict. How:',
        "  - softmax cross-entropies: `(max - z_label) + log1p(S')`, `S'` the sum of `exp(z - max)`",
        '    without the maximum, with the rounding error of each `z - max` restored exactly (TwoSum:',
        '    `exp(d + err) = exp(d)·(1 + err)`), so the 1e-30 loss of a confident correct class keeps',
        "    its bits. NumPy's compiled kernels (and PyTorch's and TensorFlow's CPU paths through",
        "    them) compute that sum in float32 SIMD lanes added pairwise and then in float64; for the",
        "    loss alone (no gradient) and a row maximum within ±128 they need no TwoSum: each term is",
        "    `e^x` scaled by a power of two chosen from the maximum, with the argument reduced",
        "    exactly, so no `z - max` is ever rounded, and the row's sum is multiplied once by a",
        "    float64 `exp(k·ln2 - max)` (bound ~2.8 ulps: src/probloss/_native/softmax_ce.c);",
        '  - binary: `log1p(exp(-|x|)) + y·relu(-x) + (1-y)·relu(x)`, non-negative terms, one `exp`',
        '    and one `log1p`;',
        '  - focal, Poisson and KL: computed in float64 and rounded once (where the library has',
        "    float64); the probability paths clip at Keras's `[ε, 1-ε]` rounded to the input dtype.",
        '- **float64**: 4 ulps for the cross-entropies; 8 ulps for the focal losses (measured 6.4:',
        '  four or five factors that each carry an ulp or two, and no wider type to compute in);',
        '  Poisson and KL within 4 ulps plus what float64 arithmetic can promise where their terms',
        "  cancel (4·2⁻⁵³ times the sum of the terms' magnitudes): near the zeros of",
        '  `p - y·log(p + ε)`, and for KL of nearly equal distributions, the float64 result is only',
        '  that accurate.',
        "- **Libraries without float64** (JAX's default `jax_enable_x64=False`, PyTorch on MPS): the",
        '  cross-entropies keep 4 ulps (their accuracy comes from error-free transformations, not a',
        '  wider type, and survives flush-to-zero); the focal losses lose the single final rounding',
        "  (measured 8.4 ulps, held to 12); Poisson and KL are held to float32's cancellation bound",
        "  (on JAX's CPU the compiled kernels' float32 mode: float32 logarithms, products and sums",
        "  in float64, Poisson's `p + ε` with its rounding error restored; docs/backends.md).",
        "  Tested in a subprocess with JAX's default configuration.",
        "- **TensorFlow inside `tf.function` and XLA** (the BCE and sparse CE from logits fast paths,",
        "  float32; not part of the mpmath sweep): on the rows of `tests/test_tensorflow_graph_accuracy.py`",
        "  (1001 classes, confident rows with losses down to 1e-17, ties, weights, every reduction),",
        "  values within 4 ulps and gradient entries within 4 ulps (5 where a weight or `1/N`",
        "  multiplies them) of float64 formulas. Row sums run in float32 blocks of at most 16",
        "  non-negative terms (worst-case relative error 15·2⁻²⁴ per block, ~1 ulp measured) and",
        "  the block sums in float64, so no full-size float64 copy is made (docs/backends.md).",
        '- **Gradients** (autodiff of these formulas by JAX and PyTorch, swept against mpmath):',
        '  `sigmoid(x) - y` within 4 ulps for hard labels (soft labels: plus 2 ulps of `y`, the',
        "  difference of two nearby numbers); the label's entry of `softmax - onehot` within 4 ulps",
        '  down to 1e-38 when the label dominates, where PyTorch and optax return 0 (the formula keeps',
        "  autodiff from forming `1/(1 + S') - 1`, and keeps the TwoSum correction out of the backward",
        "  pass, where XLA's flush-to-zero would drop it). The other entries: within 4 ulps, except the",
        "  maximal logit's entry when it is not the label, which autodiff forms as `1 - (the others'",
        '  share)`: an absolute error of ~2⁻²⁴, up to ~12 ulps of a `p` near `1/K`. The NumPy fast',
        '  paths compute values only (NumPy has no autodiff).',
        "",
        '## CTC (tests/test_ctc.py)',
        '',
        '`probloss.ctc`, `probloss.CTC` and `probloss.ctc_loss` run the log-space forward-backward',
        'algorithm in float64 (where the library has it) and round once:',
        '',
        "- the log-softmax of each frame is `(x - max) - log1p(S')`, `S'` the sum of `exp(x - max)`",
        "  without one maximal class, so a frame's tiny loss is not lost to `log(1 + S')`;",
        '- every log-sum is `max + log1p(exp(-|a - b|))`, so a path probability near 1 keeps its',
        '  digits;',
        '- the gradient is the analytic `softmax - occupancy` (occupancy: the posterior probability',
        '  of each class per frame, from alpha·beta), never autodiff through the recursion; for the',
        "  class holding most of a frame's occupancy (both terms near 1) it is formed from the",
        "  complements (the other classes' occupancy minus their probability), sums of small",
        '  positive terms.',
        '',
        'The compiled NumPy/PyTorch-CPU kernel runs most samples in scaled linear space instead',
        "(float64 probabilities of the states relative to each frame's total, the totals kept as a",
        "float64 sum of logs; no log or exp per state): its error relative to each frame's total is",
        '~1e-16, far inside the bounds below. It hands a sample to the log-space kernel where that',
        "would not hold: a state that can still complete falling below 1e-280 of its frame's total",
        '(it could underflow and matter later: very confident or extreme logits), a loss below',
        "4e-8·frames·states (tiny losses need log1p's digits), or no alignment. Tested against the",
        'generic kernel on sequences of 120 frames with both paths in one batch.',
        '',
        'Guaranteed and tested against a 50-digit brute force over every alignment (tiny cases), on',
        'the compiled NumPy kernel, the generic kernel, PyTorch and JAX (`jax_enable_x64`): the',
        'float32 loss within **4 ulps** from about 1e-10 to 1.5e5 (never negative, never capped),',
        'the float32 gradient within **16 eps normwise** (`||g - g*|| <= 16·eps·||g*||`). A sample',
        "with no alignment has loss `+inf` and a zero gradient. Keras's JAX backend and optax use",
        '-1e5 as log 0, which caps the loss near 1e5 and leaves roughly 270 eps of error at a loss',
        'of 1e-2 (negative values below ~1e-8); see docs/differences.md.',
        '',
        'On JAX arrays on CPU the compiled kernel runs (through `jax.pure_callback`), in float64 also',
        "in JAX's default float32-only mode, so the bounds above hold there in both modes (tested).",
        "Without float64 elsewhere (JAX's `lax.scan` path of other devices with `jax_enable_x64=False`,",
        'PyTorch on MPS) the same recursion runs in float32: the ordinary range agrees with Keras to',
        '1e-5, but the 4-ulp bound at tiny losses is not guaranteed there (not yet measured).',
        'float16/bfloat16 inputs are computed in float64 (float32 without it) and rounded once.',
        '',
        'Non-finite logits (with validation off; validation rejects them): a NaN gives its sample a',
        'NaN loss and a zero gradient on every path. For a `-inf` logit (a class of probability 0) the',
        'compiled kernel (NumPy, PyTorch CPU, JAX CPU) gives the limit value, where the generic kernel',
        'gives NaN (the exact 0/1 matrix product that gathers its emissions forms `0·inf`); a `+inf`',
        'logit gives a NaN or `+inf` loss with a zero gradient from the compiled kernel, NaN from the',
        'generic one. A label outside the classes gives NaN: with a NaN gradient from the compiled',
        'kernel, a zero one from the generic kernel.',
        '',
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
