"""probloss on TensorFlow tensors against TensorFlow's own losses: forward + backward, as ratios.

Cases (issue 14's shapes, float32): binary cross-entropy from logits on 10,000 x 1000
(10M) values, and sparse categorical cross-entropy from logits on 2048 x 32000. Each
is timed as ``GradientTape`` value and gradient with respect to the logits, mean
reduction, in three modes: eager, ``tf.function`` and ``tf.function(jit_compile=True)``
(XLA). Contenders: probloss's ``Loss`` object (its TensorFlow fast path; eagerly it also
checks the data, which ``probloss_novalidate`` (``validate="off"``) skips), ``tf.nn``'s
fused op (``sigmoid_cross_entropy_with_logits`` / ``sparse_softmax_cross_entropy_with_logits``)
followed by ``tf.reduce_mean``, and ``tf_keras.losses`` (tf.keras 2.x).

Before timing, every contender's value and gradient are compared with probloss's
(rtol 1e-4, gradients relative to the largest); one that disagrees is reported and not
timed. Timing: a warm-up call (tracing, compiling), then rounds in which every
contender runs once, in a rotating order, so that machine noise hits them alike; the
minimum over the rounds is the estimate (noise only adds time), the median is shown
beside it. Ratio: contender min / probloss min (above 1: probloss is faster).

(Not named tensorflow.py: run as a script, that name would shadow the tensorflow package.)
The 1-, 5- and 15-minute load averages before and after the run, and the 1-minute one after
each row, go into the JSON output (a loaded machine inflates every time; the ratios are
what to read). Run: ``python benchmarks/speed_tensorflow.py [--repeats R] [--scale S] [--json PATH] [--markdown PATH]``;
``--scale 0.1`` shrinks the batch dimensions for a quick check.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import tensorflow as tf
import tf_keras

import probloss


def _cases(scale: float) -> dict[str, tuple[np.ndarray, np.ndarray, dict[str, Callable[[Any, Any], Any]]]]:
    rng = np.random.default_rng(0)
    rows = max(1, int(10_000 * scale))
    bce_y = rng.integers(0, 2, (rows, 1000)).astype(np.float32)
    bce_x = rng.normal(0, 2, (rows, 1000)).astype(np.float32)
    rows = max(1, int(2048 * scale))
    sparse_y = rng.integers(0, 32000, rows).astype(np.int64)
    sparse_x = rng.normal(0, 2, (rows, 32000)).astype(np.float32)
    ours_bce = probloss.BinaryCrossentropy(from_logits=True)
    ours_bce_off = probloss.BinaryCrossentropy(from_logits=True, validate="off")
    keras_bce = tf_keras.losses.BinaryCrossentropy(from_logits=True)
    ours_sparse = probloss.SparseCategoricalCrossentropy(from_logits=True)
    ours_sparse_off = probloss.SparseCategoricalCrossentropy(from_logits=True, validate="off")
    keras_sparse = tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    return {
        "bce_logits_10000x1000": (bce_y, bce_x, {
            "probloss": lambda y, x: ours_bce(y, x),
            "probloss_novalidate": lambda y, x: ours_bce_off(y, x),
            "tf.nn": lambda y, x: tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=y, logits=x)),
            "tf_keras": lambda y, x: keras_bce(y, x),
        }),
        "sparse_ce_logits_2048x32000": (sparse_y, sparse_x, {
            "probloss": lambda y, x: ours_sparse(y, x),
            "probloss_novalidate": lambda y, x: ours_sparse_off(y, x),
            "tf.nn": lambda y, x: tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=x)),
            "tf_keras": lambda y, x: keras_sparse(y, x),
        }),
    }


def _value_and_gradient(loss: Callable[[Any, Any], Any], mode: str) -> Callable[[Any, Any], Any]:
    def run(y: Any, x: Any) -> Any:
        with tf.GradientTape() as tape:
            tape.watch(x)
            value = loss(y, x)
        return value, tape.gradient(value, x)

    if mode == "eager":
        return run
    return tf.function(run, jit_compile=mode == "xla")


def _agrees(reference: Any, other: Any) -> str | None:
    value, grad = (np.asarray(t) for t in reference)
    other_value, other_grad = (np.asarray(t) for t in other)
    if not np.allclose(other_value, value, rtol=1e-4, atol=1e-6):
        return f"value {other_value} != probloss {value}"
    scale = np.abs(grad).max()
    if not np.allclose(other_grad, grad, rtol=1e-4, atol=1e-5 * scale):
        return f"gradient differs by {np.abs(other_grad - grad).max():.3g} (largest {scale:.3g})"
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--json")
    parser.add_argument("--markdown")
    args = parser.parse_args()

    results: list[dict[str, Any]] = []
    load_before = os.getloadavg()
    for case, (y_host, x_host, contenders) in _cases(args.scale).items():
        y, x = tf.constant(y_host), tf.constant(x_host)
        for mode in ("eager", "function", "xla"):
            runs = {name: _value_and_gradient(loss, mode) for name, loss in contenders.items()}
            outputs = {name: tuple(t.numpy() for t in run(y, x)) for name, run in runs.items()}  # warm-up
            for name in list(runs):
                problem = None if name == "probloss" else _agrees(outputs["probloss"], outputs[name])
                if problem:
                    print(f"{case} {mode} {name}: not timed, {problem}")
                    del runs[name]
            times: dict[str, list[float]] = {name: [] for name in runs}
            names = list(runs)
            for r in range(args.repeats):
                for name in names[r % len(names):] + names[:r % len(names)]:
                    start = time.perf_counter()
                    value, grad = runs[name](y, x)
                    _ = value.numpy(), grad.numpy()[:1]  # wait for the results
                    times[name].append(time.perf_counter() - start)
            best = {name: min(t) for name, t in times.items()}
            for name, t in times.items():
                row = {"case": case, "mode": mode, "contender": name, "min_ms": 1e3 * best[name],
                       "median_ms": 1e3 * statistics.median(t), "ratio": best[name] / best["probloss"]}
                row["load_1min"] = os.getloadavg()[0]
                results.append(row)
                print(f"{case:30s} {mode:9s} {name:20s} min {row['min_ms']:9.1f} ms  median "
                      f"{row['median_ms']:9.1f} ms  ratio {row['ratio']:.2f}", flush=True)

    meta = {"tensorflow": tf.__version__, "tf_keras": tf_keras.__version__, "probloss": probloss.__version__,
            "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
            "repeats": args.repeats, "scale": args.scale,
            "load_average_before": load_before, "load_average_after": os.getloadavg()}
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "results": results}, f, indent=1)
    if args.markdown:
        lines = ["| case | mode | contender | min ms | median ms | contender / probloss |", "|---|---|---|---|---|---|"]
        lines += [f"| {r['case']} | {r['mode']} | {r['contender']} | {r['min_ms']:.1f} | {r['median_ms']:.1f} | "
                  f"{r['ratio']:.2f} |" for r in results]
        with open(args.markdown, "w") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
