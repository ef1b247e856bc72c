"""Speed of probloss against PyTorch, optax and Keras 3 on the same float32 data, as ratios.

Three suites, each a list of cases timed in the same way:

- ``numpy`` (forward, per-sample, speed.py's historical suite and its default shapes
  4096 x 1000 categorical, 4096 x 256 binary/Poisson/KL): probloss's functions on NumPy
  arrays (``validate="off"`` and the default validation), on PyTorch CPU tensors and under
  ``jax.jit``, against PyTorch's functional losses, optax's losses (jitted) and Keras 3's
  ``keras.losses`` functions on the JAX backend (jitted). Ratio: contender min / probloss
  NumPy (``validate="off"``) min.
- ``torch`` (PyTorch CPU tensors, mean reduction): probloss's ``Loss`` classes (default
  validation, and ``validate="off"``) against torch's own function with
  ``reduction="mean"`` (or ``"batchmean"``), forward alone (inputs without gradient) and
  forward + ``.backward()``. The focal losses, which torch lacks, are timed against
  probloss's own cross-entropy of the same shape. The peak extra memory of forward +
  backward is measured in a fresh process per case (see ``_memory.py``).
- ``jax`` (JAX CPU arrays): ``jax.jit(jax.value_and_grad(lambda p, t: loss(t, p)))`` for
  probloss's ``Loss`` classes, optax (the mean of its per-sample losses) and
  ``keras.losses``'s classes on the JAX backend.

The torch and JAX suites use issue 9's shapes: sparse CE from logits 2048 x 32000,
categorical CE from logits 4096 x 1000, binary CE from logits 10,000 x 1000 (10M), and
speed.py's default shapes for the other cases.

Every contender's results (values, and gradients with respect to ``y_pred`` where the
case has them) are checked against probloss's on the same inputs before timing (rtol 1e-4;
atol 1e-6 for values, 1e-5 x the largest gradient for gradients): one that disagrees is
reported with a warning and not timed; a library with no equivalent is skipped with its
reason. Semantic care: Keras clips probabilities to [ε, 1 - ε] and PyTorch and optax do
not, so the data keep every probability inside that range (uniform in [1e-3, 1 - 1e-3];
softmax of unit-scale logits) where the two definitions agree. Poisson: Keras's
``mean(p - y log(p + ε))`` is ``F.poisson_nll_loss(p, y, log_input=False, full=False,
eps=ε)`` exactly, ε inside the log in both (torch's default eps is 1e-8, so ε = 1e-7 is
passed). KL: Keras sums ``y log(y / p)`` over the class axis and averages the sums over the
batch, which is ``F.kl_div(log p, y, reduction="batchmean")`` and ``optax.kl_divergence``'s
per-sample sums averaged; both inputs lie in (ε, 1), so Keras's clipping does not act.
Probability inputs of the categorical losses go to torch and optax as ``log p``
(``cross_entropy(log p)``: Keras renormalises ``p`` by its sum, and so does the softmax of
``log p``, in the value and in the gradient).

Timing: each contender is warmed up (compiled), then the contenders of a case are
interleaved in rounds, each round calling every contender once in a freshly shuffled
(seeded) order, so that machine noise, and the thread pools a previous call left spinning,
hit them alike. Noise only adds time, so the minimum over the rounds
is the primary estimate; the median is shown beside it. ``--repeats`` rounds per case,
fewer when a case would take more than ``--budget`` seconds (never fewer than 3). The
ratios are ``contender min / probloss min``: above 1 means probloss is faster.

Threads: PyTorch and XLA use their own thread pools (``torch.get_num_threads()`` is
reported); ``--threads N`` sets PyTorch's and probloss's (``probloss.set_num_threads``
where it exists).

Run: ``.venv/bin/python benchmarks/speed.py [--suite numpy torch jax] [--repeats R]
[--budget S] [--json PATH] [--markdown PATH]`` (``--help`` for the rest);
``benchmarks/run_all.py`` runs every suite and checks the targets of issues 9 and 10.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
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
from _harness import (
    COMPARATOR,
    PROBLOSS,
    Contender,
    case_record,
    check,
    machine,
    machine_lines,
    ratio_table,
    set_threads,
    time_rounds,
    write_reports,
)
from _memory import mib, peak_rss_extra, rss_supported, run_probe, warm_up

import probloss

SUITES = ("numpy", "torch", "jax")
LOSSES = ("binary_crossentropy", "categorical_crossentropy", "sparse_categorical_crossentropy",
          "binary_focal_crossentropy", "categorical_focal_crossentropy", "poisson", "kl_divergence")
CLASSES = {"binary_crossentropy": "BinaryCrossentropy", "categorical_crossentropy": "CategoricalCrossentropy",
           "sparse_categorical_crossentropy": "SparseCategoricalCrossentropy",
           "binary_focal_crossentropy": "BinaryFocalCrossentropy",
           "categorical_focal_crossentropy": "CategoricalFocalCrossentropy", "poisson": "Poisson",
           "kl_divergence": "KLDivergence"}
SMALL = (128, 64)  # --small: every case at most this shape (a smoke test of the script)


@dataclass(frozen=True)
class Case:
    """One loss configuration to time.

    Attributes:
        id: a short stable identifier (``scce_logits``...), used by the target checks.
        loss: the function's name, the same in probloss and ``keras.losses``.
        kwargs: keyword arguments of the call besides the data (e.g. ``from_logits``).
        data: which inputs to draw: "binary", "categorical", "sparse", "poisson" or "kl".
        shape: the shape of ``y_pred`` in the torch and JAX suites (batch, classes or features).
        headline: one of issue 9's three headline cases.
        reference_ce: for a focal loss, the id of probloss's cross-entropy of the same shape,
            the yardstick of the torch suite.
    """

    id: str
    loss: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    data: str = "binary"
    shape: tuple[int, int] = (4096, 256)
    headline: bool = False
    reference_ce: str = ""

    @property
    def name(self) -> str:
        """The case's label, e.g. ``binary_crossentropy(from_logits=True)``."""
        args = ", ".join(f"{k}={v}" for k, v in self.kwargs.items())
        return f"{self.loss}({args})"

    @property
    def class_name(self) -> str:
        """The ``Loss`` class of probloss and ``keras.losses`` computing the case."""
        return CLASSES[self.loss]

    @property
    def logits(self) -> bool:
        """Whether ``y_pred`` holds logits."""
        return bool(self.kwargs.get("from_logits", False))


CASES = (
    Case("bce_logits", "binary_crossentropy", {"from_logits": True}, "binary", (10_000, 1000), headline=True),
    Case("bce_probs", "binary_crossentropy", {"from_logits": False}, "binary", (4096, 256)),
    Case("cce_logits", "categorical_crossentropy", {"from_logits": True}, "categorical", (4096, 1000), headline=True),
    Case("cce_probs", "categorical_crossentropy", {"from_logits": False}, "categorical", (4096, 1000)),
    Case("scce_logits", "sparse_categorical_crossentropy", {"from_logits": True}, "sparse", (2048, 32000),
         headline=True),
    Case("scce_probs", "sparse_categorical_crossentropy", {"from_logits": False}, "sparse", (4096, 1000)),
    Case("binary_focal", "binary_focal_crossentropy", {"from_logits": True}, "binary", (4096, 256),
         reference_ce="bce_logits"),
    Case("categorical_focal", "categorical_focal_crossentropy", {"from_logits": True}, "categorical", (4096, 1000),
         reference_ce="cce_logits"),
    Case("poisson", "poisson", {}, "poisson", (4096, 256)),
    Case("kl", "kl_divergence", {}, "kl", (4096, 256)),
)
CASE_IDS = tuple(c.id for c in CASES)
BY_ID = {c.id: c for c in CASES}


def make_data(case: Case, batch: int, width: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``(y_true, y_pred)`` for a case: float32, labels int64 for the sparse case.

    Args:
        case: the loss case.
        batch: the number of samples.
        width: the class count (categorical) or the last-axis size (binary, Poisson, KL).
        seed: the random seed.

    Returns:
        The labels and the predictions (logits or probabilities as the case needs).
    """
    rng = np.random.default_rng(seed)
    shape = (batch, width)
    if case.data == "binary":
        y_true = (rng.random(shape, dtype=np.float32) < 0.5).astype(np.float32)
        if case.logits:
            return y_true, (2.0 * rng.standard_normal(shape, dtype=np.float32)).astype(np.float32)
        return y_true, rng.uniform(1e-3, 1 - 1e-3, shape).astype(np.float32)
    if case.data in ("categorical", "sparse"):
        # Unit-scale logits keep every softmax probability far above Keras's ε = 1e-7 (about 3e-6 at
        # 1000 classes), so Keras's clipping to [ε, 1-ε], which PyTorch and optax do not do, never acts.
        logits = rng.standard_normal(shape, dtype=np.float32)
        y_pred = logits if case.logits else _softmax(logits)
        labels = rng.integers(0, width, batch, dtype=np.int64)
        if case.data == "sparse":
            return labels, y_pred
        onehot = np.zeros(shape, dtype=np.float32)
        onehot[np.arange(batch), labels] = 1.0
        return onehot, y_pred
    if case.data == "poisson":
        y_true = rng.poisson(2.0, shape).astype(np.float32)
        return y_true, rng.uniform(0.1, 5.0, shape).astype(np.float32)
    if case.data == "kl":
        return (_softmax(rng.standard_normal(shape, dtype=np.float32)),
                _softmax(rng.standard_normal(shape, dtype=np.float32)))
    raise ValueError(f"unknown data kind {case.data!r}")


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(-1, keepdims=True))
    return (e / e.sum(-1, keepdims=True)).astype(np.float32)


def _jax_labels(y_true: np.ndarray) -> np.ndarray:
    """Integer labels as int32: JAX without x64 would truncate int64 with a warning."""
    return y_true.astype(np.int32) if y_true.dtype.kind in "iu" else y_true


def _jitted(fn: Callable[[Any, Any], Any], y_true: np.ndarray, y_pred: np.ndarray) -> Callable[[], Any]:
    """Jit ``fn`` and return a call on device-resident JAX arrays that blocks until done."""
    compiled = jax.jit(fn)
    t, p = jax.device_put(_jax_labels(y_true)), jax.device_put(y_pred)
    return lambda: compiled(t, p).block_until_ready()


# ======================================================================= numpy suite


def numpy_contenders(case: Case, y_true: np.ndarray, y_pred: np.ndarray) -> list[Contender]:
    """Every contender of the per-sample forward suite (probloss first: the reference)."""
    fn = getattr(probloss, case.loss)
    kw = case.kwargs
    tt, tp = torch.from_numpy(y_true), torch.from_numpy(y_pred)
    return [
        Contender("probloss_off", "probloss numpy (validate=off)",
                  lambda: fn(y_true, y_pred, **kw, validate="off"), role=PROBLOSS),
        Contender("probloss", "probloss numpy (validate default)", lambda: fn(y_true, y_pred, **kw), role=PROBLOSS),
        Contender("probloss_torch", "probloss torch (validate=off)", lambda: fn(tt, tp, **kw, validate="off"),
                  role=PROBLOSS),
        Contender("probloss_jax", "probloss jax.jit (validate=off)",
                  _jitted(lambda t, p: fn(t, p, **kw, validate="off"), y_true, y_pred), role=PROBLOSS),
        torch_per_sample(case, tt, tp),
        optax_per_sample(case, y_true, y_pred),
        Contender("keras", f"keras.losses.{case.loss} (jax.jit)",
                  _jitted(lambda t, p: getattr(keras.losses, case.loss)(t, p, **kw), y_true, y_pred)),
    ]


def torch_per_sample(case: Case, t: torch.Tensor, p: torch.Tensor) -> Contender:
    """PyTorch's native functional loss computing the per-sample losses, or a skip."""
    if case.loss == "binary_crossentropy":
        if case.logits:
            return Contender("torch", "torch F.binary_cross_entropy_with_logits",
                             lambda: F.binary_cross_entropy_with_logits(p, t, reduction="none").mean(-1))
        return Contender("torch", "torch F.binary_cross_entropy",
                         lambda: F.binary_cross_entropy(p, t, reduction="none").mean(-1))
    if case.loss in ("categorical_crossentropy", "sparse_categorical_crossentropy"):
        if case.logits:
            return Contender("torch", "torch F.cross_entropy", lambda: F.cross_entropy(p, t, reduction="none"))
        return Contender("torch", "torch F.cross_entropy(log p)",
                         lambda: F.cross_entropy(torch.log(p), t, reduction="none"))
    if case.loss == "poisson":
        eps = probloss.epsilon()
        return Contender("torch", "torch F.poisson_nll_loss(log_input=False)", lambda: F.poisson_nll_loss(
            p, t, log_input=False, full=False, eps=eps, reduction="none").mean(-1))
    if case.loss == "kl_divergence":
        return Contender("torch", "torch F.kl_div(log q, p)",
                         lambda: F.kl_div(torch.log(p), t, reduction="none").sum(-1))
    return Contender("torch", "torch", skip="no native focal loss in torch (torchvision.ops has a binary one; "
                     "not a torch function)")


def _optax_per_sample(case: Case) -> tuple[str, Callable[[Any, Any], Any] | None, str]:
    """optax's per-sample loss of a case as ``(label, fn(t, p), skip reason)``."""
    integer_ce = optax.softmax_cross_entropy_with_integer_labels
    if case.loss == "binary_crossentropy":
        if not case.logits:
            return "optax", None, "optax's binary cross-entropy takes logits only"
        return "optax sigmoid_binary_cross_entropy", lambda t, x: optax.sigmoid_binary_cross_entropy(x, t).mean(-1), ""
    if case.loss == "categorical_crossentropy":
        if case.logits:
            return "optax softmax_cross_entropy", lambda t, z: optax.softmax_cross_entropy(z, t), ""
        return "optax softmax_cross_entropy(log p)", lambda t, p: optax.softmax_cross_entropy(jnp.log(p), t), ""
    if case.loss == "sparse_categorical_crossentropy":
        if case.logits:
            return "optax softmax_cross_entropy_with_integer_labels", lambda t, z: integer_ce(z, t), ""
        return "optax softmax_cross_entropy_with_integer_labels(log p)", lambda t, p: integer_ce(jnp.log(p), t), ""
    if case.loss == "binary_focal_crossentropy":
        # alpha=None: no class balancing, as apply_class_balancing=False.
        return ("optax sigmoid_focal_loss(alpha=None)",
                lambda t, x: optax.sigmoid_focal_loss(x, t, alpha=None, gamma=2.0).mean(-1), "")
    if case.loss == "kl_divergence":
        # optax takes (log q, p): sum(p · (log p - log q)).
        return "optax kl_divergence(log q, p)", lambda t, p: optax.kl_divergence(jnp.log(p), t), ""
    if case.loss == "poisson":
        return "optax", None, "optax has no Poisson loss"
    return "optax", None, "optax has no categorical focal loss"


def optax_per_sample(case: Case, y_true: np.ndarray, y_pred: np.ndarray) -> Contender:
    """optax's loss (jitted) computing the per-sample losses, or a skip."""
    label, fn, skip = _optax_per_sample(case)
    if fn is None:
        return Contender("optax", label, skip=skip)
    return Contender("optax", f"{label} (jit)", _jitted(fn, y_true, y_pred))


def numpy_suite(args: argparse.Namespace, log: Callable[[str], None]) -> list[dict[str, Any]]:
    """Time the per-sample forward suite on NumPy-sized default shapes; one record per case."""
    records = []
    cases = [c for c in CASES if c.loss in args.losses and (not args.cases or c.id in args.cases)]
    for case in cases:
        width = args.classes if case.data in ("categorical", "sparse") else args.features
        batch = args.batch
        if args.small:
            batch, width = min(batch, SMALL[0]), min(width, SMALL[1])
        log(f"numpy {case.name} {batch} x {width}:")
        y_true, y_pred = make_data(case, batch, width, args.seed)
        contenders = numpy_contenders(case, y_true, y_pred)
        record = run_case("numpy", case, contenders, args, log, shape=f"{batch} x {width}",
                          mode="forward, per sample")
        records.append(record)
    return records


def run_case(suite: str, case: Case, contenders: list[Contender], args: argparse.Namespace,
             log: Callable[[str], None], case_id: str | None = None, **extra: Any) -> dict[str, Any]:
    """Check the contenders against the first (probloss), time them, and return the case's record."""
    case_id = case_id or case.id
    try:
        reference = contenders[0].outputs()
    except Exception as exc:  # no reference: the case cannot be compared, and says so
        log(f"  WARNING {contenders[0].name} failed ({type(exc).__name__}: {exc}); case not timed")
        for c in contenders:
            c.run, c.skip = None, f"not timed: {contenders[0].name} failed ({type(exc).__name__}: {exc})"
        return case_record(suite, case_id, case.name, contenders, 0, **extra)
    check(contenders[1:], reference, log)
    try:
        rounds = time_rounds(contenders, args.repeats, args.budget, args.min_rounds)
    except Exception as exc:  # a contender failing after its check: the case says so, the suite goes on
        log(f"  WARNING timing failed ({type(exc).__name__}: {exc}); case not timed")
        for c in contenders:
            c.times, c.skip = [], f"not timed: timing failed ({type(exc).__name__}: {exc})"
        rounds = 0
    record = case_record(suite, case_id, case.name, contenders, rounds, **extra)
    for line in ratio_table(record, contenders[0].key, f"{suite}: {case.name} {extra.get('mode', '')}"):
        log(line)
    return record


# ======================================================================= torch suite


def torch_mean_peer(case: Case) -> tuple[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None, str]:
    """torch's own function with mean reduction, as ``(label, fn(t, p), skip reason)``."""
    if case.loss == "binary_crossentropy":
        if case.logits:
            return ("F.binary_cross_entropy_with_logits(reduction='mean')",
                    lambda t, p: F.binary_cross_entropy_with_logits(p, t), "")
        return "F.binary_cross_entropy(reduction='mean')", lambda t, p: F.binary_cross_entropy(p, t), ""
    if case.loss in ("categorical_crossentropy", "sparse_categorical_crossentropy"):
        if case.logits:
            return "F.cross_entropy(reduction='mean')", lambda t, p: F.cross_entropy(p, t), ""
        return "F.cross_entropy(log p, reduction='mean')", lambda t, p: F.cross_entropy(torch.log(p), t), ""
    if case.loss == "poisson":
        eps = probloss.epsilon()
        return ("F.poisson_nll_loss(log_input=False, full=False, eps=ε, reduction='mean')",
                lambda t, p: F.poisson_nll_loss(p, t, log_input=False, full=False, eps=eps), "")
    if case.loss == "kl_divergence":
        return ("F.kl_div(log p, y, reduction='batchmean')",
                lambda t, p: F.kl_div(torch.log(p), t, reduction="batchmean"), "")
    return "torch", None, "no focal loss in torch: timed against probloss's own cross-entropy of the same shape"


def _torch_call(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], t: torch.Tensor, p: torch.Tensor,
                backward: bool) -> tuple[Callable[[], Any], Callable[[], list[Any]]]:
    """The timed call (forward, and backward when asked) and the call giving the results to check."""
    if not backward:
        return (lambda: fn(t, p)), (lambda: [fn(t, p)])

    def run() -> torch.Tensor:
        p.grad = None
        value = fn(t, p)
        value.backward()
        return value

    def result() -> list[Any]:
        value = run()
        return [value, p.grad.clone()]  # type: ignore[union-attr]

    return run, result


def torch_contenders(case: Case, y_true: np.ndarray, y_pred: np.ndarray, backward: bool) -> list[Contender]:
    """probloss's Loss class (default validation first: the reference; validate="off" too, forward only),
    torch's own function, and for the focal losses probloss's cross-entropy on the same data."""
    t = torch.from_numpy(y_true)
    p = torch.from_numpy(y_pred).requires_grad_(backward)
    cls = getattr(probloss, case.class_name)
    out = []
    variants = [("probloss", "probloss (validate default)", cls(**case.kwargs))]
    if not backward:  # validation's cost is the same with and without backward: timed once
        variants.append(("probloss_off", "probloss (validate=off)", cls(**case.kwargs, validate="off")))
    for key, label, loss in variants:
        run, result = _torch_call(loss, t, p, backward)
        out.append(Contender(key, f"{label} {case.class_name}", run, result, role=PROBLOSS))
    label, fn, skip = torch_mean_peer(case)
    if fn is None:
        out.append(Contender("torch", label, skip=skip))
    else:
        run, result = _torch_call(fn, t, p, backward)
        out.append(Contender("torch", f"torch {label}", run, result))
    if case.reference_ce:
        ce = BY_ID[case.reference_ce]
        run, result = _torch_call(getattr(probloss, ce.class_name)(**ce.kwargs), t, p, backward)
        out.append(Contender("probloss_ce", f"probloss {ce.class_name}({_kw(ce)}) same data (validate default)",
                             run, result, role=COMPARATOR))
    return out


def _kw(case: Case) -> str:
    return ", ".join(f"{k}={v}" for k, v in case.kwargs.items())


def case_shape(case: Case, args: argparse.Namespace) -> tuple[int, int]:
    """The case's shape in the torch and JAX suites (``--small`` caps it)."""
    batch, width = case.shape
    if args.small:
        return min(batch, SMALL[0]), min(width, SMALL[1])
    return batch, width


def torch_suite(args: argparse.Namespace, log: Callable[[str], None]) -> list[dict[str, Any]]:
    """Forward and forward+backward on torch tensors, mean reduction; memory probes per case."""
    records = []
    for case in (c for c in CASES if c.id in args.cases):
        batch, width = case_shape(case, args)
        y_true, y_pred = make_data(case, batch, width, args.seed)
        for backward in (False, True):
            mode = "forward+backward" if backward else "forward"
            log(f"torch {case.name} {batch} x {width} {mode}:")
            contenders = torch_contenders(case, y_true, y_pred, backward)
            extra: dict[str, Any] = {"shape": f"{batch} x {width}", "mode": mode, "headline": case.headline}
            if backward and args.memory:
                extra["peak_extra_bytes"] = probe_memory("torch", case.id, args, log)
            records.append(run_case("torch", case, contenders, args, log,
                                    case_id=f"{case.id}/{'fwd_bwd' if backward else 'fwd'}", **extra))
            del contenders
    return records


def probe_memory(suite: str, case_id: str, args: argparse.Namespace, log: Callable[[str], None]) -> dict[str, Any]:
    """Peak extra memory of each contender's forward+backward, measured in a fresh process."""
    probe_args = ["--probe", f"{suite}:{case_id}", "--seed", str(args.seed)]
    if args.small:
        probe_args.append("--small")
    if args.threads:
        probe_args += ["--threads", str(args.threads)]
    result = run_probe(Path(__file__), probe_args)
    if "error" in result:
        log(f"  WARNING memory probe failed: {result['error']}")
    else:
        log("  peak extra memory of forward+backward (MiB): "
            + ", ".join(f"{k} {mib(v)}" for k, v in result.items() if isinstance(v, int) and k != "input_bytes"))
    return result


def memory_probe_child(spec: str, args: argparse.Namespace) -> None:
    """In a fresh process: print the peak extra resident memory of each contender of a case as JSON."""
    suite, case_id = spec.split(":")
    if suite != "torch":
        raise SystemExit(f"no memory probe for suite {suite!r}")
    problem = rss_supported()
    if problem:
        print(json.dumps({"error": problem}))
        return
    case = BY_ID[case_id]
    batch, width = case_shape(case, args)
    y_true, y_pred = make_data(case, batch, width, args.seed)
    out: dict[str, Any] = {"method": "VmHWM - VmRSS around one forward+backward, MALLOC_MMAP_THRESHOLD_=65536, "
                           "min of 2 after a warm-up; includes the gradient",
                           "input_bytes": int(y_pred.nbytes)}
    for c in torch_contenders(case, y_true, y_pred, backward=True):
        if c.run is None:
            continue
        p = _torch_pred(c)

        def prepare(p: torch.Tensor | None = p) -> None:
            if p is not None:
                p.grad = None

        seconds = warm_up(c.run, prepare)
        out[c.key] = peak_rss_extra(c.run, prepare, tries=1 if seconds > 5 else 2)
    print(json.dumps(out))


def _torch_pred(c: Contender) -> torch.Tensor | None:
    """The leaf tensor whose gradient a torch contender computes (found in its closure)."""
    for cell in getattr(c.run, "__closure__", None) or ():
        value = cell.cell_contents
        if isinstance(value, torch.Tensor) and value.requires_grad:
            return value
    return None


# ======================================================================= jax suite


def jax_contenders(case: Case, y_true: np.ndarray, y_pred: np.ndarray) -> list[Contender]:
    """``jit(value_and_grad)`` of probloss (first: the reference), optax's mean and Keras's Loss class."""
    t, p = jax.device_put(_jax_labels(y_true)), jax.device_put(y_pred)

    def contender(key: str, name: str, loss: Callable[[Any, Any], Any], role: str = "peer") -> Contender:
        step = jax.jit(jax.value_and_grad(lambda p, t: loss(t, p)))
        return Contender(key, name, lambda: jax.block_until_ready(step(p, t)), lambda: list(step(p, t)), role=role)

    out = [contender("probloss", f"probloss {case.class_name} (jit value_and_grad)",
                     getattr(probloss, case.class_name)(**case.kwargs), role=PROBLOSS)]
    label, fn, skip = _optax_per_sample(case)
    if fn is None:
        out.append(Contender("optax", label, skip=skip))
    else:
        out.append(contender("optax", f"{label} mean (jit value_and_grad)", lambda t, p, fn=fn: fn(t, p).mean()))
    out.append(contender("keras", f"keras.losses.{case.class_name} (jit value_and_grad)",
                         getattr(keras.losses, case.class_name)(**case.kwargs)))
    return out


def jax_suite(args: argparse.Namespace, log: Callable[[str], None]) -> list[dict[str, Any]]:
    """``jit(value_and_grad)`` of every case; one record per case."""
    records = []
    for case in (c for c in CASES if c.id in args.cases):
        batch, width = case_shape(case, args)
        log(f"jax {case.name} {batch} x {width} jit(value_and_grad):")
        y_true, y_pred = make_data(case, batch, width, args.seed)
        records.append(run_case("jax", case, jax_contenders(case, y_true, y_pred), args, log,
                                shape=f"{batch} x {width}", mode="jit(value_and_grad)", headline=case.headline))
    return records


# ======================================================================= reports


def summary(records: list[dict[str, Any]]) -> list[str]:
    """One Markdown summary table per suite: probloss's min and each contender's ratio to it."""
    lines: list[str] = []
    for suite in SUITES:
        rows = [r for r in records if r["suite"] == suite]
        if not rows:
            continue
        base = "probloss_off" if suite == "numpy" else "probloss"
        keys = [k for k in ("probloss_off", "probloss", "probloss_torch", "probloss_jax", "torch", "optax", "keras",
                            "probloss_ce") if k != base and any(k in {c["key"] for c in r["contenders"]} for r in rows)]
        lines += [f"## Summary: {suite} suite (contender min / probloss min; > 1: probloss faster)", "",
                  "| case | shape | mode | probloss min ms | " + " | ".join(keys) + " | peak extra MiB |",
                  "|---|---|---|---:|" + "---:|" * len(keys) + "---|"]
        for r in rows:
            by_key = {c["key"]: c for c in r["contenders"]}
            b = by_key.get(base, {}).get("min_ms")
            cells = []
            for k in keys:
                c = by_key.get(k)
                cells.append("–" if c is None or "min_ms" not in c or not b else f"{c['min_ms'] / b:.2f}")
            mem = r.get("peak_extra_bytes") or {}
            mem_cell = ", ".join(f"{k} {mib(v)}" for k, v in mem.items() if isinstance(v, int) and k != "input_bytes")
            if "error" in mem:
                mem_cell = f"probe failed: {mem['error']}"
            lines.append(f"| {r['case']} | {r.get('shape', '')} | {r.get('mode', '')} | "
                         + (f"{b:.3f}" if b else "failed") + " | " + " | ".join(cells) + f" | {mem_cell} |")
        lines.append("")
    return lines


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", nargs="+", choices=SUITES, default=list(SUITES), help="suites to run (default: all)")
    parser.add_argument("--batch", type=int, default=4096, help="numpy suite: samples per call")
    parser.add_argument("--classes", type=int, default=1000, help="numpy suite: classes of the categorical losses")
    parser.add_argument("--features", type=int, default=256, help="numpy suite: last axis of binary/poisson/kl")
    parser.add_argument("--losses", nargs="+", choices=LOSSES, default=list(LOSSES), metavar="NAME",
                        help=f"numpy suite: losses to time (default: all of {', '.join(LOSSES)})")
    parser.add_argument("--cases", nargs="+", choices=CASE_IDS, default=None, metavar="ID",
                        help=f"cases to time (default: all of {', '.join(CASE_IDS)})")
    parser.add_argument("--repeats", type=int, default=30, help="timed rounds per case (default 30)")
    parser.add_argument("--budget", type=float, default=10.0,
                        help="seconds of timed rounds per case before --repeats is cut down (min 3 rounds; default 10)")
    parser.add_argument("--min-rounds", type=int, default=3, help="timed rounds per case at least (default 3)")
    parser.add_argument("--threads", "--torch-threads", type=int, metavar="N", dest="threads",
                        help="torch.set_num_threads(N) and probloss.set_num_threads(N) where it exists "
                             "(default: the libraries' own choice)")
    parser.add_argument("--no-memory", dest="memory", action="store_false",
                        help="torch suite: skip the peak-memory probes (one fresh process per case)")
    parser.add_argument("--small", action="store_true", help="every shape capped at 128 x 64: a smoke test")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--markdown", type=Path, help="write the tables to this file")
    parser.add_argument("--json", type=Path, help="write every measurement and the machine description here")
    parser.add_argument("--probe", help=argparse.SUPPRESS)  # internal: a memory probe in a fresh process
    args = parser.parse_args(argv)
    if args.cases is None:
        args.cases = list(CASE_IDS)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    set_threads(args.threads)
    if args.probe:
        memory_probe_child(args.probe, args)
        return

    def log(line: str) -> None:
        print(line, flush=True)

    info = machine()
    settings = {"repeats": args.repeats, "budget_s": args.budget, "min_rounds": args.min_rounds, "seed": args.seed,
                "small": args.small,
                "suites": args.suite, "numpy_suite_shapes": f"batch {args.batch}, {args.classes} classes, "
                f"{args.features} features", "dtype": "float32"}
    for line in machine_lines(info):
        log(line)
    records: list[dict[str, Any]] = []
    suites = {"numpy": numpy_suite, "torch": torch_suite, "jax": jax_suite}
    for name in args.suite:
        records += suites[name](args, log)
    table = summary(records)
    log("\n".join(table))
    markdown = ["# probloss speed against its peers", "", *machine_lines(info),
                f"- settings: {settings}", "",
                "Ratios: contender min / probloss min (numpy suite: probloss NumPy with validate='off'; torch and "
                "JAX suites: probloss's Loss class with the default validation). Above 1: probloss is faster.", "",
                *table]
    for r in records:
        markdown += ratio_table(r, "probloss_off" if r["suite"] == "numpy" else "probloss",
                                f"{r['suite']}: {r['case']} {r.get('mode', '')}")
    write_reports({"script": "speed.py", "machine": info, "settings": settings, "records": records},
                  args.json, markdown, args.markdown)


if __name__ == "__main__":
    sys.exit(main())
