"""Chunked stages: a stage's result does not depend on how many rows it reads at a time."""

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from components.data.chunks import ChunkWriter, Table
from components.data.schema import SOURCE_FILE_COLUMN, infer_schema
from components.params import DEFAULT_THRESHOLDS
from tests.helpers import make_rows

KINDS = {"x1": "numeric", "x2": "numeric", "color": "categorical"}


def _messy_rows(n=400) -> pd.DataFrame:
    """Rows with what the checks count across chunks: typos, repeats, missing labels."""
    frame = make_rows(n, seed=3)
    frame["x1"] = frame["x1"].astype(object)
    frame.loc[[5, 250], "x1"] = ["lots", "many"]
    frame.loc[[7, 301], "x2"] = [40.0, -40.0]  # out of the reference's range
    frame.loc[[11, 320], "color"] = ["purple", "purple"]
    frame["label"] = frame["label"].map(str)  # text, so that a missing label stays text
    frame.loc[[13, 200], "label"] = None
    frame = pd.concat([frame, frame.iloc[[20, 21, 330]]], ignore_index=True)  # repeats
    frame[SOURCE_FILE_COLUMN] = np.where(np.arange(len(frame)) < 200, "a.csv", "b.csv")
    frame["x1"] = frame["x1"].astype(str)
    return frame


def test_table_chunks_keep_the_dtypes_of_a_whole_read(tmp_path, monkeypatch):
    """Check an integer column with a null only in a later row group is float in every chunk."""
    monkeypatch.setenv("RETRAIN_CHUNK_ROWS", "3")
    values = pa.array([1, 2, 3, 4, None, 6], type=pa.int64())
    pq.write_table(pa.table({"n": values}), tmp_path / "n.parquet", row_group_size=3)
    chunks = list(Table(tmp_path / "n.parquet").chunks())
    assert [len(c) for c in chunks] == [3, 3]
    assert all(c["n"].dtype == float for c in chunks)
    assert pd.concat(chunks)["n"].isna().sum() == 1


def test_a_failed_write_leaves_no_file(tmp_path):
    """Check a writer abandoned by an error leaves neither its output nor its partial file."""
    with pytest.raises(RuntimeError), ChunkWriter(tmp_path / "out.parquet") as writer:
        writer.write(make_rows(5))
        raise RuntimeError("stage failed half-way")
    assert list(tmp_path.iterdir()) == []
    with ChunkWriter(tmp_path / "empty.parquet"):
        pass
    assert len(pd.read_parquet(tmp_path / "empty.parquet")) == 0


def test_a_chunk_that_does_not_fit_the_first_is_refused_by_name(tmp_path):
    """Check a chunk whose column types differ from the first's fails naming the file."""
    with pytest.raises(ValueError, match="out.parquet: a chunk's columns"), \
            ChunkWriter(tmp_path / "out.parquet") as writer:
        writer.write(pd.DataFrame({"x": [1.0, 2.0]}))
        writer.write(pd.DataFrame({"x": ["a", "b"]}))


@pytest.mark.parametrize("chunk_rows", ["7", "1000000"])
def test_validate_counts_the_same_whatever_the_chunk_size(tmp_path, monkeypatch, chunk_rows):
    """Check every finding, counts and examples included, is the same in 7-row chunks."""
    from components.stages.validate import validate

    _messy_rows().to_parquet(tmp_path / "new.parquet", index=False)
    frame = pd.read_parquet(tmp_path / "new.parquet")
    schema = infer_schema(make_rows(2000, seed=1), label_column="label", timestamp_column="ts")
    options = dict(schema=schema, timestamp_column="ts", min_rows=100, contract=True,
                   thresholds=dict(DEFAULT_THRESHOLDS, out_of_range_error=0.001,
                                   unseen_category_error=0.001, duplicate_warn=0.001))
    monkeypatch.setenv("RETRAIN_CHUNK_ROWS", chunk_rows)
    report = validate(Table(tmp_path / "new.parquet"), **options).to_dict()
    monkeypatch.delenv("RETRAIN_CHUNK_ROWS")
    whole = validate(frame, **options).to_dict()
    assert report == whole
    problems = {}
    for finding in report["findings"]:
        problems.setdefault(finding["check"], finding["problem"])
    assert [f["file"] for f in report["findings"] if f["check"] == "type"] == ["a.csv", "b.csv"]
    assert problems["type"] == "1 value(s) are not numbers, e.g. 'lots'"
    assert "(3)" in problems["out_of_range"]
    assert "purple" in problems["unseen_category"]
    assert problems["duplicates"].startswith("0.7% of the new rows")
    assert report["labelled_rows"] == len(frame) - 2


def test_preprocess_splits_the_same_rows_whatever_the_chunk_size(tmp_path, monkeypatch):
    """Check the kept rows, the dropped counts and the time split match a whole-frame clean."""
    from components.stages.preprocess import clean, preprocess, split_by_time

    frame = _messy_rows().drop(columns=SOURCE_FILE_COLUMN).sample(frac=1, random_state=1)
    frame = frame[frame["x1"].map(lambda v: v not in ("lots", "many"))]
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    frame.to_parquet(tmp_path / "new.parquet", index=False)
    pd.DataFrame().to_parquet(tmp_path / "history.parquet")
    monkeypatch.setenv("RETRAIN_CHUNK_ROWS", "7")
    paths = {name: tmp_path / f"{name}.parquet" for name in ("train", "validation", "clean")}
    result = preprocess(tmp_path / "new.parquet", tmp_path / "history.parquet",
                        label_column="label", timestamp_column="ts", feature_kinds=KINDS,
                        validation_fraction=0.2, train_path=paths["train"],
                        validation_path=paths["validation"], history_path=paths["clean"])
    monkeypatch.delenv("RETRAIN_CHUNK_ROWS")
    cleaned, duplicates, unlabelled = clean(frame, label_column="label", feature_kinds=KINDS)
    train, validation = split_by_time(cleaned, timestamp_column="ts", validation_fraction=0.2)
    assert (result.dropped_duplicates, result.dropped_unlabelled) == (duplicates, unlabelled)
    assert (duplicates, unlabelled) == (3, 2)
    for name, expected in (("train", train), ("validation", validation)):
        written = pd.read_parquet(paths[name]).sort_values("ts", ignore_index=True)
        pd.testing.assert_frame_equal(written, expected.sort_values("ts", ignore_index=True),
                                      check_dtype=False)
    assert pd.read_parquet(paths["validation"])["ts"].min() > pd.read_parquet(
        paths["train"])["ts"].max()


def test_sgd_finetune_streams_its_chunks(tmp_path, monkeypatch):
    """Check an SGD fine-tune over 50-row chunks continues the champion, one trace row per epoch,
    and lands near the same accuracy as one over the rows held whole."""
    from components.ml.metrics import score_model
    from components.stages.retrain import fit_finetune, fit_fresh

    champion, _ = fit_fresh(make_rows(400, seed=4), make_rows(100, seed=5), label_column="label",
                            feature_kinds=KINDS, model_type="sgd", epochs=3)
    train, validation = make_rows(1000, seed=6), make_rows(200, seed=7)
    train.to_parquet(tmp_path / "train.parquet", index=False)
    validation.to_parquet(tmp_path / "validation.parquet", index=False)
    monkeypatch.setenv("RETRAIN_CHUNK_ROWS", "50")
    streamed, trace = fit_finetune(champion, Table(tmp_path / "train.parquet"),
                                   Table(tmp_path / "validation.parquet"), label_column="label",
                                   epochs=4)
    monkeypatch.delenv("RETRAIN_CHUNK_ROWS")
    whole, _ = fit_finetune(champion, train, validation, label_column="label", epochs=4)
    assert [row["epoch"] for row in trace] == [1, 2, 3, 4]
    base = champion.named_steps["classifier"].t_
    assert streamed.named_steps["classifier"].t_ == pytest.approx(base + 4 * len(train))
    accuracy = score_model(streamed, validation, "label")["accuracy"]
    assert accuracy > 0.8
    assert abs(accuracy - score_model(whole, validation, "label")["accuracy"]) < 0.03
    assert trace[-1]["validation_accuracy"] == pytest.approx(accuracy)


def test_evaluate_predictions_are_the_same_in_chunks(tmp_path, monkeypatch):
    """Check scores, confusion matrix and ROC points of chunked predictions match whole ones."""
    from components.stages.evaluate import predict
    from components.stages.retrain import fit_fresh

    model, _ = fit_fresh(make_rows(300, seed=8), make_rows(50, seed=9), label_column="label",
                         feature_kinds=KINDS, model_type="hgb", epochs=2)
    rows = make_rows(333, seed=10)
    rows.to_parquet(tmp_path / "validation.parquet", index=False)
    monkeypatch.setenv("RETRAIN_CHUNK_ROWS", "10")
    chunked = predict(model, Table(tmp_path / "validation.parquet"), "label")
    monkeypatch.delenv("RETRAIN_CHUNK_ROWS")
    whole = predict(model, rows, "label")
    assert chunked.scores() == whole.scores()
    assert chunked.confusion() == whole.confusion()
    assert chunked.roc_points() == whole.roc_points()
    assert sum(map(sum, chunked.confusion()[1])) == 333
