"""``probloss score --dask``: the same scoring, as a Dask task graph.

Each file becomes a dask array whose blocks are independent reads of row ranges
(.npy row ranges, .npz slices, Parquet row groups; a .csv is read by the client,
in chunks, as it can only be read in sequence). The labels and weights are
rechunked to the predictions' row blocks, each block is checked and scored by
:func:`probloss._score.block_sums` on a worker, and the float64 sums are added
in a tree. Without ``--scheduler`` the local threaded scheduler runs it; with an
address, a ``dask.distributed`` cluster does (the files must be readable there
at the same paths).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _metrics
from ._readers import InputError, Source
from ._score import BlockSums, ScoreResult, _chunk_rows, block_sums, finish

__all__ = ["score_with_dask", "source_array"]


def source_array(source: Source, chunk_rows: int) -> Any:
    """A dask array of ``source``, one block per independent read."""
    import dask
    import dask.array as da

    blocks = source.blocks(chunk_rows)
    if blocks is None:  # sequential formats: the client reads, the workers compute
        return da.concatenate([da.from_array(chunk, chunks=chunk.shape) for chunk in source.chunks(chunk_rows)])
    first = blocks[0][2]()  # one read here gives the dtype and the row shape
    parts = [da.from_array(first, chunks=first.shape)]
    for start, stop, read in blocks[1:]:
        parts.append(da.from_delayed(dask.delayed(read)(), shape=(stop - start, *first.shape[1:]),
                                     dtype=first.dtype))
    return da.concatenate(parts)


def _add(parts: list[BlockSums]) -> BlockSums:
    total = parts[0]
    for part in parts[1:]:
        total = total + part
    return total


def score_with_dask(metric: _metrics.MeanMetricWrapper, y_true: Source, y_pred: Source,
                    sample_weight: Source | None = None, *, scheduler: str | None = None,
                    chunk_bytes: int) -> ScoreResult:
    """Score through Dask; see the module docstring."""
    try:
        import dask
    except ImportError:
        msg = "--dask needs Dask: pip install 'probloss[dask]'"
        raise InputError(msg) from None
    sources = [s for s in (y_true, y_pred, sample_weight) if s is not None]
    if y_pred.rows == 0:
        return finish(metric, None, 0)
    rows = _chunk_rows(chunk_bytes, *sources)
    arrays = [source_array(s, rows) for s in sources]
    lengths = [a.shape[0] for a in arrays]
    if len(set(lengths)) > 1:
        named = " and ".join(f"{s.label} ({n} rows)" for s, n in zip(sources, lengths, strict=True))
        msg = f"the files differ in length: {named}"
        raise InputError(msg)
    row_chunks = arrays[1].chunks[0]
    arrays = [a.rechunk((row_chunks, *(-1,) * (a.ndim - 1))) for a in arrays]
    blocks = [a.to_delayed().ravel() for a in arrays]
    labels_of = (y_true.label, y_pred.label, None if sample_weight is None else sample_weight.label)
    starts = np.concatenate([[0], np.cumsum(row_chunks)[:-1]]).tolist()
    score_block = dask.delayed(block_sums, pure=True)
    parts = [score_block(metric, yt, yp, blocks[2][i] if sample_weight is not None else None,
                         int(starts[i]), labels_of)
             for i, (yt, yp) in enumerate(zip(blocks[0], blocks[1], strict=True))]
    while len(parts) > 1:  # a tree of additions, 8 at a time
        parts = [dask.delayed(_add)(parts[i:i + 8]) for i in range(0, len(parts), 8)]
    if scheduler:
        try:
            from distributed import Client
        except ImportError:
            msg = "--scheduler needs dask.distributed: pip install distributed"
            raise InputError(msg) from None
        with Client(scheduler) as client:
            (sums,) = client.compute(parts, sync=True)
    else:
        (sums,) = dask.compute(*parts, scheduler="threads")
    return finish(metric, sums, int(lengths[0]))
