"""Stage 1, ingest: read every CSV or Parquet file under a source and split new rows from history.

With a timestamp column, rows after the champion's watermark and at or before the cutoff are new,
rows at or before the watermark are history, later rows wait for a later run. Without one, each file
is a batch: files the champion line has not consumed (by name, size and SHA-256) are new.

Problems that make rows impossible to place (an unreadable file, a missing or unparseable
timestamp) do not crash the stage: they are reported, so that validate ends the run as
``invalid-data`` with the file named.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from components.data.chunks import ChunkSchemaError, ChunkWriter, Table, replace_columns
from components.data.schema import SOURCE_FILE_COLUMN, as_category_strings
from components.outcomes import IngestOutcome, Strategy
from components.params import Timestamp, refuse
from components.records import IngestReport, bounded
from components.storage import FileInfo, sha256_bytes, storage_for

DATA_SUFFIXES = (".csv", ".csv.gz", ".parquet", ".pq")
# How a scheduled time reads when the backend left the placeholder unresolved.
_PLACEHOLDER_PREFIX = "{{$."


class IngestError(Exception):
    """The source cannot be read at all (missing folder, no data files)."""


@dataclass
class IngestResult:
    """Where new rows and history went, with what is needed to move the watermark after a
    deploy."""

    new_data_path: Path
    history_path: Path
    new_rows: int
    history_rows: int
    cutoff: str
    watermark_before: str | None
    new_watermark: str | None
    new_files: dict[str, dict]
    consumed_files: dict[str, dict]
    file_columns: dict[str, list[str]]
    problems: list[str] = field(default_factory=list)

    @property
    def outcome(self) -> str:
        """``new-data`` when there is anything to validate (rows or problems), else ``no-new-data``."""
        if self.new_rows or self.problems:
            return IngestOutcome.NEW_DATA
        return IngestOutcome.NO_NEW_DATA

    @property
    def new_data(self) -> pd.DataFrame:
        """The new rows, read whole (for tests and small sources; stages read them in chunks)."""
        return pd.read_parquet(self.new_data_path)

    @property
    def history(self) -> pd.DataFrame:
        return pd.read_parquet(self.history_path)

    def report(self, **context) -> IngestReport:
        """The summary that travels with the data to the decision record; ``context`` adds the
        step's ``champion_version``, ``source_uri`` and ``history_read``."""
        return IngestReport(
            outcome=self.outcome, cutoff=self.cutoff, watermark_before=self.watermark_before,
            new_watermark=self.new_watermark, new_rows=self.new_rows,
            history_rows=self.history_rows, new_files=self.new_files,
            consumed_files=self.consumed_files, file_columns=self.file_columns,
            problems=self.problems, **context)


def to_utc_timestamp(value: str | datetime | pd.Timestamp) -> pd.Timestamp:
    """Parse an ISO 8601 value as a UTC timestamp (naive values are taken as UTC)."""
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def iso(stamp: pd.Timestamp) -> str:
    """A UTC timestamp as ISO 8601 with a ``Z`` suffix."""
    return stamp.tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def resolve_cutoff(cutoff: str, scheduled_time: str, now: datetime | None = None) -> pd.Timestamp:
    """The data cutoff: ``cutoff`` if given, else the run's scheduled time, else now.

    On a cluster a recurring run passes its scheduled time, so a retried run reads the same rows.
    """
    if cutoff and cutoff.strip():
        try:
            return to_utc_timestamp(cutoff.strip())
        except ValueError:
            raise refuse("cutoff", "the ingest stage", Timestamp.requirement, cutoff) from None
    if scheduled_time and not scheduled_time.startswith(_PLACEHOLDER_PREFIX):
        try:
            return to_utc_timestamp(scheduled_time)
        except ValueError:
            pass  # a one-off run on some backends passes an empty or odd value: use now
    return to_utc_timestamp(now or datetime.now(timezone.utc))


def history_days_needed(strategy: str, window_days: int) -> float | None:
    """How much history a strategy reads: none to fine-tune, the window for ``window``, else all.

    A fine-tune whose champion turns out not to fit falls back to ``full`` on the new rows only.
    """
    return {Strategy.FINETUNE: 0, Strategy.WINDOW: window_days}.get(strategy)


def history_read(history_days: float | None) -> str:
    """What the ingest report says of the history read."""
    if history_days is None:
        return "all"
    return "none" if history_days == 0 else f"the {history_days} days before the watermark"


def no_new_data_reason(result: IngestResult, timestamp_column: str) -> str:
    """Why a run with nothing new ends where it is."""
    if timestamp_column:
        return (f"no rows after the watermark {result.watermark_before} up to the cutoff "
                f"{result.cutoff}")
    return "no files that the champion has not consumed"


def list_data_files(source_uri: str) -> list[FileInfo]:
    """Every CSV or Parquet file under ``source_uri``, sorted by path."""
    files = [
        info
        for info in storage_for(source_uri).list_files(source_uri)
        if info.relative_path.lower().endswith(DATA_SUFFIXES)
    ]
    if not files:
        raise IngestError(
            f"no CSV or Parquet files under {source_uri} (looked for {', '.join(DATA_SUFFIXES)})"
        )
    return files


def read_chunks(data: bytes, name: str, *, timestamp_column: str = "",
                rows_after: pd.Timestamp | None = None) -> tuple[list[str], Iterator[pd.DataFrame]]:
    """A file's columns, and its rows chunk by chunk; ``name`` picks the format.

    A Parquet file is read a chunk of rows at a time (see :mod:`components.data.chunks`). With
    ``rows_after``, and a timestamp column stored as a timestamp, only rows after it are read:
    row groups that end earlier are skipped unread (their statistics say so). A CSV file is one
    chunk, and other files are read whole; the caller drops the rows it does not need.
    """
    if name.lower().endswith((".parquet", ".pq")):
        table = Table(data)
        check_column_names(table.columns)
        bound = _parquet_bound(table.arrow_schema, timestamp_column, rows_after)
        if bound is None:
            return table.columns, table.chunks()
        # Rows without a timestamp stay in, so that they are reported, not silently lost.
        return table.columns, table.chunks(newer_than=(timestamp_column, bound))
    text = _decompressed(data) if name.lower().endswith(".gz") else data
    names = csv_header(text)
    # The names are given (checked, made unique): pandas' own de-duplication of a header is
    # quadratic in its width (40k empty names: 12.8 s).
    frame = pd.read_csv(io.BytesIO(text), header=0, names=names, index_col=False)
    return names, iter([frame])


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
    unique as pandas would (``Unnamed: 3`` for an empty name, ``x.1`` for a second ``x``)."""
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


def _decompressed(data: bytes) -> bytes:
    """A .csv.gz file's content, refusing one that expands past :data:`MAX_EXPANSION` times its
    size (at least :data:`MIN_EXPANDED_LIMIT`): a small file must not fill the memory."""
    import gzip

    limit = max(MIN_EXPANDED_LIMIT, MAX_EXPANSION * len(data))
    with gzip.GzipFile(fileobj=io.BytesIO(data)) as stream:
        content = stream.read(limit + 1)
    if len(content) > limit:
        raise FileOverLimit(f"it expands to more than {limit} bytes ({MAX_EXPANSION} times its "
                            "size), the most read")
    return content


def _parquet_bound(schema, column: str, after: pd.Timestamp | None):
    """``after`` in the form a filter on ``column`` needs, or None when it cannot filter."""
    if after is None or not column:
        return None
    import pyarrow as pa

    if column not in schema.names or not pa.types.is_timestamp(schema.field(column).type):
        return None
    stored_tz = schema.field(column).type.tz
    return after.tz_convert(stored_tz) if stored_tz else after.tz_convert("UTC").tz_localize(None)


def _object_columns_as_text(frame: pd.DataFrame) -> pd.DataFrame:
    """Object columns holding mixed Python types become text so Parquet can store them."""
    return replace_columns(frame, {column: as_category_strings(values)
                                   for column, values in frame.items() if values.dtype == object})


@dataclass
class _TimestampProblems:
    """One file's unplaceable rows, counted over its chunks, reported once per file."""

    bad: int = 0
    example: object = None
    missing: int = 0

    def add(self, raw: pd.Series, unparsed: pd.Series) -> None:
        missing = raw.isna() & unparsed
        bad = unparsed & ~missing
        if bad.any() and self.example is None:
            self.example = raw[bad].iloc[0]
        self.bad += int(bad.sum())
        self.missing += int(missing.sum())

    def problems(self, name: str, column: str) -> list[str]:
        found = []
        if self.bad:
            found.append(f"file {name}: column {column!r} has {self.bad} value(s) that are not "
                         f"timestamps, e.g. {self.example!r}")
        if self.missing:
            found.append(f"file {name}: column {column!r} is empty in {self.missing} row(s)")
        return found


def ingest(
    source_uri: str,
    *,
    timestamp_column: str,
    cutoff: pd.Timestamp,
    watermark: str | None,
    consumed_files: dict[str, dict] | None = None,
    history_days: float | None = None,
    new_data_path: str | Path | None = None,
    history_path: str | Path | None = None,
) -> IngestResult:
    """Read the source and split it into new rows and history, written as Parquet.

    Args:
        source_uri: Folder (or single file) of CSV/Parquet files.
        timestamp_column: Event-time column; empty for batch mode (each file is a batch).
        cutoff: Latest event time a run may consume.
        watermark: Latest event time the champion line consumed (None before the first deploy).
        consumed_files: Batch mode: files the champion line consumed, name -> size and sha256.
        history_days: How much history the run needs: None for all of it, 0 for none (a
            fine-tune), else the days before the watermark (a sliding window). Parquet row
            groups older than that are not even read, so the run's cost follows what it uses.
        new_data_path, history_path: Where the two Parquet files go (a temporary folder if not
            given). Rows are written chunk by chunk, in file order, never held all at once.

    Returns:
        Where the split went, the files that contributed new rows, and any problems found.
    """
    consumed_files = dict(consumed_files or {})
    if new_data_path is None or history_path is None:
        folder = Path(tempfile.mkdtemp(prefix="ingest-"))
        new_data_path, history_path = folder / "new_data.parquet", folder / "history.parquet"
    new_data_path, history_path = Path(new_data_path), Path(history_path)
    split = _TimeSplit(timestamp_column, cutoff, watermark, history_days)
    parts = new_data_path.parent / f".{new_data_path.name}.parts"
    parts.mkdir(parents=True, exist_ok=True)
    storage = storage_for(source_uri)
    new_parts, history_parts, problems = [], [], []
    new_files: dict[str, dict] = {}
    file_columns: dict[str, list[str]] = {}
    try:  # the per-file parts are removed whatever happens
        for number, info in enumerate(list_data_files(source_uri)):
            data = storage.read_bytes(info.uri)
            fingerprint = {"size": len(data), "sha256": sha256_bytes(data)}
            consumed = not timestamp_column and consumed_files.get(info.relative_path) == \
                fingerprint
            if consumed and history_days == 0:
                continue  # a batch the run does not need
            part = _split_file(data, info.relative_path, split, consumed=consumed,
                               new_path=parts / f"new-{number:05d}.parquet",
                               history_path=parts / f"history-{number:05d}.parquet")
            problems += part.problems
            if part.columns is not None:
                file_columns[info.relative_path] = part.columns
            new_parts += [part.new_path] if part.new_path else []
            history_parts += [part.history_path] if part.history_path else []
            if part.new_path:
                new_files[info.relative_path] = fingerprint
        new_rows = merge_parts(new_parts, new_data_path)
        history_rows = merge_parts(history_parts, history_path)
    finally:
        shutil.rmtree(parts, ignore_errors=True)
    return IngestResult(
        new_data_path=new_data_path,
        history_path=history_path,
        new_rows=new_rows,
        history_rows=history_rows,
        cutoff=iso(cutoff),
        watermark_before=watermark,
        new_watermark=split.new_watermark(),
        new_files=new_files,
        consumed_files={**consumed_files, **new_files},
        file_columns=file_columns,
        problems=problems,
    )


class _TimeSplit:
    """Which rows are new and which are history, by event time (or by file, in batch mode); it
    remembers the newest new row, which becomes the watermark after a deploy."""

    def __init__(self, timestamp_column: str, cutoff: pd.Timestamp, watermark: str | None,
                 history_days: float | None):
        self.column, self.cutoff, self.watermark = timestamp_column, cutoff, watermark
        self.watermark_stamp = to_utc_timestamp(watermark) if watermark else None
        self.history_start = (None if history_days is None or self.watermark_stamp is None
                              else self.watermark_stamp - pd.Timedelta(days=history_days))
        self.newest: pd.Timestamp | None = None

    def masks(self, placed: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
        """``(is_history, is_new)`` for rows with a parsed timestamp. New rows are after the
        watermark and at or before the cutoff; history is at or before the watermark, within
        the history the strategy reads; older rows are neither (they are dropped)."""
        stamps = placed[self.column]
        if self.watermark_stamp is None:
            after_watermark = pd.Series(True, index=placed.index)
        else:
            after_watermark = stamps > self.watermark_stamp
        is_history = ~after_watermark
        if self.history_start is not None:
            is_history &= stamps > self.history_start
        is_new = after_watermark & (stamps <= self.cutoff)
        if is_new.any():
            latest = stamps[is_new].max()
            self.newest = latest if self.newest is None or latest > self.newest else self.newest
        return is_history, is_new

    def new_watermark(self) -> str | None:
        if not self.column:
            return None
        return iso(self.newest) if self.newest is not None else self.watermark


@dataclass
class _FilePart:
    """One source file's share of the split: its part files (None when empty), its columns
    (None when it could not be read) and its problems."""

    new_path: Path | None
    history_path: Path | None
    columns: list[str] | None
    problems: list[str]


class _UnreadableFile(Exception):
    """Parsing a source file failed: a data problem, reported rather than raised."""


def _parsed(chunks: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """The chunks, with any error the parser raises while reading one as :class:`_UnreadableFile`
    (what we do with a chunk afterwards, such as writing it, fails as itself)."""
    iterator = iter(chunks)
    while True:
        try:
            frame = next(iterator)
        except StopIteration:
            return
        except Exception as error:  # any parser error: the file is unreadable
            raise _UnreadableFile(str(error)) from error
        yield frame


def _split_file(data: bytes, name: str, split: _TimeSplit, *, consumed: bool, new_path: Path,
                history_path: Path) -> _FilePart:
    """Write one file's new rows and history to their part files."""
    new_part, history_part = ChunkWriter(new_path), ChunkWriter(history_path)
    timestamp_problems = _TimestampProblems()
    try:
        try:
            columns, chunks = read_chunks(data, name, timestamp_column=split.column,
                                          rows_after=split.history_start)
        except FileOverLimit:
            raise
        except Exception as error:  # any parser error: the file is unreadable
            raise _UnreadableFile(str(error)) from error
        if split.column and split.column not in columns:
            new_part.discard()
            history_part.discard()
            return _FilePart(None, None, columns, [
                f"file {name}: timestamp column {split.column!r} is missing (columns: "
                f"{bounded(', '.join(columns), 300)})"])
        for frame in _parsed(chunks):
            frame = pd.concat([frame, pd.Series(name, index=frame.index,
                                                name=SOURCE_FILE_COLUMN)], axis=1)
            frame = _object_columns_as_text(frame)
            if not split.column:
                (history_part if consumed else new_part).write(frame)
                continue
            raw = frame[split.column]
            stamps = parse_timestamps(raw)
            unparsed = stamps.isna()
            if unparsed.any():
                timestamp_problems.add(raw, unparsed)
            frame[split.column] = stamps
            placed = frame[~unparsed]
            is_history, is_new = split.masks(placed)
            history_part.write(placed[is_history])
            new_part.write(placed[is_new])
    except FileOverLimit as error:
        new_part.discard()
        history_part.discard()
        return _FilePart(None, None, None, [f"file {name}: not read: {error}"])
    except (_UnreadableFile, ChunkSchemaError) as error:
        new_part.discard()
        history_part.discard()
        return _FilePart(None, None, None,
                         [f"file {name}: cannot be read as {_format(name)} "
                          f"({bounded(str(error), 300)})"])
    except BaseException:
        new_part.discard()
        history_part.discard()
        raise
    return _FilePart(_kept(new_part), _kept(history_part), columns,
                     timestamp_problems.problems(name, split.column))


def _kept(writer: ChunkWriter) -> Path | None:
    """Finish a part file that got rows (its path), or drop an empty one (None)."""
    if writer.rows:
        writer.close()
        return writer.path
    writer.discard()
    return None


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


def _format(name: str) -> str:
    return "Parquet" if name.lower().endswith((".parquet", ".pq")) else "CSV"
