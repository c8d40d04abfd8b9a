"""The comparison judge against scipy.stats and brute force, and its properties."""

from __future__ import annotations

import math
import statistics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from sprintops.health.judge import Judgment, classify, clean, mann_whitney, score

samples = st.lists(st.floats(0.1, 1000, allow_nan=False), min_size=5, max_size=40)
# Whole numbers keep shifted sums exact, so a shift cannot move a difference across 0.
counts = st.lists(st.integers(1, 500).map(float), min_size=5, max_size=30)


@settings(max_examples=50)
@given(samples, samples)
def test_u_and_p_value_are_scipys(new: list[float], old: list[float]) -> None:
    ours = mann_whitney(new, old, 0.98)
    theirs = stats.mannwhitneyu(
        new, old, alternative="two-sided", method="asymptotic", use_continuity=True
    )
    assert ours.u == pytest.approx(theirs.statistic)
    if math.isnan(theirs.pvalue):  # every value tied: no evidence of a shift
        assert ours.p_value == 1.0
    else:
        assert ours.p_value == pytest.approx(theirs.pvalue, abs=1e-9)


@settings(max_examples=50)
@given(samples, samples, st.sampled_from([0.9, 0.95, 0.98, 0.99]))
def test_estimate_and_interval_are_the_pairwise_differences(
    new: list[float], old: list[float], confidence: float
) -> None:
    differences = sorted(a - b for a in new for b in old)
    n, m = len(new), len(old)
    z = stats.norm.ppf(1 - (1 - confidence) / 2)
    k = int(
        max(
            0,
            min(
                len(differences) - 1,
                math.floor(n * m / 2 - z * math.sqrt(n * m * (n + m + 1) / 12)),
            ),
        )
    )
    ours = mann_whitney(new, old, confidence)
    assert ours.estimate == statistics.median(differences)
    assert (ours.lower, ours.upper) == (differences[k], differences[len(differences) - 1 - k])
    assert ours.lower <= ours.estimate <= ours.upper


@given(samples)
def test_identical_samples_pass(values: list[float]) -> None:
    assert classify("m", values, list(values)).classification == "Pass"


@given(counts, counts, st.integers(1, 1000).map(float))
def test_shifting_both_samples_changes_nothing(
    new: list[float], old: list[float], shift: float
) -> None:
    before = classify("m", new, old)
    after = classify("m", [v + shift for v in new], [v + shift for v in old])
    assert after.classification == before.classification
    assert before.test is not None and after.test is not None
    assert (after.test.estimate, after.test.lower, after.test.upper) == (
        before.test.estimate,
        before.test.lower,
        before.test.upper,
    )


@given(samples, samples)
def test_swapping_the_samples_flips_the_direction(new: list[float], old: list[float]) -> None:
    there = classify("m", new, old).classification
    back = classify("m", old, new).classification
    assert {"High": "Low", "Low": "High", "Pass": "Pass", "NoData": "NoData"}[there] == back


@given(
    st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=30),
    st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=30),
    st.sampled_from(["remove", "replace"]),
    st.booleans(),
)
def test_nans_never_raise(
    new: list[float], old: list[float], nan_strategy: str, outliers: bool
) -> None:
    judged = classify("m", new, old, nan_strategy=nan_strategy, remove_outliers=outliers)  # type: ignore[arg-type]
    assert judged.classification in ("Pass", "High", "Low", "NoData")


def test_a_real_regression_is_high_and_a_small_one_within_the_effect_size_passes() -> None:
    old = [100.0 + i % 5 for i in range(30)]
    slower = [v * 1.6 for v in old]
    assert classify("p99", slower, old, direction="increase").classification == "High"
    assert classify("p99", slower, old, direction="decrease").classification == "Pass"
    within = [v * 1.05 for v in old]
    assert classify("p99", within, old, allowed_increase=1.1).classification == "Pass"
    assert classify("p99", within, old).classification == "High"  # any significant rise
    assert classify("p99", old[:2], old).classification == "NoData"
    # 3 and 3 samples reach 90% at most: never a 98% verdict.
    assert classify("p99", slower[:3], old[:3]).classification == "NoData"
    assert classify("p99", slower[:5], old[:5]).classification == "High"


def test_what_the_old_cluster_never_reached_counts_and_negative_means_skip_the_ratio() -> None:
    old = [100.0, 101.0, 99.0, 100.0, 102.0, 98.0]
    assert classify("p99", [math.inf] * 6, old, direction="increase").classification == "High"
    rising = classify(
        "m",
        [-1.0, -1.2, -0.8, -1.1, -0.9, -1.0],
        [-10.0, -10.5, -9.5, -10.2, -9.8, -10.1],
        direction="increase",
    )
    assert rising.classification == "High" and rising.ratio is None


def test_outliers_and_nans_are_cleaned_as_asked() -> None:
    assert clean([1.0, math.nan, 2.0]) == [1.0, 2.0]
    assert clean([1.0, math.nan, math.inf], nan_strategy="replace") == [1.0, 0.0, math.inf]
    assert clean([1.0, math.inf, math.nan]) == [1.0, math.inf]  # a p99 past the top bucket
    assert clean([10.0, 11.0, 12.0, 11.0, 10.0, 500.0], remove_outliers=True) == [
        10.0,
        11.0,
        12.0,
        11.0,
        10.0,
    ]


def _judged(name: str, classification: str, critical: bool = False) -> Judgment:
    return Judgment(name, classification, critical, 10, 10)  # type: ignore[arg-type]


def test_the_score_decides_the_round_and_a_critical_failure_decides_alone() -> None:
    three = [_judged("a", "Pass"), _judged("b", "Pass"), _judged("c", "High")]
    assert score(three, 95, 60).outcome == "hold"  # 67: marginal
    assert score(three, 60, 50).outcome == "pass"
    assert score(three, 95, 75).outcome == "fail"
    assert score(three, 95, 75).score == pytest.approx(200 / 3)
    critical = [_judged("a", "Pass"), _judged("b", "Low", critical=True)]
    verdict = score(critical, 0, 0)
    assert verdict.outcome == "fail" and "b" in verdict.reason
    assert score([_judged("a", "NoData")], 95, 75).outcome == "hold"
