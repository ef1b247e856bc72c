"""Dask execution: every chunk of rows through NumPy's kernels (the compiled ones where they apply).

The generic kernels run on dask arrays as a graph of many small array-API
operations per chunk (``max``, ``exp``, ``where``, ``sum``, ...), each a task of
its own. The executor here instead builds one task per chunk that calls the
NumPy chain of the same loss on that chunk's NumPy blocks, so a chunk costs
what the same rows cost on NumPy (the compiled kernels where they apply) and
the graph has one task per chunk. The scheduler runs chunks in parallel, so a
chunk's kernel runs on its task's thread only (off the main thread:
:func:`probloss._native.serial_in_worker_threads`).

A loss reduces along ``axis``; that axis is brought into a single chunk first
(rechunking only where it was split), because each row needs all its classes.
The per-row values do not depend on how the rows are split into chunks, so the
result equals NumPy's on the same data, bit for bit.

Where the arrays do not have the simple layout this needs (same shapes, or
sparse labels of the prediction's shape without ``axis``), or are not all dask
arrays, the generic kernel runs on the dask arrays as before.
"""

from __future__ import annotations

from typing import Any

import array_api_compat
import array_api_compat.numpy as numpy_namespace
import dask.array as da
import numpy as np
from dask.base import tokenize

from .. import _native
from .._dispatch import Kernel, call, executor

_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def _layout(arrays: tuple[Any, ...], axis: int | None) -> list[str] | None:
    """Return each array's blockwise index string, or None where chunking does not apply.

    The last array is the prediction; an earlier one either has its shape or is
    a label array with its shape less ``axis`` (sparse labels).
    """
    y_pred = arrays[-1]
    if axis is None or not all(array_api_compat.is_dask_array(a) for a in arrays):
        return None
    if y_pred.ndim > len(_LETTERS) or not 0 <= axis < y_pred.ndim:
        return None
    full = _LETTERS[: y_pred.ndim]
    reduced = full[:axis] + full[axis + 1:]
    without_axis = y_pred.shape[:axis] + y_pred.shape[axis + 1:]
    layout = []
    for a in arrays:
        if a.shape == y_pred.shape:
            layout.append(full)
        elif a.shape == without_axis:
            layout.append(reduced)
        else:  # broadcasting or another layout: leave it to the generic kernel
            return None
    return layout


def _numpy_kernel(name: str, static: dict[str, Any]) -> Any:
    """The function each chunk runs: the NumPy chain of loss ``name`` (fast path first)."""

    def on_chunk(*blocks: np.ndarray | list[np.ndarray]) -> np.ndarray:
        # An array with the reduced axis comes as the list of its blocks along that axis
        # (blockwise without concatenate): one block, as run_by_chunks rechunks it.
        arrays = [b[0] if isinstance(b, list) else b for b in blocks]
        # The scheduler runs chunks in parallel: one thread per chunk's kernel.
        with _native.serial_in_worker_threads():
            return np.asarray(call(name, *arrays, xp=numpy_namespace, **static))

    return on_chunk


def _result_dtype(on_chunk: Any, arrays: tuple[Any, ...], layout: list[str], axis: int) -> np.dtype:
    """The dtype the NumPy chain gives for these inputs, from a call on one row of each."""
    full = layout[-1]
    classes = arrays[-1].shape[axis]  # per-class options (alpha) need the real class count
    # Integer labels 0 and predictions 1/2: a valid input for every loss, so no warning.
    one_row = [np.full([classes if letter == full[axis] else 1 for letter in index],
                       0 if np.issubdtype(a.dtype, np.integer) else 0.5, dtype=a.dtype)
               for a, index in zip(arrays, layout, strict=True)]
    return on_chunk(*one_row).dtype


@executor("dask")
def run_by_chunks(implementation: Kernel, arrays: tuple[Any, ...], static: dict[str, Any], xp: Any) -> Any:
    """Run loss ``implementation.__name__`` chunk by chunk through NumPy's kernels.

    Falls back to running ``implementation`` (the generic kernel) on the dask
    arrays themselves where :func:`_layout` finds no chunk-wise layout.
    """
    axis = static.get("axis")
    layout = _layout(arrays, axis)
    if layout is None:
        return implementation(*arrays, xp=xp, **static)
    name = implementation.__name__
    on_chunk = _numpy_kernel(name, static)
    full = layout[-1]  # the prediction's index: every axis
    out_index = full[:axis] + full[axis + 1:]
    # Each row needs all of its classes: one chunk along the reduced axis. (Not
    # concatenate=True: Dask would copy that single block, a pass over the data.)
    arrays = tuple(a.rechunk({axis: -1}) if index == full else a for a, index in zip(arrays, layout, strict=True))
    dtype = _result_dtype(on_chunk, arrays, layout, axis)
    pairs = [item for a, index in zip(arrays, layout, strict=True) for item in (a, index)]
    return da.blockwise(on_chunk, out_index, *pairs, dtype=dtype, concatenate=False,
                        name=f"probloss-{name}-{tokenize(name, static, *arrays)}",
                        meta=np.empty((0,) * len(out_index), dtype=dtype))
