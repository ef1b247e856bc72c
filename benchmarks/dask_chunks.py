"""Issue 10, part 3: Dask arrays through the compiled kernels chunk by chunk, against NumPy on the same data.

For each case the same float32 data is scored, per sample, by:

- probloss on the whole NumPy arrays (the reference and the ratios' denominator);
- probloss on dask arrays of the same data, 8 chunks of rows, computed with Dask's
  threaded scheduler: one task per chunk running the compiled kernel
  (``probloss._backends._dask``);
- the same dask arrays through the generic array-API kernel
  (``probloss.fast_paths(False)``): what the Dask path cost before;
- Dask summing the two inputs chunk by chunk: the cost of reading them through Dask.

The chunk path should cost what NumPy costs plus Dask's scheduling of the chunks.
Ratios: contender min / probloss-on-NumPy min (below 1: faster than NumPy).

Run: ``.venv/bin/python benchmarks/dask_chunks.py [--repeats R] [--budget S] [--json PATH] [--markdown PATH]``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import speed  # sets KERAS_BACKEND and JAX_PLATFORMS before Keras and JAX load
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

import probloss

CASES = {"bce_logits": (10_000, 1000), "scce_logits": (2048, 32000), "cce_logits": (4096, 1000)}
CHUNKS = 8


def contenders(case: speed.Case, y_true: np.ndarray, y_pred: np.ndarray) -> list[Contender]:
    """probloss on NumPy (reference first), on dask chunks, on dask through the generic kernel, Dask's sum."""
    fn = getattr(probloss, case.loss)
    kw = case.kwargs
    rows = -(-y_pred.shape[0] // CHUNKS)
    lazy_true = da.from_array(y_true, chunks=(rows, *y_true.shape[1:]))
    lazy_pred = da.from_array(y_pred, chunks=(rows, *y_pred.shape[1:]))

    def generic() -> Any:
        with probloss.fast_paths(False):
            graph = fn(lazy_true, lazy_pred, **kw)
        return graph.compute()

    return [
        Contender("probloss", "probloss numpy", lambda: fn(y_true, y_pred, **kw), role=PROBLOSS),
        Contender("dask_chunks", f"probloss dask, {CHUNKS} row chunks (compiled kernel per chunk)",
                  lambda: fn(lazy_true, lazy_pred, **kw).compute()),
        Contender("dask_generic", f"probloss dask, {CHUNKS} row chunks, generic kernel (fast_paths(False))",
                  generic, max_rounds=3),
        Contender("dask_sum", "Dask y_true.sum() + y_pred.sum() per chunk",
                  lambda: (lazy_true.sum() + lazy_pred.sum()).compute(), role=COMPARATOR),
    ]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30, help="timed rounds per case (default 30)")
    parser.add_argument("--budget", type=float, default=20.0, help="seconds of timed rounds per case (default 20)")
    parser.add_argument("--min-rounds", type=int, default=3, help="timed rounds per case at least (default 3)")
    parser.add_argument("--threads", type=int, metavar="N", help="probloss.set_num_threads(N)")
    parser.add_argument("--small", action="store_true", help="every shape capped at 128 x 64: a smoke test")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--markdown", type=Path, help="write the tables to this file")
    parser.add_argument("--json", type=Path, help="write every measurement and the machine description here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    set_threads(args.threads)
    dask.config.set(scheduler="threads")
    info = machine()
    for line in machine_lines(info):
        print(line, flush=True)
    settings = {"repeats": args.repeats, "budget_s": args.budget, "chunks": CHUNKS, "seed": args.seed,
                "small": args.small, "dtype": "float32", "scheduler": "threads"}
    records = []
    markdown = ["# Dask chunk by chunk: probloss on dask arrays against probloss on NumPy", "",
                *machine_lines(info), f"- settings: {settings}", "",
                "Ratios: contender min / probloss numpy min. Below 1: faster than NumPy.", ""]
    for case_id, (batch, width) in CASES.items():
        case = speed.BY_ID[case_id]
        if args.small:
            batch, width = min(batch, speed.SMALL[0]), min(width, speed.SMALL[1])
        y_true, y_pred = speed.make_data(case, batch, width, args.seed)
        cs = contenders(case, y_true, y_pred)
        check(cs[1:], cs[0].outputs())
        rounds = time_rounds(cs, args.repeats, args.budget, args.min_rounds)
        record = case_record("dask", case_id, case.name, cs, rounds, shape=f"{batch} x {width}",
                             mode="forward, per sample")
        records.append(record)
        table = ratio_table(record, "probloss", f"{case.name} {batch} x {width}")
        print("\n".join(table), flush=True)
        markdown += table
    write_reports({"script": "dask_chunks.py", "machine": info, "settings": settings, "records": records},
                  args.json, markdown, args.markdown)


if __name__ == "__main__":
    sys.exit(main())
