"""Peak extra memory of one call, for NumPy, PyTorch and JAX alike.

Two measures:

- resident memory (all libraries): Linux keeps a process's peak resident set size (VmHWM in
  /proc/self/status) and resets it to the current size when ``5`` is written to
  /proc/self/clear_refs (Linux >= 4.0). Peak extra memory = VmHWM after the call - VmRSS
  before it. This sees every allocation that is touched, whoever makes it (NumPy, PyTorch's
  CPU allocator, XLA, a compiled extension's scratch buffers), which ``tracemalloc`` does
  not (it sees NumPy's data buffers only). For the measure to see freed-and-reused memory,
  the process must run with ``MALLOC_MMAP_THRESHOLD_=65536`` (:data:`PROBE_ENV`): glibc then
  serves every block of 64 KiB or more with its own ``mmap`` and returns it on ``free``,
  instead of keeping it in a heap that a later call reuses without growing the resident set.
  PyTorch's CPU allocator does not cache, so it allocates through glibc as NumPy does.
  The measure runs in a fresh process per case (:func:`run_probe`), after a warm-up call
  (lazy initialisation, thread pools, compiled code) and takes the smaller of two calls
  (one where a call takes over 5 seconds).
- traced memory (NumPy only): ``tracemalloc``'s peak over the call, which counts NumPy's array
  buffers exactly, independently of the allocator and of page granularity.

Both include the call's outputs (the gradient, for forward+backward), the same for every
contender of a case.
"""

from __future__ import annotations

import gc
import json
import os
import re
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

PROBE_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536"}
_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kib(field: str) -> int:
    match = re.search(rf"^{field}:\s+(\d+) kB", _STATUS.read_text(), re.MULTILINE)
    if match is None:
        raise OSError(f"{field} not in {_STATUS}")
    return int(match.group(1))


def rss_supported() -> str:
    """Return "" when the resident-memory probe works here, else why it does not."""
    try:
        _CLEAR_REFS.write_text("5")
        _status_kib("VmHWM")
    except OSError as exc:
        return f"peak RSS reset unavailable ({exc})"
    if os.environ.get("MALLOC_MMAP_THRESHOLD_") != PROBE_ENV["MALLOC_MMAP_THRESHOLD_"]:
        return "MALLOC_MMAP_THRESHOLD_ is not set: freed memory would be reused unseen"
    return ""


def warm_up(call: Callable[[], Any], prepare: Callable[[], None] | None = None) -> float:
    """Call once (lazy initialisation, thread pools, compilation) and return the seconds it took."""
    if prepare is not None:
        prepare()
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def peak_rss_extra(call: Callable[[], Any], prepare: Callable[[], None] | None = None, tries: int = 2) -> int:
    """Peak resident memory added by ``call()``, in bytes: the smallest over ``tries`` calls.

    Args:
        call: the work, already warmed up; its result is kept until the peak is read, then dropped.
        prepare: run before each measurement, outside it (e.g. drop the previous gradient).
        tries: calls measured.
    """
    extras = []
    for _ in range(tries):
        if prepare is not None:
            prepare()
        gc.collect()
        _CLEAR_REFS.write_text("5")
        before = _status_kib("VmRSS")
        result = call()
        peak = _status_kib("VmHWM")
        del result
        extras.append(max(0, peak - before) * 1024)
    return min(extras)


def peak_traced_extra(call: Callable[[], Any], prepare: Callable[[], None] | None = None) -> int:
    """Peak memory traced by ``tracemalloc`` during ``call()`` above what was traced before, in bytes."""
    if prepare is not None:
        prepare()
    gc.collect()
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        result = call()
        _, peak = tracemalloc.get_traced_memory()
        del result
    finally:
        tracemalloc.stop()
    return max(0, peak - before)


def run_probe(script: Path, args: list[str], timeout_s: float = 900) -> dict[str, Any]:
    """Run ``script args`` in a fresh process with :data:`PROBE_ENV` and return the JSON it prints last.

    The child prints one JSON object on its last line of output; a failure is returned as
    ``{"error": ...}`` so that the report says what went wrong instead of stopping the run.
    """
    env = {**os.environ, **PROBE_ENV}
    try:
        proc = subprocess.run([sys.executable, str(script), *args], env=env, capture_output=True, text=True,
                              timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout_s:.0f} s"}
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"error": f"exit {proc.returncode}: {' | '.join(tail)}"}
    try:
        return json.loads(lines[-1])
    except json.JSONDecodeError:
        return {"error": f"unreadable probe output: {lines[-1][:200]}"}


def mib(nbytes: float | None) -> str:
    """Bytes as MiB with one decimal, or a dash."""
    return "–" if nbytes is None else f"{nbytes / 2**20:.1f}"
