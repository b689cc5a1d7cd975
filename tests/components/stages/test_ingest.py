"""Ingest: new rows versus history by watermark and cutoff, batch mode, and reported problems."""

import pandas as pd
import pytest

from components.data.schema import SOURCE_FILE_COLUMN
from components.stages.ingest import IngestError, ingest, resolve_cutoff, to_utc_timestamp
from tests.helpers import make_rows


@pytest.fixture(autouse=True)
def outputs_in_tmp_path(tmp_path, monkeypatch):
    """ingest() called without output paths writes into a folder of its own, which is the
    caller's to keep; here it goes under the test's tmp_path rather than /tmp."""
    folder = tmp_path / "outputs"
    folder.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(folder))


@pytest.fixture
def source(tmp_path):
    folder = tmp_path / "source"
    folder.mkdir()
    make_rows(48, start="2025-01-01").to_csv(folder / "jan.csv", index=False)
    make_rows(48, start="2025-02-01", seed=1).to_parquet(folder / "feb.parquet")
    return folder


def test_rows_split_by_watermark_and_cutoff(source):
    """Check that rows after the watermark up to the cutoff are new and earlier rows history."""
    result = ingest(str(source), timestamp_column="ts",
                    cutoff=to_utc_timestamp("2025-02-01T12:00:00Z"),
                    watermark="2025-01-01T23:00:00Z")
    assert len(result.history) == 24
    assert len(result.new_data) == 24 + 13  # rest of jan.csv, feb.parquet up to 12:00
    assert result.new_data["ts"].min() > to_utc_timestamp("2025-01-01T23:00:00Z")
    assert result.report.new_watermark == "2025-02-01T12:00:00.000000Z"
    assert set(result.report.new_files) == {"jan.csv", "feb.parquet"}
    assert result.report.outcome == "new-data"


def test_nothing_after_the_watermark_is_no_new_data(source):
    """Check that a run whose watermark is at the cutoff ends as no-new-data."""
    result = ingest(str(source), timestamp_column="ts",
                    cutoff=to_utc_timestamp("2025-03-01"), watermark="2025-03-01T00:00:00Z")
    assert result.report.outcome == "no-new-data"
    assert len(result.history) == 96


def test_batch_mode_consumed_files_are_history(source):
    """Check that without a timestamp, files already consumed (same checksum) are history."""
    first = ingest(str(source), timestamp_column="", cutoff=to_utc_timestamp("2030-01-01"),
                   watermark=None)
    assert len(first.new_data) == 96
    second = ingest(str(source), timestamp_column="", cutoff=to_utc_timestamp("2030-01-01"),
                    watermark=None, consumed_files=first.report.consumed_files)
    assert second.report.outcome == "no-new-data"
    assert len(second.history) == 96
    make_rows(10, seed=5).to_csv(source / "jan.csv", index=False)  # changed content: new again
    third = ingest(str(source), timestamp_column="", cutoff=to_utc_timestamp("2030-01-01"),
                   watermark=None, consumed_files=first.report.consumed_files)
    assert list(third.report.new_files) == ["jan.csv"]
    assert len(third.new_data) == 10


def test_source_files_are_read_through_an_open_file_never_whole(source, monkeypatch):
    """Check that ingest reads each source file from an open file (never its whole bytes at
    once), and fingerprints it as before: the SHA-256 and size of its bytes, so the consumed
    files a registry recorded earlier still match."""
    import hashlib

    from components.storage.local import LocalStorage

    def whole_read(self, uri):
        raise AssertionError(f"{uri} read whole")

    monkeypatch.setattr(LocalStorage, "read_bytes", whole_read)
    result = ingest(str(source), timestamp_column="", cutoff=to_utc_timestamp("2030-01-01"),
                    watermark=None)
    assert len(result.new_data) == 96
    assert result.report.new_files == {
        name: {"size": (source / name).stat().st_size,
               "sha256": hashlib.sha256((source / name).read_bytes()).hexdigest()}
        for name in ("jan.csv", "feb.parquet")}


def test_a_csv_is_parsed_in_chunks_with_the_types_a_whole_parse_gives(tmp_path, monkeypatch):
    """Check that a CSV larger than a chunk (plain or gzipped) is parsed a chunk at a time, and
    that the chunks' own types (a gap that makes integers floats in one chunk, whole numbers
    written as floats in another, a typo that makes numbers text in a third, a missing flag)
    end as a whole parse's do, type for type and value for value."""
    import gzip

    import numpy as np

    from components.data.sources import read_chunks

    rng = np.random.default_rng(0)
    rows = make_rows(200)
    rows["count"] = rng.integers(0, 9, 200).astype(object)
    rows["income"] = rng.normal(size=200).round(3).astype(object)
    rows["flag"] = rng.choice([True, False], 200).astype(object)
    rows.loc[150, "count"], rows.loc[170, "income"], rows.loc[120, "flag"] = None, "lots", None
    rows["amount"] = pd.Series([float(n) if 50 <= n < 100 else n for n in range(200)],
                               dtype=object)  # "50.0" to "99.0" in the second chunk only
    (tmp_path / "source").mkdir()
    rows.to_csv(tmp_path / "source" / "a.csv", index=False)
    ingested = {}
    for chunk in ("1000000", "50"):
        monkeypatch.setenv("RETRAIN_CHUNK_ROWS", chunk)
        ingested[chunk] = ingest(str(tmp_path / "source"), timestamp_column="ts", watermark=None,
                                 cutoff=to_utc_timestamp("2030-01-01"),
                                 new_data_path=tmp_path / chunk / "new.parquet",
                                 history_path=tmp_path / chunk / "history.parquet").new_data
    with (tmp_path / "source" / "a.csv").open("rb") as source:
        assert len(list(read_chunks(source, "a.csv")[1])) == 4  # 50 rows at a time
    pd.testing.assert_frame_equal(ingested["50"], ingested["1000000"])
    # The same file gzipped: decompressed as it is parsed, the same rows.
    (tmp_path / "gzipped").mkdir()
    (tmp_path / "gzipped" / "a.csv.gz").write_bytes(
        gzip.compress((tmp_path / "source" / "a.csv").read_bytes()))
    gzipped = ingest(str(tmp_path / "gzipped"), timestamp_column="ts", watermark=None,
                     cutoff=to_utc_timestamp("2030-01-01"),
                     new_data_path=tmp_path / "gz" / "new.parquet",
                     history_path=tmp_path / "gz" / "history.parquet").new_data
    pd.testing.assert_frame_equal(gzipped.drop(columns=SOURCE_FILE_COLUMN),
                                  ingested["50"].drop(columns=SOURCE_FILE_COLUMN))
    assert ingested["50"]["count"].dtype == float
    assert ingested["50"]["amount"].dtype == float
    assert ingested["50"]["income"].iloc[170] == "lots"
    assert ingested["50"]["income"].iloc[0] == str(rows["income"].iloc[0])


def test_unparseable_timestamps_are_reported_with_the_file(source):
    """Check that bad timestamps become a problem naming the file, column and value."""
    frame = make_rows(5, start="2025-01-05")
    frame.loc[2, "ts"] = "yesterday"
    frame.to_csv(source / "bad.csv", index=False)
    result = ingest(str(source), timestamp_column="ts", cutoff=to_utc_timestamp("2025-03-01"),
                    watermark=None)
    assert any("file bad.csv" in p and "'ts'" in p and "'yesterday'" in p
               for p in result.report.problems)


def test_mixed_types_across_files_become_text(source):
    """Check that a typo in one file's numeric column does not break the Parquet hand-off."""
    frame = make_rows(5, start="2025-01-05")
    frame["x1"] = frame["x1"].astype(object)
    frame.loc[1, "x1"] = "lots"
    frame.to_csv(source / "typo.csv", index=False)
    result = ingest(str(source), timestamp_column="ts", cutoff=to_utc_timestamp("2025-03-01"),
                    watermark=None)
    result.new_data.to_parquet(source.parent / "out.parquet")
    assert "lots" in set(result.new_data["x1"])
    assert set(result.new_data[SOURCE_FILE_COLUMN]) == {"jan.csv", "feb.parquet", "typo.csv"}


def test_empty_source_is_a_clear_error(tmp_path):
    """Check that a folder without data files names the folder."""
    with pytest.raises(IngestError, match="no CSV or Parquet files under"):
        ingest(str(tmp_path), timestamp_column="ts", cutoff=to_utc_timestamp("2025-01-01"),
               watermark=None)


@pytest.mark.parametrize(
    "cutoff, scheduled, expected",
    [("2025-05-01T00:00:00Z", "2025-06-01T00:00:00Z", "2025-05-01"),
     ("", "2025-06-01T00:00:00Z", "2025-06-01"),
     ("", "{{$.pipeline_job_schedule_time_utc}}", "now")],
    ids=["explicit-cutoff-wins", "scheduled-time", "unresolved-placeholder-means-now"],
)
def test_resolve_cutoff(cutoff, scheduled, expected):
    """Check the cutoff precedence: explicit, then scheduled time, then now."""
    now = pd.Timestamp("2026-01-01", tz="UTC").to_pydatetime()
    resolved = resolve_cutoff(cutoff, scheduled, now=now)
    assert resolved == to_utc_timestamp(now if expected == "now" else expected)


def test_bad_cutoff_is_refused():
    """Check that a cutoff that is not ISO 8601 gets a parameter error."""
    with pytest.raises(ValueError, match="'cutoff' parameter of the ingest stage"):
        resolve_cutoff("next tuesday", "")


def test_timestamps_parse_iso_fast_and_other_formats_too():
    """Check that ISO 8601, offsets and other common formats parse to UTC; garbage is NaT."""
    import pandas as pd

    from components.data.sources import parse_timestamps

    raw = pd.Series(["2025-01-01T00:00:00Z", "2025-01-02 10:00", "01/03/2025", "garbage", None,
                     "2025-01-04T00:00:00+02:00"])
    parsed = parse_timestamps(raw)
    assert [None if pd.isna(t) else t.isoformat() for t in parsed] == [
        "2025-01-01T00:00:00+00:00", "2025-01-02T10:00:00+00:00", "2025-01-03T00:00:00+00:00",
        None, None, "2025-01-03T22:00:00+00:00"]


def _months_parquet(path, months=("2025-01-01", "2025-02-01", "2025-03-01")):
    """One Parquet file, a row group per month of hourly rows, the time stored as a timestamp."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    frame = pd.concat([make_rows(48, start=month, seed=i) for i, month in enumerate(months)],
                      ignore_index=True)
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    frame.loc[50, "ts"] = pd.NaT  # in February: must be reported even when February is skipped
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=48)
    return frame


@pytest.mark.parametrize("history_days, history_rows", [(None, 96), (0, 0), (28, 47)])
def test_history_is_read_only_as_far_as_the_strategy_needs(tmp_path, history_days,
                                                           history_rows):
    """Check that all, none, or the last days of history are read, and new rows never change."""
    import pyarrow.parquet as pq

    from components.data.sources import parquet_bound

    folder = tmp_path / "source"
    folder.mkdir()
    _months_parquet(folder / "months.parquet")
    result = ingest(str(folder), timestamp_column="ts", cutoff=to_utc_timestamp("2025-04-01"),
                    watermark="2025-03-01T00:00:00Z", history_days=history_days)
    assert len(result.new_data) == 47
    assert result.new_data["ts"].min() > to_utc_timestamp( "2025-03-01")
    assert len(result.history) == history_rows
    assert any("is empty in 1 row(s)" in problem for problem in result.report.problems)
    schema = pq.read_schema(folder / "months.parquet")  # the filter is a timestamp one
    assert parquet_bound(schema, "ts", to_utc_timestamp("2025-03-01")) is not None
    assert parquet_bound(schema, "color", to_utc_timestamp("2025-03-01")) is None


def test_a_finetune_skips_the_row_groups_it_does_not_need(tmp_path, monkeypatch):
    """Check the Parquet reader is asked for rows after the watermark only (row groups pruned)."""
    from components.data.chunks import Table

    folder = tmp_path / "source"
    folder.mkdir()
    _months_parquet(folder / "months.parquet")
    real_chunks, rows_read = Table.chunks, []

    def counting_chunks(self, *args, **kwargs):
        for frame in real_chunks(self, *args, **kwargs):
            rows_read.append(len(frame))
            yield frame

    monkeypatch.setattr(Table, "chunks", counting_chunks)
    ingest(str(folder), timestamp_column="ts", cutoff=to_utc_timestamp("2025-04-01"),
           watermark="2025-03-01T00:00:00Z", history_days=0)
    assert sum(rows_read) == 48  # March, plus February's one row without a time


def test_batch_mode_finetune_does_not_read_consumed_files(source):
    """Check a fine-tune in batch mode leaves the files the champion consumed unread."""
    first = ingest(str(source), timestamp_column="", cutoff=to_utc_timestamp("2030-01-01"),
                   watermark=None)
    make_rows(10, seed=7).to_csv(source / "mar.csv", index=False)
    second = ingest(str(source), timestamp_column="", cutoff=to_utc_timestamp("2030-01-01"),
                    watermark=None, consumed_files=first.report.consumed_files, history_days=0)
    assert len(second.new_data) == 10
    assert len(second.history) == 0
    assert set(second.report.consumed_files) == {"jan.csv", "feb.parquet", "mar.csv"}


@pytest.mark.parametrize("history_days, history_rows", [(0, 0), (1, 24), (None, 72)],
                         ids=["finetune", "one-day-window", "all"])
def test_rows_older_than_the_history_read_are_dropped_not_new(tmp_path, history_days,
                                                              history_rows):
    """Check that a CSV's rows before the history a strategy reads are neither history nor new
    (they were consumed by earlier versions: reading them as new would train on them twice)."""
    folder = tmp_path / "source"
    folder.mkdir()
    make_rows(96, start="2025-01-01").to_csv(folder / "hourly.csv", index=False)
    result = ingest(str(folder), timestamp_column="ts", cutoff=to_utc_timestamp("2025-02-01"),
                    watermark="2025-01-03T23:00:00Z", history_days=history_days,
                    new_data_path=tmp_path / "new.parquet", history_path=tmp_path / "h.parquet")
    assert result.report.new_rows == 24  # the fourth day only
    assert result.report.history_rows == history_rows


def _ingest_one(tmp_path, name: str, content: bytes, timestamp_column: str = "ts"):
    folder = tmp_path / "hostile"
    folder.mkdir(exist_ok=True)
    (folder / name).write_bytes(content)
    return ingest(str(folder), timestamp_column=timestamp_column,
                  cutoff=to_utc_timestamp("2030-01-01"), watermark=None,
                  new_data_path=tmp_path / "new.parquet", history_path=tmp_path / "h.parquet")


HOSTILE = {
    "one-line-of-commas": (b"," * 50_000_000, "its first line (the header) is longer than "
                                              "1048576 bytes"),
    "one-line-no-newline": (b"x" * 50_000_000, "its first line (the header) is longer than"),
    "a-50-mb-column-name": (b"a" * 50_000_000 + b"\n1\n", "its first line (the header) is "
                                                          "longer than"),
    "a-long-column-name": (b"x1," + b"n" * 2000 + b"\n1,2\n", "a column name has 2000 "
                                                               "characters; at most 1000"),
    "too-many-columns": (",".join(f"c{i}" for i in range(12_000)).encode() + b"\n",
                         "it has 12000 columns; at most 10000 are read"),
}


@pytest.mark.parametrize("case", HOSTILE, ids=list(HOSTILE))
def test_hostile_csv_files_are_reported_with_the_limit_they_break(tmp_path, case):
    """Check that a file breaking a read limit is a problem naming the file and the limit (so
    validate ends the run as invalid-data), never a hang or a crash."""
    content, message = HOSTILE[case]
    result = _ingest_one(tmp_path, "bad.csv", content)
    [problem] = result.report.problems
    assert problem.startswith("file bad.csv: not read: ")
    assert message in problem
    assert len(problem) < 300
    assert result.report.new_rows == 0


def test_a_gzip_bomb_is_refused_by_its_expansion(tmp_path, monkeypatch):
    """Check that a .csv.gz expanding far past its size is refused before it fills memory."""
    import gzip

    from components.data import sources

    monkeypatch.setattr(sources, "MIN_EXPANDED_LIMIT", 1 << 20)
    monkeypatch.setenv("RETRAIN_CHUNK_ROWS", "1000")  # chunks are parsed before the limit
    bomb = gzip.compress(b"x1,ts\n" + b"1,2025-01-01\n" * 2_000_000)
    assert len(bomb) * sources.MAX_EXPANSION < 26_000_000
    refused = _ingest_one(tmp_path, "bomb.csv.gz", bomb)
    [problem] = refused.report.problems
    assert refused.report.new_rows == 0  # the chunks parsed before the limit are not kept
    assert "it expands to more than" in problem
    assert "times its size" in problem


def test_a_parser_error_without_a_message_is_named_by_its_type(tmp_path, monkeypatch):
    """Check that a file whose parser fails with an empty message (a MemoryError) is reported
    with the error's type, not as empty parentheses."""
    def failing_read_csv(*args, **kwargs):
        raise MemoryError()

    monkeypatch.setattr(pd, "read_csv", failing_read_csv)
    [problem] = _ingest_one(tmp_path, "a.csv", b"x1,ts\n1,2025-01-01\n").report.problems
    assert problem == "file a.csv: cannot be read as CSV (MemoryError)"


def test_empty_and_repeated_header_names_are_made_unique_as_pandas_would(tmp_path):
    """Check that a header of empty and repeated names is read, named like pandas names them."""
    result = _ingest_one(tmp_path, "names.csv", b"a,,a,ts\n1,2,3,2025-01-01\n")
    assert result.report.problems == []
    assert list(result.new_data.columns[:4]) == ["a", "Unnamed: 1", "a.1", "ts"]


def test_thousands_of_extra_columns_are_read(tmp_path):
    """Check that a file with 3,000 extra columns is read whole (it is slow only if reading is
    quadratic in the columns; `make bench` times it)."""
    frame = make_rows(200)
    extra = pd.DataFrame({f"extra_{i}": range(200) for i in range(3000)})
    content = pd.concat([frame, extra], axis=1).to_csv(index=False).encode()
    result = _ingest_one(tmp_path, "wide.csv", content)
    assert result.report.problems == []
    assert result.report.new_rows == 200
    assert len(result.new_data.columns) == 3000 + 5 + 1  # and the source file column
