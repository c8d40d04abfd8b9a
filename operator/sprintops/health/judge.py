"""The comparison judge: the new cluster against the old one over the same time, after
Kayenta's NetflixACAJudge. Pure: samples in, judgments out.

Per metric: NaNs are removed (or replaced by 0), outliers optionally dropped, then a
Mann-Whitney U test with the Hodges-Lehmann shift estimate and its confidence interval
decides High, Low or Pass, together with the effect size (the ratio of the means) against
what the metric allows. The run's score is passes / judged x 100.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Classification = Literal["Pass", "High", "Low", "NoData"]
Direction = Literal["increase", "decrease", "either"]
RoundOutcome = Literal["pass", "hold", "fail"]


@dataclass(frozen=True)
class MannWhitney:
    u: float  # U of the first sample (the new cluster)
    p_value: float  # two-sided, normal approximation with tie and continuity corrections
    estimate: float  # Hodges-Lehmann: median of every new - old difference
    lower: float  # confidence interval of the shift, from the ordered differences
    upper: float


@dataclass(frozen=True)
class Judgment:
    metric: str
    classification: Classification
    critical: bool
    new_count: int
    old_count: int
    test: MannWhitney | None = None
    ratio: float | None = None  # mean(new) / mean(old); None when the old mean is 0
    reason: str = ""

    def describe(self, confidence: float) -> str:
        if self.test is None:
            return f"{self.metric}: {self.classification} ({self.reason})"
        t = self.test
        ratio = "n/a" if self.ratio is None else f"{self.ratio:.2f}"
        return (
            f"{self.metric}: {self.classification}: shift {t.estimate:+.4g} "
            f"[{t.lower:+.4g}, {t.upper:+.4g}] at {confidence:.0%}, mean ratio {ratio}, "
            f"n={self.new_count}/{self.old_count}"
        )


@dataclass(frozen=True)
class Verdict:
    judgments: tuple[Judgment, ...]
    score: float | None  # None: nothing could be judged
    outcome: RoundOutcome
    reason: str


def _normal_quantile(p: float) -> float:
    return statistics.NormalDist().inv_cdf(p)


def _ranks(values: Sequence[float]) -> list[float]:
    """Average ranks (1-based), ties sharing the mean of their positions."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def mann_whitney(new: Sequence[float], old: Sequence[float], confidence: float) -> MannWhitney:
    """Both samples non-empty and free of NaN."""
    n, m = len(new), len(old)
    ranks = _ranks([*new, *old])
    u = sum(ranks[:n]) - n * (n + 1) / 2
    # Tie-corrected variance of U; the continuity correction moves U half a step to the mean.
    total = n + m
    ties = _tie_sizes([*new, *old])
    tie_term = sum(t**3 - t for t in ties) / (total * (total - 1)) if total > 1 else 0.0
    variance = n * m / 12 * ((total + 1) - tie_term)
    mean_u = n * m / 2
    if variance <= 0:
        p_value = 1.0
    else:
        z = (abs(u - mean_u) - 0.5) / math.sqrt(variance)
        p_value = min(1.0, 2 * (1 - statistics.NormalDist().cdf(max(z, 0.0))))
    differences = sorted(a - b for a in new for b in old)
    estimate = statistics.median(differences)
    # The interval's ends are order statistics of the differences (Bauer 1972):
    # k = n*m/2 - z * sqrt(n*m*(n+m+1)/12), clamped to the sample.
    z_crit = _normal_quantile(1 - (1 - confidence) / 2)
    k = math.floor(mean_u - z_crit * math.sqrt(n * m * (total + 1) / 12))
    k = min(max(k, 0), len(differences) - 1)
    return MannWhitney(u, p_value, estimate, differences[k], differences[-1 - k])


def _mean(values: Sequence[float]) -> float:
    """Never raises: values near the float limit overflow to inf (fmean would raise)."""
    return sum(v / len(values) for v in values)


def _tie_sizes(values: Sequence[float]) -> list[int]:
    counts: dict[float, int] = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    return [c for c in counts.values() if c > 1]


def clean(
    values: Sequence[float],
    nan_strategy: Literal["remove", "replace"] = "remove",
    remove_outliers: bool = False,
) -> list[float]:
    """NaNs removed or replaced by 0; outliers beyond Tukey's fences (1.5 IQR outside the
    quartiles) dropped when asked. An infinity is a value (a p99 past the top bucket is
    +Inf: the worst there is), never dropped."""
    keep_nan = nan_strategy == "replace"
    kept = [0.0 if math.isnan(v) else v for v in values if keep_nan or not math.isnan(v)]
    if remove_outliers and len(kept) >= 4 and all(math.isfinite(v) for v in kept):
        q1, _, q3 = statistics.quantiles(kept, n=4)
        fence = 1.5 * (q3 - q1)
        kept = [v for v in kept if q1 - fence <= v <= q3 + fence]
    return kept


def classify(
    metric: str,
    new: Sequence[float],
    old: Sequence[float],
    *,
    direction: Direction = "either",
    allowed_increase: float = 1.0,
    allowed_decrease: float = 1.0,
    critical: bool = False,
    confidence: float = 0.98,
    nan_strategy: Literal["remove", "replace"] = "remove",
    remove_outliers: bool = False,
    min_samples: int = 3,
) -> Judgment:
    """High when the new cluster's values are significantly above the old one's and the
    mean ratio reaches `allowed_increase`; Low likewise below `allowed_decrease`. A shift in
    the direction that is not a regression is a Pass."""
    x = clean(new, nan_strategy, remove_outliers)
    y = clean(old, nan_strategy, remove_outliers)
    if len(x) < min_samples or len(y) < min_samples:
        why = f"{len(x)} new and {len(y)} old samples, need {min_samples} each"
        return Judgment(metric, "NoData", critical, len(x), len(y), reason=why)
    if 2 / math.comb(len(x) + len(y), len(x)) > 1 - confidence:
        # So few samples cannot reach the confidence at all (3 and 3 reach 90% at most).
        why = f"{len(x)} new and {len(y)} old samples cannot reach {confidence:.0%} confidence"
        return Judgment(metric, "NoData", critical, len(x), len(y), reason=why)
    test = mann_whitney(x, y, confidence)
    old_mean, new_mean = _mean(y), _mean(x)
    # A ratio of means says "how much higher" only for positive values; otherwise the
    # effect size cannot be judged and significance alone decides.
    positive = old_mean > 0 and new_mean >= 0 and math.isfinite(old_mean)
    ratio = new_mean / old_mean if positive else None
    high = test.lower > 0 and (ratio is None or ratio >= allowed_increase)
    low = test.upper < 0 and (ratio is None or ratio <= allowed_decrease)
    classification: Classification = "Pass"
    if high and direction in ("increase", "either"):
        classification = "High"
    elif low and direction in ("decrease", "either"):
        classification = "Low"
    return Judgment(metric, classification, critical, len(x), len(y), test, ratio)


def score(judgments: Sequence[Judgment], pass_score: float, marginal_score: float) -> Verdict:
    """The run: a critical metric that is High or Low fails it; otherwise passes / judged x
    100 against the pass and marginal scores (NoData metrics are not judged)."""
    judged = [j for j in judgments if j.classification != "NoData"]
    critical = [j for j in judged if j.critical and j.classification != "Pass"]
    if critical:
        names = ", ".join(j.metric for j in critical)
        return Verdict(tuple(judgments), None, "fail", f"critical metric failed: {names}")
    if not judged:
        return Verdict(tuple(judgments), None, "hold", "nothing could be judged")
    value = 100 * sum(j.classification == "Pass" for j in judged) / len(judged)
    if value >= pass_score:
        return Verdict(tuple(judgments), value, "pass", f"score {value:.0f} >= {pass_score:g}")
    if value >= marginal_score:
        why = f"score {value:.0f} is marginal (>= {marginal_score:g}, < {pass_score:g})"
        return Verdict(tuple(judgments), value, "hold", why)
    return Verdict(tuple(judgments), value, "fail", f"score {value:.0f} < {marginal_score:g}")
