"""The kernel table: generic array-API kernels plus optional per-library fast paths.

A kernel is registered under its loss name with :func:`kernel`; a fast path for
one library with :func:`fast_path`. :func:`call` resolves the chain for a
``(name, library)`` pair once (cached), tries the fast path first, and falls
back to the generic kernel when the fast path returns ``NotImplemented``. Fast
paths decline on static arguments only, never on data, so every chain is safe
under ``jax.jit`` and on lazy arrays.

A library may also register an *executor* with :func:`executor`: a function
that runs whichever implementation was chosen, for example block by block so
that temporaries stay in cache (NumPy). Executors count as fast paths:
``probloss.fast_paths(False)`` turns them off too.

A fast path registered with ``observes=True`` also reports, from the same pass
over the data, the minimum and maximum of its input arrays into an
:class:`Observed` passed as ``observe=`` by :func:`call_observing` (the
functional layer uses them for its data checks instead of passes of its own);
:func:`call` passes ``observe=None``. Such a fast path returns NotImplemented
to :func:`call_observing` where it cannot observe. A fast path registered with
``whole=True`` is run on the whole arrays by the library's executor (it does
its own blocking: compiled kernels).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ._config import fast_paths_enabled

__all__ = ["EXECUTORS", "FAST", "GENERIC", "Observed", "backend_of", "call", "call_generic", "call_observing",
           "executor", "fast_path", "import_backend", "kernel"]

Kernel = Callable[..., Any]
Executor = Callable[[Kernel, tuple[Any, ...], dict[str, Any], Any], Any]

GENERIC: dict[str, Kernel] = {}
FAST: dict[tuple[str, str], Kernel] = {}
EXECUTORS: dict[str, Executor] = {}

# Native namespace -> module holding its fast paths, imported on first use only
# (so importing probloss never imports an optional array library).
_BACKEND_MODULES: dict[str, str] = {
    "numpy": "probloss._backends._numpy",
    "torch": "probloss._backends._torch",
    "jax": "probloss._backends._jax",
    "dask": "probloss._backends._dask",
    "tensorflow": "probloss._backends._tensorflow",
}

# Further fast-path modules of a library (one loss family each, such as CTC),
# imported together with its main module.
_MORE_BACKEND_MODULES: dict[str, tuple[str, ...]] = {
    "numpy": ("probloss._backends._numpy_ctc",),
    "torch": ("probloss._backends._torch_ctc",),
    "jax": ("probloss._backends._jax_ctc",),
}

_NAMESPACE_NAMES: dict[str, str] = {
    "array_api_compat.numpy": "numpy",
    "array_api_compat.torch": "torch",
    "array_api_compat.cupy": "cupy",
    "array_api_compat.dask.array": "dask",
    "jax.numpy": "jax",
    "jax.experimental.array_api": "jax",
    "array_api_strict": "array_api_strict",
    "probloss._backends._tensorflow_namespace": "tensorflow",
}


def kernel(fn: Kernel) -> Kernel:
    """Register ``fn`` as the generic kernel for the loss named ``fn.__name__``."""
    GENERIC[fn.__name__] = fn
    return fn


@dataclass
class Observed:
    """What a fast path saw of its inputs: position in the call -> (minimum, maximum).

    A NaN anywhere makes the minimum or the maximum NaN; empty arrays are left out.
    """

    bounds: dict[int, tuple[float, float]] = field(default_factory=dict)
    #: positions of probability inputs whose every row along the class axis was seen
    #: to hold finite non-negative values with a positive sum
    positive_rows: set[int] = field(default_factory=set)


def fast_path(name: str, *, backend: str, observes: bool = False,
              whole: bool = False) -> Callable[[Kernel], Kernel]:
    """Register a fast path for loss ``name`` on one library (``"numpy"``, ...).

    ``observes``: it accepts ``observe=`` (an :class:`Observed` to fill, or None).
    ``whole``: the executor must hand it the whole arrays (no blocking).
    """

    def register(fn: Kernel) -> Kernel:
        fn.observes_data = observes  # type: ignore[attr-defined]
        fn.whole_arrays = whole  # type: ignore[attr-defined]
        FAST[name, backend] = fn
        return fn

    return register


def executor(backend: str) -> Callable[[Executor], Executor]:
    """Register how kernels run on one library: ``run(impl, arrays, static, xp)``."""

    def register(fn: Executor) -> Executor:
        EXECUTORS[backend] = fn
        return fn

    return register


def backend_of(xp: Any) -> str:
    """Return the short library name of an array-API namespace."""
    return _NAMESPACE_NAMES.get(xp.__name__, xp.__name__)


# (name, library) -> the implementations to try, in order. A plain dict rather than
# functools.cache: torch.compile reads a dict (with a guard) but traces through a cache
# wrapper into the import below, which it cannot trace (a graph break in every loss).
_CHAINS: dict[tuple[str, str], tuple[Kernel, ...]] = {}


def _chain(name: str, backend: str) -> tuple[Kernel, ...]:
    chain = _CHAINS.get((name, backend))
    if chain is None:
        import_backend(backend)
        fast = FAST.get((name, backend))
        chain = _CHAINS[name, backend] = (fast, GENERIC[name]) if fast is not None else (GENERIC[name],)
    return chain


def import_backend(backend: str) -> None:
    """Import the module holding ``backend``'s fast paths (registering them), if any."""
    main = _BACKEND_MODULES.get(backend)
    for module in (() if main is None else (main,)) + _MORE_BACKEND_MODULES.get(backend, ()):
        if module not in sys.modules:
            importlib.import_module(module)


def _run_directly(implementation: Kernel, arrays: tuple[Any, ...], static: dict[str, Any],
                  xp: Any) -> Any:
    return implementation(*arrays, xp=xp, **static)


def call_observing(name: str, *arrays: Any, xp: Any, observe: Observed, **static: Any) -> Any:
    """Run ``name`` through a fast path that also reports its inputs' bounds into ``observe``.

    Returns NotImplemented, having run nothing, where no such fast path applies
    (then the caller checks its data first and uses :func:`call`).
    """
    if not fast_paths_enabled():
        return NotImplemented
    backend = backend_of(xp)
    chain = _chain(name, backend)
    run = EXECUTORS.get(backend, _run_directly)
    for implementation in chain[:-1]:  # the generic kernel observes nothing
        if getattr(implementation, "observes_data", False):
            return run(implementation, arrays, {**static, "observe": observe}, xp)
    return NotImplemented


def call(name: str, *arrays: Any, xp: Any, **static: Any) -> Any:
    """Run the kernel ``name`` on ``arrays``, through a fast path where one applies."""
    if fast_paths_enabled():
        backend = backend_of(xp)
        chain = _chain(name, backend)  # imports the backend module, which may add an executor
        run = EXECUTORS.get(backend, _run_directly)
    else:
        chain, run = (GENERIC[name],), _run_directly
    for implementation in chain:
        out = run(implementation, arrays, static, xp)
        if out is not NotImplemented:
            return out
    msg = f"No kernel accepted the call to {name!r}."  # unreachable: generic never declines
    raise RuntimeError(msg)


def call_generic(name: str, *arrays: Any, xp: Any, **static: Any) -> Any:
    """Run the generic kernel ``name``, bypassing every fast path and executor.

    For options that the fast paths do not implement (class and positive-class
    weights, log-space inputs): a fast path never sees, and so can never ignore, them.
    """
    return GENERIC[name](*arrays, xp=xp, **static)
