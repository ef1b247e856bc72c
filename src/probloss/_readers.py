"""Column readers for ``probloss score``: .npy, .npz, .csv and .parquet, in bounded chunks.

A source is named ``PATH`` or ``PATH:SELECTOR``: the key of an ``.npz`` member, or one
or more comma-separated column names of a ``.csv`` (with a header) or ``.parquet``
file. Several columns, or one list column, give one row of class scores per record.
Each reader yields NumPy arrays of at most ``chunk_rows`` rows, so memory stays
bounded whatever the file's size: ``.npy`` is read with plain file reads from the
header's offset (no memory map, whose touched pages would count in the resident
size), ``.parquet`` through pyarrow's batch iterator, ``.csv`` line by line.
``.npz`` members are read whole (a compressed member cannot be read in parts).

Data is never code: ``.npy``/``.npz`` files holding Python objects are refused,
never unpickled. Every problem raises :class:`InputError`, whose message names
the file, and the row or column where it can.
"""

from __future__ import annotations

import csv
import functools
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["InputError", "Source", "open_source"]


class InputError(Exception):
    """Bad input for ``probloss score``: the message is one line for the user."""


@dataclass
class Source:
    """A readable column set: ``label`` names it in messages, ``rows`` if known up front."""

    label: str
    rows: int | None
    bytes_per_row: int
    _chunks: Any
    #: ``(chunk_rows) -> [(start, stop, read)]``: independent, picklable reads of row
    #: ranges (for Dask workers), or None where the format reads only in sequence (.csv).
    _blocks: Any = None

    def chunks(self, chunk_rows: int) -> Iterator[np.ndarray]:
        """Yield consecutive arrays of at most ``chunk_rows`` rows."""
        return self._chunks(chunk_rows)

    def blocks(self, chunk_rows: int) -> list[tuple[int, int, Callable[[], np.ndarray]]] | None:
        """Row ranges of about ``chunk_rows`` rows, each with a function that reads it."""
        return None if self._blocks is None else self._blocks(chunk_rows)


def open_source(spec: str) -> Source:
    """Open ``PATH[:SELECTOR]`` for reading; see the module docstring."""
    path, selector = _split(spec)
    if not os.path.exists(path):
        msg = f"{path}: no such file"
        raise InputError(msg)
    if os.path.isdir(path):
        msg = f"{path}: is a directory, not a file"
        raise InputError(msg)
    suffix = os.path.splitext(path)[1].lower()
    openers = {".npy": _npy, ".npz": _npz, ".csv": _csv, ".parquet": _parquet, ".pq": _parquet}
    if suffix not in openers:
        msg = f"{path}: unknown file type {suffix or '(none)'}; expected .npy, .npz, .csv or .parquet"
        raise InputError(msg)
    if suffix == ".npy" and selector:
        msg = f"{spec}: a .npy file holds one array; drop ':{selector}'"
        raise InputError(msg)
    return openers[suffix](path, selector)


def _split(spec: str) -> tuple[str, str | None]:
    # Windows drive letters ("C:\\x.npy") and paths that exist as written keep their colon.
    if os.path.exists(spec) or ":" not in spec[2:]:
        return spec, None
    path, _, selector = spec.rpartition(":")
    return path, selector or None


def _refuse_objects(path: str, dtype: np.dtype) -> None:
    if dtype.hasobject:
        msg = (
            f"{path}: holds Python objects (a pickled array); probloss reads numbers "
            "only and never unpickles"
        )
        raise InputError(msg)
    if not (np.issubdtype(dtype, np.number) or np.issubdtype(dtype, np.bool_)):
        msg = f"{path}: holds {dtype} values, not numbers"
        raise InputError(msg)


def _npy(path: str, _selector: str | None) -> Source:
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            reader = {(1, 0): np.lib.format.read_array_header_1_0,
                      (2, 0): np.lib.format.read_array_header_2_0}.get(version)
            if reader is None:
                msg = f"{path}: unsupported .npy format version {version}"
                raise InputError(msg)
            shape, fortran, dtype = reader(f)
            offset = f.tell()
    except InputError:
        raise
    except Exception as error:  # not an .npy file at all
        msg = f"{path}: not a readable .npy file ({error})"
        raise InputError(msg) from None
    _refuse_objects(path, dtype)
    if len(shape) == 0:
        msg = f"{path}: holds a scalar; expected one row per sample"
        raise InputError(msg)
    row_items = int(np.prod(shape[1:], dtype=np.int64))
    row_bytes = row_items * dtype.itemsize

    def chunks(chunk_rows: int) -> Iterator[np.ndarray]:
        if fortran and len(shape) > 1:
            # Column-major on disk: rows are not contiguous; a memory map reads them.
            data = np.load(path, mmap_mode="r", allow_pickle=False)
            for start in range(0, shape[0], chunk_rows):
                yield np.array(data[start:start + chunk_rows])
            return
        with open(path, "rb") as f:
            f.seek(offset)
            for start in range(0, shape[0], chunk_rows):
                n = min(chunk_rows, shape[0] - start)
                block = np.fromfile(f, dtype=dtype, count=n * row_items)
                if block.size != n * row_items:
                    msg = f"{path}: file is truncated at row {start + block.size // max(row_items, 1)}"
                    raise InputError(msg)
                yield block.reshape((n, *shape[1:]))

    def blocks(chunk_rows: int) -> list[tuple[int, int, Callable[[], np.ndarray]]]:
        return [(start, min(start + chunk_rows, shape[0]),
                 functools.partial(_read_npy_rows, path, offset, dtype.str, tuple(shape), fortran, start,
                                   min(start + chunk_rows, shape[0])))
                for start in range(0, shape[0], chunk_rows)]

    return Source(path, int(shape[0]), row_bytes, chunks, blocks)


def _read_npy_rows(path: str, offset: int, dtype: str, shape: tuple[int, ...], fortran: bool,
                   start: int, stop: int) -> np.ndarray:
    """Rows ``start:stop`` of an .npy file (a module-level function: Dask pickles it)."""
    if fortran and len(shape) > 1:
        return np.array(np.load(path, mmap_mode="r", allow_pickle=False)[start:stop])
    row_items = int(np.prod(shape[1:], dtype=np.int64))
    itemsize = np.dtype(dtype).itemsize
    with open(path, "rb") as f:
        f.seek(offset + start * row_items * itemsize)
        block = np.fromfile(f, dtype=np.dtype(dtype), count=(stop - start) * row_items)
    return block.reshape((stop - start, *shape[1:]))


def _npz(path: str, key: str | None) -> Source:
    try:
        archive = np.load(path, allow_pickle=False)
    except Exception as error:
        msg = f"{path}: not a readable .npz file ({error})"
        raise InputError(msg) from None
    with archive:
        keys = list(archive.files)
        if key is None:
            if len(keys) != 1:
                msg = (
                    f"{path}: holds {len(keys)} arrays ({', '.join(keys)}); "
                    f"name one as {path}:KEY"
                )
                raise InputError(msg)
            key = keys[0]
        if key not in keys:
            msg = f"{path}: no array named {key!r}; it holds {', '.join(keys)}"
            raise InputError(msg)
        try:
            data = archive[key]
        except ValueError:
            msg = (
                f"{path}:{key}: holds Python objects (a pickled array); probloss "
                "reads numbers only and never unpickles"
            )
            raise InputError(msg) from None
    label = f"{path}:{key}"
    _refuse_objects(label, data.dtype)
    if data.ndim == 0:
        msg = f"{label}: holds a scalar; expected one row per sample"
        raise InputError(msg)

    def chunks(chunk_rows: int) -> Iterator[np.ndarray]:
        for start in range(0, data.shape[0], chunk_rows):
            yield data[start:start + chunk_rows]

    def blocks(chunk_rows: int) -> list[tuple[int, int, Callable[[], np.ndarray]]]:
        return [(start, min(start + chunk_rows, len(data)),
                 functools.partial(_slice, data, start, start + chunk_rows))
                for start in range(0, len(data), chunk_rows)]

    return Source(label, int(data.shape[0]), data[:1].nbytes or 8, chunks, blocks)


def _slice(data: np.ndarray, start: int, stop: int) -> np.ndarray:
    return data[start:stop]


def _csv(path: str, selector: str | None) -> Source:
    with open(path, newline="") as f:
        first = next(csv.reader(f), None)
    if first is None:
        msg = f"{path}: is empty"
        raise InputError(msg)
    header = not all(_is_number(cell) for cell in first)
    if selector is not None:
        if not header:
            msg = f"{path}: has no header row, so columns cannot be named ({selector})"
            raise InputError(msg)
        wanted = selector.split(",")
        missing = [c for c in wanted if c not in first]
        if missing:
            msg = f"{path}: no column {missing[0]!r}; it has {', '.join(first)}"
            raise InputError(msg)
        columns = [first.index(c) for c in wanted]
    else:
        columns = list(range(len(first)))

    def chunks(chunk_rows: int) -> Iterator[np.ndarray]:
        with open(path, newline="") as f:
            reader = csv.reader(f)
            if header:
                next(reader)
            row = 1 + header  # 1-based line numbers, as an editor shows them
            block: list[list[float]] = []
            for record in reader:
                if not record:
                    row += 1
                    continue
                try:
                    block.append([float(record[c]) for c in columns])
                except (ValueError, IndexError):
                    msg = (
                        f"{path}: line {row}: expected {len(columns)} numbers, "
                        f"read {','.join(record)[:60]!r}"
                    )
                    raise InputError(msg) from None
                row += 1
                if len(block) == chunk_rows:
                    yield _csv_block(block, len(columns), selector)
                    block = []
            if block:
                yield _csv_block(block, len(columns), selector)

    return Source(path, None, 8 * len(columns), chunks)


def _csv_block(block: list[list[float]], width: int, selector: str | None) -> np.ndarray:
    array = np.asarray(block, dtype=np.float64)
    # One column is a vector (labels, weights); several are class scores.
    return array[:, 0] if width == 1 else array


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _parquet(path: str, selector: str | None) -> Source:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        msg = (
            f"{path}: reading .parquet files needs pyarrow: "
            "pip install 'probloss[parquet]'"
        )
        raise InputError(msg) from None
    try:
        # Streamed reads: no whole-row-group pre-buffering, so memory stays bounded by the batch size.
        file = pq.ParquetFile(path, pre_buffer=False, buffer_size=4 * 2**20)
    except Exception as error:
        msg = f"{path}: not a readable Parquet file ({error})"
        raise InputError(msg) from None
    names = file.schema_arrow.names
    wanted = selector.split(",") if selector else names
    missing = [c for c in wanted if c not in names]
    if missing:
        msg = f"{path}: no column {missing[0]!r}; it has {', '.join(names)}"
        raise InputError(msg)
    for name in wanted:
        kind = file.schema_arrow.field(name).type
        if not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)
                or pa.types.is_list(kind) or pa.types.is_fixed_size_list(kind)
                or pa.types.is_large_list(kind)):
            msg = f"{path}: column {name!r} holds {kind}, not numbers"
            raise InputError(msg)

    def chunks(chunk_rows: int) -> Iterator[np.ndarray]:
        start = 0
        for batch in file.iter_batches(batch_size=chunk_rows, columns=wanted, use_threads=False):
            yield _parquet_columns(path, batch, wanted, start)
            start += batch.num_rows

    def blocks(_chunk_rows: int) -> list[tuple[int, int, Callable[[], np.ndarray]]]:
        out, start = [], 0
        for group in range(file.metadata.num_row_groups):  # a row group is Parquet's unit of reading
            rows = file.metadata.row_group(group).num_rows
            out.append((start, start + rows,
                        functools.partial(_read_parquet_group, path, tuple(wanted), group, start)))
            start += rows
        return out

    row_bytes = 8 * max(len(wanted), 1)
    if file.metadata.num_row_groups and file.metadata.row_group(0).num_rows:
        group = file.metadata.row_group(0)  # list columns: the stored size tells the row width
        row_bytes = max(row_bytes, group.total_byte_size // group.num_rows)
    return Source(f"{path}:{','.join(wanted)}" if selector else path, file.metadata.num_rows,
                  row_bytes, chunks, blocks)


def _read_parquet_group(path: str, columns: tuple[str, ...], group: int, start: int) -> np.ndarray:
    """One row group's columns as an array (a module-level function: Dask pickles it)."""
    import pyarrow.parquet as pq

    table = pq.ParquetFile(path).read_row_group(group, columns=list(columns))
    return _parquet_columns(path, table, list(columns), start)


def _parquet_columns(path: str, batch: Any, wanted: list[str], start: int) -> np.ndarray:
    import pyarrow as pa

    def column(name: str) -> np.ndarray:
        values = batch.column(name)
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        if values.null_count:
            row = start + int(np.flatnonzero(np.asarray(values.is_null()))[0])
            msg = f"{path}: column {name!r} is empty (null) at row {row}"
            raise InputError(msg)
        if pa.types.is_list(values.type) or pa.types.is_large_list(values.type) or \
                pa.types.is_fixed_size_list(values.type):
            flat = values.flatten().to_numpy(zero_copy_only=False)
            if len(values) and flat.size % len(values):
                msg = (
                    f"{path}: list column {name!r} has rows of different lengths "
                    f"near row {start}"
                )
                raise InputError(msg)
            return flat.reshape(len(values), -1)
        return values.to_numpy(zero_copy_only=False)

    parts = [column(name) for name in wanted]
    return parts[0] if len(parts) == 1 else np.column_stack(parts)
