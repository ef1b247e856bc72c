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
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from typing import Any

from ._config import fast_paths_enabled

__all__ = ["EXECUTORS", "FAST", "GENERIC", "backend_of", "call", "executor", "fast_path", "kernel"]

Kernel = Callable[..., Any]
Executor = Callable[[Kernel, tuple[Any, ...], dict[str, Any], Any], Any]

GENERIC: dict[str, Kernel] = {}
FAST: dict[tuple[str, str], Kernel] = {}
EXECUTORS: dict[str, Executor] = {}

# Native namespace -> module holding its fast paths, imported on first use only
# (so importing probloss never imports an optional array library).
_BACKEND_MODULES: dict[str, str] = {
    "numpy": "probloss._backends._numpy",
    "jax": "probloss._backends._jax",
}

_NAMESPACE_NAMES: dict[str, str] = {
    "array_api_compat.numpy": "numpy",
    "array_api_compat.torch": "torch",
    "array_api_compat.cupy": "cupy",
    "array_api_compat.dask.array": "dask",
    "jax.numpy": "jax",
    "jax.experimental.array_api": "jax",
    "array_api_strict": "array_api_strict",
}


def kernel(fn: Kernel) -> Kernel:
    """Register ``fn`` as the generic kernel for the loss named ``fn.__name__``."""
    GENERIC[fn.__name__] = fn
    return fn


def fast_path(name: str, *, backend: str) -> Callable[[Kernel], Kernel]:
    """Register a fast path for loss ``name`` on one library (``"numpy"``, ...)."""

    def register(fn: Kernel) -> Kernel:
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


@functools.cache
def _chain(name: str, backend: str) -> tuple[Kernel, ...]:
    module = _BACKEND_MODULES.get(backend)
    if module is not None:
        importlib.import_module(module)
    fast = FAST.get((name, backend))
    return (fast, GENERIC[name]) if fast is not None else (GENERIC[name],)


def _run_directly(implementation: Kernel, arrays: tuple[Any, ...], static: dict[str, Any],
                  xp: Any) -> Any:
    return implementation(*arrays, xp=xp, **static)


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
