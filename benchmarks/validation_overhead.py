"""Overhead of data validation: BinaryCrossentropy on 1,000,000 float32 elements.

Times ``validate="raise"`` against ``validate="off"`` on the same NumPy arrays,
interleaving the two so that machine noise hits both alike, and prints the
overhead ratio of the fastest calls (noise only ever adds time, so the minimum
is the stable estimate on a shared machine) and of the medians. The target is
an overhead under 10%.

Run: ``.venv/bin/python benchmarks/validation_overhead.py [--repeats N]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import probloss


def measure(repeats: int, size: int = 1_000_000, seed: int = 0) -> tuple[list[float], list[float]]:
    """Return the seconds of each call with validation on and off."""
    rng = np.random.default_rng(seed)
    y_true = (rng.random((size // 100, 100)) < 0.5).astype(np.float32)
    y_pred = rng.random((size // 100, 100), dtype=np.float32)
    checked = probloss.BinaryCrossentropy(validate="raise")
    unchecked = probloss.BinaryCrossentropy(validate="off")
    for loss in (checked, unchecked):  # warm-up
        loss(y_true, y_pred)
    on: list[float] = []
    off: list[float] = []
    for i in range(repeats):
        order = ((checked, on), (unchecked, off)) if i % 2 == 0 else ((unchecked, off), (checked, on))
        for loss, times in order:
            start = time.perf_counter()
            loss(y_true, y_pred)
            times.append(time.perf_counter() - start)
    return on, off


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=101)
    args = parser.parse_args()
    on, off = measure(args.repeats)
    for label, pick in (("fastest", min), ("median", statistics.median)):
        print(f"{label:>7}: validate='raise' {pick(on) * 1e3:.3f} ms, validate='off' "
              f"{pick(off) * 1e3:.3f} ms, overhead {pick(on) / pick(off) - 1:.1%}")
    print(f"overhead of the fastest calls: {min(on) / min(off) - 1:.1%} (target < 10%; "
          f"{args.repeats} calls each)")


if __name__ == "__main__":
    main()
