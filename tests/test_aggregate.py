"""The aggregate score against synthetic stores with known values."""

import numpy as np
import pandas as pd
import pytest

from wmbench.report import write_report
from wmbench.report.select import Selection
from wmbench.report.stats import aggregate, iqm, normalised_scores, stratified_iqm
from wmbench.report.tables import aggregate_scores, aggregate_wide
from wmbench.results import Cell, ResultsStore


def test_iqm_is_the_mean_of_the_middle_half_and_ignores_one_diverged_run():
    assert iqm(np.arange(1.0, 9.0)) == pytest.approx(4.5)  # mean of 3, 4, 5, 6
    assert iqm(np.array([1.0, 2, 3, 4, 5, 6, 7, 1e9])) == pytest.approx(4.5)


def rows(values: dict[tuple[str, str, int], float], horizon: int = 10) -> pd.DataFrame:
    """Last-step mse rows `{(panel, model, seed): value}` plus an earlier step that must be ignored."""
    out = []
    for (panel, model, seed), value in values.items():
        out += [(panel, model, horizon, seed, "mse", horizon, value), (panel, model, horizon, seed, "mse", 1, 123.0)]
    return pd.DataFrame(out, columns=["panel", "model", "horizon", "seed", "metric", "step", "value"])


def test_scores_divide_by_the_floor_of_the_same_env_horizon_and_seed():
    table = rows({("hopper", "persistence", 0): 2.0, ("hopper", "persistence", 1): 4.0,
                  ("hopper", "m", 0): 1.0, ("hopper", "m", 1): 1.0, ("hopper", "m", 2): 3.0,
                  ("cheetah", "m", 0): 5.0})  # no floor for cheetah: left out
    scores = normalised_scores(table).set_index(["panel", "model", "seed"])["score"]
    assert scores[("hopper", "m", 0)] == pytest.approx(0.5) and scores[("hopper", "m", 1)] == pytest.approx(0.25)
    assert scores[("hopper", "m", 2)] == pytest.approx(1.0)  # seed 2 has no floor run: the floor's mean, 3
    assert scores[("hopper", "persistence", 0)] == 1.0
    assert "cheetah" not in scores.index.get_level_values("panel")


def synthetic_scores(seeds: int, rng) -> pd.DataFrame:
    """Three envs whose runs score around 0.3, 0.5 and 0.7."""
    return pd.DataFrame([(env, "m", 10, seed, centre + 0.05 * rng.normal())
                         for env, centre in (("a", 0.3), ("b", 0.5), ("c", 0.7)) for seed in range(seeds)],
                        columns=["panel", "model", "horizon", "seed", "score"])


def test_aggregate_is_the_iqm_with_an_interval_that_holds_it_and_shrinks_with_seeds():
    rng = np.random.default_rng(0)
    widths = []
    for seeds in (4, 64):
        scores = synthetic_scores(seeds, rng)
        result = aggregate(scores).iloc[0]
        assert result["iqm"] == pytest.approx(iqm(scores["score"].to_numpy()))
        assert result["ci_low"] < result["iqm"] < result["ci_high"]
        assert abs(result["iqm"] - 0.5) < 0.1
        assert (result["n_envs"], result["n_runs"]) == (3, 3 * seeds)
        widths.append(result["ci_high"] - result["ci_low"])
    assert widths[1] < 0.5 * widths[0]


def test_one_seed_per_env_gives_a_point_without_interval_and_a_fixed_stratum_is_not_resampled():
    point, low, high = stratified_iqm([np.array([1.0]), np.array([2.0])])
    assert point == 1.5 and np.isnan(low) and np.isnan(high), "one seed per env: no interval"
    point, low, high = stratified_iqm([np.array([0.0, 1.0, 2.0, 3.0, 4.0]), np.array([10.0])])
    assert point == pytest.approx(iqm(np.array([0.0, 1, 2, 3, 4, 10])))
    assert low < point < high


def test_too_few_runs_for_a_bootstrap_interval_give_none_rather_than_their_range():
    """Three seeds of one env: a percentile bootstrap's 95% interval is their min and max (each value is
    drawn three times in 1/27 of the resamples, more than 2.5%); a range is not a 95% interval."""
    three = np.array([1.0, 2.0, 4.0])
    assert np.isnan(stratified_iqm([three])[1:]).all()
    assert np.isnan(stratified_iqm([three[:2], three[1:]])[1:]).all()  # two envs of two seeds: still the extremes
    point, low, high = stratified_iqm([np.arange(8.0)])
    assert 0 < low < point < high < 7, "eight seeds: an interval inside the range"
    point, low, high = stratified_iqm([three, three + 1, three + 2])  # three envs of three seeds pool enough
    assert 1 < low < point < high < 6


def test_the_aggregate_pools_envs_per_policy_so_that_no_run_counts_twice(tmp_path):
    """Two policies evaluate each seed's model from the same start states: one aggregate over both
    panels of an env would count every run twice (and as if from four envs). Each policy has its own."""
    store = ResultsStore(tmp_path)
    score = {"bc": 0.5, "behaviour-std0.2": 2.0}  # the model's error over the floor's under each policy
    for env in ("hopper", "halfcheetah"):
        for policy, ratio in score.items():
            for seed in range(3):
                floor = 1.0 + seed  # the seed's start states: the same under either policy
                for model, value in (("persistence", floor), ("polygrad", floor * ratio * (1 + seed / 10))):
                    store.write(Cell(model, env, f"wmbench/{env}/random-v0", policy, "quick", 10, seed),
                                pd.DataFrame({"metric": "mse", "step": [10], "value": [value], "n_trajectories": 16}))
    scores = aggregate_scores(Selection.from_store(store.read()))
    polygrad = scores[scores["model"] == "polygrad"].set_index("panel")
    assert sorted(polygrad.index) == ["all envs · bc", "all envs · behaviour-std0.2"]
    assert list(polygrad["n_envs"]) == [2, 2] and list(polygrad["n_runs"]) == [6, 6]
    for policy, ratio in score.items():
        runs = ratio * np.array([1, 1, 1.1, 1.1, 1.2, 1.2])  # three seeds on each of two envs
        assert polygrad.loc[f"all envs · {policy}", "iqm"] == pytest.approx(iqm(runs))
    wide = aggregate_wide(scores, ["polygrad", "persistence"])
    assert list(wide.columns) == ["model", "envs", "h=10, all trajectories · bc",
                                  "h=10, all trajectories · behaviour-std0.2"]
    one_policy = aggregate_scores(Selection.from_store(store.read(policy="bc")))
    assert set(one_policy["panel"]) == {"all envs"}
    assert list(aggregate_wide(one_policy, ["polygrad"]).columns) == ["model", "envs", "h=10, all trajectories"]
    write_report(store, tmp_path / "out")  # a figure axis and a table column per policy
    assert "h=10, all trajectories · bc" in (tmp_path / "out" / "README.md").read_text()
