"""The bench's summary over seeds: what a claim about the gate's decisions rests on."""

import numpy as np
import pytest

from bench.decisions import over_seeds, seed_list, seeds_markdown, served_gap


def _run(kind, seed, served, naive, *, task="classification", harmful=0, deploys=5):
    best = (min if task == "regression" else max)(naive, key=naive.get)
    return {"kind": kind, "batch_rows": 200, "seed": seed, "task": task, "served": served,
            "naive": naive, "best_naive": best, "deploys": deploys, "harmful": harmful}


def test_each_stream_is_summed_over_its_seeds_with_the_standard_error_of_the_mean():
    """Check the mean and standard error against numpy on three seeds, in the seeds' order
    whatever order the runs finished in, and that harmful deploys add up over every run."""
    naive = {"never": 0.80, "refit_all": 0.85, "refit_last_3": 0.84}
    runs = [_run("gradual", 2, 0.845, naive, harmful=1), _run("gradual", 0, 0.851, naive),
            _run("gradual", 1, 0.838, naive), _run("stationary", 0, 0.850, naive)]
    gradual, stationary = over_seeds(runs)
    gaps = np.array([0.1, -1.2, -0.5])
    assert gradual["seeds"] == [0, 1, 2]
    assert gradual["gaps"] == pytest.approx(gaps)
    assert gradual["mean_gap"] == pytest.approx(gaps.mean())
    assert gradual["standard_error"] == pytest.approx(gaps.std(ddof=1) / np.sqrt(3))
    assert (gradual["deploys"], gradual["harmful"]) == (15, 1)
    assert stationary["standard_error"] is None  # one seed: no spread to speak of
    table = seeds_markdown([gradual, stationary])
    assert table[2] == "| gradual | 200 | 3 | +0.10 -1.20 -0.50 | -0.53 pt (0.38) | 15 | 1 |"
    assert table[3] == "| stationary | 200 | 1 | +0.00 | +0.00 pt (-) | 5 | 0 |"


def test_a_regression_stream_is_summed_as_a_share_of_the_best_naive_rmse():
    """Check that for RMSE the gap is served over the best (lowest) naive schedule's, minus 1,
    in percent: positive is worse, as part 10 reports it."""
    run = _run("abrupt", 0, 5.5, {"never": 7.0, "refit_all": 5.0, "refit_last_3": 5.2},
               task="regression")
    assert served_gap(run) == pytest.approx(10.0)
    assert seeds_markdown(over_seeds([run]))[2].startswith("| abrupt | 200 | 1 | +10.00 | +10.00 %")


def test_seeds_are_listed_or_given_as_ranges():
    assert seed_list("0") == [0]
    assert seed_list("0-8") == list(range(9))
    assert seed_list("0-2, 7") == [0, 1, 2, 7]


def test_a_run_of_another_seed_than_part_8s_is_named_by_it_in_the_table():
    """Check that the per-run table tells seeds apart, and that part 8's seed 0 rows read as
    they always have."""
    from bench.decisions import markdown

    naive = {"never": 0.80, "refit_all": 0.85, "refit_last_3": 0.84}
    runs = [dict(_run("gradual", seed, 0.85, naive), better_rejected=0, meets_target=True,
                 same_decisions_twice=None) for seed in (0, 4)]
    rows = [line for line in markdown(runs) if line.startswith("| gradual")]
    assert rows[0].startswith("| gradual | 200 |")
    assert rows[1].startswith("| gradual (seed 4) | 200 |")
