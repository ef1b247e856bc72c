"""``probloss score`` on large files: throughput (GB/s) and peak resident memory.

Writes, under a scratch folder (default: a new folder in /tmp, removed afterwards;
never commit the files), a ``.npy`` pair (int64 labels and float32 class
probabilities) and one Parquet file (an int64 ``label`` column and a
``list<float32>`` ``scores`` column), each about ``--size-gb`` GB in all, then
scores each with ``python -m probloss score`` in a fresh subprocess and reads
that process's peak resident set size from the kernel (``wait4``'s ``ru_maxrss``).
The requirement is a peak RSS under 500 MB whatever the file size. The files are
written in bounded pieces, so generating them needs little memory too.

Examples:
    python benchmarks/score.py --size-gb 2 --out benchmarks/results/<name>/score.json
    python benchmarks/score.py --size-gb 0.2          # a quick check
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RSS_LIMIT_MB = 500.0
PIECE_ROWS = 200_000


def write_npy_pair(folder: Path, rows: int, classes: int, rng: np.random.Generator) -> list[Path]:
    """Labels and softmax probabilities, written piece by piece through a memory map."""
    labels = np.lib.format.open_memmap(folder / "labels.npy", mode="w+", dtype=np.int64, shape=(rows,))
    probs = np.lib.format.open_memmap(folder / "probs.npy", mode="w+", dtype=np.float32, shape=(rows, classes))
    for start in range(0, rows, PIECE_ROWS):
        stop = min(start + PIECE_ROWS, rows)
        labels[start:stop], probs[start:stop] = _piece(stop - start, classes, rng)
        labels.flush()
        probs.flush()
    del labels, probs
    return [folder / "labels.npy", folder / "probs.npy"]


def write_parquet(folder: Path, rows: int, classes: int, rng: np.random.Generator) -> Path:
    """One file: ``label`` and a ``scores`` list column, one row group per piece."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = folder / "predictions.parquet"
    schema = pa.schema([("label", pa.int64()), ("scores", pa.list_(pa.float32(), classes))])
    with pq.ParquetWriter(path, schema, compression="none") as writer:
        for start in range(0, rows, PIECE_ROWS):
            labels, probs = _piece(min(PIECE_ROWS, rows - start), classes, rng)
            scores = pa.FixedSizeListArray.from_arrays(pa.array(probs.reshape(-1)), classes)
            writer.write_table(pa.table({"label": labels, "scores": scores}, schema=schema))
    return path


def _piece(rows: int, classes: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    logits = rng.standard_normal((rows, classes), dtype=np.float32) * 2.0
    logits -= logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    return rng.integers(0, classes, rows), probs


def run_score(arguments: list[str]) -> dict[str, float]:
    """Run ``python -m probloss score --json ARGS``; return its result, seconds and peak RSS."""
    command = [sys.executable, "-m", "probloss", "score", "--json", *arguments]
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    out, err = process.stdout.read(), process.stderr.read()  # type: ignore[union-attr]
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise SystemExit(f"{' '.join(command)} failed ({process.returncode}): {err.decode()[-2000:]}")
    result = json.loads(out)
    return {"loss": result["loss"], "rows": result["rows"], "seconds": seconds,
            "peak_rss_mb": usage.ru_maxrss / 1024.0}  # Linux reports kilobytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-gb", type=float, default=2.0, help="size of each data set (default 2)")
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--folder", type=Path, help="scratch folder (default: a new one in /tmp)")
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("--generate-rows", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate_rows is not None:  # the child that writes the files (see below)
        write_npy_pair(args.folder, args.generate_rows, args.classes, np.random.default_rng(0))
        write_parquet(args.folder, args.generate_rows, args.classes, np.random.default_rng(1))
        return
    folder = args.folder or Path(tempfile.mkdtemp(prefix="probloss-score-bench-", dir="/tmp"))
    folder.mkdir(parents=True, exist_ok=True)
    row_bytes = 8 + 4 * args.classes
    rows = int(args.size_gb * 1e9 // row_bytes)
    results = {"size_gb": args.size_gb, "classes": args.classes, "rows": rows, "cpu_count": os.cpu_count(),
               "rss_limit_mb": RSS_LIMIT_MB, "runs": {}}
    try:
        # Written by a child process: Linux carries a process's peak RSS across fork and
        # exec, so the scoring subprocesses must be forked from a parent that stayed small.
        subprocess.run([sys.executable, __file__, "--folder", str(folder), "--classes", str(args.classes),
                        "--generate-rows", str(rows)], check=True)
        labels, probs = folder / "labels.npy", folder / "probs.npy"
        parquet = folder / "predictions.parquet"
        cases = {
            "npy": [str(labels), str(probs)],
            "parquet": [f"{parquet}:label", f"{parquet}:scores"],
        }
        for name, files in cases.items():
            size = sum(os.path.getsize(f.split(":")[0]) for f in files) if name == "npy" else \
                os.path.getsize(parquet)
            run = run_score(["--loss", "sparse_categorical_crossentropy", *files])
            run["file_gb"] = size / 1e9
            run["gb_per_s"] = size / 1e9 / run["seconds"]
            run["rss_ok"] = run["peak_rss_mb"] < RSS_LIMIT_MB
            results["runs"][name] = run
            print(f"{name:<8} {size / 1e9:6.2f} GB  {run['seconds']:7.2f} s  {run['gb_per_s']:6.3f} GB/s  "
                  f"peak RSS {run['peak_rss_mb']:7.1f} MB  ({'ok' if run['rss_ok'] else 'OVER'} "
                  f"< {RSS_LIMIT_MB:.0f} MB)  loss {run['loss']:.6f}")
    finally:
        if not args.keep and args.folder is None:
            shutil.rmtree(folder, ignore_errors=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    if not all(run["rss_ok"] for run in results["runs"].values()):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
