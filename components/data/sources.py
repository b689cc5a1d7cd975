"""Reading a source's files within bounds, and putting per-file Parquet parts back together.

Every limit on what is read from a file a user points us at is here: a CSV header is read from
its first line only (:data:`MAX_HEADER_BYTES`, :data:`MAX_COLUMNS`, :data:`MAX_COLUMN_NAME`), a
``.csv.gz`` may expand :data:`MAX_EXPANSION` times; a file over a limit raises
:class:`FileOverLimit` naming it. Parquet is read a chunk at a time, skipping row groups a time
bound rules out.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pandas as pd

from components.data.chunks import ChunkWriter, Table, chunk_rows, replace_columns
from components.data.schema import as_category_strings


def read_chunks(source: BinaryIO, name: str, *, timestamp_column: str = "",
                rows_after: pd.Timestamp | None = None) -> tuple[list[str], Iterator[pd.DataFrame]]:
    """A file's columns, and its rows chunk by chunk; ``name`` picks the format.

    ``source`` is the file open for reading, never read whole into memory: a Parquet file is
    read a chunk of rows at a time (see :mod:`components.data.chunks`), and with
    ``rows_after``, and a timestamp column stored as a timestamp, only rows after it are read:
    row groups that end earlier are skipped unread (their statistics say so). A CSV file is
    parsed a chunk at a time too, each chunk's types inferred from its own rows (the caller
    reconciles them); a ``.csv.gz`` likewise as it is decompressed, within
    :data:`MAX_EXPANSION` (:class:`FileOverLimit` from the chunk that passes it). The caller
    drops the rows it does not need.
    """
    if name.lower().endswith((".parquet", ".pq")):
        table = Table(source)
        check_column_names(table.columns)
        bound = parquet_bound(table.arrow_schema, timestamp_column, rows_after)
        if bound is None:
            return table.columns, table.chunks()
        # Rows without a timestamp stay in, so that they are reported, not silently lost.
        return table.columns, table.chunks(newer_than=(timestamp_column, bound))
    if name.lower().endswith(".gz"):
        expansion = _BoundedExpansion(source)
        names = csv_header(expansion.head(MAX_HEADER_BYTES + 1))
        source = io.BufferedReader(expansion.restart())
    else:
        names = csv_header(source.read(MAX_HEADER_BYTES + 1))
        source.seek(0)
    # The names are given (checked, made unique): pandas' own de-duplication of a header is
    # quadratic in its width (40k empty names: 12.8 s).
    return names, iter(pd.read_csv(source, header=0, names=names, index_col=False,
                                   chunksize=chunk_rows()))


class FileOverLimit(Exception):
    """A source file exceeds a limit on what is read (the message names the limit)."""


MAX_HEADER_BYTES = 1 << 20  # a CSV header line


MAX_COLUMNS = 10_000


MAX_COLUMN_NAME = 1_000  # characters


MAX_EXPANSION = 100  # how many times its size a .csv.gz may expand to


MIN_EXPANDED_LIMIT = 1 << 30


def check_column_names(names: list[str]) -> None:
    """Refuse more than :data:`MAX_COLUMNS` columns or a name over :data:`MAX_COLUMN_NAME`."""
    if len(names) > MAX_COLUMNS:
        raise FileOverLimit(f"it has {len(names)} columns; at most {MAX_COLUMNS} are read")
    longest = max((len(str(n)) for n in names), default=0)
    if longest > MAX_COLUMN_NAME:
        raise FileOverLimit(f"a column name has {longest} characters; at most "
                            f"{MAX_COLUMN_NAME} are read")


def csv_header(text: bytes) -> list[str]:
    """The column names of a CSV file, read from its first line only, within the limits, made
    unique as pandas would (``Unnamed: 3`` for an empty name, ``x.1`` for a second ``x``).
    ``text``: the file's start, at least its first :data:`MAX_HEADER_BYTES` + 1 bytes."""
    import csv

    end = text.find(b"\n", 0, MAX_HEADER_BYTES + 1)
    if end < 0 and len(text) > MAX_HEADER_BYTES:
        raise FileOverLimit(f"its first line (the header) is longer than {MAX_HEADER_BYTES} "
                            "bytes, the most read")
    line = text[: end if end >= 0 else len(text)].decode("utf-8", errors="replace")
    try:
        csv.field_size_limit(MAX_HEADER_BYTES)
        names = next(csv.reader([line.rstrip("\r")]), [])
    except csv.Error as error:
        raise FileOverLimit(f"its header cannot be read ({error})") from None
    check_column_names(names)
    unique, seen = [], {}
    for index, raw in enumerate(names):
        base = raw.strip() or f"Unnamed: {index}"
        name, count = base, seen.get(base, 0)
        while name in seen:
            count += 1
            name = f"{base}.{count}"
        seen[base], seen[name] = count, 0
        unique.append(name)
    return unique


class _BoundedExpansion(io.RawIOBase):
    """A ``.csv.gz`` file's content as it is decompressed, refusing to expand past
    :data:`MAX_EXPANSION` times the file's size (at least :data:`MIN_EXPANDED_LIMIT`): a small
    file must not fill the disk or the memory. Read from the start on each :meth:`restart`."""

    def __init__(self, source: BinaryIO):
        size = source.seek(0, os.SEEK_END)
        self.limit = max(MIN_EXPANDED_LIMIT, MAX_EXPANSION * size)
        self._source = source
        self.restart()

    def restart(self) -> _BoundedExpansion:
        import gzip

        self._source.seek(0)
        self._stream = gzip.GzipFile(fileobj=self._source)
        self._expanded = 0
        return self

    def head(self, size: int) -> bytes:
        """The first ``size`` bytes of the content (then :meth:`restart` to read it all)."""
        return self._stream.read(size)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        count = self._stream.readinto(buffer)
        self._expanded += count
        if self._expanded > self.limit:
            raise FileOverLimit(f"it expands to more than {self.limit} bytes ({MAX_EXPANSION} "
                                "times its size), the most read")
        return count


def parquet_bound(schema, column: str, after: pd.Timestamp | None):
    """``after`` in the form a filter on ``column`` needs, or None when it cannot filter."""
    if after is None or not column:
        return None
    import pyarrow as pa

    if column not in schema.names or not pa.types.is_timestamp(schema.field(column).type):
        return None
    stored_tz = schema.field(column).type.tz
    return after.tz_convert(stored_tz) if stored_tz else after.tz_convert("UTC").tz_localize(None)


def object_columns_as_text(frame: pd.DataFrame) -> pd.DataFrame:
    """Object columns holding mixed Python types become text so Parquet can store them."""
    return replace_columns(frame, {column: as_category_strings(values)
                                   for column, values in frame.items() if values.dtype == object})


def parse_timestamps(raw: pd.Series) -> pd.Series:
    """Timestamps as UTC; anything unparseable becomes NaT.

    ISO 8601 first (vectorised), then pandas' per-value "mixed"
    parser for whatever else is left (e.g. ``01/03/2025``), so both give the same result.
    """
    stamps = pd.to_datetime(raw, utc=True, errors="coerce", format="ISO8601")
    retry = stamps.isna() & raw.notna()
    if retry.any():
        stamps[retry] = pd.to_datetime(raw[retry], utc=True, errors="coerce", format="mixed")
    return stamps


def merge_parts(parts: list[Path], path: Path) -> int:
    """Concatenate the per-file Parquet parts into ``path`` chunk by chunk; returns the rows.

    Columns may differ between files. A column that is numbers in one file and text in another
    becomes text in all (one file's typo, ``income = "lots"``, must not make Parquet refuse the
    batch; validate parses the text and reports the typo); integers meet floats as floats; a
    column some files lack is empty there.
    """
    if not parts:
        ChunkWriter(path).close()  # an empty table, as a writer that got no rows leaves
        return 0
    if len(parts) == 1:  # one file's part: already one consistent table
        rows = Table(parts[0]).rows
        os.replace(parts[0], path)
        return rows
    schema, as_text = _merged_schema([Table(part).arrow_schema for part in parts])
    with ChunkWriter(path, schema=schema) as writer:
        for part in parts:
            for frame in Table(part).chunks():
                missing = pd.Series(None, index=frame.index, dtype=object)  # typed nulls
                writer.write(pd.DataFrame(
                    {column: missing if column not in frame else
                     as_category_strings(frame[column]) if column in as_text else frame[column]
                     for column in schema.names}, index=frame.index))
    return writer.rows


def _merged_schema(schemas: list) -> tuple[object, list[str]]:
    """One schema every part fits, and the columns that must become text to get there."""
    import pyarrow as pa

    fields: dict[str, list] = {}
    for schema in schemas:
        for field_ in schema:
            fields.setdefault(field_.name, []).append(field_.type)
    merged, as_text = [], []
    for name, types in fields.items():
        families = {_type_family(kind) for kind in types} - {"empty"}
        if len(families) > 1:
            as_text.append(name)
            merged.append(pa.field(name, pa.large_string()))
            continue
        kind = pa.unify_schemas([pa.schema([(name, kind)]) for kind in types],
                                promote_options="permissive").field(name).type
        if len(types) < len(schemas) and pa.types.is_integer(kind):
            kind = pa.float64()  # the files without the column give it missing values
        merged.append(pa.field(name, kind))
    return pa.schema(merged), as_text


def _type_family(kind) -> str:
    import pyarrow as pa

    if pa.types.is_null(kind):
        return "empty"
    if pa.types.is_boolean(kind):
        return "bool"
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        return "number"
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        return "datetime"
    return "text"


def file_format(name: str) -> str:
    return "Parquet" if name.lower().endswith((".parquet", ".pq")) else "CSV"
