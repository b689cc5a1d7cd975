"""Parquet read and written a chunk of rows at a time, so no stage holds a whole large input.

Every stage reads its input Parquet through :class:`Table` and writes its output through
:class:`ChunkWriter`. A chunk is ``RETRAIN_CHUNK_ROWS`` rows (default 250,000): a small input is
one chunk, so it costs what it did before; 10M rows pass through in 40 chunks, each a few tens of
MiB. Only what a stage must keep whole (row hashes, timestamps, predicted probabilities) grows
with the rows, at a few bytes per row.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pandas as pd

from components.storage.base import write_failure

DEFAULT_CHUNK_ROWS = 250_000


def chunk_rows() -> int:
    """Rows per chunk: ``RETRAIN_CHUNK_ROWS`` if set (tests use small chunks), else 250,000."""
    value = os.environ.get("RETRAIN_CHUNK_ROWS", "")
    try:
        rows = int(value) if value else DEFAULT_CHUNK_ROWS
    except ValueError as error:
        raise ValueError(f"RETRAIN_CHUNK_ROWS must be a whole number of rows, got {value!r}") \
            from error
    if rows < 1:
        raise ValueError(f"RETRAIN_CHUNK_ROWS must be at least 1, got {rows}")
    return rows


class Table:
    """A Parquet file read chunk by chunk, each chunk a DataFrame with the dtypes a whole read
    would give (an integer column with nulls anywhere in the file is float in every chunk)."""

    def __init__(self, source: str | Path | bytes | BinaryIO):
        """``source``: a file path, a file open for reading (as ingest opens a source file), or
        a whole Parquet file's bytes."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        if isinstance(source, bytes):
            self._source = pa.BufferReader(source)
        else:
            self._source = str(source) if isinstance(source, (str, Path)) else source
        # pre_buffer off: with it, each row group's column data is kept beyond its batches
        # (memory that grows with the file).
        self._file = pq.ParquetFile(self._source, pre_buffer=False)
        # pyarrow converts the schema anew on every access: once here, not once per column.
        self._schema = self._file.schema_arrow
        self._columns = [name for name in self._schema.names
                         if not name.startswith("__index_level_")]

    @property
    def rows(self) -> int:
        return self._file.metadata.num_rows

    @property
    def columns(self) -> list[str]:
        return list(self._columns)

    @property
    def arrow_schema(self):
        return self._schema

    def chunks(self, columns: list[str] | None = None,
               newer_than: tuple[str, object] | None = None) -> Iterator[pd.DataFrame]:
        """The rows in file order, ``chunk_rows()`` at a time; nothing for an empty file.

        ``newer_than=(column, bound)``: only rows whose ``column`` is after ``bound`` or
        missing. Row groups whose statistics say every row is older are skipped unread.
        """
        if columns is not None:
            present = set(self._columns)
            columns = [c for c in columns if c in present]
        casts = self._whole_file_dtypes(columns)
        row_groups = self._row_groups_newer_than(*newer_than) if newer_than else None
        if row_groups == []:
            return
        for batch in self._file.iter_batches(batch_size=chunk_rows(), columns=columns,
                                             row_groups=row_groups):
            frame = batch.to_pandas()
            changed = {name: frame[name].astype(dtype) for name, dtype in casts.items()
                       if name in frame and frame[name].dtype != dtype}
            if changed:
                frame = replace_columns(frame, changed)
            if newer_than:
                values = frame[newer_than[0]]
                frame = frame[(values > newer_than[1]) | values.isna()].reset_index(drop=True)
            if len(frame):
                yield frame

    def _row_groups_newer_than(self, column: str, bound) -> list[int]:
        metadata = self._file.metadata
        index = next((i for i in range(metadata.num_columns)
                      if metadata.row_group(0).column(i).path_in_schema == column), None) \
            if metadata.num_row_groups else None
        wanted = []
        for group in range(metadata.num_row_groups):
            statistics = metadata.row_group(group).column(index).statistics \
                if index is not None else None
            if (statistics is None or not statistics.has_min_max or statistics.null_count
                    or pd.Timestamp(statistics.max) > bound):
                wanted.append(group)
        return wanted

    def read(self, columns: list[str] | None = None) -> pd.DataFrame:
        """The whole file (for the stages that need every row at once, e.g. a full refit)."""
        if not isinstance(self._source, str):
            self._source.seek(0)
        return pd.read_parquet(self._source, columns=columns)

    def _whole_file_dtypes(self, columns: list[str] | None) -> dict[str, object]:
        """Integer and boolean columns that hold a null somewhere: the dtype a whole read gives."""
        import pyarrow as pa

        schema, metadata = self._schema, self._file.metadata
        casts = {}
        for index, name in enumerate(schema.names):
            kind = schema.field(name).type
            if columns is not None and name not in columns:
                continue
            if not (pa.types.is_integer(kind) or pa.types.is_boolean(kind)):
                continue
            if _may_hold_nulls(metadata, index):
                casts[name] = "float64" if pa.types.is_integer(kind) else object
        return casts


def replace_columns(frame: pd.DataFrame, columns: dict) -> pd.DataFrame:
    """``frame`` with some columns replaced, built at once: one assignment per column costs
    time that grows with the frame's width, so thousands of columns took minutes."""
    if not columns:
        return frame
    return pd.DataFrame({name: columns.get(name, frame[name]) for name in frame.columns},
                        index=frame.index)


def _may_hold_nulls(metadata, column_index: int) -> bool:
    for group in range(metadata.num_row_groups):
        statistics = metadata.row_group(group).column(column_index).statistics
        if statistics is None or not statistics.has_null_count or statistics.null_count:
            return True
    return False


class ChunkSchemaError(ValueError):
    """A chunk's columns do not fit the file's schema (e.g. text where earlier chunks had none)."""


class ChunkWriter:
    """Write DataFrames one after another into one Parquet file, in a temporary file that is
    renamed into place on :meth:`close`, so a failed stage never leaves a partial output."""

    def __init__(self, path: str | Path, schema=None):
        """``schema``: the pyarrow schema every chunk is cast to; else the first chunk's."""
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._partial = self.path.with_name(self.path.name + ".partial")
        self._schema = schema
        self._writer = None
        self.rows = 0

    @property
    def schema(self):
        """The pyarrow schema every chunk is cast to (None before the first chunk, if not given)."""
        return self._schema

    def write(self, frame: pd.DataFrame) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not len(frame):
            return
        if self._schema is None:
            self._schema = pa.Table.from_pandas(frame, preserve_index=False).schema
        try:
            table = pa.Table.from_pandas(frame, schema=self._schema, preserve_index=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError, KeyError) as error:
            raise ChunkSchemaError(f"{self.path.name}: a chunk's columns do not match the earlier "
                             f"chunks' ({error})") from error
        try:
            if self._writer is None:
                self._writer = pq.ParquetWriter(self._partial, self._schema)
            self._writer.write_table(table)
        except OSError as error:
            raise write_failure(str(self.path), error) from error
        self.rows += len(frame)

    def close(self) -> None:
        """Finish the file; with nothing written, an empty table (no rows, no columns)."""
        try:
            if self._writer is None:
                pd.DataFrame().to_parquet(self._partial, index=False)
            else:
                self._writer.close()
            os.replace(self._partial, self.path)
        except OSError as error:
            raise write_failure(str(self.path), error) from error

    def discard(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._partial.unlink(missing_ok=True)

    def __enter__(self) -> ChunkWriter:
        return self

    def __exit__(self, error_type, error, traceback) -> None:
        if error_type is None:
            self.close()
        else:
            self.discard()


class FrameTable:
    """A DataFrame already in memory, read through the same interface as :class:`Table`."""

    def __init__(self, frame: pd.DataFrame):
        self.frame = frame

    @property
    def rows(self) -> int:
        return len(self.frame)

    @property
    def columns(self) -> list[str]:
        return list(self.frame.columns)

    def chunks(self, columns: list[str] | None = None) -> Iterator[pd.DataFrame]:
        frame = self.frame if columns is None else self.frame[
            [c for c in columns if c in self.frame]]
        size = chunk_rows()
        for start in range(0, len(frame), size):
            yield frame.iloc[start:start + size] if len(frame) > size else frame

    def read(self, columns: list[str] | None = None) -> pd.DataFrame:
        return self.frame if columns is None else self.frame[columns]


def as_table(data: pd.DataFrame | Table | FrameTable | str | Path) -> Table | FrameTable:
    """A Parquet path, a Table, or a DataFrame, as something read chunk by chunk."""
    if isinstance(data, Table | FrameTable):
        return data
    if isinstance(data, pd.DataFrame):
        return FrameTable(data)
    return Table(data)


def rows_since_newest(data, wanted: int, timestamp_column: str) -> tuple[object, pd.DataFrame]:
    """``(since, rows)``: ``data``'s rows whose event time is at or after ``since``, the event
    time of its ``wanted``-th newest row, or missing; read a chunk at a time, in file order.
    Every row left out is older than ``wanted`` rows kept. ``(None, every row)`` where no more
    than ``wanted`` rows have an event time, or there is none (batch mode)."""
    table = as_table(data)
    if table.rows <= wanted or not timestamp_column or timestamp_column not in table.columns:
        return None, table.read()
    stamps = table.read([timestamp_column])[timestamp_column]
    if stamps.count() <= wanted:
        return None, table.read()
    since = stamps.nlargest(wanted).iloc[-1]
    pieces = [chunk[at_or_after(chunk[timestamp_column], since)] for chunk in table.chunks()]
    return since, pd.concat(pieces, ignore_index=True)


def at_or_after(stamps: pd.Series, since) -> pd.Series:
    """Event times at or after ``since``, and missing ones: a stable sort puts those last."""
    return stamps.isna() | (stamps >= since)


def row_hashes(frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """One 64-bit hash per row of ``columns``: equal rows, equal hashes (as
    ``DataFrame.duplicated`` sees them), so repeats can be found across chunks."""
    return pd.util.hash_pandas_object(frame[columns], index=False).to_numpy()


def first_occurrences(hashes: np.ndarray) -> np.ndarray:
    """A mask of the first row of each distinct hash (``~DataFrame.duplicated()``).

    A stable argsort rather than ``np.unique``, whose hash table needs several times the memory.
    """
    order = np.argsort(hashes, kind="stable")
    ordered = hashes[order]
    starts = np.ones(len(ordered), dtype=bool)
    starts[1:] = ordered[1:] != ordered[:-1]
    del ordered
    firsts = order[starts]
    del order
    is_first = np.zeros(len(hashes), dtype=bool)
    is_first[firsts] = True
    return is_first
