"""The binary family's compiled kernels alone, this build against another, interleaved in one process.

``probloss._native._binary.row_losses`` for each kind (values, and values with
the gradient), on float32 data of one shape, against the same function of
another build of the module (``--against path/to/_binary.*.so``, for example
main's), so that a change to binary.c / binary_impl.h is measured without the
Python layers and on a loaded machine as fairly as it can be: both builds
alternate in rounds and the minimum over the rounds is kept. Ratios are
``other min / this min`` (above 1: this build is faster)::

    PYTHONPATH=src python benchmarks/binary_kernels.py --against /work/main/src/probloss/_native/_binary.*.so \
        --threads 1 2 --markdown out.md
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from probloss import _native


def load_other(path: str) -> ModuleType:
    """Another build of the module, loaded under its own name (its init function is ``PyInit__binary``)."""
    spec = importlib.util.spec_from_file_location("_binary", path)
    if spec is None or spec.loader is None:
        msg = f"cannot load {path}"
        raise ImportError(msg)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cases(rows: int, cols: int, seed: int) -> dict[str, tuple[str, np.ndarray, np.ndarray, tuple[float, ...]]]:
    """name -> (KIND constant, y, x, params), with the data of benchmarks/speed.py's kinds of case."""
    rng = np.random.default_rng(seed)
    shape = (rows, cols)
    hard = (rng.random(shape) < 0.5).astype(np.float32)
    soft = rng.random(shape).astype(np.float32)
    logits = rng.standard_normal(shape).astype(np.float32)
    probs = rng.random(shape).astype(np.float32)
    eps, hi = float(np.float32(1e-7)), float(np.float32(1 - 1e-7))
    focal = (2.0, 2.0, 0.25, 0.0, eps, hi)
    return {
        "bce_logits": ("KIND_BCE_LOGITS", hard, logits, ()),
        "bce_probs": ("KIND_BCE_PROBS", hard, probs, (eps, hi)),
        "focal_logits": ("KIND_FOCAL_LOGITS", hard, logits, focal),
        "focal_probs": ("KIND_FOCAL_PROBS", hard, probs, focal),
        "poisson": ("KIND_POISSON", rng.poisson(2.0, shape).astype(np.float32),
                    (rng.random(shape) * 3).astype(np.float32), (eps,)),
        "kl": ("KIND_KL", soft, probs, (eps,)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", required=True, help="path of the other build's _binary extension module")
    parser.add_argument("--rows", type=int, default=4096)
    parser.add_argument("--cols", type=int, default=256)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=15, help="calls per round and build (the minimum is kept)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="wall: perf_counter; cpu: the process's CPU time (all its threads), which a loaded "
                             "machine disturbs less (other jobs' time is not counted; at 1 thread it is the work)")
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args()
    this, other = _native.binary, load_other(args.against)
    data = cases(args.rows, args.cols, args.seed)
    out = np.empty(args.rows, np.float32)
    grad = np.empty((args.rows, args.cols), np.float32)
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    best: dict[tuple[Any, ...], float] = {}
    for _ in range(args.rounds):
        for threads in args.threads:
            for name, (kind, y, x, params) in data.items():
                for with_grad in (False, True):
                    for label, module in (("other", other), ("this", this)):
                        code = getattr(module, kind)
                        divisor = 1.0 if name == "kl" else float(args.cols)
                        for _ in range(args.calls):
                            start = clock()
                            module.row_losses(code, y, x, out, divisor, threads, grad if with_grad else None, params)
                            seconds = clock() - start
                            key = (threads, name, with_grad, label)
                            best[key] = min(best.get(key, np.inf), seconds)
    lines = [f"# Binary kernels: this build ({this.__file__}) against {args.against}", "",
             f"- shape {args.rows} x {args.cols} float32, {args.rounds} rounds x {args.calls} calls per build, "
             f"minimum kept; clock: {args.clock}; load average at the end {os.getloadavg()}", "",
             "| threads | kernel | gradient | other min ms | this min ms | other / this |",
             "|---|---|---|---:|---:|---:|"]
    for threads in args.threads:
        for name in data:
            for with_grad in (False, True):
                o, t = best[threads, name, with_grad, "other"], best[threads, name, with_grad, "this"]
                lines.append(f"| {threads} | {name} | {'yes' if with_grad else 'no'} | {o * 1e3:.3f} | {t * 1e3:.3f} "
                             f"| {o / t:.2f} |")
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")


if __name__ == "__main__":
    main()
