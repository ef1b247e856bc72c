"""Shared machinery of the speed scripts: contenders, interleaved timing, agreement checks, reports.

Every script in ``benchmarks/`` that times probloss against its peers builds a list of
:class:`Contender` objects for one case, checks their results against probloss's
(:func:`check`), times them in interleaved rounds (:func:`time_rounds`) and records the
case with :func:`case_record`. :func:`machine` describes the machine, the libraries and
their thread settings for the JSON and Markdown reports.

Timing rule: noise on a shared machine only ever adds time, so a contender's minimum over
the rounds is the primary estimate, and ratios are always taken between contenders of the
same case, measured in the same rounds.
"""

from __future__ import annotations

import datetime
import gc
import importlib.metadata
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RTOL = 1e-4  # agreement of a peer's values and gradients with probloss's
ATOL = 1e-6  # absolute floor of the value agreement
GRAD_ATOL = 1e-5  # absolute floor of the gradient agreement, as a fraction of the largest gradient

# The roles a contender plays in a case.
PROBLOSS = "probloss"  # probloss itself: the ratios' denominator
PEER = "peer"  # another library computing the same quantity
COMPARATOR = "comparator"  # a yardstick that is not the same quantity (NumPy's sum, probloss's own CE)


@dataclass
class Contender:
    """A way to compute a case, or the reason it is left out.

    Attributes:
        key: a short stable identifier used by the target checks (``probloss``, ``torch``...).
        name: the row label.
        run: a call with no arguments computing the case to completion (JAX results are
            blocked on, gradients are computed); None when skipped.
        result: a call returning the NumPy arrays to check against probloss (value, and
            gradient where the case has one); defaults to ``run``'s result as NumPy.
        role: ``probloss``, ``peer`` or ``comparator`` (not checked: a different quantity).
        skip: why the contender is not timed, or "" when it is.
        times: the seconds of each timed call.
        max_rounds: time this contender in at most this many rounds (None: every round). For a
            slow reference (such as a generic kernel 80x slower than the rest) that would
            otherwise use up the case's time budget and leave the others 3 rounds each.
    """

    key: str
    name: str
    run: Callable[[], Any] | None = None
    result: Callable[[], Sequence[np.ndarray]] | None = None
    role: str = PEER
    skip: str = ""
    times: list[float] = field(default_factory=list)
    first_s: float | None = None  # seconds of the checking call, which is also the first warm-up
    max_rounds: int | None = None

    @property
    def peer(self) -> bool:
        """Whether the contender is another library's computation of the same quantity."""
        return self.role == PEER

    def outputs(self) -> list[np.ndarray]:
        """The contender's results as float64 NumPy arrays, for the agreement check."""
        start = time.perf_counter()
        if self.result is not None:
            got = self.result()
        else:
            assert self.run is not None
            got = self.run()
        self.first_s = time.perf_counter() - start
        if not isinstance(got, (tuple, list)):
            got = [got]
        return [to_numpy(g) for g in got]


def to_numpy(x: Any) -> np.ndarray:
    """A float64 NumPy copy of a NumPy, PyTorch or JAX array."""
    if hasattr(x, "detach"):  # torch
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def disagreement(got: np.ndarray, ref: np.ndarray, what: str, *, gradient: bool = False) -> str:
    """Describe how ``got`` differs from ``ref`` beyond the tolerances, or return ""."""
    if got.shape != ref.shape:
        return f"{what}: shape {got.shape}, not {ref.shape}"
    atol = GRAD_ATOL * float(np.max(np.abs(ref), initial=0.0)) if gradient else ATOL
    ok = np.isclose(got, ref, rtol=RTOL, atol=atol)
    if ok.all():
        return ""
    err = np.abs(got - ref)
    rel = err / np.maximum(np.abs(ref), max(atol, np.finfo(np.float64).tiny))
    return (f"{what}: max abs err {err.max():.3g}, max rel err {rel.max():.3g} "
            f"({np.count_nonzero(~ok)} of {ok.size} elements beyond rtol {RTOL:g} atol {atol:.3g})")


def check(contenders: list[Contender], reference: Sequence[np.ndarray], log: Callable[[str], None] = print) -> None:
    """Run each contender once and drop, with a printed warning, each whose results disagree.

    Args:
        contenders: the case's contenders; comparators run (so that they fail early) but are not compared.
        reference: probloss's results: the value, then the gradient where there is one.
        log: where the warnings go.
    """
    for c in contenders:
        if c.run is None:
            log(f"  skip {c.name}: {c.skip}")
            continue
        try:
            got = c.outputs()
        except Exception as exc:  # a failing contender is reported, never hidden
            c.skip = f"failed: {type(exc).__name__}: {exc}"
            c.run = None
            log(f"  WARNING {c.name} {c.skip}")
            continue
        if c.role == COMPARATOR:
            continue
        if len(got) != len(reference):
            c.skip = f"gave {len(got)} outputs, probloss {len(reference)}"
        else:
            problems = [disagreement(g, r, "value" if i == 0 else "gradient", gradient=i > 0)
                        for i, (g, r) in enumerate(zip(got, reference, strict=True))]
            c.skip = "; ".join(p for p in problems if p)
            if c.skip:
                c.skip = "disagrees with probloss: " + c.skip
        if c.skip:
            c.run = None
            log(f"  WARNING {c.name} {c.skip}; not timed")


def time_rounds(contenders: list[Contender], repeats: int, budget_s: float | None = None,
                min_rounds: int = 3) -> int:
    """Warm up each live contender, then time them interleaved in a shuffled order.

    Every round calls each contender once, in an order shuffled anew each round (seeded:
    the same order every run), so that a contender does not always run after the same
    neighbour. A rotation would not do: it keeps every contender's predecessor, and the
    one right after an XLA call pays for XLA's worker threads, which spin on the cores for
    a while after the call (measured 2026-12-02: probloss with ``validate="off"``, always
    timed right after ``keras`` on JAX, came out 10-20% slower than the same call with the
    default validation, and 2.1x slower on the 10M binary CE of headline.py). The number of rounds is ``repeats``,
    cut down so that the rounds take about ``budget_s`` seconds (estimated from the warm-up
    calls), but never below ``min_rounds``: slow cases stay affordable without dropping the
    interleaving. A contender with ``max_rounds`` takes part in the first ``max_rounds``
    rounds only, outside the budget (which the other contenders' rounds share).
    Warm-up: the checking call (:func:`check`) was the first; one more call follows unless
    the first took over a second, and a second one where a call is cheap.

    Returns:
        The number of rounds timed.
    """
    live = [c for c in contenders if c.run is not None]
    if not live:
        return 0
    round_s = 0.0  # one round of the contenders timed in every round
    for c in live:
        last = c.first_s
        for _ in range(2 if last is None else 1):
            if last is not None and last > 1.0:
                break
            start = time.perf_counter()
            c.run()  # type: ignore[misc]  # compiled, allocated, caches filled
            last = time.perf_counter() - start
        if c.max_rounds is None:
            round_s += last or 0.0
    rounds = repeats
    if budget_s is not None and round_s > 0:
        rounds = max(min_rounds, min(repeats, int(budget_s / round_s)))
    gc.collect()
    shuffler = random.Random(0)
    for index in range(rounds):
        order = [c for c in live if c.max_rounds is None or index < c.max_rounds]
        shuffler.shuffle(order)
        for c in order:
            start = time.perf_counter()
            c.run()  # type: ignore[misc]
            c.times.append(time.perf_counter() - start)
    return rounds


def best(c: Contender) -> float | None:
    """A contender's minimum time in seconds, or None if it was not timed."""
    return min(c.times) if c.times else None


def case_record(suite: str, case_id: str, name: str, contenders: list[Contender], rounds: int,
                **extra: Any) -> dict[str, Any]:
    """The JSON record of one timed case: every contender's min, median and raw times (ms)."""
    rows = []
    for c in contenders:
        row: dict[str, Any] = {"key": c.key, "name": c.name, "role": c.role}
        if c.times:
            row.update(min_ms=min(c.times) * 1e3, median_ms=statistics.median(c.times) * 1e3,
                       times_ms=[round(t * 1e3, 4) for t in c.times])
        else:
            row["skip"] = c.skip or "not timed"
        rows.append(row)
    return {"suite": suite, "id": case_id, "case": name, "rounds": rounds, "contenders": rows, **extra}


def ratio_table(record: dict[str, Any], base_key: str, title: str | None = None) -> list[str]:
    """Markdown table of a case: min and median ms, and ``contender min / base min`` for each contender."""
    rows = {r["key"]: r for r in record["contenders"]}
    base = rows.get(base_key, {}).get("min_ms")
    lines = [f"### {title or record['case']}", ""]
    for key in ("shape", "mode", "note"):
        if record.get(key):
            lines.append(f"- {key}: {record[key]}")
    fewer = [f"{r['key']} {len(r['times_ms'])}" for r in record["contenders"]
             if "times_ms" in r and len(r["times_ms"]) < record["rounds"]]
    lines += [f"- rounds: {record['rounds']}" + (f" (timed in fewer: {', '.join(fewer)})" if fewer else ""), "",
              f"| contender | role | min ms | median ms | contender / {rows.get(base_key, {}).get('name', base_key)} |",
              "|---|---|---:|---:|---:|"]
    for r in record["contenders"]:
        if "min_ms" not in r:
            lines.append(f"| {r['name']} | {r['role']} | – | – | skipped: {r['skip']} |")
            continue
        ratio = f"{r['min_ms'] / base:.2f}" if base else "–"
        lines.append(f"| {r['name']} | {r['role']} | {r['min_ms']:.3f} | {r['median_ms']:.3f} | {ratio} |")
    return [*lines, ""]


# ------------------------------------------------------------------ machine description


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _cpu_flags() -> list[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                return sorted(f for f in flags if f in {"sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw",
                                                        "avx512dq", "avx512vl", "avx512_bf16"})
    except OSError:
        pass
    return []


def _mem_total_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def source_state() -> str:
    """The git commit of the probloss checkout and whether src/ has uncommitted changes (read-only git calls)."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True, check=True).stdout.strip()
        branch = subprocess.run(["git", "rev-parse", "--abbrev-ref", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src"], cwd=ROOT, capture_output=True,
                               text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "commit unknown"
    return f"commit {commit} ({branch})" + (" + uncommitted changes in src/" if dirty else "")


def thread_settings() -> dict[str, Any]:
    """Thread counts of the loaded libraries and the environment variables that set them."""
    out: dict[str, Any] = {}
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        out["torch.get_num_threads()"] = torch.get_num_threads()
        out["torch.get_num_interop_threads()"] = torch.get_num_interop_threads()
    if "probloss" in sys.modules:
        probloss = sys.modules["probloss"]
        getter = getattr(probloss, "get_num_threads", None)
        out["probloss.get_num_threads()"] = getter() if callable(getter) else "n/a (no such function)"
    for var in sorted(os.environ):
        if var.startswith(("OMP_", "MKL_", "OPENBLAS_", "PROBLOSS_", "XLA_", "JAX_", "KERAS_", "MALLOC_")) \
                or var in ("TF_NUM_INTEROP_THREADS", "TF_NUM_INTRAOP_THREADS"):
            out[f"${var}"] = os.environ[var]
    return out


def set_threads(n: int | None) -> None:
    """Set PyTorch's and probloss's intra-op thread counts to ``n`` (probloss's where it has the setting)."""
    if not n:
        return
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)
    setter = getattr(sys.modules.get("probloss"), "set_num_threads", None)
    if callable(setter):
        setter(n)


def machine() -> dict[str, Any]:
    """Describe the machine, the software and the thread settings, for the reports."""
    try:
        affinity: Any = sorted(os.sched_getaffinity(0))
    except AttributeError:
        affinity = "n/a"
    probloss = sys.modules.get("probloss")
    native = None
    if probloss is not None:  # whatever the package says about a compiled extension, if it says anything
        for attr in ("_native", "_ext", "_compiled"):
            if hasattr(probloss, attr):
                native = repr(getattr(probloss, attr))
    return {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "cpu_model": _cpu_model(),
        "cpu_flags": _cpu_flags(),
        "os_cpu_count": os.cpu_count(),
        "affinity": affinity,
        "memory_gib": _mem_total_gib(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {d: _version(d) for d in ("numpy", "torch", "jax", "jaxlib", "optax", "keras", "probloss")},
        "keras_backend": os.environ.get("KERAS_BACKEND"),
        "probloss_source": source_state(),
        "probloss_file": getattr(probloss, "__file__", None),
        "probloss_native": native,
        "threads": thread_settings(),
        "argv": [Path(sys.argv[0]).name, *sys.argv[1:]],
    }


def machine_lines(m: dict[str, Any]) -> list[str]:
    """The machine description as Markdown bullet lines."""
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v)
    threads = ", ".join(f"{k} = {v}" for k, v in m["threads"].items())
    return [
        f"- date: {m['date_utc']}",
        f"- CPU: {m['cpu_model']} ({', '.join(m['cpu_flags'])}), os.cpu_count() = {m['os_cpu_count']}, "
        f"affinity {m['affinity']}, {m['memory_gib']} GiB, load average at start {m['load_average_at_start']}",
        f"- {m['platform']}, Python {m['python']}",
        f"- {versions}; Keras backend {m['keras_backend']}",
        f"- probloss: {m['probloss_source']}, {m['probloss_file']}"
        + (f", native: {m['probloss_native']}" if m["probloss_native"] else ""),
        f"- threads: {threads}",
        f"- command: `{' '.join(m['argv'])}`",
    ]


def write_reports(payload: dict[str, Any], json_path: Path | None, markdown: list[str], md_path: Path | None) -> None:
    """Write the JSON payload and the Markdown report where asked, creating the folders."""
    for path, text in ((json_path, json.dumps(payload, indent=1) + "\n"), (md_path, "\n".join(markdown) + "\n")):
        if path is None:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path}")
