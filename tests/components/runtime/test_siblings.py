"""A step in the warm worker shares independent pieces of its work with a sibling process: the
same answers, in order, computed on two cores; and everything still runs when no sibling can."""

import os

import numpy as np
import pandas as pd
import pytest

from components.ml.threads import available_cpus, limited_threads
from components.runtime import siblings
from components.runtime.delegation import delegated
from components.runtime.warm_worker import running_worker

needs_two_cpus = pytest.mark.skipif(available_cpus() < 2, reason="a sibling needs a second CPU")


def square_where(*, item: int, die_unless: int = 0) -> tuple[int, int]:
    """``item`` squared, and the process that squared it (a sibling told so dies instead)."""
    if die_unless and os.getpid() != die_unless:
        os.kill(os.getpid(), 9)
    return item * item, os.getpid()


@delegated
def squares(*, items: list[int], die_in_sibling: bool = False) -> dict:
    stays = os.getpid() if die_in_sibling else 0
    answers = siblings.shared_with_a_sibling(
        square_where, lambda item: {"item": item, "die_unless": stays}, items)
    return {"answers": answers, "pid": os.getpid()}


@delegated(scientific=True)
def cross_fitted(*, seed: int) -> dict:
    """Six folds of the new rows of a small run, each predicted by a full refit without them."""
    from components.stages.retrain import predicted_without
    from tests.helpers import make_rows

    history, new = make_rows(300, seed=seed), make_rows(120, seed=seed + 1, start="2025-02-01")
    fit = dict(champion=None, label_column="label", model_type="hgb", epochs=5, seed=seed,
               feature_kinds={"x1": "numeric", "x2": "numeric", "color": "categorical"},
               task="classification", model_config={})
    given, ask = [], siblings._ask_sibling  # counts the folds handed to a sibling
    siblings._ask_sibling = lambda function, calls: (given.append(len(calls)),
                                                     ask(function, calls))[1]
    try:
        with limited_threads(len(history) + len(new), 3):  # small: one thread, so shared
            probabilities, predicted = predicted_without(
                "full", new,
                lambda left_out: pd.concat([history, new[~left_out]], ignore_index=True),
                [0, 1], threshold=None, fit=fit, folds=6)
    finally:
        siblings._ask_sibling = ask
    return {"probabilities": probabilities, "predicted": predicted, "given": sum(given)}


@pytest.fixture(scope="module")
def worker():
    with running_worker() as process:
        yield process


@needs_two_cpus
def test_every_other_piece_runs_in_a_sibling_and_the_answers_keep_their_order(worker):
    """Check the answers come back in the items' order, the even items computed by the step's
    own process and the odd ones by one other process, neither the worker nor this one."""
    result = squares(items=list(range(7)))
    assert [value for value, _ in result["answers"]] == [i * i for i in range(7)]
    here = {pid for _, pid in result["answers"][0::2]}
    there = {pid for _, pid in result["answers"][1::2]}
    assert here == {result["pid"]}
    assert len(there) == 1 and there.isdisjoint({result["pid"], os.getpid(), worker.pid})


@needs_two_cpus
def test_a_sibling_that_dies_leaves_its_pieces_to_the_step(worker, capfd):
    """Check a sibling killed mid-work costs nothing but time: its pieces run in the step's own
    process, the answers are whole, and the log says why."""
    result = squares(items=list(range(5)), die_in_sibling=True)
    assert result["answers"] == [(i * i, result["pid"]) for i in range(5)]
    assert "a sibling process could not share the work" in capfd.readouterr().err


def test_without_a_worker_every_piece_runs_here():
    """Check a step called directly (as on a cluster) computes every piece itself."""
    result = squares.__delegated__(items=[3, 4])
    assert result["answers"] == [(9, os.getpid()), (16, os.getpid())]


@needs_two_cpus
def test_cross_fitted_answers_are_the_same_shared_or_not(worker):
    """Check a cross-fit shared with a sibling gives exactly the probabilities and labels the
    same folds give in one process."""
    shared = cross_fitted(seed=4)
    alone = cross_fitted.__delegated__(seed=4)
    assert (shared["given"], alone["given"]) == (3, 0)
    np.testing.assert_array_equal(shared["probabilities"], alone["probabilities"])
    np.testing.assert_array_equal(shared["predicted"], alone["predicted"])
