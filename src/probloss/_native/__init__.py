"""The compiled kernels (C extension modules built from the sources in this folder).

Each loss family is one extension module, loaded here once; a module that
cannot be loaded (no compiler at install time, a wheel for another platform)
is ``None``, and NumPy inputs then run through the array-API kernels, which
give the same values, more slowly. The first NumPy fast path that finds its
module missing warns once (:func:`warn_unavailable`) with the fix.

To add a family: build ``src/probloss/_native/<family>.c`` as
``probloss._native._<family>`` (one line in setup.py's EXTENSIONS) and load it
below with :func:`_load`.

Examples:
    >>> import probloss._native as native
    >>> native.binary is None or native.binary.KIND_BCE_LOGITS == 0
    True
"""

from __future__ import annotations

import contextlib
import importlib
import os
import threading
import warnings
from collections.abc import Iterator
from types import ModuleType

from .._config import get_num_threads

__all__ = ["NativeUnavailableWarning", "binary", "load_error", "serial_in_worker_threads", "softmax", "softmax_grad",
           "threads", "warn_unavailable"]


class NativeUnavailableWarning(RuntimeWarning):
    """The compiled kernels could not be loaded; probloss runs on its array-API kernels."""


#: why the last module that failed to load did so (None when all loaded)
load_error: str | None = None


def _load(name: str) -> ModuleType | None:
    global load_error  # set once per failing module at import time
    try:
        return importlib.import_module(f"{__name__}.{name}")
    except ImportError as error:
        load_error = f"{type(error).__name__}: {error}"
        return None


#: probloss._native._binary: binary CE, binary focal CE, Poisson, KL (see binary.c)
binary = _load("_binary")
#: probloss._native._softmax: sparse, categorical and categorical focal CE (see softmax.c)
softmax = _load("_softmax")
#: probloss._native._softmax_grad: categorical focal CE with its gradient (see softmax_focal_grad.c)
softmax_grad = _load("_softmax_grad")

_warned = False

# OpenMP (GNU libgomp) keeps its worker threads in a pool that does not survive
# fork(): a child process that enters a parallel region after its parent used
# one waits forever. So a child forked after parallel use runs the kernels on
# its own thread; use the "spawn" or "forkserver" start method for parallel
# worker processes.
_parallel_used = False
_forked_after_parallel_use = False


def _after_fork_in_child() -> None:
    global _forked_after_parallel_use  # process state, set once per fork
    _forked_after_parallel_use = _forked_after_parallel_use or _parallel_used


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


# Set (per thread) while a task of a parallel scheduler runs kernels: see serial_in_worker_threads.
_serial = threading.local()


@contextlib.contextmanager
def serial_in_worker_threads() -> Iterator[None]:
    """Run the kernels on the calling thread only within this block, unless it is the main thread.

    For the tasks of a parallel scheduler (Dask's threaded scheduler or a
    distributed worker runs chunks on a pool of threads, about one per core):
    each kernel taking every core as well would put cores x cores threads on
    the cores, and OpenMP threads that spin while they wait for work would
    take the time of the other tasks. Dask's synchronous scheduler runs tasks
    on the main thread, which keeps its threads.
    """
    previous = getattr(_serial, "on", False)
    _serial.on = threading.current_thread() is not threading.main_thread()
    try:
        yield
    finally:
        _serial.on = previous


def threads() -> int:
    """The thread count to pass to a kernel: :func:`probloss.get_num_threads`, or 1 in a forked child.

    Also 1 within :func:`serial_in_worker_threads` off the main thread.
    """
    global _parallel_used  # process state
    if _forked_after_parallel_use or getattr(_serial, "on", False):
        return 1
    n = get_num_threads()
    _parallel_used = _parallel_used or n > 1
    return n


def warn_unavailable() -> None:
    """Warn, once per process, that a compiled kernel is missing, and how to get it."""
    global _warned  # once per process, by design
    if _warned:
        return
    _warned = True
    warnings.warn(
        f"probloss's compiled kernels could not be loaded ({load_error}); NumPy inputs use the "
        "array-API kernels instead (the same results within a few ulps, several times slower). "
        "To fix it, reinstall probloss from a wheel (`pip install --force-reinstall probloss`), "
        "or from source with a C compiler available (`pip install --force-reinstall --no-binary probloss probloss`, or "
        "`pip install .` in a checkout).",
        NativeUnavailableWarning,
        stacklevel=3,
    )
