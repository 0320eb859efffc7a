"""Every statistic of the report, in one place: the interval of a mean over seeds, the paired
comparison of two models, and the aggregate score over envs.

Seeds are the unit of replication. A per-cell number is a mean over seeds with a Student-t
interval (`mean_interval`): for normally distributed seed means it covers the true mean at its
stated level for any number of seeds from 2 (a percentile bootstrap of 3 seeds cannot be narrower
than their min-max and covers about 75%); one seed gives no interval.

Two models evaluated with the same seeds share start states and policy, so they are compared as
paired samples (`compare`): the ratio of their errors is the geometric mean of the per-seed
ratios with a paired Student-t interval on their logarithms, and the verdict says "better" or
"worse" only when that interval excludes 1. The probability of improvement (Agarwal et al., 2021)
is the chance that a seed of A has the lower error than a seed of B (ties count half), with
Newcombe's (2006) score-type interval (`improvement_interval`): it stays inside [0, 1], and where every
run of A lies below every run of B it still says how far below 1 the probability may be at a few seeds
(a percentile bootstrap has no spread to give there, and covers 26-85% at five seeds).

Each interval holds its level on its own; a report makes dozens of comparisons, so some verdicts
among those where two models are equal would come by chance. `holm` adjusts the paired t-tests'
p-values over a family of comparisons (Holm, 1979: valid whatever their dependence): a verdict
whose adjusted p-value is below 1 - LEVEL holds with at most that chance of any false verdict in
the family.

Recordings of a dataset are independent samples: `welch_interval` compares a quantity measured on two,
and `between_spread` estimates by moments the spread a recording adds to it beyond the seeds. With several
recordings the recording is the unit of replication: each one's mean over its seeds is one sample, and
`mean_interval` over them covers the seeds' and the recording's spread together.

The aggregate score of a model is its error relative to the `persistence` floor, per run (env,
horizon, seed): `error at the last step / persistence's error at the last step` of the same env,
horizon and seed (the same start states): 1 is no better than predicting that nothing moves, 0 is
exact. Runs are aggregated as the interquartile mean (the mean of the middle half: robust to one
diverged run, less noisy than the median) with a stratified-bootstrap interval that resamples the
seeds within each env, as recommended by Agarwal et al. (2021), "Deep RL at the edge of the
statistical precipice"; that resampling is `scipy.stats.bootstrap`'s.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import optimize, stats

FLOOR = "persistence"
BOOTSTRAP_RESAMPLES = 2000


LEVEL = 0.95
INTERVAL = f"{LEVEL:.0%} Student-t interval over seeds"  # what every per-cell interval is, for captions


def mean_interval(values, level: float = LEVEL) -> tuple[float, float, float]:
    """`(mean, low, high)`: the Student-t interval of the mean of `values` (one per seed). One value
    gives no interval (`low` and `high` are NaN): one seed says nothing about the spread."""
    values = np.asarray(values, dtype=np.float64)
    mean = float(values.mean())
    if len(values) < 2:
        return mean, float("nan"), float("nan")
    half = stats.t.ppf((1 + level) / 2, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    return mean, mean - half, mean + half


def interval_text(mean: float, low: float, high: float, fmt: str = ".3g") -> str:
    """`mean [low, high]`, or the mean alone where there is no interval (one seed, or none to give)."""
    return f"{mean:{fmt}}" if np.isnan(low) else f"{mean:{fmt}} [{low:{fmt}}, {high:{fmt}}]"


def summarise(frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Mean and Student-t interval of `value` over seeds, per group of `by`."""
    rows = []
    for key, group in frame.groupby(by, sort=False):
        mean, low, high = mean_interval(group["value"].to_numpy())
        rows.append((*key, mean, low, high, group["seed"].nunique()))
    return pd.DataFrame(rows, columns=[*by, "mean", "ci_low", "ci_high", "n_seeds"])


def seeds_label(n_seeds) -> str:
    """`n=3`, or `n=1-3` where the seed counts differ (empty for no cells)."""
    if not len(n_seeds):
        return ""
    low, high = int(np.min(n_seeds)), int(np.max(n_seeds))
    return f"n={low}" if low == high else f"n={low}-{high}"


# ----------------------------------------------------------------------------- paired comparisons

@dataclass(frozen=True)
class Comparison:
    """A's error against B's over the seeds both have: `ratio` < 1 means A is more accurate."""

    n: int  # paired seeds
    ratio: float  # geometric mean of A / B over the seeds
    low: float  # paired Student-t interval of the ratio (NaN with one seed)
    high: float
    p_improvement: float  # P(a seed of A has the lower error than a seed of B), ties half
    p_low: float  # its score-type interval (`improvement_interval`; NaN with one seed)
    p_high: float
    p_value: float  # two-sided paired t-test of the log ratios against 0 (below 1 - LEVEL: the interval excludes 1)

    @property
    def verdict(self) -> str:
        return verdict(self.low, self.high, f"n={self.n}")


def verdict(low: float, high: float, replicates: str) -> str:
    """`better` or `worse` when the interval `[low, high]` of a ratio A/B excludes 1, else that `replicates`
    (`n=5`, `6 recordings`) cannot tell."""
    if high < 1:
        return "better"
    if low > 1:
        return "worse"
    return f"not distinguishable at {replicates}"


def probability_of_improvement(a: np.ndarray, b: np.ndarray) -> float:
    """P(X < Y) for X drawn from `a` and Y from `b` (lower is better; ties count half): the
    Mann-Whitney statistic over every pair of runs, as in Agarwal et al. (2021)."""
    a, b = np.asarray(a, np.float64)[:, None], np.asarray(b, np.float64)[None, :]
    return float(np.mean((a < b) + 0.5 * (a == b)))


def compare(a, b, level: float = LEVEL, strata=None) -> Comparison:
    """Paired comparison of errors `a` and `b`, one per run, the same runs in the same order. With
    `strata` (one label per run: its env), the probability of improvement is the mean of each stratum's
    (Agarwal et al., 2021) and its interval counts each stratum's runs; the ratio is the geometric mean over
    every run, its interval a paired t over the runs."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim != 1 or not len(a):
        raise ValueError("compare takes two equal-length sequences, one error per shared seed")
    groups = [np.flatnonzero(np.asarray(strata) == s) for s in dict.fromkeys(strata)] if strata is not None \
        else [np.arange(len(a))]
    logs = np.log(a) - np.log(b)
    centre, low, high = mean_interval(logs, level)
    p = float(np.mean([probability_of_improvement(a[g], b[g]) for g in groups]))
    if len(a) < 2:
        nan = float("nan")
        return Comparison(1, float(np.exp(centre)), nan, nan, p, nan, nan, nan)
    p_low, p_high = improvement_interval(p, [len(g) for g in groups], level)
    return Comparison(len(a), float(np.exp(centre)), float(np.exp(low)), float(np.exp(high)), p, p_low, p_high,
                      paired_t_p_value(logs))


def improvement_variance(theta: float, m: int, n: int) -> float:
    """The variance of the Mann-Whitney estimate of P(X < Y) = `theta` from `m` runs of X and `n` of Y, by Hanley
    and McNeil's (1982) exponential approximation with both samples' sizes replaced by their mean N* = (m + n) / 2
    (Newcombe 2006, Method 5): theta (1 - theta) [1 + (N* - 1) ((1 - theta) / (2 - theta) + theta / (1 + theta))]
    / (m n); 0 at theta 0 or 1."""
    extra = (m + n) / 2 - 1
    return theta * (1 - theta) * (1 + extra * ((1 - theta) / (2 - theta) + theta / (1 + theta))) / (m * n)


def improvement_interval(estimate: float, sizes: list[int], level: float = LEVEL) -> tuple[float, float]:
    """Newcombe's (2006) score-type interval (his Method 5) for a probability of improvement: the values theta
    whose distance from `estimate` is z standard errors, the variance taken at theta itself
    (`improvement_variance`), as Wilson's interval does for a proportion; `sizes`: each stratum's runs (a
    stratum's runs of A against its runs of B), the estimate the mean over strata, its variance the mean
    variance over their count. Inside [0, 1] at any estimate, 0 and 1 included (where a bootstrap has no spread
    to give). It treats A's and B's runs as independent samples, as the statistic
    compares every run of A with every run of B; its coverage at five runs each is near its level (tested)."""
    z = stats.norm.ppf((1 + level) / 2)

    def spread(theta: float) -> float:  # z standard errors of the mean over strata, at theta
        return z * np.sqrt(sum(improvement_variance(theta, k, k) for k in sizes)) / len(sizes)

    inside = 1e-12  # at an estimate of 0 or 1 the equation also holds at the estimate itself (no variance there)
    low = 0.0 if estimate <= 0 else optimize.brentq(lambda t: estimate - t - spread(t), 0.0,
                                                    min(estimate, 1 - inside))
    high = 1.0 if estimate >= 1 else optimize.brentq(lambda t: t - estimate - spread(t), max(estimate, inside), 1.0)
    return float(low), float(high)


def paired_t_p_value(differences) -> float:
    """Two-sided p-value of the t-test of the mean of `differences` against 0 (the test behind
    `mean_interval`: p < 1 - level exactly when the interval excludes 0). Equal nonzero differences
    give 0, all zero 1; one difference gives NaN."""
    d = np.asarray(differences, dtype=np.float64)
    if len(d) < 2:
        return float("nan")
    se = d.std(ddof=1) / np.sqrt(len(d))
    if se == 0:
        return 1.0 if d.mean() == 0 else 0.0
    return float(2 * stats.t.sf(abs(d.mean()) / se, len(d) - 1))


def holm(p_values) -> np.ndarray:
    """Holm's step-down adjusted p-values (Holm, 1979) over the family `p_values`; NaN (a comparison of
    one seed) stays NaN and is not counted in the family. Rejecting where the adjusted value is below
    alpha keeps the chance of any false rejection in the family at most alpha."""
    p = np.asarray(p_values, dtype=np.float64)
    adjusted = np.full(p.shape, np.nan)
    tested = np.flatnonzero(~np.isnan(p))
    order = tested[np.argsort(p[tested], kind="stable")]
    m = len(order)
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    return adjusted


# ----------------------------------------------------------------------------- two recordings

def welch_interval(x, y, level: float = LEVEL) -> tuple[float, float, float, float]:
    """`(difference, low, high, p_value)`: mean(y) - mean(x) of two independent samples with Welch's t
    interval and two-sided p-value (unequal variances, Welch-Satterthwaite degrees of freedom). A sample of
    one value gives NaN for all but the difference."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    difference = float(y.mean() - x.mean())
    if min(len(x), len(y)) < 2:
        return difference, float("nan"), float("nan"), float("nan")
    vx, vy = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
    se = np.sqrt(vx + vy)
    if se == 0:
        return difference, difference, difference, 1.0 if difference == 0 else 0.0
    df = (vx + vy) ** 2 / (vx ** 2 / (len(x) - 1) + vy ** 2 / (len(y) - 1))
    half = stats.t.ppf((1 + level) / 2, df) * se
    p_value = float(2 * stats.t.sf(abs(difference) / se, df))
    return difference, float(difference - half), float(difference + half), p_value


def between_variance(means, variances) -> float:
    """The variance a factor drawn afresh for each sample (a recording of the data) adds to one quantity, by
    moments from its estimates on several samples (`means`, one per recording) and each estimate's variance
    within (`variances`, its seeds'): E[var(means)] = tau^2 + mean(variances), so the estimate is
    var(means) - mean(variances), unbiased and negative where the means agree better than their seeds allow.
    Two samples give (d^2 - v1 - v2) / 2 for their difference d."""
    means, variances = np.asarray(means, np.float64), np.asarray(variances, np.float64)
    return float(means.var(ddof=1) - variances.mean())


def between_spread(means, variances) -> float:
    """The standard deviation tau of that factor, the same for several quantities: each quantity's
    `between_variance` from its `means` and `variances` (sequences of equal length, one per quantity, of two or
    more samples each), averaged weighting each by its degrees of freedom (samples - 1), then the square root
    of that (0 where it is negative: the estimates are no further apart than the seeds allow)."""
    weights = np.array([len(m) - 1 for m in means], np.float64)
    estimates = np.array([between_variance(m, v) for m, v in zip(means, variances)])
    return float(np.sqrt(max(0.0, np.sum(weights * estimates) / weights.sum())))


# ----------------------------------------------------------------------------- the aggregate score

def iqm(values: np.ndarray, axis: int = -1) -> np.ndarray:
    """Interquartile mean: the mean of the values between the 25th and 75th percentiles."""
    return stats.trim_mean(values, 0.25, axis=axis)


def stratified_iqm(strata: list[np.ndarray], level: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """`(iqm, low, high)` of all values; the interval resamples each stratum (an env's seeds) within
    itself. A stratum of one value stays fixed; with no stratum to resample there is no interval (NaN):
    one seed per env says nothing about the spread. Nor is there one where the runs are too few for the
    bootstrap to give it: where an end of the interval is the most extreme value the runs allow (every
    stratum resampled as its own minimum, or maximum), that value holds (1 - level) / 2 of the resamples
    or more, and the interval is only the runs' range (three seeds of one env: their min and max)."""
    strata = [np.asarray(s, dtype=np.float64) for s in strata]
    point = float(iqm(np.concatenate(strata)))
    varying = [s for s in strata if len(s) > 1]
    fixed = np.concatenate([s for s in strata if len(s) == 1] or [np.empty(0)])
    if not varying:
        return point, float("nan"), float("nan")

    def statistic(*samples: np.ndarray, axis: int = -1) -> np.ndarray:
        shape = samples[0].shape[:-1]
        return iqm(np.concatenate([*samples, np.broadcast_to(fixed, (*shape, len(fixed)))], axis=-1), axis=-1)

    with warnings.catch_warnings():  # identical values within a stratum are a fine, if degenerate, sample
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        result = stats.bootstrap(tuple(varying), statistic, n_resamples=BOOTSTRAP_RESAMPLES, vectorized=True,
                                 confidence_level=level, method="percentile", rng=np.random.default_rng(seed))
    low, high = result.confidence_interval
    least, most = (float(statistic(*(np.full(len(s), edge(s)) for s in varying))) for edge in (np.min, np.max))
    if low <= least + 1e-9 * abs(least) or high >= most - 1e-9 * abs(most):
        return point, float("nan"), float("nan")
    return point, float(low), float(high)


def normalised_scores(rows: pd.DataFrame, metric: str = "mse", group: str = "panel") -> pd.DataFrame:
    """`[group, model, horizon, seed, score]`: each cell's `metric` at its last step over the floor's
    at the same (group, horizon, seed); where the floor lacks that seed, its mean over seeds. Cells
    without any floor of their (group, horizon) are left out."""
    last = rows[(rows["metric"] == metric) & (rows["step"] == rows["horizon"])]
    keys = [group, "horizon", "seed"]
    floor = last[last["model"] == FLOOR].groupby(keys)["value"].mean().rename("floor")
    floor_mean = last[last["model"] == FLOOR].groupby([group, "horizon"])["value"].mean().rename("floor_mean")
    scored = last.join(floor, on=keys).join(floor_mean, on=[group, "horizon"])
    scored["floor"] = scored["floor"].fillna(scored["floor_mean"])
    scored = scored[scored["floor"].notna() & (scored["floor"] > 0)]
    return (scored.assign(score=scored["value"] / scored["floor"])
            [[group, "model", "horizon", "seed", "score"]].reset_index(drop=True))


def aggregate(scores: pd.DataFrame, group: str = "panel", level: float = 0.95) -> pd.DataFrame:
    """`[model, horizon, iqm, ci_low, ci_high, n_envs, n_runs]`: the IQM over every (env, seed) run with
    its stratified-bootstrap interval (strata: the envs)."""
    rows = []
    for (model, horizon), runs in scores.groupby(["model", "horizon"], sort=False):
        runs = runs[np.isfinite(runs["score"])]
        if runs.empty:
            continue
        strata = [g["score"].to_numpy() for _, g in runs.groupby(group)]
        point, low, high = stratified_iqm(strata, level)
        rows.append((model, int(horizon), point, low, high, len(strata), len(runs)))
    return pd.DataFrame(rows, columns=["model", "horizon", "iqm", "ci_low", "ci_high", "n_envs", "n_runs"])
