"""Render the committed benchmark and accuracy results as SVG charts for the documentation.

One command regenerates every chart (needs matplotlib: ``pip install -e ".[docs]"``)::

    python scripts/render_charts.py                       # newest run under benchmarks/results/
    python scripts/render_charts.py --results benchmarks/results/2026-12-02-b

Inputs:

- ``speed_numpy.json``, ``speed_torch.json``, ``speed_jax.json`` and ``dask_chunks.json`` of
  one ``benchmarks/run_all.py`` run: the speed-up of probloss against each peer per loss,
  the peer's median time over probloss's (validation on, its default), so a bar above 1 means
  probloss is faster;
- the first table of ``docs/accuracy.md``, which ``benchmarks/accuracy_table.py`` writes: the
  worst error in ulps of each library per loss and path, over the float32 sweep of
  tests/test_accuracy.py.

Outputs (``docs/assets/``, committed; the pages embed them): ``speed_numpy.svg``,
``speed_torch.svg``, ``speed_jax.svg``, ``speed_dask.svg``, ``accuracy.svg``. The SVG
files carry no date and fixed ids, so rerunning on the same inputs changes nothing.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import matplotlib as mpl

mpl.use("svg")
import matplotlib.pyplot as plt

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
ASSETS = ROOT / "docs" / "assets"
ACCURACY_PAGE = ROOT / "docs" / "accuracy.md"

PROBLOSS_KEY = "probloss"  # validation on: what a user gets by default
PEER_COLORS = {
    "torch": "#ee4c2c",
    "torch_none": "#f59e8c",
    "optax": "#7b61ff",
    "keras": "#d00000",
    "dask_sum": "#fdb515",
    "dask_generic": "#8c8c8c",
}
PEER_LABELS = {
    "torch": "PyTorch",
    "torch_none": "PyTorch, reduction='none'",
    "optax": "optax (jit)",
    "keras": "Keras 3 on JAX (jit)",
    "dask_sum": "Dask's own sum over the chunks",
    "dask_generic": "probloss's generic kernel on Dask",
}
LOSS_LABELS = {
    "bce_logits": "BCE logits",
    "bce_probs": "BCE probs",
    "cce_logits": "CCE logits",
    "cce_probs": "CCE probs",
    "scce_logits": "sparse CE logits",
    "scce_probs": "sparse CE probs",
    "binary_focal": "binary focal",
    "categorical_focal": "categorical focal",
    "poisson": "Poisson",
    "kl": "KL",
}
_MODES = {"fwd": "forward", "fwd_bwd": "forward+backward"}
_DARKER = {"torch": "#a0311c", "optax": "#4b3a9c", "keras": "#800000"}
SERIES = {**PEER_COLORS, **{f"{k}/{m}": (c if m == "fwd" else _DARKER.get(k, c))
                           for k, c in PEER_COLORS.items() for m in _MODES}}
SERIES_LABELS = {**PEER_LABELS, **{f"{k}/{m}": f"{label}, {_MODES[m]}"
                                   for k, label in PEER_LABELS.items() for m in _MODES}}
SUITE_TITLES = {
    "numpy": "NumPy arrays, forward, per-sample losses",
    "torch": "PyTorch CPU tensors, mean loss",
    "jax": "JAX, jit(value_and_grad), mean loss",
    "dask": "Dask arrays in 8 row chunks, per-sample losses",
}


def newest_run() -> Path:
    """The results folder whose speed run is the newest (by the date its speed_numpy.json records)."""
    runs = [p for p in RESULTS.iterdir() if (p / "speed_numpy.json").is_file()]
    if not runs:
        msg = f"no benchmark run with speed_numpy.json under {RESULTS}"
        raise SystemExit(msg)
    return max(runs, key=lambda p: (json.loads((p / "speed_numpy.json").read_text())
                                    .get("machine", {}).get("date_utc", ""), p.name))


def _median(contender: dict[str, Any]) -> float | None:
    value = contender.get("median_ms")
    return float(value) if value else None


def speedups(records: Iterable[dict[str, Any]], base: str = PROBLOSS_KEY) -> tuple[list[str], dict[str, list[float]]]:
    """Per loss (x label) and peer: the peer's median time over ``base``'s (nan where absent).

    A suite that times several modes of a loss (PyTorch: forward, forward+backward) has
    one series per peer and mode, keyed ``peer/mode``.
    """
    labels: list[str] = []
    per_loss: dict[str, dict[str, float]] = {}
    for record in records:
        by_key = {c["key"]: c for c in record.get("contenders", [])}
        base_ms = _median(by_key[base]) if base in by_key else None
        if base_ms is None:
            continue
        loss, _, mode = record["id"].partition("/")
        label = LOSS_LABELS.get(loss, loss)
        if label not in per_loss:
            labels.append(label)
            per_loss[label] = {}
        for key, contender in by_key.items():
            peer_ms = _median(contender)
            if key in PEER_COLORS and peer_ms is not None:
                per_loss[label][f"{key}/{mode}" if mode else key] = peer_ms / base_ms
    keys = [key for key in SERIES if any(key in r for r in per_loss.values())]
    return labels, {key: [per_loss[label].get(key, math.nan) for label in labels] for key in keys}


def _bar_chart(labels: list[str], series: dict[str, list[float]], names: dict[str, str],
               colors: dict[str, str], title: str, ylabel: str, out: Path, *, reference: float,
               reference_label: str, annotate: str | None = "{:.1f}x", width: float = 10.0) -> None:
    """Grouped bars on a log axis, one group per label, one bar per series, a dashed reference line."""
    fig, ax = plt.subplots(figsize=(width, 4.6))
    n = max(1, len(series))
    bar = 0.82 / n
    for j, (key, values) in enumerate(series.items()):
        xs = [i + (j - (n - 1) / 2) * bar for i in range(len(labels))]
        shown = [(x, v) for x, v in zip(xs, values, strict=True) if not math.isnan(v)]
        ax.bar([x for x, _ in shown], [v for _, v in shown], bar * 0.92, label=names.get(key, key),
               color=colors.get(key))
        if annotate:
            for x, v in shown:
                ax.annotate(annotate.format(v), (x, v), ha="center", va="bottom", fontsize=6.5,
                            xytext=(0, 1.5), textcoords="offset points")
    ax.axhline(reference, color="black", linewidth=0.8, linestyle="--", label=reference_label)
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(mpl.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(mpl.ticker.NullFormatter())
    ax.set_xticks(range(len(labels)), labels, fontsize=8)
    ax.set_xlim(-0.6, len(labels) - 0.4)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", which="major", linewidth=0.3, alpha=0.5)
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(fontsize=8, frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.14),
              ncol=min(4, n + 1))
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="svg", metadata={"Date": None})
    plt.close(fig)


def render_speed(run: Path, suite: str, out: Path) -> Path | None:
    """One suite's speed-up chart; None when the run has no such file."""
    name = "dask_chunks.json" if suite == "dask" else f"speed_{suite}.json"
    path = run / name
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    base = "dask_chunks" if suite == "dask" else PROBLOSS_KEY
    labels, ratios = speedups(data["records"], base=base)
    when = data.get("machine", {}).get("date_utc", "")
    cpu = data.get("machine", {}).get("cpu_model", "")
    cores = data.get("machine", {}).get("os_cpu_count", "")
    what = "probloss on Dask (compiled kernel per chunk)" if suite == "dask" else "probloss"
    title = f"{SUITE_TITLES[suite]}: speed-up of {what} (peer time / probloss time)\n{cpu}, {cores} cores, {when}"
    _bar_chart(labels, ratios, SERIES_LABELS, SERIES, title, "speed-up (x, log scale)", out,
               reference=1.0, reference_label="as fast as the peer")
    return out


# ------------------------------------------------------------------ accuracy

ACCURACY_COLUMNS = {
    "probloss (NumPy)": "#1f4e9c",
    "probloss (JAX, no x64)": "#6b9bd9",
    "PyTorch": "#ee4c2c",
    "optax": "#7b61ff",
    "Keras 3 (JAX)": "#d00000",
    "Keras 3 (NumPy)": "#f08080",
}
_FAMILIES = {
    "binary_crossentropy": "BCE",
    "binary_focal_crossentropy": "binary focal",
    "categorical_crossentropy": "CCE",
    "sparse_categorical_crossentropy": "sparse CE",
    "categorical_focal_crossentropy": "categ. focal",
    "poisson": "Poisson",
    "kl_divergence": "KL",
}


def accuracy_table(text: str) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """The header and rows of the first Markdown table whose header starts with ``case``."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("| case |") and i + 1 < len(lines) and lines[i + 1].startswith("|---"):
            header = [c.strip() for c in line.strip("|").split("|")]
            rows = []
            for row in lines[i + 2:]:
                if not row.startswith("|"):
                    break
                cells = [c.strip() for c in row.strip("|").split("|")]
                rows.append((cells[0], cells[1:]))
            return header[1:], rows
    msg = "no '| case |' table found"
    raise ValueError(msg)


def worst_ulps(cell: str) -> float:
    """``"1.99 / 0.31 (z 12)"`` -> 1.99; nan for a library without the loss (``—``)."""
    match = re.match(r"\s*([0-9.eE+-]+)\s*/", cell)
    return float(match.group(1)) if match else math.nan


def accuracy_groups(header: list[str], rows: list[tuple[str, list[str]]]) -> tuple[list[str], dict[str, list[float]]]:
    """Worst error over the cases of each loss and path (logits / probabilities), per library."""
    groups: dict[str, dict[str, float]] = {}
    order: list[str] = []
    for case, cells in rows:
        family, _, rest = case.partition("-")
        path = rest.split("-", 1)[0]
        label = _FAMILIES.get(family, family)
        if path in ("logits", "probs"):
            label += "\n" + ("logits" if path == "logits" else "probs")
        if label not in groups:
            groups[label] = {}
            order.append(label)
        for column, cell in zip(header, cells, strict=True):
            if column not in ACCURACY_COLUMNS:
                continue
            value = worst_ulps(cell)
            if math.isnan(value):
                continue
            groups[label][column] = max(groups[label].get(column, 0.0), value)
    series = {column: [groups[g].get(column, math.nan) for g in order] for column in ACCURACY_COLUMNS}
    return order, series


def render_accuracy(page: Path, out: Path) -> Path:
    header, rows = accuracy_table(page.read_text())
    labels, series = accuracy_groups(header, rows)
    title = ("float32 accuracy: worst error in ulps over the sweep of tests/test_accuracy.py\n"
             "(lower is better; probloss guarantees 4 ulps; docs/accuracy.md has every case)")
    _bar_chart(labels, series, {k: k for k in series}, ACCURACY_COLUMNS, title, "worst error (ulps, log scale)",
               out, reference=4.0, reference_label="4 ulps (probloss's bound)", annotate=None, width=12.0)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, help="a benchmarks/results/<run> folder (default: the newest)")
    parser.add_argument("--accuracy", type=Path, default=ACCURACY_PAGE, help="the page with the ulp table")
    parser.add_argument("--out", type=Path, default=ASSETS, help="where the SVG files go")
    args = parser.parse_args(argv)
    mpl.rcParams["svg.hashsalt"] = "probloss"  # fixed ids: reruns give identical files
    mpl.rcParams["svg.fonttype"] = "none"  # text stays text (smaller, searchable)
    run = args.results or newest_run()
    written = [render_speed(run, suite, args.out / f"speed_{suite}.svg") for suite in ("numpy", "torch", "jax", "dask")]
    written.append(render_accuracy(args.accuracy, args.out / "accuracy.svg"))
    for path in written:
        if path is not None:
            print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
