"""Every statistic of the report, in one place: the interval of a mean over seeds, and the
aggregate score over envs.

Seeds are the unit of replication. A per-cell number is a mean over seeds with a percentile
bootstrap interval that resamples seeds. The aggregate score of a model is its error relative to
the `persistence` floor, per run (env, horizon, seed): `error at the last step / persistence's
error at the last step` of the same env, horizon and seed (the same start states): 1 is no better
than predicting that nothing moves, 0 is exact. Runs are aggregated as the interquartile mean (the
mean of the middle half: robust to one diverged run, less noisy than the median) with a
stratified-bootstrap interval that resamples the seeds within each env, as recommended by Agarwal
et al. (2021), "Deep RL at the edge of the statistical precipice"; that resampling is
`scipy.stats.bootstrap`'s.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy import stats

FLOOR = "persistence"
BOOTSTRAP_RESAMPLES = 2000


def bootstrap_ci(values, level: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """`(mean, low, high)`: the percentile bootstrap interval of the mean over `values` (one per seed).
    One value gives a zero-width interval: with one seed there is nothing to resample."""
    values = np.asarray(values, dtype=np.float64)
    mean = float(values.mean())
    if len(values) < 2:
        return mean, mean, mean
    resampled = values[np.random.default_rng(seed).integers(0, len(values), (BOOTSTRAP_RESAMPLES, len(values)))]
    low, high = np.quantile(resampled.mean(axis=1), [(1 - level) / 2, (1 + level) / 2])
    return mean, float(low), float(high)


def summarise(frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Mean and bootstrap interval of `value` over seeds, per group of `by`."""
    rows = []
    for key, group in frame.groupby(by, sort=False):
        mean, low, high = bootstrap_ci(group["value"].to_numpy())
        rows.append((*key, mean, low, high, group["seed"].nunique()))
    return pd.DataFrame(rows, columns=[*by, "mean", "ci_low", "ci_high", "n_seeds"])


def iqm(values: np.ndarray, axis: int = -1) -> np.ndarray:
    """Interquartile mean: the mean of the values between the 25th and 75th percentiles."""
    return stats.trim_mean(values, 0.25, axis=axis)


def stratified_iqm(strata: list[np.ndarray], level: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """`(iqm, low, high)` of all values; the interval resamples each stratum (an env's seeds) within
    itself. A stratum of one value stays fixed; with no stratum to resample the interval is the point."""
    strata = [np.asarray(s, dtype=np.float64) for s in strata]
    point = float(iqm(np.concatenate(strata)))
    varying = [s for s in strata if len(s) > 1]
    fixed = np.concatenate([s for s in strata if len(s) == 1] or [np.empty(0)])
    if not varying:
        return point, point, point

    def statistic(*samples: np.ndarray, axis: int = -1) -> np.ndarray:
        shape = samples[0].shape[:-1]
        return iqm(np.concatenate([*samples, np.broadcast_to(fixed, (*shape, len(fixed)))], axis=-1), axis=-1)

    with warnings.catch_warnings():  # identical values within a stratum are a fine, if degenerate, sample
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        result = stats.bootstrap(tuple(varying), statistic, n_resamples=BOOTSTRAP_RESAMPLES, vectorized=True,
                                 confidence_level=level, method="percentile", rng=np.random.default_rng(seed))
    low, high = result.confidence_interval
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
