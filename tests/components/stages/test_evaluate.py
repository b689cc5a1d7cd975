"""Evaluate's choice of rows: the newest holdout rows, cut where the champion's world changed."""

import dataclasses

import numpy as np
import pandas as pd
import pytest

from components.data.schema import SOURCE_FILE_COLUMN
from components.ml.comparison import accuracy_interval
from components.ml.concept_change import since_concept_change
from components.records import VersionMetadata
from components.stages.evaluate import (
    HOLDOUT,
    ROW_SOURCE,
    candidate_rows,
    cut_at_change,
    evaluation_rows,
    nested_pair_level,
    newest_batches,
    refits_the_champions_rows,
    shared_level,
)


def _months(*sizes):
    """Rows of consecutive calendar months, ``sizes[i]`` rows in month i (one file)."""
    frames = [pd.DataFrame({"event_time": pd.date_range(f"2025-{i + 1:02d}-02", periods=n,
                                                        freq="h", tz="UTC"),
                            SOURCE_FILE_COLUMN: "export.csv"}) for i, n in enumerate(sizes)]
    return pd.concat(frames, ignore_index=True)


def test_a_batch_where_the_champion_was_far_better_is_where_the_rows_stop():
    """Check the walk back: three months where the champion is right 90% of the time, then two
    where it is right half the time: the rows start at the fourth month, and the note says why."""
    frame = _months(60, 60, 60, 40, 40)
    right = np.concatenate([np.arange(180) % 10 != 0, np.arange(80) % 2 == 0])
    start, note = since_concept_change(frame, right, right, confidence=0.95,
                                       timestamp_column="event_time")
    assert start == 180
    assert note.startswith("concept change: the champion is right on 0.500 of the 80 rows from "
                           "export.csv 2025-04 on and on 0.900 of the 180 older rows (Fisher's "
                           "exact test p=")
    assert "below 0.05 over 8 tests" in note


def test_a_slow_change_no_two_months_show_is_still_found():
    """Check a gradual decay, 90% right falling by 6 points a month: no month differs
    significantly from the one before it, but the newest rows differ from all the older ones."""
    from scipy.stats import fisher_exact

    rates = [0.9, 0.84, 0.78, 0.72, 0.66, 0.60]
    frame = _months(*[50] * len(rates))
    right = np.concatenate([np.arange(50) < round(rate * 50) for rate in rates])
    for before, after in zip(rates, rates[1:], strict=False):
        table = [[round(after * 50), 50 - round(after * 50)],
                 [round(before * 50), 50 - round(before * 50)]]
        assert fisher_exact(table).pvalue > 0.3
    start, note = since_concept_change(frame, right, right, confidence=0.95,
                                       timestamp_column="event_time")
    assert 0 < start < 300
    assert "concept change" in note


def test_a_champion_as_right_before_as_after_is_cut_when_the_comparison_flips():
    """Check the second story: the champion is right on 70% of every month, but where one model
    alone is right, the older months side with the champion and the newer with the challenger
    (a champion trained on both worlds against one trained on the new): cut at the flip."""
    frame = _months(100, 100, 100, 100)
    months = np.repeat(np.arange(4), 100)
    champion_right = (np.arange(400) % 10) < 7
    position = np.arange(400) % 10
    challenger_right = np.where(months < 2, position < 5, position < 9)
    start, note = since_concept_change(frame, champion_right, challenger_right, confidence=0.95,
                                       timestamp_column="event_time")
    assert start == 200
    assert "the challenger is on 40 of 40 from export.csv 2025-03 on and on 0 of 40" in note


def test_batches_that_agree_are_all_kept():
    """Check that the same rate of right answers in every month cuts nothing."""
    frame = _months(50, 50, 50, 50)
    right = np.arange(200) % 5 != 0
    assert since_concept_change(frame, right, ~right, confidence=0.95,
                                timestamp_column="event_time") == (0, "")


def test_the_rows_reach_back_whole_batches_until_min_rows():
    """Check that the newest whole months are taken until there are min_rows of them, not more,
    and never from before a cut."""
    frame = _months(40, 40, 40, 40, 40)

    def first_kept(min_rows, cut=0):
        kept = np.arange(200) >= cut
        return int(np.argmax(newest_batches(frame, kept=kept, min_rows=min_rows,
                                            timestamp_column="event_time")))

    assert first_kept(100) == 80
    assert first_kept(120) == 80
    assert first_kept(121) == 40
    assert first_kept(300, cut=120) == 120
    assert first_kept(30) == 160


def test_candidates_are_the_newest_rows_of_both_sources_oldest_first():
    """Check that the rolling holdout and this run's holdout rows merge by event time and that
    only the newest max_rows are kept."""
    pool, new = _months(30, 30), _months(0, 0, 20)
    frame, left_out = candidate_rows(new, pool, max_rows=50, timestamp_column="event_time")
    assert len(frame) == 50
    assert left_out == 0
    assert frame["event_time"].is_monotonic_increasing
    assert int((frame[ROW_SOURCE] == HOLDOUT).sum()) == 20
    assert not (frame[ROW_SOURCE] == HOLDOUT).iloc[:30].any()


def test_a_large_holdout_is_read_only_for_its_newest_rows_and_judged_alike(tmp_path,
                                                                             monkeypatch):
    """Check that when this run's holdout has more rows than max_rows, reading only its newest
    (a chunk at a time) gives exactly the candidates a whole read gives: the same rows, order,
    columns and dtypes, with tied event times, and earlier rows among them. (Every row here has
    an event time: ingest splits off the rows without one.)"""
    from components.data.chunks import Table
    from components.stages.evaluate import newest_rows

    rng = np.random.default_rng(3)
    rows = 2_000
    stamps = pd.Series(pd.Timestamp("2025-01-01", tz="UTC")
                       + pd.to_timedelta(rng.integers(0, 40, rows), unit="D"))
    holdout = pd.DataFrame({"event_time": stamps, "x": rng.normal(size=rows),
                            "segment": rng.choice(["a", "b", None], rows),
                            "count": rng.integers(0, 9, rows).astype(float),
                            "label": rng.integers(0, 2, rows)})
    holdout.loc[rng.random(rows) < 0.05, "count"] = np.nan
    path = tmp_path / "holdout.parquet"
    holdout.to_parquet(path, index=False)
    pool = holdout.sample(300, random_state=1).reset_index(drop=True)
    pool["event_time"] = pool["event_time"] - pd.Timedelta(days=20)
    monkeypatch.setenv("RETRAIN_CHUNK_ROWS", "170")  # many chunks, split across ties
    for max_rows in (50, 700, 1_999, 2_000, 5_000):
        trimmed, _ = candidate_rows(Table(path), pool, max_rows=max_rows,
                                    timestamp_column="event_time")
        # Every candidate, none trimmed, then the newest max_rows of them.
        every, _ = candidate_rows(pd.read_parquet(path), pool, max_rows=rows + len(pool),
                                  timestamp_column="event_time")
        pd.testing.assert_frame_equal(trimmed, every.tail(max_rows).reset_index(drop=True))
        assert len(newest_rows(Table(path), max_rows, "event_time")) == min(max_rows, rows)
    assert len(newest_rows(Table(path), 50, "")) == rows  # batch mode: every row


def test_the_concept_change_cut_is_corrected_for_its_choice():
    """Check on a stream built to show the bias: the champion right on 85% of five months, then
    60% of three, and a challenger exactly as good (300 streams). The cut is chosen where the
    champion happened to do worst, so on the rows it keeps the challenger leans ahead (by about
    a point); at the gate's own 95% that equal challenger passes in more than the 2.5% of
    streams a one-sided error allows, and at the level shared among the boundaries the cut was
    chosen from it does not."""
    frame = _months(*[40] * 8)
    rate = np.repeat([0.85] * 5 + [0.6] * 3, 40)
    leans, passes_uncorrected, passes_corrected = [], [], []
    for seed in range(300):
        rng = np.random.default_rng(seed)
        champion, challenger = rng.random(320) < rate, rng.random(320) < rate
        cut = cut_at_change(frame, champion, challenger, confidence=0.95,
                            timestamp_column="event_time")
        assert cut.chosen_among == 7 or not cut.note
        leans.append(challenger[cut.kept].mean() - champion[cut.kept].mean())
        right_new, right_old = challenger[cut.kept], champion[cut.kept]
        counts = (len(right_new), int((right_new & ~right_old).sum()),
                  int((right_old & ~right_new).sum()))
        for level, passes in ((0.95, passes_uncorrected),
                              (shared_level(0.95, cut.chosen_among), passes_corrected)):
            low, _ = accuracy_interval(*counts, level, np.random.default_rng(seed))
            passes.append(low > 0)
    assert np.mean(leans) > 2.5 * np.std(leans) / np.sqrt(len(leans))
    assert sum(passes_uncorrected) > 0.025 * 300
    assert sum(passes_corrected) <= 0.025 * 300


def test_a_cut_says_where_it_is_and_at_what_confidence_the_rows_after_it_are_judged():
    """Check the note and the mask of a clear change within this run's rows, and that a change
    before them keeps every one of this run's rows."""
    frame = _months(60, 60, 60, 40, 40)
    right = np.concatenate([np.arange(180) % 10 != 0, np.arange(80) % 2 == 0])
    cut = cut_at_change(frame, right, right, confidence=0.95, timestamp_column="event_time",
                        this_run=np.arange(260) >= 180)
    assert cut.kept.tolist() == [False] * 180 + [True] * 80
    assert cut.new_rows_changed and cut.chosen_among == 4
    assert "the gate judges on the 80 rows from there on, and the 180 older rows are left out" \
        in cut.note
    assert cut.note.endswith("chosen among 4 batch boundaries, so the comparison is drawn at "
                             "98.75% confidence")
    earlier = cut_at_change(frame, right, right, confidence=0.95, timestamp_column="event_time",
                            this_run=np.arange(260) >= 220)
    assert earlier.kept[220:].all() and not earlier.new_rows_changed
    assert "before this run's rows" in earlier.note


def _all_rows(frame, against_champion=True):
    return evaluation_rows(frame, len(frame), kept=np.ones(len(frame), dtype=bool), min_rows=100,
                           timestamp_column="event_time", confidence=0.95,
                           against_champion=against_champion)


def test_rows_over_several_batches_are_judged_on_the_newest_batch_too_and_say_so():
    """Check which rows make the newest batch, what the record and the note say, and that one
    batch, or no champion to compare with, means one test at the gate's own level."""
    rows = _all_rows(_months(100, 100, 60))
    assert (rows.newest_batch, rows.newest_batch_rows) == ("export.csv 2025-03", 60)
    assert rows.in_newest_batch.tolist() == [False] * 200 + [True] * 60
    assert rows.better_confidence(0.95) == rows.newest_batch_confidence(0.95) == 0.9732
    assert rows.note == ("the gate also compares on the newest batch alone (export.csv 2025-03, "
                         "60 rows), and better with confidence on either deploys, so both are "
                         "drawn at the level that keeps an equal challenger to the gate's error "
                         "(the newest batch is 60 of the 260 rows): 97.32% on every row, 97.32% "
                         "on the newest batch")
    after_cut = dataclasses.replace(rows, cut_chosen_among=3)  # every row's test a pick of 3
    assert after_cut.better_confidence(0.95) == shared_level(shared_level(0.95, 3), 2)
    assert after_cut.newest_batch_confidence(0.95) == 0.975
    summary = rows.summary()
    assert (summary["newest_batch"], summary["newest_batch_rows"]) == ("export.csv 2025-03", 60)
    assert "in_newest_batch" not in summary
    for alone in (_all_rows(_months(0, 0, 300)), _all_rows(_months(100, 100, 60), False)):
        assert (alone.newest_batch, alone.in_newest_batch) == ("", None)
        assert alone.better_confidence(0.95) == 0.95 and not alone.note


@pytest.mark.parametrize("newest_agrees", [0.0, 0.8])
def test_judging_the_newest_batch_too_keeps_an_equal_challenger_to_the_gates_error(newest_agrees):
    """Check on 1000 streams of three months of 100 rows where challenger and champion are each
    right 80% of the time, independently, or in the newest month with the challenger's answer
    the champion's for 80% of its rows (the two disagree there a fifth as often): tested on
    every row and on the newest month at the levels the two tests share for the newest month's
    share of the rows where exactly one model is right, the equal challenger passes one or the
    other in no more of the streams than a one-sided 2.5% error allows (two standard errors
    over it). Each at the gate's own 95%, it passes in more, where the rows are alike."""
    base = _all_rows(_months(100, 100, 100))
    newest = base.in_newest_batch

    def better(new, old, level, seed):
        low, _ = accuracy_interval(len(new), int((new & ~old).sum()), int((old & ~new).sum()),
                                   level, np.random.default_rng(seed))
        return low > 0

    def either(challenger, champion, levels, seed):
        return better(challenger, champion, levels[0], seed) or better(
            challenger[newest], champion[newest], levels[1], seed)

    streams = 1000
    allowed = 0.025 * streams + 2 * np.sqrt(streams * 0.025 * 0.975)
    passes_unshared, passes_shared = 0, 0
    for seed in range(streams):
        rng = np.random.default_rng(seed)
        champion, challenger = rng.random(300) < 0.8, rng.random(300) < 0.8
        copied = newest & (rng.random(300) < newest_agrees)
        challenger[copied] = champion[copied]
        rows = dataclasses.replace(base, row_weights=(challenger != champion).astype(float))
        shared = (rows.better_confidence(0.95), rows.newest_batch_confidence(0.95))
        passes_unshared += either(challenger, champion, (0.95, 0.95), seed)
        passes_shared += either(challenger, champion, shared, seed)
    assert passes_shared <= allowed
    if not newest_agrees:
        assert passes_unshared > allowed


def test_the_newest_batchs_share_is_of_the_rows_where_the_models_differ():
    """Check what the two tests' correlation is worked out from: for accuracy, the rows where
    exactly one model is right; for RMSE and MAE each row's squared difference in its squared
    or absolute error; for F1, which is no mean of per-row parts, the rows themselves; and that
    the record and the note say which."""
    from components.ml.metrics import PER_ROW_WEIGHT, Predictions, per_row_weights

    labels = np.array([0, 1, 1, 0, 1, 0])
    def classifier(predicted):
        return Predictions(labels, np.zeros((6, 2)), np.array([0, 1]), np.array(predicted))
    champion, challenger = classifier([0, 1, 0, 0, 0, 1]), classifier([0, 1, 1, 1, 0, 0])
    assert per_row_weights("accuracy", challenger, champion).tolist() == [0, 0, 1, 1, 0, 1]
    assert per_row_weights("f1", challenger, champion) is None
    values = np.array([10.0, 10.0, 10.0])
    def regressor(predicted):
        return Predictions(values, np.empty((3, 0)), np.empty(0), np.array(predicted),
                           "regression")
    closer, farther = regressor([11.0, 7.0, 10.0]), regressor([12.0, 8.0, 10.0])
    assert per_row_weights("rmse", closer, farther).tolist() == [9.0, 25.0, 0.0]
    assert per_row_weights("mae", closer, farther).tolist() == [1.0, 1.0, 0.0]
    frame = _months(100, 100, 60)
    weights = np.r_[np.ones(200) * (np.arange(200) % 4 == 0), np.ones(60) * (np.arange(60) % 2)]
    rows = evaluation_rows(frame, len(frame), kept=np.ones(len(frame), dtype=bool), min_rows=100,
                           timestamp_column="event_time", confidence=0.95,
                           against_champion=True, row_weights=weights,
                           weighed_by=PER_ROW_WEIGHT["accuracy"])
    assert rows.newest_batch_share == 30 / 80
    assert rows.better_confidence(0.95) == nested_pair_level(0.95, 0.375)
    assert "(the newest batch holds 37.5% of the rows where exactly one model is right)" \
        in rows.note
    summary = rows.summary()
    assert summary["newest_batch_share"] == 0.375 and "row_weights" not in summary
    assert summary["newest_batch_share_of"] == "the rows where exactly one model is right"
    alike = evaluation_rows(frame, len(frame), kept=np.ones(len(frame), dtype=bool),
                            min_rows=100, timestamp_column="event_time", against_champion=True,
                            row_weights=np.zeros(260), weighed_by=PER_ROW_WEIGHT["accuracy"])
    assert alike.newest_batch_share == 60 / 260 and alike.newest_batch_share_of == "the rows"
    assert nested_pair_level(0.95, 1.0) == 0.95 and nested_pair_level(0.95, 0.0) < 0.975


def test_the_shared_level_of_two_nested_tests_is_exact_and_less_strict_than_halving():
    """Check :func:`nested_pair_level` on two correlated normal statistics, the second drawn on
    a share of the first's rows (correlation sqrt(share)): either exceeds the bound at the
    level found as often as one test at the gate's level errs on one side (within the draw's
    noise), and the level lies between the gate's own and halving its error."""
    from scipy.stats import norm

    rng = np.random.default_rng(0)
    draws = 400_000
    first, independent = rng.standard_normal(draws), rng.standard_normal(draws)
    for level in (0.9, 0.95):
        tail = (1 - level) / 2
        for share in (0.05, 1 / 3, 0.5, 0.9):
            shared = nested_pair_level(level, share)
            assert level < shared < shared_level(level, 2)
            second = np.sqrt(share) * first + np.sqrt(1 - share) * independent
            bound = norm.isf((1 - shared) / 2)
            either = np.mean((first > bound) | (second > bound))
            assert abs(either - tail) < 4 * np.sqrt(tail / draws)
    assert nested_pair_level(0.95, 1 / 3) == 0.9724  # the newest 200 of 600 rows


def test_rows_that_promoted_the_champion_do_not_judge_it():
    """Check the other bias: deploy marks the rolling-holdout rows the gate judged a promotion on
    with the version it promoted; the next gate leaves them out when that version is the
    champion, and keeps them for any other."""
    import io

    from components.data.roles import PROMOTED_VERSION_COLUMN, content_hashes
    from components.stages.deploy import PromotedOn, rolled_holdout
    from tests.helpers import make_rows

    kinds = {"x1": "numeric", "x2": "numeric", "color": "categorical"}
    earlier, new = make_rows(60, seed=1), make_rows(40, seed=2, start="2025-03-01")
    judged = pd.concat([earlier.tail(25), new], ignore_index=True)  # what the gate judged on
    promoted = PromotedOn(content_hashes(judged, kinds, "label", "ts"), "v0002", kinds,
                          "label", "ts")
    pool = pd.read_parquet(io.BytesIO(rolled_holdout(
        _parquet(earlier), new, max_rows=1000, timestamp_column="ts", promoted=promoted)))
    assert (pool[PROMOTED_VERSION_COLUMN] == "v0002").sum() == 65
    assert pool[PROMOTED_VERSION_COLUMN].isna().sum() == 35

    this_run = make_rows(30, seed=3, start="2025-05-01")
    frame, left_out = candidate_rows(this_run, pool, max_rows=1000, timestamp_column="ts",
                                     champion_version="v0002")
    assert left_out == 65
    assert len(frame) == 35 + 30
    assert PROMOTED_VERSION_COLUMN not in frame
    _, none_left_out = candidate_rows(this_run, pool, max_rows=1000, timestamp_column="ts",
                                      champion_version="v0001")
    assert none_left_out == 0


def _parquet(frame: pd.DataFrame) -> bytes:
    import io

    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def test_a_challenger_that_learned_every_row_its_champion_did_is_a_refit_for_the_freshness_rule():
    """Check which challengers the freshness rule may judge: a full refit or a fine-tune by
    construction; a window or since-change fit only when it learned at least as many rows of
    each batch its champion learned from; never against a champion whose batches are unknown."""
    champion = VersionMetadata(training_batches={"a.csv 2025-01": 40, "a.csv 2025-02": 40})
    assert refits_the_champions_rows("full", {}, None)
    assert refits_the_champions_rows("finetune", {}, champion)
    more = {"a.csv 2025-01": 40, "a.csv 2025-02": 40, "b.csv 2025-03": 200}
    assert refits_the_champions_rows("since_change", more, champion)
    assert refits_the_champions_rows("window", more, champion)
    fewer = {"a.csv 2025-01": 12, "a.csv 2025-02": 40, "b.csv 2025-03": 200}
    assert not refits_the_champions_rows("window", fewer, champion)
    assert not refits_the_champions_rows("since_change", {"b.csv 2025-03": 200}, champion)
    assert not refits_the_champions_rows("window", more, VersionMetadata())
    assert not refits_the_champions_rows("window", more, None)
