"""Paired comparisons (`wmbench compare`, the report's table and findings) on stores whose numbers are known."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from test_cli import run_main

from wmbench.report import write_report
from wmbench.report.comparisons import comparison_rows, findings, report_comparisons, with_holm
from wmbench.report.select import Selection
from wmbench.report.stats import compare, improvement_interval, improvement_variance, probability_of_improvement
from wmbench.results import Cell, ResultsStore

SEEDS = (0, 1, 2, 3)
# A's error over B's per seed: polygrad clearly better than ar-diffusion on hopper, noisy on halfcheetah
RATIOS = {"hopper": [0.5, 0.52, 0.48, 0.5], "halfcheetah": [0.6, 1.5, 0.9, 1.3]}


def write_store(root) -> ResultsStore:
    store = ResultsStore(root)
    for env, ratios in RATIOS.items():
        for seed, ratio in zip(SEEDS, ratios):
            base = 1.0 + seed  # the seed's start states: the same for every model
            for model, last in (("ar-diffusion", base), ("polygrad", base * ratio), ("linear", base * 3)):
                rows = pd.DataFrame([("mse", k, last * k / 10) for k in range(1, 11)],
                                    columns=["metric", "step", "value"])
                store.write(Cell(model, env, f"wmbench/{env}/random-v0", "bc", "quick", 10, seed),
                            rows.assign(n_trajectories=16))
    return store


def test_comparison_rows_are_the_paired_statistics_of_the_stored_numbers(tmp_path):
    sel = Selection.from_store(write_store(tmp_path).read())
    rows = comparison_rows(sel, "polygrad", "ar-diffusion").set_index("panel")
    hopper = rows.loc["hopper"]
    assert hopper["n"] == 4 and hopper["step"] == 10
    assert hopper["ratio"] == pytest.approx(np.exp(np.mean(np.log(RATIOS["hopper"]))))
    assert hopper["ratio_high"] < 1 and hopper["verdict"] == "better"
    a = np.array([(1.0 + s) * r for s, r in zip(SEEDS, RATIOS["hopper"])])
    b = np.array([1.0 + s for s in SEEDS])
    # every seed of A against every seed of B (Agarwal et al.): not paired, so 25/32 rather than 1
    expected = np.mean((a[:, None] < b[None, :]) + 0.5 * (a[:, None] == b[None, :]))  # ties (2.0 = 2.0) half
    assert hopper["p_improvement"] == pytest.approx(expected) == pytest.approx(25 / 32)
    assert rows.loc["halfcheetah", "verdict"] == "not distinguishable at n=4"
    pooled = rows.loc["all envs"]
    assert pooled["n"] == 8
    assert pooled["ratio"] == pytest.approx(np.exp(np.mean(np.log(RATIOS["hopper"] + RATIOS["halfcheetah"]))))
    # at step 1 the ratios are the same (every error scales with the step)
    early = comparison_rows(sel, "polygrad", "ar-diffusion", step=1).set_index("panel")
    assert early.loc["hopper", "ratio"] == pytest.approx(hopper["ratio"]) and (early["step"] == 1).all()


def test_envs_pool_per_policy_so_that_no_run_counts_twice(tmp_path):
    """Two policies evaluate the same seeds' models from the same start states: pooling both panels of an
    env would count each run twice. The envs pool per policy, and one env alone pools nothing."""
    store = write_store(tmp_path)
    for env, ratios in RATIOS.items():
        for seed, ratio in zip(SEEDS, ratios):
            for model, last in (("ar-diffusion", 1.0 + seed), ("polygrad", (1.0 + seed) * ratio ** 2)):
                rows = pd.DataFrame({"metric": "mse", "step": [10], "value": [last], "n_trajectories": 16})
                store.write(Cell(model, env, f"wmbench/{env}/random-v0", "behaviour-std0.2", "quick", 10, seed), rows)
    rows = comparison_rows(Selection.from_store(store.read()), "polygrad", "ar-diffusion").set_index("panel")
    pooled = rows.loc[["all envs · bc", "all envs · behaviour-std0.2"]]
    assert list(pooled["n"]) == [8, 8] and rows["n"].max() == 8
    every_ratio = np.log(RATIOS["hopper"] + RATIOS["halfcheetah"])
    assert pooled["ratio"].to_numpy() == pytest.approx(np.exp([every_ratio.mean(), 2 * every_ratio.mean()]))
    one_env = Selection.from_store(store.read(env="hopper"))
    assert not comparison_rows(one_env, "polygrad", "ar-diffusion")["panel"].str.startswith("all envs").any()


def test_the_stratified_probability_of_improvement_is_the_mean_over_strata():
    a, b = np.array([1.0, 1.0, 20.0, 20.0]), np.array([2.0, 2.0, 30.0, 30.0])  # A better in both envs
    assert compare(a, b).p_improvement == pytest.approx(0.75)  # pooled: 20 > 2 counts against A
    assert compare(a, b, strata=["x", "x", "y", "y"]).p_improvement == pytest.approx(1.0)


def test_runs_completely_apart_still_get_an_interval_short_of_certainty():
    """Every run of A below every run of B in each env: P(A < B) is 1, and its interval reaches below 1 (the
    bootstrap had no spread to give there, and no interval) to the root of the score equation there."""
    apart = compare([1.0, 1.1, 20.0, 21.0], [2.0, 2.1, 30.0, 31.0], strata=["x", "x", "y", "y"])
    assert apart.p_improvement == 1.0 and apart.p_high == 1.0 and 0.5 < apart.p_low < 1.0
    z = stats.norm.ppf(0.975)  # two strata of 2 runs each: the variance of their mean is half a stratum's
    assert 1 - apart.p_low == pytest.approx(z * np.sqrt(improvement_variance(apart.p_low, 2, 2) / 2))
    one_env = compare([1.0, 1.1, 1.2, 1.3, 1.4], [2.0, 2.1, 2.2, 2.3, 2.4])
    three_envs = compare(np.arange(15.0) + 1, np.arange(15.0) + 1.5 + 20, strata=np.repeat(["x", "y", "z"], 5))
    assert three_envs.p_low > one_env.p_low, "three envs of five seeds tell more than one"
    worse = compare([2.0, 2.1, 2.2, 2.3, 2.4], [1.0, 1.1, 1.2, 1.3, 1.4])
    assert (worse.p_low, worse.p_high) == pytest.approx((0.0, 1 - one_env.p_low)), "mirrored"
    overlapping = compare([1.0, 3.0, 20.0, 21.0], [2.0, 2.5, 30.0, 31.0], strata=["x", "x", "y", "y"])
    assert 0 < overlapping.p_low < overlapping.p_improvement == 0.75 < overlapping.p_high < 1


@pytest.mark.parametrize("shift", [0.0, 0.5, 3.0])
def test_the_probability_s_interval_covers_the_true_probability_at_five_seeds(shift):
    """Runs of A from N(0, 1), of B from N(shift, 1): P(A < B) = Phi(shift / sqrt 2) (0.5, 0.64, 0.98); at five
    runs each the interval holds it close to 95% of the time (a percentile bootstrap: 26-85%)."""
    rng = np.random.default_rng(0)
    truth, draws = stats.norm.cdf(shift / np.sqrt(2)), 2000
    hits = 0
    for _ in range(draws):
        a, b = rng.normal(0, 1, 5), rng.normal(shift, 1, 5)
        low, high = improvement_interval(probability_of_improvement(a, b), [5])
        hits += low <= truth <= high
    assert 0.93 <= hits / draws <= 0.975


def test_findings_say_only_what_the_intervals_support(tmp_path):
    sel = Selection.from_store(write_store(tmp_path).read())
    table = report_comparisons(sel)
    assert {("polygrad", "ar-diffusion"), ("polygrad", "linear"), ("ar-diffusion", "linear")} == \
        set(zip(table["a"], table["b"]))
    text = "\n".join(findings(table))
    line = next(x for x in text.splitlines() if x.startswith("- `polygrad` against `ar-diffusion`"))
    assert "more accurate on hopper" in line and "not distinguishable on halfcheetah" in line
    for row in table.itertuples():
        assert (row.verdict == "better") == (row.ratio_high < 1)


def test_a_finding_marks_a_verdict_that_does_not_hold_for_its_table():
    # three verdicts at p = 0.001, 0.03 and 0.04: Holm makes them 0.003, 0.06 and 0.06
    table = with_holm(pd.DataFrame({
        "a": "polygrad", "b": "linear", "horizon": 10, "panel": ["hopper", "walker2d", "halfcheetah"], "n": 5,
        "ratio": [0.5, 0.8, 1.2], "ratio_low": [0.4, 0.7, 1.01], "ratio_high": [0.6, 0.98, 1.4],
        "verdict": ["better", "better", "worse"], "p_value": [0.001, 0.03, 0.04]}))
    np.testing.assert_allclose(table["p_holm"], [0.003, 0.06, 0.06])
    assert findings(table) == [
        "- `polygrad` against `linear` at h = 10: more accurate on hopper (0.50x [0.40, 0.60], n=5), walker2d "
        "(0.80x [0.70, 0.98], n=5; not after Holm); less accurate on halfcheetah (1.20x [1.01, 1.40], n=5; not after "
        "Holm)."]


def test_the_report_writes_the_comparisons_and_their_findings(tmp_path):
    write_report(write_store(tmp_path / "results"), tmp_path / "out")
    stored = pd.read_csv(tmp_path / "out" / "comparisons.csv")
    assert set(stored["verdict"]) >= {"better", "not distinguishable at n=4"}
    readme = (tmp_path / "out" / "README.md").read_text()
    assert "### Findings" in readme and "`polygrad` against `ar-diffusion` at h = 10: more accurate on hopper" in readme


def test_compare_command(tmp_path, monkeypatch, capsys):
    store = write_store(tmp_path / "results")
    code, out, _ = run_main(monkeypatch, capsys, "compare", "polygrad", "ar-diffusion", "--results", str(store.root),
                            "--env", "hopper")
    assert code in (0, None) and "| polygrad vs ar-diffusion | hopper | 10 | 4 |" in out and "A better" in out
    code, _, err = run_main(monkeypatch, capsys, "compare", "polygrad", "nope", "--results", str(store.root))
    assert code == 2 and "no results of model 'nope'" in err
    code, _, err = run_main(monkeypatch, capsys, "compare", "polygrad", "linear", "--results", str(store.root),
                            "--step", "11")
    assert code == 2 and "no mse at step 11: the store's cells end at step 10" in err
