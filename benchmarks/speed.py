"""Speed of probloss against PyTorch, optax and Keras 3 on the same float32 data, as ratios.

Every loss case is computed per sample (no reduction) by each contender on the same
data: probloss on NumPy arrays (``validate="off"`` and the default validation), on
PyTorch CPU tensors and on JAX arrays under ``jax.jit``; PyTorch's native functional
losses; optax's losses (jitted); and Keras 3's ``keras.losses`` functions on the JAX
backend (jitted). Each contender's result is first checked against probloss on NumPy
(rtol 1e-4, atol 1e-6): a contender that disagrees is reported with a warning line
and not timed, and a library with no native equivalent is skipped with its reason.

Timing: each contender is warmed up (compiled), then the contenders are interleaved
in rounds (every round calls each contender once, in a rotating order) so that machine
noise hits them alike. Noise only ever adds time, so the minimum over the rounds is
the primary estimate; the median is shown beside it. The report is a ratio, never a
pass/fail: ``speed-up = contender min / probloss(numpy) min``, so a value above 1
means probloss on NumPy is faster. PyTorch and XLA may use several CPU threads where
NumPy's elementwise operations use one (``torch.get_num_threads()`` is printed; pin it
with ``--torch-threads``: on a loaded machine, PyTorch's threads wait on each other at
every operation, which costs unfused multi-operation code such as probloss's most).

Run: ``.venv/bin/python benchmarks/speed.py [--batch N] [--classes K] [--features F]
[--repeats R] [--losses NAME ...] [--torch-threads N] [--markdown PATH]`` (about 2 minutes
with the defaults on a 2-core machine).
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax
import jax.numpy as jnp
import keras
import numpy as np
import optax
import torch
import torch.nn.functional as F  # noqa: N812

import probloss

RTOL = 1e-4
ATOL = 1e-6
BASELINE = "probloss numpy (validate=off)"
LOSSES = ("binary_crossentropy", "categorical_crossentropy", "sparse_categorical_crossentropy",
          "binary_focal_crossentropy", "categorical_focal_crossentropy", "poisson", "kl_divergence")


@dataclass(frozen=True)
class Case:
    """One loss configuration to time.

    Attributes:
        loss: the function's name, the same in probloss and ``keras.losses``.
        kwargs: keyword arguments of the call besides the data (e.g. ``from_logits``).
        data: which inputs to draw: "binary", "categorical", "sparse", "poisson" or "kl".
    """

    loss: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    data: str = "binary"

    @property
    def name(self) -> str:
        """The case's label, e.g. ``binary_crossentropy(from_logits=True)``."""
        args = ", ".join(f"{k}={v}" for k, v in self.kwargs.items())
        return f"{self.loss}({args})"

    @property
    def logits(self) -> bool:
        """Whether ``y_pred`` holds logits."""
        return bool(self.kwargs.get("from_logits", False))


CASES = (
    Case("binary_crossentropy", {"from_logits": True}, "binary"),
    Case("binary_crossentropy", {"from_logits": False}, "binary"),
    Case("categorical_crossentropy", {"from_logits": True}, "categorical"),
    Case("categorical_crossentropy", {"from_logits": False}, "categorical"),
    Case("sparse_categorical_crossentropy", {"from_logits": True}, "sparse"),
    Case("sparse_categorical_crossentropy", {"from_logits": False}, "sparse"),
    Case("binary_focal_crossentropy", {"from_logits": True}, "binary"),
    Case("categorical_focal_crossentropy", {"from_logits": True}, "categorical"),
    Case("poisson", {}, "poisson"),
    Case("kl_divergence", {}, "kl"),
)


@dataclass
class Contender:
    """A way to compute a case, or the reason it is left out.

    Attributes:
        name: the row label.
        run: a call with no arguments computing the per-sample loss to completion
            (JAX results are blocked on); None when skipped.
        skip: why the contender is not timed, or "" when it is.
        peer: whether it is another library (not probloss).
        times: the seconds of each timed call.
    """

    name: str
    run: Callable[[], Any] | None = None
    skip: str = ""
    peer: bool = True
    times: list[float] = field(default_factory=list)


def make_data(case: Case, batch: int, classes: int, features: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``(y_true, y_pred)`` for a case: float32, labels int64 for the sparse case.

    Args:
        case: the loss case.
        batch: the number of samples.
        classes: the class count of the categorical cases.
        features: the last-axis size of the binary, Poisson and KL cases.
        seed: the random seed.

    Returns:
        The labels and the predictions (logits or probabilities as the case needs).
    """
    rng = np.random.default_rng(seed)
    if case.data == "binary":
        y_true = (rng.random((batch, features)) < 0.5).astype(np.float32)
        if case.logits:
            return y_true, (2.0 * rng.standard_normal((batch, features))).astype(np.float32)
        return y_true, rng.uniform(1e-3, 1 - 1e-3, (batch, features)).astype(np.float32)
    if case.data in ("categorical", "sparse"):
        # Unit-scale logits keep every softmax probability far above Keras's ε = 1e-7 (about 3e-6 at
        # 1000 classes), so Keras's clipping to [ε, 1-ε], which PyTorch and optax do not do, never acts.
        logits = rng.standard_normal((batch, classes)).astype(np.float32)
        y_pred = logits if case.logits else _softmax(logits)
        labels = rng.integers(0, classes, batch, dtype=np.int64)
        if case.data == "sparse":
            return labels, y_pred
        return np.eye(classes, dtype=np.float32)[labels], y_pred
    if case.data == "poisson":
        y_true = rng.poisson(2.0, (batch, features)).astype(np.float32)
        return y_true, rng.uniform(0.1, 5.0, (batch, features)).astype(np.float32)
    if case.data == "kl":
        return (_softmax(rng.standard_normal((batch, features)).astype(np.float32)),
                _softmax(rng.standard_normal((batch, features)).astype(np.float32)))
    raise ValueError(f"unknown data kind {case.data!r}")


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(-1, keepdims=True))
    return (e / e.sum(-1, keepdims=True)).astype(np.float32)


def _jitted(fn: Callable[[Any, Any], Any], y_true: np.ndarray, y_pred: np.ndarray) -> Callable[[], Any]:
    """Jit ``fn`` and return a call on device-resident JAX arrays that blocks until done."""
    compiled = jax.jit(fn)
    t, p = jax.device_put(y_true), jax.device_put(y_pred)
    return lambda: compiled(t, p).block_until_ready()


def probloss_contenders(case: Case, y_true: np.ndarray, y_pred: np.ndarray) -> list[Contender]:
    """probloss on NumPy (validation off and default), on torch tensors and under ``jax.jit``."""
    fn = getattr(probloss, case.loss)
    kw = case.kwargs
    tt, tp = torch.from_numpy(y_true), torch.from_numpy(y_pred)
    return [
        Contender(BASELINE, lambda: fn(y_true, y_pred, **kw, validate="off"), peer=False),
        Contender("probloss numpy (validate default)", lambda: fn(y_true, y_pred, **kw), peer=False),
        Contender("probloss torch (validate=off)", lambda: fn(tt, tp, **kw, validate="off"), peer=False),
        Contender("probloss jax.jit (validate=off)",
                  _jitted(lambda t, p: fn(t, p, **kw, validate="off"), y_true, y_pred), peer=False),
    ]


def torch_contender(case: Case, y_true: np.ndarray, y_pred: np.ndarray) -> Contender:
    """PyTorch's native functional loss computing the same quantity, or a skip."""
    t, p = torch.from_numpy(y_true), torch.from_numpy(y_pred)
    if case.loss == "binary_crossentropy":
        if case.logits:
            return Contender("torch F.binary_cross_entropy_with_logits",
                             lambda: F.binary_cross_entropy_with_logits(p, t, reduction="none").mean(-1))
        return Contender("torch F.binary_cross_entropy",
                         lambda: F.binary_cross_entropy(p, t, reduction="none").mean(-1))
    if case.loss in ("categorical_crossentropy", "sparse_categorical_crossentropy"):
        if case.logits:
            return Contender("torch F.cross_entropy", lambda: F.cross_entropy(p, t, reduction="none"))
        # Keras renormalises probabilities: -log(p[y] / sum(p)) = cross_entropy(log p).
        return Contender("torch F.cross_entropy(log p)",
                         lambda: F.cross_entropy(torch.log(p), t, reduction="none"))
    if case.loss == "poisson":
        eps = probloss.epsilon()
        return Contender("torch F.poisson_nll_loss(log_input=False)", lambda: F.poisson_nll_loss(
            p, t, log_input=False, full=False, eps=eps, reduction="none").mean(-1))
    if case.loss == "kl_divergence":
        return Contender("torch F.kl_div(log q, p)",
                         lambda: F.kl_div(torch.log(p), t, reduction="none").sum(-1))
    return Contender("torch", skip="no native focal loss in torch (torchvision.ops has a binary one; "
                     "not a torch function)")


def optax_contender(case: Case, y_true: np.ndarray, y_pred: np.ndarray) -> Contender:
    """optax's loss (jitted) computing the same quantity, or a skip."""
    if case.loss == "binary_crossentropy":
        if not case.logits:
            return Contender("optax", skip="optax's binary cross-entropy takes logits only")
        return Contender("optax sigmoid_binary_cross_entropy (jit)", _jitted(
            lambda t, x: optax.sigmoid_binary_cross_entropy(x, t).mean(-1), y_true, y_pred))
    if case.loss == "categorical_crossentropy":
        if case.logits:
            return Contender("optax softmax_cross_entropy (jit)",
                             _jitted(lambda t, z: optax.softmax_cross_entropy(z, t), y_true, y_pred))
        return Contender("optax softmax_cross_entropy(log p) (jit)",
                         _jitted(lambda t, p: optax.softmax_cross_entropy(jnp.log(p), t), y_true, y_pred))
    if case.loss == "sparse_categorical_crossentropy":
        integer_ce = optax.softmax_cross_entropy_with_integer_labels
        if case.logits:
            return Contender("optax softmax_cross_entropy_with_integer_labels (jit)",
                             _jitted(lambda t, z: integer_ce(z, t), y_true, y_pred))
        return Contender("optax softmax_cross_entropy_with_integer_labels(log p) (jit)",
                         _jitted(lambda t, p: integer_ce(jnp.log(p), t), y_true, y_pred))
    if case.loss == "binary_focal_crossentropy":
        # alpha=None: no class balancing, as apply_class_balancing=False.
        return Contender("optax sigmoid_focal_loss(alpha=None) (jit)", _jitted(
            lambda t, x: optax.sigmoid_focal_loss(x, t, alpha=None, gamma=2.0).mean(-1), y_true, y_pred))
    if case.loss == "kl_divergence":
        # optax takes (log q, p): sum(p · (log p - log q)).
        return Contender("optax kl_divergence(log q, p) (jit)",
                         _jitted(lambda t, p: optax.kl_divergence(jnp.log(p), t), y_true, y_pred))
    if case.loss == "poisson":
        return Contender("optax", skip="optax has no Poisson loss")
    return Contender("optax", skip="optax has no categorical focal loss")


def keras_contender(case: Case, y_true: np.ndarray, y_pred: np.ndarray) -> Contender:
    """Keras 3's ``keras.losses`` function on the JAX backend, jitted."""
    fn = getattr(keras.losses, case.loss)
    kw = case.kwargs
    return Contender(f"keras.losses.{case.loss} (jax.jit)", _jitted(lambda t, p: fn(t, p, **kw), y_true, y_pred))


def check(contenders: list[Contender], reference: np.ndarray) -> None:
    """Skip, with a printed warning, each contender whose result disagrees with the reference."""
    for c in contenders:
        if c.run is None:
            print(f"  skip {c.name}: {c.skip}")
            continue
        try:
            got = np.asarray(c.run())
        except Exception as exc:  # a failing contender is reported, never hidden
            c.skip = f"failed: {type(exc).__name__}: {exc}"
            c.run = None
            print(f"  WARNING {c.name} {c.skip}")
            continue
        if got.shape != reference.shape:
            c.skip = f"disagrees with probloss numpy: shape {got.shape}, not {reference.shape}"
        elif not np.allclose(got, reference, rtol=RTOL, atol=ATOL):
            err = np.abs(got.astype(np.float64) - reference)
            rel = err / np.maximum(np.abs(reference), ATOL)
            c.skip = (f"disagrees with probloss numpy: max abs err {err.max():.3g}, max rel err {rel.max():.3g} "
                      f"({np.count_nonzero(~np.isclose(got, reference, rtol=RTOL, atol=ATOL))} samples)")
        if c.skip:
            c.run = None
            print(f"  WARNING {c.name} {c.skip}; not timed")


def time_rounds(contenders: list[Contender], repeats: int, warmup: int = 2) -> None:
    """Warm up each contender, then time them interleaved in rotating order for ``repeats`` rounds."""
    live = [c for c in contenders if c.run is not None]
    for c in live:
        for _ in range(warmup):
            c.run()  # type: ignore[misc]
    gc.collect()
    for r in range(repeats):
        shift = r % len(live)
        for c in live[shift:] + live[:shift]:
            start = time.perf_counter()
            c.run()  # type: ignore[misc]
            c.times.append(time.perf_counter() - start)


def case_table(case: Case, contenders: list[Contender]) -> list[str]:
    """Markdown table of one case: min and median ms and probloss(numpy)'s speed-up over each contender."""
    base = min(next(c for c in contenders if c.name == BASELINE).times)
    lines = [f"### {case.name}", "",
             "| contender | min ms | median ms | probloss(numpy) speed-up |", "|---|---:|---:|---:|"]
    for c in contenders:
        if c.run is None:
            lines.append(f"| {c.name} | – | – | skipped: {c.skip} |")
            continue
        lines.append(f"| {c.name} | {min(c.times) * 1e3:.3f} | {statistics.median(c.times) * 1e3:.3f} "
                     f"| {min(c.times) / base:.2f} |")
    return [*lines, ""]


def summary_row(case: Case, contenders: list[Contender]) -> str:
    """One summary line: probloss numpy's minimum and its ratio against the fastest peer."""
    base = min(next(c for c in contenders if c.name == BASELINE).times)
    peers = [c for c in contenders if c.peer and c.run is not None]
    if not peers:
        return f"| {case.name} | {base * 1e3:.3f} | (no peer) | – | – |"
    best = min(peers, key=lambda c: min(c.times))
    return (f"| {case.name} | {base * 1e3:.3f} | {best.name} | {min(best.times) * 1e3:.3f} "
            f"| {min(best.times) / base:.2f} |")


def _source_state() -> str:
    """The git commit of the probloss source and whether src/ has uncommitted changes (read-only git calls)."""
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src"], cwd=root, capture_output=True,
                               text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "commit unknown"
    return f"commit {commit}" + (" + uncommitted changes in src/" if dirty else "")


def versions() -> list[str]:
    """Versions of Python and every library, and the thread counts."""
    return [
        f"Python {platform.python_version()}, NumPy {np.__version__}, PyTorch {torch.__version__}, "
        f"JAX {jax.__version__}, optax {optax.__version__}, Keras {keras.__version__} "
        f"({keras.backend.backend()} backend), probloss {probloss.__version__} ({_source_state()})",
        f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPUs, "
        f"torch.get_num_threads() = {torch.get_num_threads()}, JAX devices {jax.devices()}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4096, help="samples per call")
    parser.add_argument("--classes", type=int, default=1000, help="classes of the categorical losses")
    parser.add_argument("--features", type=int, default=256, help="last axis of binary/poisson/kl losses")
    parser.add_argument("--repeats", type=int, default=30, help="timed rounds per case")
    parser.add_argument("--losses", nargs="+", choices=LOSSES, default=list(LOSSES), metavar="NAME",
                        help=f"losses to time (default: all of {', '.join(LOSSES)})")
    parser.add_argument("--torch-threads", type=int, metavar="N",
                        help="torch.set_num_threads(N) before timing (default: PyTorch's own choice)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--markdown", type=Path, help="also write the tables to this file")
    args = parser.parse_args()
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)

    header = [*versions(),
              f"float32, batch {args.batch}, {args.classes} classes (categorical), {args.features} features "
              f"(binary/poisson/kl), {args.repeats} interleaved rounds, seed {args.seed}; "
              f"agreement rtol {RTOL:g} atol {ATOL:g} against probloss numpy"]
    for line in header:
        print(line)
    print(flush=True)
    out = ["# probloss speed against its peers", "", *(f"- {line}" for line in header), "",
           "speed-up = contender min / probloss(numpy, validate=off) min: > 1 means probloss on NumPy is faster.", ""]
    summary = ["## Summary", "",
               "| case | probloss numpy min ms | fastest peer | peer min ms | speed-up vs fastest peer |",
               "|---|---:|---|---:|---:|"]
    for case in (c for c in CASES if c.loss in args.losses):
        print(f"{case.name}:", flush=True)
        y_true, y_pred = make_data(case, args.batch, args.classes, args.features, args.seed)
        contenders = [*probloss_contenders(case, y_true, y_pred), torch_contender(case, y_true, y_pred),
                      optax_contender(case, y_true, y_pred), keras_contender(case, y_true, y_pred)]
        try:
            reference = np.asarray(contenders[0].run(), dtype=np.float64)  # type: ignore[misc]
        except Exception as exc:  # no reference: the case cannot be compared, and says so
            print(f"  WARNING {BASELINE} failed ({type(exc).__name__}: {exc}); case not timed\n", flush=True)
            out += [f"### {case.name}", "", f"Not timed: {BASELINE} failed ({type(exc).__name__}: {exc}).", ""]
            summary.append(f"| {case.name} | failed | – | – | – |")
            continue
        check(contenders, reference)
        time_rounds(contenders, args.repeats)
        table = case_table(case, contenders)
        print("\n".join(table), flush=True)
        out += table
        summary.append(summary_row(case, contenders))
    print("\n".join(summary))
    out += [*summary, "", "Rerun: `.venv/bin/python " + " ".join(["benchmarks/speed.py", *sys.argv[1:]]) + "`", ""]
    if args.markdown:
        args.markdown.write_text("\n".join(out))
        print(f"\nwrote {args.markdown}")


if __name__ == "__main__":
    main()
