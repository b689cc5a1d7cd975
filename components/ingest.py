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
from dataclasses import dataclass, field
from datetime import datetime, timezone

import pandas as pd

from components.schema import SOURCE_FILE_COLUMN, as_category_strings
from components.storage import FileInfo, sha256_bytes, storage_for

DATA_SUFFIXES = (".csv", ".csv.gz", ".parquet", ".pq")
# How a scheduled time reads when the backend left the placeholder unresolved.
_PLACEHOLDER_PREFIX = "{{$."


class IngestError(Exception):
    """The source cannot be read at all (missing folder, no data files)."""


@dataclass
class IngestResult:
    """New rows and history, with what is needed to move the watermark after a deploy."""

    new_data: pd.DataFrame
    history: pd.DataFrame
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
        return "new-data" if len(self.new_data) or self.problems else "no-new-data"

    def report(self) -> dict:
        """A JSON-ready summary that travels with the data to the decision record."""
        return {
            "outcome": self.outcome,
            "cutoff": self.cutoff,
            "watermark_before": self.watermark_before,
            "new_watermark": self.new_watermark,
            "new_rows": int(len(self.new_data)),
            "history_rows": int(len(self.history)),
            "new_files": self.new_files,
            "consumed_files": self.consumed_files,
            "file_columns": self.file_columns,
            "problems": self.problems,
        }


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
        except ValueError as error:
            raise ValueError(
                f"The 'cutoff' parameter of ingest must be an ISO 8601 timestamp. "
                f"Got {cutoff!r} instead."
            ) from error
    if scheduled_time and not scheduled_time.startswith(_PLACEHOLDER_PREFIX):
        try:
            return to_utc_timestamp(scheduled_time)
        except ValueError:
            pass  # a one-off run on some backends passes an empty or odd value: use now
    return to_utc_timestamp(now or datetime.now(timezone.utc))


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


def read_table(data: bytes, name: str, *, timestamp_column: str = "",
               rows_after: pd.Timestamp | None = None) -> pd.DataFrame:
    """Parse CSV or Parquet bytes; ``name`` picks the format and names the file in errors.

    With ``rows_after``, a Parquet file whose timestamp column is stored as a timestamp is read
    only for rows after it: row groups that end earlier are skipped unread (their statistics
    say so). Other files are read whole; the caller drops the rows it does not need.
    """
    if name.lower().endswith((".parquet", ".pq")):
        buffer = io.BytesIO(data)
        bound = _parquet_bound(buffer, timestamp_column, rows_after)
        if bound is None:
            return pd.read_parquet(buffer)
        import pyarrow.compute as pc

        # Rows without a timestamp stay in, so that they are reported, not silently lost.
        wanted = (pc.field(timestamp_column) > bound) | pc.field(timestamp_column).is_null()
        return pd.read_parquet(buffer, filters=wanted)
    return pd.read_csv(io.BytesIO(data), compression="gzip" if name.endswith(".gz") else None)


def _parquet_bound(buffer: io.BytesIO, column: str, after: pd.Timestamp | None):
    """``after`` in the form a filter on ``column`` needs, or None when it cannot filter."""
    if after is None or not column:
        return None
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pq.read_schema(buffer)
    buffer.seek(0)
    if column not in schema.names or not pa.types.is_timestamp(schema.field(column).type):
        return None
    stored_tz = schema.field(column).type.tz
    return after.tz_convert(stored_tz) if stored_tz else after.tz_convert("UTC").tz_localize(None)


def _harmonize(frames: list[pd.DataFrame]) -> list[pd.DataFrame]:
    """Make each column's dtype agree across files, falling back to text where they differ.

    One file's typo (``income = "lots"``) must not make Parquet refuse the whole batch; the text
    column is parsed, and the typo reported, by validate.
    """
    dtypes: dict[str, set] = {}
    for frame in frames:
        for column in frame.columns:
            if column != SOURCE_FILE_COLUMN:
                dtypes.setdefault(column, set()).add(_dtype_family(frame[column]))
    mixed = [column for column, families in dtypes.items() if len(families - {"empty"}) > 1]
    if not mixed:
        return frames
    result = []
    for frame in frames:
        frame = frame.copy()
        for column in mixed:
            if column in frame:
                frame[column] = as_category_strings(frame[column])
        result.append(frame)
    return result


def _dtype_family(values: pd.Series) -> str:
    if values.isna().all():
        return "empty"
    if pd.api.types.is_bool_dtype(values):
        return "bool"
    if pd.api.types.is_numeric_dtype(values):
        return "number"
    if pd.api.types.is_datetime64_any_dtype(values):
        return "datetime"
    return "text"


def _object_columns_as_text(frame: pd.DataFrame) -> pd.DataFrame:
    """Object columns holding mixed Python types become text so Parquet can store them."""
    for column in frame.columns:
        if frame[column].dtype == object:
            frame[column] = as_category_strings(frame[column])
    return frame


def ingest(
    source_uri: str,
    *,
    timestamp_column: str,
    cutoff: pd.Timestamp,
    watermark: str | None,
    consumed_files: dict[str, dict] | None = None,
    history_days: float | None = None,
) -> IngestResult:
    """Read the source and split it into new rows and history.

    Args:
        source_uri: Folder (or single file) of CSV/Parquet files.
        timestamp_column: Event-time column; empty for batch mode (each file is a batch).
        cutoff: Latest event time a run may consume.
        watermark: Latest event time the champion line consumed (None before the first deploy).
        consumed_files: Batch mode: files the champion line consumed, name -> size and sha256.
        history_days: How much history the run needs: None for all of it, 0 for none (a
            fine-tune), else the days before the watermark (a sliding window). Parquet row
            groups older than that are not even read, so the run's cost follows what it uses.

    Returns:
        The split, the files that contributed new rows, and any problems found.
    """
    consumed_files = dict(consumed_files or {})
    watermark_stamp = to_utc_timestamp(watermark) if watermark else None
    storage = storage_for(source_uri)
    new_parts, history_parts, problems = [], [], []
    new_files: dict[str, dict] = {}
    file_columns: dict[str, list[str]] = {}

    history_start = (None if history_days is None or watermark_stamp is None else
                     watermark_stamp - pd.Timedelta(days=history_days))
    for info in list_data_files(source_uri):
        name = info.relative_path
        data = storage.read_bytes(info.uri)
        fingerprint = {"size": len(data), "sha256": sha256_bytes(data)}
        consumed = not timestamp_column and consumed_files.get(name) == fingerprint
        if consumed and history_days == 0:
            continue  # a batch the run does not need
        try:
            frame = read_table(data, name, timestamp_column=timestamp_column,
                               rows_after=history_start)
        except Exception as error:  # any parser error: report it with the file named
            problems.append(f"file {name}: cannot be read as {_format(name)} ({error})")
            continue
        file_columns[name] = [str(column) for column in frame.columns]
        frame[SOURCE_FILE_COLUMN] = name

        if not timestamp_column:
            if consumed:
                history_parts.append(frame)
            elif len(frame):
                new_parts.append(frame)
                new_files[name] = fingerprint
            continue

        if timestamp_column not in frame:
            problems.append(
                f"file {name}: timestamp column {timestamp_column!r} is missing "
                f"(columns: {', '.join(file_columns[name])})"
            )
            continue
        raw = frame[timestamp_column]
        stamps = parse_timestamps(raw)
        unparsed = stamps.isna()
        if unparsed.any():
            missing = raw.isna() & unparsed
            bad = unparsed & ~missing
            if bad.any():
                example = raw[bad].iloc[0]
                problems.append(
                    f"file {name}: column {timestamp_column!r} has {int(bad.sum())} value(s) "
                    f"that are not timestamps, e.g. {example!r}"
                )
            if missing.any():
                problems.append(
                    f"file {name}: column {timestamp_column!r} is empty in "
                    f"{int(missing.sum())} row(s)"
                )
        frame[timestamp_column] = stamps
        placed = frame[~unparsed]
        is_history = (
            placed[timestamp_column] <= watermark_stamp
            if watermark_stamp is not None
            else pd.Series(False, index=placed.index)
        )
        if history_start is not None:
            is_history &= placed[timestamp_column] > history_start
        is_new = ~is_history & (placed[timestamp_column] <= cutoff)
        if is_history.any():
            history_parts.append(placed[is_history])
        if is_new.any():
            new_parts.append(placed[is_new])
            new_files[name] = fingerprint

    new_data, history = _combine(new_parts), _combine(history_parts)
    if timestamp_column:
        new_data, history = (
            frame.sort_values(timestamp_column, kind="stable", ignore_index=True)
            if len(frame) else frame
            for frame in (new_data, history)
        )
        new_watermark = (
            iso(new_data[timestamp_column].max()) if len(new_data) else watermark
        )
    else:
        new_watermark = None
    return IngestResult(
        new_data=new_data,
        history=history,
        cutoff=iso(cutoff),
        watermark_before=watermark,
        new_watermark=new_watermark,
        new_files=new_files,
        consumed_files={**consumed_files, **new_files},
        file_columns=file_columns,
        problems=problems,
    )


def parse_timestamps(raw: pd.Series) -> pd.Series:
    """Timestamps as UTC; anything unparseable becomes NaT.

    ISO 8601 first (vectorised, 7x faster on a million rows), then pandas' per-value "mixed"
    parser for whatever else is left (e.g. ``01/03/2025``), so both give the same result.
    """
    stamps = pd.to_datetime(raw, utc=True, errors="coerce", format="ISO8601")
    retry = stamps.isna() & raw.notna()
    if retry.any():
        stamps[retry] = pd.to_datetime(raw[retry], utc=True, errors="coerce", format="mixed")
    return stamps


def _combine(parts: list[pd.DataFrame]) -> pd.DataFrame:
    if not parts:
        return pd.DataFrame()
    combined = pd.concat(_harmonize(parts), ignore_index=True, sort=False)
    return _object_columns_as_text(combined)


def _format(name: str) -> str:
    return "Parquet" if name.lower().endswith((".parquet", ".pq")) else "CSV"
