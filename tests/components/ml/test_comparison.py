"""The paired comparison: scipy's statistics on both models' answers for the same rows."""

import numpy as np
import pytest
from sklearn.metrics import f1_score, roc_auc_score

from components.ml.comparison import _metric, compare, interval_of

CLASSES = np.array([0, 1])


def _answers(rows: int, accuracy: float, seed: int):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, rows)
    right = rng.random(rows) < accuracy
    predicted = np.where(right, y, 1 - y)
    confidence = rng.uniform(0.5, 1.0, rows)
    positive = np.where(predicted == 1, confidence, 1 - confidence)
    return y, predicted, np.column_stack([1 - positive, positive])


@pytest.mark.parametrize("seed", range(3))
def test_the_fast_metrics_equal_scikit_learns(seed):
    """Check the resampled F1 and ROC AUC against scikit-learn's on the same answers."""
    y, predicted, probabilities = _answers(300, 0.8, seed)
    assert _metric("f1", y, predicted, probabilities, CLASSES) == pytest.approx(
        f1_score(y, predicted, average="macro"))
    assert _metric("roc_auc", y, predicted, probabilities, CLASSES) == pytest.approx(
        roc_auc_score(y, probabilities[:, 1]))


def test_the_interval_covers_the_true_difference_at_the_stated_rate():
    """Check the 95% paired interval of an accuracy difference covers the true one about 95%
    of the time over many independent evaluation sets (true accuracies 0.85 and 0.80)."""
    covered, trials = 0, 60
    for seed in range(trials):
        rng = np.random.default_rng(seed)
        y = rng.integers(0, 2, 400)
        latent = rng.random(400)  # shared difficulty: the models err on overlapping rows
        champion = np.where(latent < 0.80, y, 1 - y)
        challenger = np.where(latent < 0.85, y, 1 - y)
        eye = np.eye(2)
        result = compare("accuracy", y, champion_predicted=champion,
                         champion_probabilities=eye[champion], challenger_predicted=challenger,
                         challenger_probabilities=eye[challenger], classes=CLASSES,
                         confidence=0.95, seed=seed)
        covered += result.ci_low <= 0.05 <= result.ci_high
    assert covered >= 54  # 57 expected; fewer than 54 has probability 0.03 at 95%


def test_identical_models_have_a_p_value_of_one_and_a_zero_interval():
    """Check that two models giving the same answers differ by exactly nothing."""
    y, predicted, probabilities = _answers(200, 0.8, 1)
    result = compare("accuracy", y, champion_predicted=predicted,
                     champion_probabilities=probabilities, challenger_predicted=predicted,
                     challenger_probabilities=probabilities, classes=CLASSES,
                     confidence=0.95, seed=0)
    assert (result.delta, result.ci_low, result.ci_high, result.p_value) == (0, 0, 0, 1.0)


@pytest.mark.parametrize("metric", ["f1", "roc_auc"])
def test_other_metrics_get_a_bootstrap_interval_and_a_permutation_p_value(metric):
    """Check F1 and ROC AUC comparisons: a real gain has an interval above zero."""
    y, champion, champion_probabilities = _answers(400, 0.70, 3)
    latent = np.random.default_rng(4).random(400)
    challenger = np.where(latent < 0.95, y, 1 - y)
    eye = np.eye(2) * 0.8 + 0.1
    result = compare(metric, y, champion_predicted=champion,
                     champion_probabilities=champion_probabilities,
                     challenger_predicted=challenger, challenger_probabilities=eye[challenger],
                     classes=CLASSES, confidence=0.95, seed=0)
    assert result.ci_low > 0
    assert result.p_value < 0.01
    assert "permutation" in result.method


def test_the_same_seed_gives_the_same_interval():
    """Check the comparison is reproducible: seeded resampling, no process state."""
    y, predicted, probabilities = _answers(300, 0.8, 5)
    other = np.where(np.random.default_rng(6).random(300) < 0.9, y, 1 - y)
    runs = [compare("accuracy", y, champion_predicted=predicted,
                    champion_probabilities=probabilities, challenger_predicted=other,
                    challenger_probabilities=np.eye(2)[other], classes=CLASSES,
                    confidence=0.95, seed=11) for _ in range(2)]
    assert runs[0] == runs[1]


def test_a_cold_start_interval_brackets_the_score():
    """Check the one-model interval used when there is no champion."""
    y, predicted, probabilities = _answers(300, 0.8, 7)
    low, high = interval_of("accuracy", y, predicted, probabilities, CLASSES, confidence=0.95,
                            seed=0)
    assert low < np.mean(predicted == y) < high
    assert high - low < 0.12


@pytest.mark.parametrize("rows, only_new, only_old", [
    (40, 5, 4), (412, 39, 10), (2000, 90, 60), (5000, 300, 250)],
    ids=["seed-40-rows", "clear-gain", "small-gain", "5000-rows"])
def test_the_interval_from_counts_is_scipys_paired_bca_bootstrap(rows, only_new, only_old):
    """Check that the interval drawn from the three counts (a multinomial resample) is the one
    scipy's paired BCa bootstrap gives from the rows themselves, to a resampling error."""
    from scipy.stats import bootstrap

    from components.ml.comparison import paired_accuracy_interval

    new, old = np.zeros(rows), np.zeros(rows)
    new[:only_new] = 1
    old[only_new:only_new + only_old] = 1
    both = slice(only_new + only_old, only_new + only_old + (rows - only_new - only_old) // 2)
    new[both], old[both] = 1, 1
    scipy_interval = bootstrap(
        (new, old), lambda a, b, axis=-1: a.mean(axis) - b.mean(axis), paired=True,
        vectorized=True, confidence_level=0.95, n_resamples=9999, method="BCa",
        random_state=np.random.default_rng(3)).confidence_interval
    ours = paired_accuracy_interval(rows, only_new, only_old, 0.95, np.random.default_rng(3))
    assert ours[0] == pytest.approx(scipy_interval.low, abs=0.003)
    assert ours[1] == pytest.approx(scipy_interval.high, abs=0.003)


def _mid_p_by_definition(successes: int, trials: int, confidence: float):
    """Each bound the chance where the tail beyond the successes plus half their own
    probability is (1 - confidence) / 2, written with scipy.stats.binom."""
    from scipy.optimize import brentq
    from scipy.stats import binom

    tail = (1 - confidence) / 2
    low = 0.0 if successes == 0 else brentq(
        lambda p: binom.sf(successes, trials, p) + binom.pmf(successes, trials, p) / 2 - tail,
        0.0, 1.0)
    high = 1.0 if successes == trials else brentq(
        lambda p: binom.cdf(successes - 1, trials, p) + binom.pmf(successes, trials, p) / 2
        - tail, 0.0, 1.0)
    return low, high


@pytest.mark.parametrize("trials", [1, 4, 10, 37, 200, 1500])
def test_the_mid_p_interval_is_its_definition_in_scipy_stats(trials):
    """Check the mid-p interval against its definition in scipy.stats, and a bound worked by
    hand: none of 10 at 95%, where (1 - p)^10 / 2 = 0.025."""
    from components.ml.comparison import mid_p_interval

    for successes in sorted({0, 1, trials // 3, trials - 1, trials}):
        for confidence in (0.5, 0.8, 0.95, 0.9707):
            assert mid_p_interval(successes, trials, confidence) == pytest.approx(
                _mid_p_by_definition(successes, trials, confidence), abs=1e-12), (
                successes, confidence)
    if trials == 10:
        assert mid_p_interval(0, 10, 0.95)[1] == pytest.approx(1 - 0.05 ** 0.1, abs=1e-12)


def test_an_equal_challenger_is_shown_better_no_more_often_than_the_confidence_allows():
    """Check the gate's accuracy interval on an equal challenger, for few to many rows where
    only one model is right (each favouring either model by a fair coin): its 95% lower bound
    is above 0 in at most 2.5% of 2,000 draws (two standard errors over it), where the
    bootstrap alone is above 0 in 6% of them on four such rows (four of four for one model
    puts its lower bound above 0; the chance is one in sixteen). Four of four is not shown
    better; eight of eight is."""
    from components.ml.comparison import accuracy_interval, paired_accuracy_interval

    draws = 2000
    allowed = 0.025 + 2 * np.sqrt(0.025 * 0.975 / draws)
    for discordant in (4, 10, 30):
        coin = np.random.default_rng(discordant).binomial(discordant, 0.5, draws)
        shown = [accuracy_interval(200, int(k), discordant - int(k), 0.95,
                                   np.random.default_rng(draw))[0] > 0
                 for draw, k in enumerate(coin)]
        assert np.mean(shown) <= allowed, discordant
        if discordant == 4:
            alone = [paired_accuracy_interval(200, int(k), discordant - int(k), 0.95,
                                              np.random.default_rng(draw))[0] > 0
                     for draw, k in enumerate(coin)]
            assert np.mean(alone) > allowed
    rng = np.random.default_rng(0)
    assert paired_accuracy_interval(200, 4, 0, 0.95, rng)[0] > 0
    assert accuracy_interval(200, 4, 0, 0.95, rng)[0] < 0 < accuracy_interval(200, 8, 0, 0.95,
                                                                                rng)[0]


# -- regression --------------------------------------------------------------------------------
def _regressors(rows: int, champion_noise: float, challenger_noise: float, seed: int):
    rng = np.random.default_rng(seed)
    y = rng.normal(50, 10, rows)
    shared = rng.normal(size=rows)  # the models err together on hard rows
    return (y, y + champion_noise * (0.6 * shared + 0.8 * rng.normal(size=rows)),
            y + challenger_noise * (0.6 * shared + 0.8 * rng.normal(size=rows)))


def _scipy_interval(metric, y, new, old):
    from scipy.stats import bootstrap

    def difference(rows, axis=-1):
        rows = rows.astype(int)
        yy, a, b = y[rows], new[rows], old[rows]
        if metric == "rmse":
            return (np.sqrt(np.mean((a - yy) ** 2, axis=-1))
                    - np.sqrt(np.mean((b - yy) ** 2, axis=-1)))
        if metric == "mae":
            return np.mean(np.abs(a - yy), axis=-1) - np.mean(np.abs(b - yy), axis=-1)
        spread = np.sum((yy - yy.mean(axis=-1, keepdims=True)) ** 2, axis=-1)
        return (np.sum((b - yy) ** 2, axis=-1) - np.sum((a - yy) ** 2, axis=-1)) / spread

    result = bootstrap((np.arange(len(y)),), difference, vectorized=True, n_resamples=9999,
                       method="BCa", random_state=0)
    return result.confidence_interval


@pytest.mark.parametrize("metric", ["rmse", "mae", "r2"])
def test_the_regression_interval_is_scipys_paired_bootstrap(metric):
    """Check the paired interval of an RMSE, MAE or R² difference against scipy's BCa
    bootstrap of the rows, to 5% of the interval's width (two runs of 9,999 resamples)."""
    y, old, new = _regressors(400, 6.0, 5.0, seed=1)
    comparison = compare(metric, y, champion_predicted=old, champion_probabilities=None,
                         challenger_predicted=new, challenger_probabilities=None, classes=None,
                         confidence=0.95, seed=3)
    low, high = _scipy_interval(metric, y, new, old)
    tolerance = 0.05 * (high - low)
    assert comparison.ci_low == pytest.approx(low, abs=tolerance)
    assert comparison.ci_high == pytest.approx(high, abs=tolerance)
    assert comparison.better == ("higher" if metric == "r2" else "lower")
    assert comparison.gain > 0 and comparison.gain_low > 0
    assert comparison.p_value < 0.01
    assert "sign-flip" in comparison.method


def test_equally_good_regressors_have_an_interval_around_zero_and_no_small_p_value():
    """Check that two regressors of the same error get an interval covering 0."""
    y, old, new = _regressors(300, 5.0, 5.0, seed=4)
    comparison = compare("rmse", y, champion_predicted=old, champion_probabilities=None,
                         challenger_predicted=new, challenger_probabilities=None, classes=None,
                         confidence=0.95, seed=3)
    assert comparison.ci_low < 0 < comparison.ci_high
    assert comparison.p_value > 0.05


def test_an_equal_regressor_is_shown_better_no_more_often_than_the_confidence_allows():
    """Check the regression interval on an equal challenger whose errors have heavy tails
    (Student-t, 3 degrees of freedom) on 30 rows: its 95% interval puts the challenger's RMSE
    ahead in at most 2.5% of 400 draws (two standard errors over it), where the bootstrap's
    interval alone does in about 10%; and where the sign-flip test does tell them apart, the
    interval is the bootstrap's."""
    from components.ml.comparison import holding_no_difference_unless_shown

    draws, rows = 400, 30
    allowed = 0.025 + 2 * np.sqrt(0.025 * 0.975 / draws)
    shown, shown_alone = 0, 0
    for draw in range(draws):
        rng = np.random.default_rng(draw)
        y = rng.normal(50, 10, rows)
        old, new = (y + 3 * rng.standard_t(3, rows) for _ in range(2))
        comparison = compare("rmse", y, champion_predicted=old, champion_probabilities=None,
                             challenger_predicted=new, challenger_probabilities=None,
                             classes=None, confidence=0.95, seed=draw)
        shown += comparison.gain_low > 0
        # Holding 0 moves a bound to 0 only where the bootstrap's excluded it: an upper bound
        # of exactly 0 is the bootstrap's showing the challenger's RMSE lower, held back.
        shown_alone += comparison.gain_low > 0 or comparison.ci_high == 0.0
    assert shown / draws <= allowed
    assert shown_alone / draws > 2 * allowed
    assert holding_no_difference_unless_shown(-0.5, -0.1, 0.2, 0.95) == (-0.5, 0.0)
    assert holding_no_difference_unless_shown(-0.5, -0.1, 0.01, 0.95) == (-0.5, -0.1)


def test_an_f1_gain_the_permutation_test_does_not_show_is_not_shown(monkeypatch):
    """Check F1 on 30 rows where the bootstrap alone puts the challenger's gain (+0.22) above 0
    at 95% while the paired permutation test's p-value is 0.067: the interval holds 0, so the
    gate would not call it better (on 800 such draws of an equal challenger the bootstrap alone
    did in 3.9%, where 2.5% is meant)."""
    import components.ml.comparison as comparison

    rng = np.random.default_rng(0)
    y = (rng.random(30) < 0.3).astype(int)

    def model():
        score = np.clip(0.3 + 0.35 * (2 * y - 1) * rng.random(30) + rng.normal(0, 0.25, 30), 0, 1)
        return (score > 0.5).astype(int), np.c_[1 - score, score]

    (old, old_p), (new, new_p) = model(), model()

    def f1():
        return compare("f1", y, champion_predicted=old, champion_probabilities=old_p,
                       challenger_predicted=new, challenger_probabilities=new_p,
                       classes=np.array([0, 1]), confidence=0.95, seed=0)

    held = f1()
    assert held.gain == pytest.approx(0.2209, abs=1e-4) and held.p_value >= 0.05
    assert held.ci_low == 0.0 < held.ci_high and "holding 0" in held.method
    monkeypatch.setattr(comparison, "holding_no_difference_unless_shown",
                        lambda low, high, p_value, confidence: (low, high))
    assert f1().ci_low > 0


def test_a_regressors_cold_start_interval_brackets_its_rmse():
    """Check the bootstrap interval of one regressor's RMSE (a cold start's)."""
    y, _, new = _regressors(500, 5.0, 5.0, seed=5)
    rmse = float(np.sqrt(np.mean((new - y) ** 2)))
    low, high = interval_of("rmse", y, new, None, None, confidence=0.95, seed=0)
    assert low < rmse < high
    assert high - low < 0.3 * rmse
