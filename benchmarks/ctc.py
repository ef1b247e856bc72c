"""CTC loss, forward + backward: probloss against PyTorch, optax and Keras 3, as ratios, with peak memory.

Cases (float32, every label of full length ``L``, every input of full length ``T``, labels
drawn from classes 1..K-1, blank 0):

- ``speech``: B=32, T=200, K=30, L=50;
- ``vocab``: B=16, T=100, K=5000, L=30;
- ``long``: B=32, T=1000, K=30, L=50.

Per case, three groups by input library, each timed in interleaved rounds (``_harness``):

- NumPy inputs: probloss's compiled kernel computing the per-sample losses and their
  gradient (``probloss._backends._numpy_ctc.compiled_ctc``, what the NumPy fast path runs)
  and ``probloss.ctc_loss`` alone (forward); the peers get the same NumPy arrays and convert
  them (``torch.from_numpy``, ``jnp.asarray``) inside the timed call;
- PyTorch CPU tensors: ``probloss.ctc_loss(...).sum().backward()`` against
  ``F.ctc_loss(log_softmax(x).transpose(0, 1), ..., reduction="sum").backward()``;
- JAX arrays: ``jax.jit(jax.value_and_grad(sum of per-sample losses))`` of probloss (on CPU
  the compiled kernel through ``jax.pure_callback``), ``optax.ctc_loss`` (padding masks) and
  ``keras.ops.ctc_loss`` (JAX backend); also, for information, probloss's ``lax.scan`` path
  (what other devices run, ``_jax_ctc.scan_ctc``) on the same CPU;
- greedy decoding (``decode``) of the NumPy logits: ``probloss.ctc_decode`` against a jitted
  ``keras.ops.ctc_decode`` (JAX backend) given the same NumPy arrays.

Every contender's per-sample losses and gradients are checked against probloss's before
timing (``_harness.check``: rtol 1e-4); the cases are chosen so that every loss is far
below Keras's and optax's cap of about 1e5. Peak extra resident memory of one call is
measured after the timing in a fresh process per case and group (``_memory.run_probe``,
which sets ``MALLOC_MMAP_THRESHOLD_=65536`` there for freed-and-reused blocks to count; the
timing itself runs with the default allocator, as users do: under that setting every large
allocation is a fresh ``mmap`` and page faults).

Run: ``python benchmarks/ctc.py [--cases speech vocab long] [--groups numpy torch jax decode]
[--repeats R] [--budget S] [--threads N] [--no-memory] [--json PATH] [--markdown PATH]``.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import _harness
import jax
import jax.numpy as jnp
import keras
import numpy as np
import optax
import torch
import torch.nn.functional as F  # noqa: N812
from _harness import (
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
from probloss._backends import _jax_ctc, _numpy_ctc

# The peers compute the forward-backward in float32: their gradients carry an absolute error
# that grows with the loss, so with T (measured: 2.4e-4 at T=200, 5e-3 at T=1000), so the
# agreement check allows 2e-5 x T x the largest gradient (set per case in main) instead of
# the harness's 1e-5.
GRAD_ATOL_PER_FRAME = 2e-5

GROUPS = ("numpy", "torch", "jax", "decode")
CASES = {"speech": (32, 200, 30, 50), "vocab": (16, 100, 5000, 30), "long": (32, 1000, 30, 50)}


def make_case(shape: tuple[int, int, int, int], seed: int = 0) -> tuple[np.ndarray, ...]:
    batch, frames, classes, slots = shape
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(batch, frames, classes)).astype(np.float32)
    labels = rng.integers(1, classes, size=(batch, slots)).astype(np.int64)
    return labels, logits, np.full(batch, slots, np.int64), np.full(batch, frames, np.int64)


def torch_peer(labels: Any, logits: Any, label_lengths: Any, logit_lengths: Any) -> tuple[Any, Any]:
    x = logits.detach().requires_grad_()
    loss = F.ctc_loss(torch.log_softmax(x, dim=-1).transpose(0, 1), labels, logit_lengths, label_lengths,
                      blank=0, reduction="none", zero_infinity=False)
    loss.sum().backward()
    return loss.detach(), x.grad


def probloss_torch(labels: Any, logits: Any, label_lengths: Any, logit_lengths: Any, validate: str) -> tuple[Any, Any]:
    x = logits.detach().requires_grad_()
    loss = probloss.ctc_loss(labels, x, label_lengths, logit_lengths, validate=validate)
    loss.sum().backward()
    return loss.detach(), x.grad


def jax_contenders(labels: np.ndarray, logits: np.ndarray, label_lengths: np.ndarray,
                   logit_lengths: np.ndarray) -> dict[str, Any]:
    """Jitted ``value_and_grad`` functions ``f(logits) -> (per-sample losses, grad of their sum)``."""
    y, ll, tl = jnp.asarray(labels), jnp.asarray(label_lengths), jnp.asarray(logit_lengths)
    frames, slots = logits.shape[1], labels.shape[1]
    logit_pad = (jnp.arange(frames)[None, :] >= tl[:, None]).astype(jnp.float32)
    label_pad = (jnp.arange(slots)[None, :] >= ll[:, None]).astype(jnp.float32)

    def wrap(per_sample: Any) -> Any:
        def total(x: Any) -> tuple[Any, Any]:
            loss = per_sample(x)
            return jnp.sum(loss), loss

        grad_fn = jax.jit(jax.value_and_grad(total, has_aux=True))

        def run(x: Any) -> tuple[Any, Any]:
            (_, loss), grad = grad_fn(x)
            return jax.block_until_ready(loss), jax.block_until_ready(grad)

        return run

    return {
        "probloss": wrap(lambda x: probloss.ctc_loss(y, x, ll, tl)),
        "optax": wrap(lambda x: optax.ctc_loss(x, logit_pad, y, label_pad, blank_id=0)),
        "keras": wrap(lambda x: keras.ops.ctc_loss(y, x, ll, tl, mask_index=0)),
        "scan": wrap(lambda x: _jax_ctc.scan_ctc(y, x, ll, tl, 0)),
    }


def groups(labels: np.ndarray, logits: np.ndarray, label_lengths: np.ndarray,
           logit_lengths: np.ndarray) -> dict[str, list[Contender]]:
    t_args = [torch.from_numpy(a) for a in (labels, logits, label_lengths, logit_lengths)]
    t_labels, t_logits, t_ll, t_tl = t_args
    jax_fns = jax_contenders(labels, logits, label_lengths, logit_lengths)
    j_logits = jnp.asarray(logits)

    def numpy_compiled() -> Any:
        return _numpy_ctc.compiled_ctc(labels, logits, label_lengths, logit_lengths, 0, True)

    numpy_group = [
        Contender("probloss", "probloss NumPy (compiled, loss + grad)", numpy_compiled, role=PROBLOSS,
                  skip="" if _numpy_ctc.AVAILABLE else "compiled kernel not built"),
        Contender("probloss_forward", "probloss.ctc_loss NumPy (forward only, validate='off')",
                  lambda: probloss.ctc_loss(labels, logits, label_lengths, logit_lengths, validate="off"),
                  result=lambda: [probloss.ctc_loss(labels, logits, label_lengths, logit_lengths, validate="off"),
                                  numpy_compiled()[1]]),
        Contender("torch", "torch F.ctc_loss (from NumPy)",
                  lambda: torch_peer(*[torch.from_numpy(a) for a in (labels, logits, label_lengths, logit_lengths)])),
        Contender("optax", "optax.ctc_loss jit (from NumPy)", lambda: jax_fns["optax"](jnp.asarray(logits))),
        Contender("keras", "keras.ops.ctc_loss JAX jit (from NumPy)", lambda: jax_fns["keras"](jnp.asarray(logits))),
    ]
    torch_group = [
        Contender("probloss", "probloss torch (validate='off')",
                  lambda: probloss_torch(t_labels, t_logits, t_ll, t_tl, "off"), role=PROBLOSS),
        Contender("probloss_validated", "probloss torch (default validation)",
                  lambda: probloss_torch(t_labels, t_logits, t_ll, t_tl, "raise")),
        Contender("torch", "torch F.ctc_loss", lambda: torch_peer(t_labels, t_logits, t_ll, t_tl)),
    ]
    keras_greedy = jax.jit(lambda x, n: keras.ops.ctc_decode(x, n, strategy="greedy", mask_index=0))

    def keras_decode(x: Any) -> tuple[Any, Any]:
        paths, scores = keras_greedy(x, jnp.asarray(logit_lengths))
        return jax.block_until_ready(paths), jax.block_until_ready(scores)

    decode_group = [
        Contender("probloss", "probloss.ctc_decode greedy NumPy", lambda: probloss.ctc_decode(logits, logit_lengths),
                  role=PROBLOSS),
        Contender("keras", "keras.ops.ctc_decode greedy JAX jit (from NumPy)",
                  lambda: keras_decode(jnp.asarray(logits))),
    ]
    jax_group = [
        Contender("probloss", "probloss JAX jit", lambda: jax_fns["probloss"](j_logits), role=PROBLOSS),
        Contender("optax", "optax.ctc_loss jit", lambda: jax_fns["optax"](j_logits)),
        Contender("keras", "keras.ops.ctc_loss JAX jit", lambda: jax_fns["keras"](j_logits)),
        Contender("probloss_scan", "probloss JAX jit, lax.scan path (other devices' path)",
                  lambda: jax_fns["scan"](j_logits)),
    ]
    return {"numpy": numpy_group, "torch": torch_group, "jax": jax_group, "decode": decode_group}


def memory_probe_child(spec: str) -> None:
    """In a fresh process (``--probe CASE:GROUP``): print each contender's peak extra RSS as JSON."""
    case, library = spec.split(":")
    problem = rss_supported()
    if problem:
        print(json.dumps({"error": problem}))
        return
    contenders = groups(*make_case(CASES[case]))[library]
    out: dict[str, Any] = {}
    for c in contenders:
        if c.run is not None:
            warm_up(c.run)
            out[c.key] = peak_rss_extra(c.run)
    print(json.dumps(out))


def probe_memory(case: str, library: str, threads: int | None) -> dict[str, Any]:
    """Peak extra resident memory of each contender of a group, measured in a fresh process
    (``MALLOC_MMAP_THRESHOLD_=65536`` there, which would slow every large allocation if the
    timing ran under it)."""
    result = run_probe(Path(__file__), ["--probe", f"{case}:{library}"]
                       + (["--threads", str(threads)] if threads else []))
    if "error" in result:
        print(f"  WARNING memory probe failed: {result['error']}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    parser.add_argument("--groups", nargs="+", choices=GROUPS, default=list(GROUPS),
                        help="input libraries to time (default: all)")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--budget", type=float, default=30.0, help="seconds per group (at least 3 rounds)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--no-memory", action="store_true", help="skip the memory probes (a fresh process each)")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--markdown", type=Path, default=None)
    parser.add_argument("--probe", help=argparse.SUPPRESS)  # internal: a memory probe in a fresh process
    args = parser.parse_args()
    set_threads(args.threads)
    if args.probe:
        memory_probe_child(args.probe)
        return
    if os.environ.get("MALLOC_MMAP_THRESHOLD_"):
        print("WARNING: MALLOC_MMAP_THRESHOLD_ is set: every large allocation is a fresh mmap, which slows the "
              "timed calls (the memory probes set it in their own processes)")
    info = machine()
    records, markdown = [], ["# CTC loss, forward + backward", "", *machine_lines(info), ""]
    for case in args.cases:
        shape = CASES[case]
        data = make_case(shape)
        _harness.GRAD_ATOL = GRAD_ATOL_PER_FRAME * shape[1]
        print(f"case {case}: B, T, K, L = {shape}")
        for library, contenders in groups(*data).items():
            if library not in args.groups:
                continue
            reference = contenders[0].outputs()
            check(contenders, reference)
            rounds = time_rounds(contenders, args.repeats, args.budget)
            memory = {} if args.no_memory else probe_memory(case, library, args.threads)
            note = ("peak extra RSS MiB (fresh process, MALLOC_MMAP_THRESHOLD_=65536): "
                    + ", ".join(f"{k} {mib(v)}" for k, v in memory.items() if isinstance(v, int))
                    if memory and "error" not in memory else f"memory not measured {memory.get('error', '')}")
            record = case_record("ctc", f"{case}-{library}", f"{case} ({library} inputs)", contenders, rounds,
                                 shape=f"B={shape[0]}, T={shape[1]}, K={shape[2]}, L={shape[3]}", mode=library,
                                 note=note, peak_rss_bytes=memory)
            records.append(record)
            table = ratio_table(record, "probloss")
            markdown += table
            print("\n".join(table))
    write_reports({"machine": info, "cases": records}, args.json, markdown, args.markdown)


if __name__ == "__main__":
    main()
