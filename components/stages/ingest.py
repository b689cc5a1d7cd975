"""Stage 1, ingest: read every CSV or Parquet file under a source and split new rows from history.

With a timestamp column, rows after the champion's watermark and at or before the cutoff are new,
rows at or before the watermark are history, later rows wait for a later run. Without one, each file
is a batch: files the champion line has not consumed (by name, size and SHA-256) are new.

Problems that make rows impossible to place (an unreadable file, a missing or unparseable
timestamp) do not crash the stage: they are reported, so that validate ends the run as
``invalid-data`` with the file named.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO

import pandas as pd

from components.data.chunks import ChunkWriter
from components.data.schema import SOURCE_FILE_COLUMN
from components.data.sources import (
    FileOverLimit,
    file_format,
    merge_parts,
    object_columns_as_text,
    parse_timestamps,
    read_chunks,
)
from components.outcomes import IngestOutcome, Strategy
from components.params import Timestamp, refuse
from components.records import IngestReport, bounded, utc_iso
from components.storage import FileInfo, Storage, file_fingerprint, storage_for

DATA_SUFFIXES = (".csv", ".csv.gz", ".parquet", ".pq")
# How a scheduled time reads when the backend left the placeholder unresolved.
_PLACEHOLDER_PREFIX = "{{$."


class IngestError(Exception):
    """The source cannot be read at all (missing folder, no data files)."""


@dataclass
class IngestResult:
    """Where new rows and history went, and the report of what was read (with what is needed
    to move the watermark after a deploy)."""

    new_data_path: Path
    history_path: Path
    report: IngestReport

    @property
    def new_data(self) -> pd.DataFrame:
        """The new rows, read whole (for tests and small sources; stages read them in chunks)."""
        return pd.read_parquet(self.new_data_path)

    @property
    def history(self) -> pd.DataFrame:
        return pd.read_parquet(self.history_path)


def to_utc_timestamp(value: str | datetime | pd.Timestamp) -> pd.Timestamp:
    """Parse an ISO 8601 value as a UTC timestamp (naive values are taken as UTC)."""
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


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


def no_new_data_reason(report: IngestReport, timestamp_column: str) -> str:
    """Why a run with nothing new ends where it is."""
    if timestamp_column:
        return (f"no rows after the watermark {report.watermark_before} up to the cutoff "
                f"{report.cutoff}")
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
    parts = _Parts(new_data_path.parent / f".{new_data_path.name}.parts",
                   storage_for(source_uri))
    try:  # the per-file parts are removed whatever happens
        for number, info in enumerate(list_data_files(source_uri)):
            parts.add(number, info, split, consumed_files, history_days)
        new_rows = merge_parts(parts.new, new_data_path)
        history_rows = merge_parts(parts.history, history_path)
    finally:
        shutil.rmtree(parts.folder, ignore_errors=True)
    return IngestResult(new_data_path, history_path, IngestReport(
        outcome=IngestOutcome.NEW_DATA if new_rows or parts.problems else
        IngestOutcome.NO_NEW_DATA,  # anything to validate: rows, or problems to report
        cutoff=utc_iso(cutoff), watermark_before=watermark,
        new_watermark=split.new_watermark(), new_rows=new_rows, history_rows=history_rows,
        new_files=parts.new_files, consumed_files={**consumed_files, **parts.new_files},
        file_columns=parts.file_columns, problems=parts.problems))


@dataclass
class _Parts:
    """The source files' shares of the split so far: their part files, the files that gave new
    rows (with their fingerprints), each file's columns, and the problems found."""

    folder: Path
    storage: Storage  # the source's
    new: list[Path] = field(default_factory=list)
    history: list[Path] = field(default_factory=list)
    new_files: dict[str, dict] = field(default_factory=dict)
    file_columns: dict[str, list[str]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def add(self, number: int, info: FileInfo, split: _TimeSplit, consumed_files: dict,
            history_days: float | None) -> None:
        """Split one source file into its part files (a consumed batch nobody needs: skipped).
        The file is read through one open handle, fingerprinted and parsed alike, never whole in
        memory (on GCS: downloaded into the parts' folder first)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with self.storage.open_file(info.uri, self.folder) as source:
            fingerprint = file_fingerprint(source)
            consumed = not split.column and consumed_files.get(info.relative_path) == fingerprint
            if consumed and history_days == 0:
                return
            part = _split_file(source, info.relative_path, split, consumed=consumed,
                               new_part=_PartFiles(self.folder / f"new-{number:05d}"),
                               history_part=_PartFiles(self.folder / f"history-{number:05d}"))
        self.problems += part.problems
        if part.columns is not None:
            self.file_columns[info.relative_path] = part.columns
        self.history += part.history_paths
        self.new += part.new_paths
        if part.new_paths:
            self.new_files[info.relative_path] = fingerprint


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
        return utc_iso(self.newest) if self.newest is not None else self.watermark


@dataclass
class _FilePart:
    """One source file's share of the split: its part files (none when empty), its columns
    (None when it could not be read) and its problems."""

    new_paths: list[Path]
    history_paths: list[Path]
    columns: list[str] | None
    problems: list[str]


class _PartFiles:
    """One file's rows on one side of the split, written chunk by chunk into Parquet part files
    named from ``stem``: a new part whenever a chunk's types differ from the chunk before's (a
    CSV parsed in chunks infers each chunk's types; :func:`merge_parts` reconciles the parts as
    it does different files')."""

    def __init__(self, stem: Path):
        self.stem = stem
        self.paths: list[Path] = []
        self._writer: ChunkWriter | None = None

    def write(self, frame: pd.DataFrame) -> None:
        import pyarrow as pa

        if not len(frame):
            return
        # Compared, not left to pyarrow, which casts whole floats, numeric text and booleans
        # into an integer part silently, where a whole parse would give floats or text.
        schema = pa.Schema.from_pandas(frame, preserve_index=False)
        if self._writer is not None and not schema.equals(self._writer.schema):
            self._finish()
        if self._writer is None:
            self._writer = ChunkWriter(self.stem.with_name(
                f"{self.stem.name}-{len(self.paths)}.parquet"), schema=schema)
        self._writer.write(frame)

    def _finish(self) -> None:
        self._writer.close()
        self.paths.append(self._writer.path)
        self._writer = None

    def kept(self) -> list[Path]:
        """Finish the part being written; the part files, in the file's row order."""
        if self._writer is not None:
            self._finish()
        return self.paths

    def discard(self) -> None:
        if self._writer is not None:
            self._writer.discard()
        for path in self.paths:
            path.unlink(missing_ok=True)
        self.paths = []


class _UnreadableFile(Exception):
    """Parsing a source file failed: a data problem, reported rather than raised."""


def _parsing(read, *args, **kwargs):
    """``read(*args, **kwargs)``, with any error the parser raises as :class:`_UnreadableFile`,
    named by its type where it has no message (a :class:`FileOverLimit`, such as a .csv.gz
    expanding past its limit as it is parsed, stays one)."""
    try:
        return read(*args, **kwargs)
    except FileOverLimit:
        raise
    except Exception as error:  # any parser error: the file is unreadable
        raise _UnreadableFile(str(error) or type(error).__name__) from error


def _parsed(chunks: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """The chunks, each read by :func:`_parsing` (what we do with a chunk afterwards, such as
    writing it, fails as itself)."""
    iterator = iter(chunks)
    while (frame := _parsing(next, iterator, None)) is not None:
        yield frame


def _split_file(source: BinaryIO, name: str, split: _TimeSplit, *, consumed: bool,
                new_part: _PartFiles, history_part: _PartFiles) -> _FilePart:
    """Write one file's new rows and history (``source``: the file, open) to their part files."""
    timestamp_problems = _TimestampProblems()
    try:
        columns, chunks = _parsing(read_chunks, source, name, timestamp_column=split.column,
                                   rows_after=split.history_start)
        if split.column and split.column not in columns:
            new_part.discard()
            history_part.discard()
            return _FilePart([], [], columns, [
                f"file {name}: timestamp column {split.column!r} is missing (columns: "
                f"{bounded(', '.join(columns), 300)})"])
        for frame in _parsed(chunks):
            frame = pd.concat([frame, pd.Series(name, index=frame.index,
                                                name=SOURCE_FILE_COLUMN)], axis=1)
            frame = object_columns_as_text(frame)
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
        return _FilePart([], [], None, [f"file {name}: not read: {error}"])
    except _UnreadableFile as error:
        new_part.discard()
        history_part.discard()
        return _FilePart([], [], None,
                         [f"file {name}: cannot be read as {file_format(name)} "
                          f"({bounded(str(error), 300)})"])
    except BaseException:
        new_part.discard()
        history_part.discard()
        raise
    return _FilePart(new_part.kept(), history_part.kept(), columns,
                     timestamp_problems.problems(name, split.column))


def source_schema(*, source_uri: str, label_column: str, timestamp_column: str,
                  task: str = "auto") -> dict:
    """A starting contract inferred from every row of a source (``retrain schema``), to edit
    and pass as ``schema_uri``: see :func:`components.data.schema.starting_contract`. The
    label's task is ``task``, or with ``auto`` what the label implies."""
    import tempfile

    from components.data.schema import infer_schema, infer_task, starting_contract

    with tempfile.TemporaryDirectory(prefix="retrain-schema-") as folder:
        result = ingest(source_uri, timestamp_column=timestamp_column,
                        cutoff=pd.Timestamp.max.tz_localize("UTC"), watermark=None,
                        new_data_path=f"{folder}/new.parquet",
                        history_path=f"{folder}/history.parquet")
        if task == "auto":
            task, _ = infer_task(result.new_data_path, label_column)
        return starting_contract(infer_schema(result.new_data_path, label_column=label_column,
                                              timestamp_column=timestamp_column, task=task))
