"""Run every speed benchmark, write the results under one folder, and check issues 9 and 10's targets.

One command::

    .venv/bin/python benchmarks/run_all.py --out benchmarks/results/<name>/

runs, each in its own process (a crash in one leaves the others' results):

- ``speed.py --suite numpy``: per-sample forward on NumPy arrays against PyTorch, optax-jit
  and Keras-on-JAX-jit, at speed.py's default shapes (``speed_numpy.{md,json,log}``);
- ``speed.py --suite torch``: PyTorch tensors, forward and forward+backward, mean reduction,
  against torch's own functions, with the peak extra memory (``speed_torch.*``);
- ``speed.py --suite jax``: ``jit(value_and_grad)`` against optax and ``keras.losses``
  (``speed_jax.*``);
- ``headline.py``: issue 10's headline cases and the validation overhead (``headline.*``);
- ``dask_chunks.py``: dask arrays chunk by chunk through the compiled kernels against NumPy on
  the same data (``dask_chunks.*``);

then writes ``targets.md`` and ``targets.json``: every target of issues 9 and 10, the ratio
measured, and whether it is met, and prints the table. Each Markdown and JSON file carries
the machine description (CPU, cores, affinity, library versions, thread settings) and the
date. ``--targets-only`` recomputes the table from a folder's JSON files without timing.

Ratios are ``peer min / probloss min`` (above 1: probloss faster) unless the target says
otherwise. Runtime: ``--repeats`` rounds per case (default 30), cut down to about
``--budget`` seconds of rounds per case (default 10); with the issues' targets met the whole
run takes about 10 minutes on a 2-core machine (more where probloss is slow, as before the
fast paths).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
STEPS: dict[str, list[str]] = {
    "speed_numpy": ["speed.py", "--suite", "numpy"],
    "speed_torch": ["speed.py", "--suite", "torch"],
    "speed_jax": ["speed.py", "--suite", "jax"],
    "headline": ["headline.py"],
    "dask_chunks": ["dask_chunks.py"],
}


@dataclass
class Target:
    """One measured target.

    Attributes:
        issue: "9" or "10".
        what: the target in words.
        value: the measured figure (a ratio, or a fraction for memory and overhead), or None.
        limit: the bound the figure must meet.
        at_least: whether the figure must be >= the limit (else <=).
        detail: the numbers the figure comes from, or why it is missing.
    """

    issue: str
    what: str
    value: float | None
    limit: float
    at_least: bool
    detail: str

    @property
    def status(self) -> str:
        """``met``, ``NOT met`` or ``n/a``."""
        if self.value is None:
            return "n/a"
        ok = self.value >= self.limit if self.at_least else self.value <= self.limit
        return "met" if ok else "NOT met"


def _records(data: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in (data or {}).get("records", [])}


def _min(record: dict[str, Any] | None, key: str) -> float | None:
    for c in (record or {}).get("contenders", []):
        if c["key"] == key:
            return c.get("min_ms")
    return None


def _fastest(record: dict[str, Any] | None, keys: tuple[str, ...] | None = None) -> tuple[str, float] | None:
    """The fastest timed peer of a record (among ``keys`` if given) as (name, min ms)."""
    timed = [(c["name"], c["min_ms"]) for c in (record or {}).get("contenders", [])
             if c["role"] == "peer" and "min_ms" in c and (keys is None or c["key"] in keys)]
    return min(timed, key=lambda x: x[1]) if timed else None


def speedup(issue: str, what: str, record: dict[str, Any] | None, base: str, limit: float,
            peers: tuple[str, ...] | None = None) -> Target:
    """Target: fastest peer's min / probloss's min >= limit."""
    b, f = _min(record, base), _fastest(record, peers)
    if record is None:
        return Target(issue, what, None, limit, True, "case not measured")
    if b is None or f is None:
        return Target(issue, what, None, limit, True, "probloss not timed" if b is None else "no peer timed")
    return Target(issue, what, f[1] / b, limit, True,
                  f"{f[0]} {f[1]:.3f} ms / probloss {b:.3f} ms ({record.get('shape')}, {record['rounds']} rounds)")


def fraction(issue: str, what: str, record: dict[str, Any] | None, num: str, den: str, limit: float,
             at_least: bool, label: str) -> Target:
    """Target on ``min(num) / min(den)`` of one record."""
    n, d = _min(record, num), _min(record, den)
    if n is None or d is None:
        return Target(issue, what, None, limit, at_least, "case not measured" if record is None else "not timed")
    return Target(issue, what, n / d, limit, at_least,
                  f"{label}: {n:.3f} ms / {d:.3f} ms ({record.get('shape')}, {record['rounds']} rounds)")


def issue9(torch_data: dict[str, Any] | None, jax_data: dict[str, Any] | None) -> list[Target]:
    """Issue 9's targets from the torch and JAX suites."""
    tr, jr = _records(torch_data), _records(jax_data)
    out = []
    headline = ("scce_logits", "cce_logits", "bce_logits")
    names = {"scce_logits": "sparse CE logits 2048x32000", "cce_logits": "categorical CE logits 4096x1000",
             "bce_logits": "binary CE logits 10M", "bce_probs": "binary CE probabilities",
             "cce_probs": "categorical CE probabilities", "scce_probs": "sparse CE probabilities",
             "poisson": "Poisson", "kl": "KL divergence", "binary_focal": "binary focal CE logits",
             "categorical_focal": "categorical focal CE logits"}
    for cid in (*headline, "bce_probs", "poisson", "kl"):
        limit = 2.0 if cid in headline else 1.0
        out.append(speedup("9", f"torch fwd+bwd {names[cid]} vs torch's own", tr.get(f"{cid}/fwd_bwd"),
                           "probloss", limit, ("torch",)))
    for cid in (*headline, "bce_probs", "cce_probs", "scce_probs", "poisson", "kl"):
        limit = 1.5 if cid in headline else 1.0
        out.append(speedup("9", f"torch forward {names[cid]} vs torch's own", tr.get(f"{cid}/fwd"),
                           "probloss", limit, ("torch",)))
    for cid in (*headline, "bce_probs", "cce_probs", "scce_probs", "poisson", "kl"):
        record = tr.get(f"{cid}/fwd_bwd")
        mem = (record or {}).get("peak_extra_bytes") or {}
        what = f"torch fwd+bwd peak extra memory {names[cid]} <= torch's (probloss / torch)"
        if "probloss" in mem and "torch" in mem and mem["torch"] > 0:
            out.append(Target("9", what, mem["probloss"] / mem["torch"], 1.0, False,
                              f"probloss {mem['probloss'] / 2**20:.1f} MiB / torch {mem['torch'] / 2**20:.1f} MiB"
                              f" ({record.get('shape')})"))
        elif mem.get("torch") == 0:
            out.append(Target("9", what, None, 1.0, False, f"torch's peak is 0 (below the page granularity), "
                              f"probloss {mem.get('probloss', 0) / 2**20:.1f} MiB ({record.get('shape')})"))
        else:
            out.append(Target("9", what, None, 1.0, False, mem.get("error", "not measured")))
    for cid in ("binary_focal", "categorical_focal"):
        out.append(fraction("9", f"torch fwd+bwd {names[cid]} / probloss's own CE, same shape",
                            tr.get(f"{cid}/fwd_bwd"), "probloss", "probloss_ce", 1.3, False, "focal / CE"))
    for cid in ("bce_logits", "cce_logits", "scce_logits", "kl", "binary_focal"):
        out.append(speedup("9", f"JAX jit(value_and_grad) {names[cid]} vs optax", jr.get(cid), "probloss", 1.0,
                           ("optax",)))
    for cid in names:
        out.append(speedup("9", f"JAX jit(value_and_grad) {names[cid]} vs keras.losses", jr.get(cid), "probloss",
                           1.0, ("keras",)))
    return out


# Dask chunk by chunk (issue 10, part 3: "no extra cost beyond the chunks"). The cost of the
# chunks is what Dask spends visiting the same chunks for the cheapest possible work (its sum of
# the two inputs, the script's comparator); the chunk path may cost at most 25 % more than the
# larger of that and NumPy's own time on the whole arrays.
DASK_OVERHEAD_LIMIT = 1.25


def issue10(numpy_data: dict[str, Any] | None, headline_data: dict[str, Any] | None,
            dask_data: dict[str, Any] | None = None) -> list[Target]:
    """Issue 10's targets from the headline script, speed.py's numpy suite and the Dask chunk script."""
    hr, nr, dr = _records(headline_data), _records(numpy_data), _records(dask_data)
    out = []
    validations = (("probloss_off", "validate=off"), ("probloss", "validate default"))
    for base, label in validations:
        out.append(speedup("10", f"BCE logits 10M vs fastest of torch and optax-jit ({label})", hr.get("bce_logits"),
                           base, 5.0, ("torch", "torch_none", "optax")))
        out.append(fraction("10", f"BCE logits 10M vs NumPy y_true.sum() + y_pred.sum() ({label})",
                            hr.get("bce_logits"), "numpy_sum", base, 1.0, True, "sum / probloss"))
    for base, label in validations:
        out.append(speedup("10", f"sparse CE logits 2048x32000 vs fastest peer ({label})", hr.get("scce_logits"),
                           base, 2.0))
    mem = (hr.get("scce_logits") or {}).get("peak_extra_bytes") or {}
    for base, label in validations:
        what = f"sparse CE logits 2048x32000 peak extra memory / logits' size ({label})"
        entry = mem.get(base)
        if isinstance(entry, dict) and entry and mem.get("logits_bytes"):
            worst = max(entry.values())
            out.append(Target("10", what, worst / mem["logits_bytes"], 0.10, False,
                              ", ".join(f"{k} {v / 2**20:.1f} MiB" for k, v in entry.items())
                              + f" of {mem['logits_bytes'] / 2**20:.1f} MiB (the larger counts)"))
        else:
            out.append(Target("10", what, None, 0.10, False, mem.get("error", "not measured")))
    for base, label in validations:
        out.append(speedup("10", f"categorical CE logits 4096x1000 vs fastest peer ({label})", hr.get("cce_logits"),
                           base, 2.0))
    for record in nr.values():
        for base, label in validations:
            out.append(speedup("10", f"speed.py default {record['case']} {record.get('shape', '')} vs fastest "
                               f"peer ({label})", record, base, 1.0))
    if not nr:
        out.append(Target("10", "speed.py default cases vs fastest peer", None, 1.0, True, "numpy suite not measured"))
    v = hr.get("validation_overhead")
    if v:
        out.append(Target("10", "validation overhead, BCE 1M, raise vs off (fastest calls)", v["overhead_min"], 0.10,
                          False, f"raise {v['raise_min_ms']:.3f} ms / off {v['off_min_ms']:.3f} ms - 1 "
                          f"(medians: {v['overhead_median']:.1%})"))
    else:
        out.append(Target("10", "validation overhead, BCE 1M, raise vs off", None, 0.10, False, "not measured"))
    for cid in ("bce_logits", "scce_logits", "cce_logits"):
        record = dr.get(cid)
        what = f"Dask chunk path / max(NumPy, Dask's own pass over the chunks), {cid} {(record or {}).get('shape', '')}"
        chunks, numpy_min, dask_sum = (_min(record, k) for k in ("dask_chunks", "probloss", "dask_sum"))
        if chunks is None or numpy_min is None or dask_sum is None:
            out.append(Target("10", what, None, DASK_OVERHEAD_LIMIT, False, "not measured"))
            continue
        out.append(Target("10", what, chunks / max(numpy_min, dask_sum), DASK_OVERHEAD_LIMIT, False,
                          f"dask chunks {chunks:.3f} ms; numpy {numpy_min:.3f} ms; Dask sum of the inputs "
                          f"{dask_sum:.3f} ms ({record['shape']}, {record['rounds']} rounds)"))
    return out


def target_table(targets: list[Target]) -> list[str]:
    """The targets as a Markdown table."""
    lines = ["| issue | target | measured | bound | status | from |", "|---|---|---:|---:|---|---|"]
    for t in targets:
        memory_or_overhead = "memory" in t.what or "overhead" in t.what
        value = "–" if t.value is None else (f"{t.value:.1%}" if memory_or_overhead and "torch" not in t.what
                                              else f"{t.value:.2f}x")
        bound = (">= " if t.at_least else "<= ") + (f"{t.limit:.0%}" if memory_or_overhead and "torch" not in t.what
                                                    else f"{t.limit:g}x")
        lines.append(f"| {t.issue} | {t.what} | {value} | {bound} | {t.status} | {t.detail} |")
    return lines


def load(out: Path, step: str) -> dict[str, Any] | None:
    """A step's JSON result, or None if it is missing or unreadable."""
    path = out / f"{step}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def write_targets(out: Path, log: Callable[[str], None] = print) -> list[Target]:
    """Compute the targets from the folder's JSON files, write targets.md/.json and print the table."""
    data = {step: load(out, step) for step in STEPS}
    targets = issue9(data["speed_torch"], data["speed_jax"]) + issue10(data["speed_numpy"], data["headline"],
                                                                       data["dask_chunks"])
    machine = next((d["machine"] for d in data.values() if d), None)
    counts = {s: sum(t.status == s for t in targets) for s in ("met", "NOT met", "n/a")}
    md = ["# Targets of issues 9 and 10", ""]
    if machine:
        md += [f"- machine: {machine['cpu_model']}, os.cpu_count() = {machine['os_cpu_count']}, affinity "
               f"{machine['affinity']}; {', '.join(f'{k} {v}' for k, v in machine['versions'].items() if v)}",
               f"- probloss: {machine['probloss_source']}",
               f"- threads: {', '.join(f'{k} = {v}' for k, v in machine['threads'].items())}"]
    dates = ", ".join(f"{s}: {d['machine']['date_utc']}" for s, d in data.items() if d)
    md += [f"- measured: {dates}",
           f"- missing results: {', '.join(s for s, d in data.items() if not d) or 'none'}",
           f"- summary: {counts['met']} met, {counts['NOT met']} not met, {counts['n/a']} not measured", "",
           "Ratios: peer min / probloss min (above 1: probloss faster), except where the target divides probloss "
           "by a yardstick (focal / CE, memory, overhead). Each figure comes from one run, contenders interleaved.",
           "", *target_table(targets), ""]
    (out / "targets.md").write_text("\n".join(md))
    (out / "targets.json").write_text(json.dumps([{**t.__dict__, "status": t.status} for t in targets], indent=1))
    log("\n".join(md))
    log(f"wrote {out / 'targets.md'} and {out / 'targets.json'}")
    return targets


def run_step(step: str, out: Path, common: list[str], log: Callable[[str], None]) -> bool:
    """Run one benchmark script, teeing its output to ``<step>.log``; return whether it succeeded."""
    script, *rest = STEPS[step]
    cmd = [sys.executable, str(HERE / script), *rest, *common,
           "--json", str(out / f"{step}.json"), "--markdown", str(out / f"{step}.md")]
    log(f"== {step}: {' '.join(cmd[1:])}")
    start = time.perf_counter()
    with (out / f"{step}.log").open("w") as logfile, subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            logfile.write(line)
            logfile.flush()
            print(line, end="", flush=True)
    log(f"== {step}: exit {proc.returncode} after {time.perf_counter() - start:.0f} s")
    return proc.returncode == 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the results (created)")
    parser.add_argument("--repeats", type=int, default=30, help="timed rounds per case (default 30)")
    parser.add_argument("--budget", type=float, default=10.0, help="seconds of timed rounds per case (default 10)")
    parser.add_argument("--min-rounds", type=int, default=3, help="timed rounds per case at least (default 3)")
    parser.add_argument("--threads", type=int, metavar="N", help="torch and probloss intra-op threads")
    parser.add_argument("--small", action="store_true", help="every shape capped at 128 x 64: a smoke test")
    parser.add_argument("--steps", nargs="+", choices=list(STEPS), default=list(STEPS), help="steps to run")
    parser.add_argument("--targets-only", action="store_true", help="only recompute targets.md from --out's JSON")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    failed = []
    if not args.targets_only:
        common = ["--repeats", str(args.repeats), "--budget", str(args.budget), "--min-rounds", str(args.min_rounds)]
        if args.threads:
            common += ["--threads", str(args.threads)]
        if args.small:
            common.append("--small")
        start = time.perf_counter()
        failed = [s for s in args.steps if not run_step(s, args.out, common, print)]
        print(f"== all steps: {time.perf_counter() - start:.0f} s; failed: {', '.join(failed) or 'none'}")
    write_targets(args.out)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
