"""`wmbench report` on a synthetic results store whose numbers are known."""

import io
import json
import re

import numpy as np
import pandas as pd
import pytest
from test_cli import run_main

from wmbench.envs import observation_names
from wmbench.errors import UsageError
from wmbench.metrics import HIST_EDGES
from wmbench.report import write_report
from wmbench.report.stats import compare, holm, mean_interval, paired_t_p_value
from wmbench.report.tables import write_csv
from wmbench.results import Cell, ResultsStore

SEEDS = (0, 1, 2)
BASE = {"polygrad": 0.5, "mlp-ensemble": 0.1}
FIGURES = ["mse_vs_step.png", "generation_time.png", "accuracy_vs_compute.png", "calibration.png", "delta.png"]
TABLES = ["mse_table", "generation_time", "calibration_table"]


def known_mse(model, env, seed, step, horizon):
    """Distinct per cell, so a test can tell which cell a number came from."""
    return BASE[model] * step * (1 + 0.1 * seed) * (2.0 if env == "hopper" else 1.0) * (1 + horizon / 1000)


def known_dim_error(model, seed, dim, horizon):
    return BASE[model] * (dim + 1) * (1 + seed) * horizon


def write_store(root, profile="quick") -> ResultsStore:
    store = ResultsStore(root)
    centres = (HIST_EDGES[:-1] + HIST_EDGES[1:]) / 2
    for model, horizons in (("polygrad", [10]), ("mlp-ensemble", [10, 50])):
        for env in ("hopper", "halfcheetah"):
            for seed in SEEDS:
                for horizon in horizons:
                    rows = [("mse", k, known_mse(model, env, seed, k, horizon)) for k in range(1, horizon + 1)]
                    rows += [("gen_time_s", horizon, 0.01 * horizon * (5 if model == "polygrad" else 1) + 0.001 * seed),
                             ("action_z_std", 0, 1.0 + 0.01 * seed), ("action_z_mean", 0, 0.0), ("action_ks", 0, 0.02)]
                    rows += [("action_z_hist", b, float(np.exp(-c ** 2 / 2) / np.sqrt(2 * np.pi)))
                             for b, c in enumerate(centres)]
                    if model == "polygrad":
                        rows += [("delta", k, 0.1 / (k + 1)) for k in range(20)]
                    rows += [(f"mse_dim[{name}]", horizon, known_dim_error(model, seed, k, horizon))
                             for k, name in enumerate(observation_names(env))]
                    table = pd.DataFrame(rows, columns=["metric", "step", "value"]).assign(
                        n_trajectories=256, git_commit="abc123", device="test cpu", versions="v", created="2026-01-01")
                    store.write(Cell(model, env, f"wmbench/{env}/random-v0", "bc", profile, horizon, seed), table)
    return store


def test_every_figure_and_table_is_written(tmp_path):
    store = write_store(tmp_path / "results")
    bench = pd.DataFrame({"metric": ["gen_time_s", "peak_fraction"], "step": [10, 10], "value": [0.25, 0.4]})
    store.write(Cell("polygrad", "hopper", "bench", "untrained", "quick", 10, 0),
                bench.assign(n_trajectories=256, device="test cpu"))
    written = write_report(store, tmp_path / "out")
    for name in FIGURES:
        assert (tmp_path / "out" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert (tmp_path / "out" / name).stat().st_size > 10_000, f"{name} looks empty"
    for stem in TABLES:
        assert (tmp_path / "out" / f"{stem}.csv").stat().st_size > 0
        first = "| panel | model |" if stem == "calibration_table" else "| model |"  # a row per panel and model
        assert (tmp_path / "out" / f"{stem}.md").read_text().startswith(first), stem
    readme = (tmp_path / "out" / "README.md").read_text()
    assert all(f"({name})" in readme for name in FIGURES)
    assert "abc123" in readme and "wmbench/hopper/random-v0" in readme
    assert {p.name for p in written} >= set(FIGURES) | {"README.md", "bench_table.md"}
    assert "bench" not in (tmp_path / "out" / "mse_table.csv").read_text(), "timings are not evaluations"
    assert "| polygrad | fp32 | hopper | 10 |" in readme


def test_the_per_dimension_figure_shows_the_stored_rows_and_the_readme_a_gif_per_env(tmp_path):
    (tmp_path / "out" / "videos").mkdir(parents=True)
    for name in ("hopper-mlp-ensemble-h10-s0.gif", "hopper-polygrad-h10-s0.gif"):
        (tmp_path / "out" / "videos" / name).write_bytes(b"GIF89a")
    written = write_report(write_store(tmp_path / "results"), tmp_path / "out")
    dims = pd.read_csv(tmp_path / "out" / "dim_error.csv")
    for env in ("hopper", "halfcheetah"):
        for horizon in (10, 50):  # every model at the same step: one figure per horizon
            mine = dims[(dims["panel"] == env) & (dims["model"] == "mlp-ensemble") & (dims["horizon"] == horizon)]
            assert list(mine["dim"]) == list(observation_names(env))  # in observation order, named
            expected = [np.mean([known_dim_error("mlp-ensemble", s, k, horizon) for s in SEEDS])
                        for k in range(len(mine))]
            assert mine["mean"].to_numpy() == pytest.approx(expected)
            assert (tmp_path / "out" / f"dim_error_{env}_h{horizon}.png") in written
    readme = (tmp_path / "out" / "README.md").read_text()
    assert "(dim_error_hopper_h50.png)" in readme
    assert "(videos/hopper-polygrad-h10-s0.gif)" in readme and "mlp-ensemble-h10-s0.gif" not in readme
    assert "videos/halfcheetah" not in readme


def test_table_cells_equal_the_store_means(tmp_path):
    write_report(write_store(tmp_path / "results"), tmp_path / "out")
    table = pd.read_csv(tmp_path / "out" / "mse_table.csv").set_index(["panel", "model", "step"])
    for env in ("hopper", "halfcheetah"):
        # step 10 of the ensemble comes from its longest (h = 50) cells, one curve per seed
        expected = np.mean([known_mse("mlp-ensemble", env, s, 10, 50) for s in SEEDS])
        assert table.loc[(env, "mlp-ensemble", 10), "mean"] == pytest.approx(expected)
        expected = np.mean([known_mse("polygrad", env, s, 10, 10) for s in SEEDS])
        assert table.loc[(env, "polygrad", 10), "mean"] == pytest.approx(expected)
        assert table.loc[(env, "mlp-ensemble", 50), "n_seeds"] == 3
        assert (env, "polygrad", 50) not in table.index
    markdown = (tmp_path / "out" / "mse_table.md").read_text()
    ensemble_row = next(line for line in markdown.splitlines() if line.startswith("| mlp-ensemble"))
    polygrad_row = next(line for line in markdown.splitlines() if line.startswith("| polygrad"))
    # best in both h = 10 columns; an h = 50 column holds one model, so there is nothing to mark
    assert ensemble_row.count("**") == 2 * 2 and "**" not in polygrad_row

    gen = pd.read_csv(tmp_path / "out" / "generation_time.csv").set_index(["panel", "model", "step"])
    assert gen.loc[("hopper", "polygrad", 10), "mean"] == pytest.approx(0.5 + 0.001)


def test_a_report_csv_is_the_same_when_its_numbers_move_in_their_last_digits(tmp_path):
    # what another CPU's order of summation does to a statistic
    values = np.array([1 / 3, 2e-7 / 3, 12345.678901234567, 0.1 + 0.2, 7.0])
    moved = values * (1 + 4e-15)
    assert not np.array_equal(values, moved)
    first = write_csv(pd.DataFrame({"value": values}), tmp_path / "first.csv")
    second = write_csv(pd.DataFrame({"value": moved}), tmp_path / "second.csv")
    assert first.read_bytes() == second.read_bytes()
    assert pd.read_csv(first)["value"].to_numpy() == pytest.approx(values, rel=1e-9)
    write_report(write_store(tmp_path / "results"), tmp_path / "out")
    numbers = [field for path in (tmp_path / "out").glob("*.csv") for line in path.read_text().splitlines()[1:]
               for field in line.split(",") if re.fullmatch(r"-?[0-9.]+(e[-+][0-9]+)?", field)]
    digits = [len(re.sub(r"\D", "", number.split("e")[0]).lstrip("0")) for number in numbers]
    assert len(numbers) > 100 and max(digits) <= 10, "every report CSV writes its floats through write_csv"


def test_tables_have_only_columns_with_numbers(tmp_path):
    store = write_store(tmp_path / "results")
    rows = [("mse", k, 0.1 * k) for k in range(1, 11)] + [("gen_time_s", 10, 0.1)]
    store.write(Cell("mlp-ensemble", "walker2d", "wmbench/walker2d/random-v0", "bc", "quick", 10, 0),
                pd.DataFrame(rows, columns=["metric", "step", "value"]).assign(n_trajectories=256))
    write_report(store, tmp_path / "out")
    for stem in ("mse_table", "generation_time"):
        header = (tmp_path / "out" / f"{stem}.md").read_text().splitlines()[0]
        assert "walker2d h=10" in header and "hopper h=50" in header, header
        assert "walker2d h=50" not in header, f"{stem}: a column with no walker2d h = 50 cell"


@pytest.mark.parametrize("n", [3, 5])
def test_the_per_cell_interval_covers_the_true_mean_95_percent_of_the_time(n):
    """On normal data the interval must hold its level at few seeds: 2,000 draws, 95% +- 2%. A
    percentile bootstrap of the seeds fails this (about 75% at n = 3, 86% at n = 5)."""
    rng = np.random.default_rng(0)
    hits = 0
    for _ in range(2000):
        values = rng.normal(3.0, 0.5, size=n)
        _, low, high = mean_interval(values)
        hits += low <= 3.0 <= high
    assert abs(hits / 2000 - 0.95) <= 0.02, hits / 2000


def test_one_seed_has_no_interval():
    mean, low, high = mean_interval([2.5])
    assert mean == 2.5 and np.isnan(low) and np.isnan(high)


def test_paired_comparison_against_a_hand_computed_example():
    # per-seed ratios 2, 2, 4: logs ln2 * (1, 1, 2), mean (4/3) ln2, standard error ln2 / 3, t(0.975, 2) = 4.3027
    result = compare([2.0, 4.0, 8.0], [1.0, 2.0, 2.0])
    half = 4.302653 * np.log(2) / 3
    assert result.n == 3 and result.ratio == pytest.approx(2 ** (4 / 3))
    assert result.low == pytest.approx(np.exp(4 / 3 * np.log(2) - half), rel=1e-5)
    assert result.high == pytest.approx(np.exp(4 / 3 * np.log(2) + half), rel=1e-5)
    assert result.p_improvement == pytest.approx(1 / 9)  # never lower; two ties at 2 count half each
    assert result.verdict == "not distinguishable at n=3"  # the interval [0.93, 6.8] holds 1
    # t = (4/3 ln2) / (ln2 / 3) = 4 on 2 degrees of freedom: p = 1 - 4 / sqrt(18), just above 0.05
    assert result.p_value == pytest.approx(1 - 4 / np.sqrt(18), rel=1e-9)


def test_the_p_value_is_below_5_percent_exactly_when_the_interval_excludes_1():
    rng = np.random.default_rng(1)
    for n in (2, 3, 5, 10):
        for _ in range(40):
            b = rng.uniform(0.5, 2.0, n)
            c = compare(b * np.exp(rng.normal(0.1, 0.1, n)), b)
            assert (c.p_value < 0.05) == (c.low > 1 or c.high < 1), (n, c)
    assert paired_t_p_value([0.3, 0.3, 0.3]) == 0.0 and paired_t_p_value([0.0, 0.0]) == 1.0
    assert np.isnan(compare([1.0], [2.0]).p_value)


def test_holm_adjusts_a_hand_computed_family():
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1, then made non-decreasing; NaN is no member
    adjusted = holm([0.01, 0.04, 0.03, 0.005, np.nan])
    np.testing.assert_allclose(adjusted[:4], [0.03, 0.06, 0.06, 0.02])
    assert np.isnan(adjusted[4]) and holm([]).shape == (0,) and holm([0.7, 0.9]).max() == 1.0


def test_holm_keeps_the_chance_of_any_false_verdict_in_a_family_at_5_percent():
    """20 comparisons of equal models at 5 seeds each, 1,000 families: unadjusted, most families hold a false
    verdict (1 - 0.95^20 = 64%); after Holm at most 5% of them do (6.5%: the simulation's own error)."""
    rng = np.random.default_rng(2)
    families = rng.normal(0.0, 0.2, size=(1000, 20, 5))  # log ratios of models that are equal
    p = np.array([[paired_t_p_value(d) for d in family] for family in families])
    raw = np.mean((p < 0.05).any(axis=1))
    adjusted = np.mean([(holm(row) < 0.05).any() for row in p])
    assert 0.58 <= raw <= 0.70, raw
    assert adjusted <= 0.065, adjusted


def test_the_verdict_flips_when_the_interval_leaves_1():
    b = np.array([1.0, 2.0, 4.0, 3.0])
    assert compare(b * [0.5, 0.55, 0.45, 0.5], b).verdict == "better"
    assert compare(b * [2.0, 2.2, 1.9, 2.1], b).verdict == "worse"
    assert compare(b * [0.5, 1.6, 0.7, 1.2], b).verdict == "not distinguishable at n=4"
    assert np.isnan(compare([1.0], [2.0]).low)  # one seed: a ratio, no interval, no verdict
    assert compare([1.0], [2.0]).verdict == "not distinguishable at n=1"


def test_report_needs_results_and_one_profile(tmp_path):
    with pytest.raises(UsageError, match="empty"):
        write_report(ResultsStore(tmp_path / "none"), tmp_path / "out")
    store = write_store(tmp_path / "results")
    write_store(tmp_path / "results", profile="smoke")
    with pytest.raises(UsageError, match="several profiles"):
        write_report(store, tmp_path / "out")
    write_report(store, tmp_path / "out", profile="smoke")
    assert "Profile `smoke`" in (tmp_path / "out" / "README.md").read_text()


def test_aggregate_alive_marks_and_learning_curves_come_from_the_stored_numbers(tmp_path):
    store, ratios = ResultsStore(tmp_path / "results"), {0: 0.4, 1: 0.5, 2: 0.6}
    for env in ("hopper", "halfcheetah"):
        for seed in SEEDS:
            for model in ("persistence", "polygrad"):
                floor = 2.0 * (seed + 1)
                last = floor * (ratios[seed] if model == "polygrad" else 1.0)
                alive = 0.1 if (env == "hopper" and model == "polygrad") else 0.9
                rows = [(metric, k, last * k / 10) for metric in ("mse", "mse_alive") for k in range(1, 11)]
                rows += [("alive_fraction", k, alive if k == 10 else 1.0) for k in range(1, 11)]
                rows += [("gen_time_s", 10, 0.1), ("action_z_std", 0, 1.0)]
                curve = [("curve_mse", 10, last * 3, 100), ("curve_mse", 10, last, 200)] if model == "polygrad" \
                    else [("curve_mse", 10, last, 0)]
                table = pd.concat([
                    pd.DataFrame(rows, columns=["metric", "step", "value"]),
                    pd.DataFrame(curve, columns=["metric", "step", "value", "train_step"]).assign(
                        train_flops=lambda f: f["train_step"] * 1e9)])
                store.write(Cell(model, env, f"wmbench/{env}/random-v0", "bc", "quick", 10, seed),
                            table.assign(n_trajectories=256))
    write_report(store, tmp_path / "out")
    out = tmp_path / "out"
    scores = pd.read_csv(out / "aggregate_table.csv")
    polygrad = scores[(scores["model"] == "polygrad") & (scores["metric"] == "mse")].iloc[0]
    assert polygrad["iqm"] == pytest.approx(0.5)  # IQM of 0.4, 0.4, 0.5, 0.5, 0.6, 0.6
    assert polygrad["ci_low"] <= 0.5 <= polygrad["ci_high"] and (polygrad["n_envs"], polygrad["n_runs"]) == (2, 6)
    assert scores.loc[scores["model"] == "persistence", "iqm"].eq(1.0).all()
    wide = [[cell.strip() for cell in line.strip("|").split("|")] for line in
            (out / "aggregate_table.md").read_text().splitlines()]
    assert wide[0][:2] == ["model", "envs"] and {row[1] for row in wide[2:]} == {"2"}
    readme = (out / "README.md").read_text()
    assert readme.index("## Aggregate score") < readme.index("## State error versus step")
    lines = (out / "mse_table.md").read_text().splitlines()
    mse = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]
    column = lambda name: next(i for i, header in enumerate(mse[0]) if header.startswith(name))  # noqa: E731
    hopper_col = column("hopper h=10 (n=")
    rows = {line[0]: line for line in mse[2:]}
    assert rows["polygrad"][hopper_col].endswith("† (10% alive)")
    assert "†" not in " ".join(rows["persistence"]) and "†" not in rows["polygrad"][column("halfcheetah h=10 (n=")]
    curves = pd.read_csv(out / "learning_curves.csv")
    point = curves[(curves["model"] == "polygrad") & (curves["panel"] == "hopper") & (curves["train_step"] == 100)]
    assert point["mean"].iloc[0] == pytest.approx(np.mean([3 * 2.0 * (s + 1) * ratios[s] for s in SEEDS]))
    assert point["train_flops"].iloc[0] == pytest.approx(100e9)
    assert (out / "learning_curves.png").stat().st_size > 10_000 and (out / "aggregate.png").stat().st_size > 10_000


def test_two_configs_of_a_model_in_one_panel_are_two_named_models_not_pooled_seeds(monkeypatch, capsys, tmp_path):
    store = ResultsStore(tmp_path / "results")
    for env, taus in (("hopper", (1.0, 0.1)), ("halfcheetah", (1.0,))):
        for tau in taus:
            config = json.dumps({"polygrad": {"tau": tau, "width": 512}, "data": {"steps": 100_000}})
            for seed in (0, 1):
                rows = pd.DataFrame([("mse", k, (1 + tau) * k + seed) for k in range(1, 11)],
                                    columns=["metric", "step", "value"])
                store.write(Cell("polygrad", env, f"wmbench/{env}/random-v0", "bc", "quick", 10, seed,
                                 config_hash=f"tau{tau}"), rows.assign(config=config, n_trajectories=256))
    for env, tau in (("hopper", 0.1), ("halfcheetah", 1.0)):  # an env's own setting, one per panel
        rows = pd.DataFrame([("mse", k, 1.0) for k in range(1, 11)], columns=["metric", "step", "value"])
        cell = Cell("ar-diffusion", env, f"wmbench/{env}/random-v0", "bc", "quick", 10, 0, config_hash=f"tau{tau}")
        store.write(cell, rows.assign(config=json.dumps({"ar-diffusion": {"tau": tau}}), n_trajectories=256))
    write_report(store, tmp_path / "out")
    means = pd.read_csv(tmp_path / "out" / "mse_table.csv").set_index(["panel", "model"])["mean"]
    assert means[("hopper", "ar-diffusion")] == means[("halfcheetah", "ar-diffusion")] == 1.0
    assert means[("hopper", "polygrad (tau=1.0)")] == pytest.approx(20.5)  # 2 x 10 + mean seed 0.5
    assert means[("hopper", "polygrad (tau=0.1)")] == pytest.approx(11.5)
    assert means[("halfcheetah", "polygrad (tau=1.0)")] == pytest.approx(20.5)  # named alike in every panel
    code, out, _ = run_main(monkeypatch, capsys, "compare", "polygrad", "polygrad", "--results", str(store.root),
                            "--env", "hopper", "--format", "csv")  # a model against its own variants
    row = pd.read_csv(io.StringIO(out)).iloc[0]
    assert code == 0 and {row["a"], row["b"]} == {"polygrad (tau=0.1)", "polygrad (tau=1.0)"}


def write_rl_runs(store: ResultsStore, profile="quick") -> None:
    """RL runs whose returns are known: 100 * model factor * (1 + step / 1000) + 10 * seed."""
    from wmbench.results import RL_DATASET

    for model, factor in (("polygrad", 2.0), ("ppo", 1.0)):
        for seed in (0, 1):
            rows = [(metric, step, value) for step in (0, 1000, 2000) for metric, value in (
                ("return", 100 * factor * (1 + step / 1000) + 10 * seed), ("policy_std", 1.0),
                ("wall_evaluation_s", 1.0 + step / 1000), ("wall_real_steps_s", 3.0 * (1 + step / 1000)))]
            table = pd.DataFrame(rows, columns=["metric", "step", "value"]).assign(git_commit="abc123", device="cpu")
            store.write(Cell(model, "hopper", RL_DATASET, "online", profile, 10 if model != "ppo" else 0, seed), table)


def test_rl_runs_get_their_figure_and_table_beside_the_evaluations_or_alone(tmp_path):
    store = write_store(tmp_path / "results")
    write_rl_runs(store)
    write_report(store, tmp_path / "out")
    readme = (tmp_path / "out" / "README.md").read_text()
    assert "(rl_return.png)" in readme and "(mse_vs_step.png)" in readme
    assert (tmp_path / "out" / "rl_return.png").stat().st_size > 10_000
    tidy = pd.read_csv(tmp_path / "out" / "rl_return.csv")
    last = tidy[tidy["step"] == 2000].set_index("model")
    assert last.loc["polygrad", "mean"] == pytest.approx(600 + 5) and last.loc["ppo", "mean"] == pytest.approx(300 + 5)
    half = 12.7062 * 5.0  # t(0.975, 1) x the standard error of 600 and 610
    assert f"| hopper | polygrad | 2000 | 605 [{605 - half:.0f}, {605 + half:.0f}] | 2 |" in readme
    assert "real steps 75%, evaluation 25%" in readme  # 9 s of 3 + 9 s
    assert "rl" not in set(pd.read_csv(tmp_path / "out" / "mse_table.csv")["model"]), "RL runs are not evaluations"

    alone = ResultsStore(tmp_path / "rl-only")
    write_rl_runs(alone)
    write_report(alone, tmp_path / "out2")
    assert "(rl_return.png)" in (tmp_path / "out2" / "README.md").read_text()


def test_a_learning_curve_axis_shorter_than_a_decade_is_labelled_at_its_points():
    """A log axis from 17k to 85k updates holds no decade, so no labelled tick of its own."""
    import matplotlib.pyplot as plt

    from wmbench.report.figures.curves import _label_short_axis

    fig, ax = plt.subplots()
    steps = pd.Series([17_000, 34_000, 51_000, 68_000, 85_000, 0])
    ax.plot(steps[:-1], [1, 2, 3, 4, 5])
    ax.set_xscale("log")
    _label_short_axis(ax, steps, updates=True)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["17k", "34k", "51k", "68k", "85k"]
    _, wide = plt.subplots()
    wide.set_xscale("log")
    before = list(wide.get_xticks())
    _label_short_axis(wide, pd.Series([1_000, 40_000]), updates=True)  # over a decade: left alone
    assert list(wide.get_xticks()) == before
    plt.close("all")
