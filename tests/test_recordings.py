"""How comparisons move between recordings of the datasets (`report --other-recording`), on known numbers."""

import io
import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from test_cli import run_main

from wmbench.report import write_report
from wmbench.report.grid import TRAIN_SIZE, compare_grid_recordings
from wmbench.report.recordings import compare_recordings
from wmbench.report.stats import between_spread, between_variance, holm, welch_interval
from wmbench.results import Cell, ResultsStore

SEEDS = (0, 1, 2, 3)
NOISE = [1.0, 1.1, 0.9, 1.05]  # polygrad's error over ar-diffusion's per seed, before the recording's factor


def write_recording(root, polygrad_factor: dict[str, float]) -> ResultsStore:
    """A store of polygrad, ar-diffusion and linear on two envs; `polygrad_factor` scales polygrad's error
    per env, as if that recording suited it less."""
    store = ResultsStore(root)
    for env, factor in polygrad_factor.items():
        for seed, noise in zip(SEEDS, NOISE):
            base = 1.0 + seed
            for model, last in (("ar-diffusion", base), ("polygrad", base * noise * factor), ("linear", base * 3)):
                rows = pd.DataFrame([("mse", k, last * k / 10) for k in range(1, 11)],
                                    columns=["metric", "step", "value"])
                store.write(Cell(model, env, f"wmbench/{env}/random-v0", "bc", "quick", 10, seed),
                            rows.assign(n_trajectories=16))
    return store


def test_welch_interval_is_scipy_s_welch_test():
    x, y = [2.0, 4.0, 5.0, 7.0], [1.0, 2.0, 3.5]
    difference, low, high, p = welch_interval(x, y)
    reference = stats.ttest_ind(y, x, equal_var=False)
    assert difference == pytest.approx(np.mean(y) - np.mean(x)) and p == pytest.approx(reference.pvalue)
    assert (low, high) == pytest.approx(tuple(reference.confidence_interval()))
    assert np.isnan(welch_interval([1.0], [2.0, 3.0])[1])


@pytest.mark.parametrize("recordings", [2, 4])
@pytest.mark.parametrize("tau", [0.0, 0.2])
def test_between_spread_recovers_a_known_recording_spread(tau, recordings):
    """400 comparisons, each a log ratio whose true value moves by N(0, tau) per recording, measured by 5 seeds
    of N(0, 0.1) on each recording: the spread is found again from the recordings' means and their seeds'
    variances; without the seeds' variance it would not be."""
    rng = np.random.default_rng(0)
    true = rng.normal(0, 1, (400, 1))
    seeds = (true + rng.normal(0, tau, (400, recordings)))[..., None] + rng.normal(0, 0.1, (400, recordings, 5))
    means, variances = seeds.mean(axis=2), seeds.var(axis=2, ddof=1) / 5
    assert between_spread(means, variances) == pytest.approx(tau, abs=0.025)
    if tau == 0:
        assert between_spread(means, np.zeros_like(variances)) > 0.04  # the seeds' spread alone, mistaken for tau


def test_between_variance_of_two_recordings_is_half_the_squared_shift_less_the_seeds():
    assert between_variance([0.1, 0.5], [0.01, 0.03]) == pytest.approx((0.4 ** 2 - 0.04) / 2)
    assert between_variance([0.2, 0.2, 0.2], [0.01, 0.01, 0.01]) == pytest.approx(-0.01)  # closer than seeds allow
    # weighted by degrees of freedom: a comparison on 5 recordings counts 4 times one on 2
    assert between_spread([[0.0, 1.0], [0.0] * 5], [[0.0] * 2, [0.0] * 5]) == pytest.approx(np.sqrt(0.5 / 5))


def test_a_comparison_that_moves_with_the_recording_is_found_and_widened(tmp_path):
    here = write_recording(tmp_path / "here", {"hopper": 1.0, "walker2d": 1.0})
    there = write_recording(tmp_path / "there", {"hopper": 2.0, "walker2d": 1.0})
    shifts, spread, across = compare_recordings(here.read(), {"there": there.read()}, "quick")
    shifts = shifts.set_index(["a", "b", "panel"])
    moved = shifts.loc[("polygrad", "ar-diffusion", "hopper")]
    assert moved["shift"] == pytest.approx(2.0) and moved["p_holm"] < 0.05  # every seed's ratio doubled
    assert shifts.loc[("polygrad", "ar-diffusion", "walker2d"), "shift"] == pytest.approx(1.0)
    assert shifts.loc[("polygrad", "ar-diffusion", "walker2d"), "p_holm"] == pytest.approx(1.0)
    # hopper's comparisons of polygrad moved by log 2 against seeds of almost no spread: tau near log(2) / 2 there
    tau = spread.set_index("panel")["tau"]
    assert tau["walker2d"] == 0.0 and 0.3 < tau["hopper"] < np.log(2)
    counted = across.set_index(["a", "b", "panel"]).loc[("polygrad", "ar-diffusion", "hopper")]
    quantile = stats.t.ppf(0.975, len(SEEDS) - 1)  # the seeds' own t quantile
    half = quantile * np.sqrt(moved["var_here"] + tau["hopper"] ** 2)  # the seeds' variance and the recording's
    assert (counted["counted_low"], counted["counted_high"]) == pytest.approx(
        (moved["ratio_here"] / np.exp(half), moved["ratio_here"] * np.exp(half)))
    assert across["ratio"].isna().all() and (across["recordings"] == 2).all()  # two recordings: no interval over them
    # tau 0 on walker2d: the interval with the recording counted is the seeds' paired t interval itself
    steady = across.set_index(["a", "b", "panel"]).loc[("polygrad", "ar-diffusion", "walker2d")]
    low, high = stats.t.interval(0.95, len(SEEDS) - 1, loc=np.log(NOISE).mean(), scale=stats.sem(np.log(NOISE)))
    assert (steady["counted_low"], steady["counted_high"]) == pytest.approx((np.exp(low), np.exp(high)))


FACTORS = {"steady": [1.8, 2.2, 2.0, 1.9], "swaying": [0.6, 1.6, 0.9, 1.4]}  # polygrad's factor on 4 recordings


def test_over_several_recordings_the_recording_is_the_unit(tmp_path):
    """4 recordings where polygrad's error over ar-diffusion's moves by a known factor per recording (hopper:
    always about twice; walker2d: above and below 1) over the same 4 seeds: each recording's paired t says
    `worse` or `better` on walker2d, but over the recordings it cannot tell; the interval is the t interval of
    the recordings' mean log ratios, and each comparison's tau is their variance less the seeds'."""
    stores = [write_recording(tmp_path / f"r{k}", {"hopper": FACTORS["steady"][k], "walker2d": FACTORS["swaying"][k]})
              for k in range(4)]
    others = {str(s.root): s.read() for s in stores[1:]}
    shifts, spread, across = compare_recordings(stores[0].read(), others, "quick")
    assert len(shifts) == 3 * 6 and set(shifts["other"]) == set(others)  # 3 other recordings x 3 pairs x 2 envs
    rows = across.set_index(["a", "b", "panel"])
    noise = np.log(NOISE)
    for env, factors in (("hopper", FACTORS["steady"]), ("walker2d", FACTORS["swaying"])):
        row = rows.loc[("polygrad", "ar-diffusion", env)]
        means = np.log(factors) + noise.mean()
        low, high = stats.t.interval(0.95, 3, loc=means.mean(), scale=stats.sem(means))
        assert (row["ratio"], row["ratio_low"], row["ratio_high"]) == pytest.approx(
            (np.exp(means.mean()), np.exp(low), np.exp(high)))
        assert row["recordings"] == 4 and row["seeds"] == 16
        assert row["tau"] == pytest.approx(np.sqrt(np.var(np.log(factors), ddof=1) - noise.var(ddof=1) / 4))
    assert rows.loc[("polygrad", "ar-diffusion", "hopper"), "verdict"] == "worse"
    assert rows.loc[("polygrad", "ar-diffusion", "walker2d"), "verdict"] == "not distinguishable at 4 recordings"
    assert rows.loc[("ar-diffusion", "linear", "walker2d"), "tau"] == 0.0  # the same ratio on every recording
    assert spread.set_index("panel").loc["walker2d", "recordings"] == 4


def test_the_report_adds_the_other_recording_and_refuses_what_cannot_pair(tmp_path, monkeypatch, capsys):
    here = write_recording(tmp_path / "here", {"hopper": 1.0, "walker2d": 1.0})
    there = write_recording(tmp_path / "there", {"hopper": 2.0, "walker2d": 1.0})
    write_report(here, tmp_path / "out", other_recordings=[there])
    readme = (tmp_path / "out" / "README.md").read_text()
    assert "## Another recording of the datasets" in readme and "| polygrad vs ar-diffusion | hopper | 10 |" in readme
    assert len(pd.read_csv(tmp_path / "out" / "recording_shifts.csv")) == 6  # 3 pairs x 2 envs

    other_env = write_recording(tmp_path / "cheetah", {"halfcheetah": 1.0})
    code, _, err = run_main(monkeypatch, capsys, "report", "--results", str(here.root), "--out", str(tmp_path / "o2"),
                            "--other-recording", str(other_env.root))
    assert code == 2 and f"{other_env.root} shares no cell" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_main(monkeypatch, capsys, "report", "--results", str(here.root), "--other-recording",
                            str(tmp_path / "nowhere"))
    assert code == 2 and "does not exist" in err


def test_the_cli_takes_several_recordings_and_refuses_a_missing_one(tmp_path, monkeypatch, capsys):
    stores = [write_recording(tmp_path / f"r{k}", {"hopper": FACTORS["steady"][k]}) for k in range(3)]
    others = [arg for s in stores[1:] for arg in ("--other-recording", str(s.root))]
    code, _, err = run_main(monkeypatch, capsys, "report", "--results", str(stores[0].root), "--out",
                            str(tmp_path / "out"), *others)
    readme = (tmp_path / "out" / "README.md").read_text()
    assert code == 0 and "## Other recordings of the datasets" in readme and "| ratio over recordings |" in readme
    assert (pd.read_csv(tmp_path / "out" / "recording_comparisons.csv")["recordings"] == 3).all()
    code, _, err = run_main(monkeypatch, capsys, "report", "--results", str(stores[0].root), *others,
                            "--other-recording", str(tmp_path / "nowhere"))
    assert code == 2 and "nowhere does not exist" in err


def test_compare_takes_any_pair_over_recordings(tmp_path, monkeypatch, capsys):
    """`compare linear polygrad` (a pair the report does not make) on 3 recordings: the table over recordings is
    the t interval of the recordings' mean log ratios, as CSV and as Markdown."""
    stores = [write_recording(tmp_path / f"r{k}", {"hopper": FACTORS["steady"][k]}) for k in range(3)]
    others = [arg for s in stores[1:] for arg in ("--other-recording", str(s.root))]
    code, out, _ = run_main(monkeypatch, capsys, "compare", "linear", "polygrad", "--results", str(stores[0].root),
                            *others, "--format", "csv")
    row = pd.read_csv(io.StringIO(out)).iloc[0]
    means = np.log(3.0 / np.array(FACTORS["steady"][:3])) - np.log(NOISE).mean()
    low, high = stats.t.interval(0.95, 2, loc=means.mean(), scale=stats.sem(means))
    assert code == 0 and (row["a"], row["b"], row["recordings"], row["seeds"]) == ("linear", "polygrad", 3, 12)
    assert (row["ratio"], row["ratio_low"], row["ratio_high"]) == pytest.approx(
        (np.exp(means.mean()), np.exp(low), np.exp(high)))
    code, out, _ = run_main(monkeypatch, capsys, "compare", "linear", "polygrad", "--results", str(stores[0].root),
                            *others, "--step", "5")
    assert code == 0 and "On 3 recordings" in out and "| linear vs polygrad | hopper | 10 |" in out
    code, _, err = run_main(monkeypatch, capsys, "compare", "linear", "polygrad", "--results", str(stores[0].root),
                            "--other-recording", str(tmp_path / "nowhere"))
    assert code == 2 and "nowhere does not exist" in err


def test_compare_takes_several_models_as_one_holm_family(tmp_path, monkeypatch, capsys):
    """`compare polygrad ar-diffusion,linear`: each pair's row is the one its own command gives, and Holm runs over
    both rows, in the paired table and in the one over recordings; a model named twice is refused."""
    stores = [write_recording(tmp_path / f"r{k}", {"hopper": FACTORS["steady"][k]}) for k in range(3)]
    others = [arg for s in stores[1:] for arg in ("--other-recording", str(s.root))]
    command = ["--results", str(stores[0].root), *others, "--format", "csv"]
    code, out, _ = run_main(monkeypatch, capsys, "compare", "polygrad", "ar-diffusion,linear", *command)
    both = pd.read_csv(io.StringIO(out)).set_index("b")
    assert code == 0 and list(both.index) == ["ar-diffusion", "linear"] and set(both["a"]) == {"polygrad"}
    for b in ("ar-diffusion", "linear"):
        code, out, _ = run_main(monkeypatch, capsys, "compare", "polygrad", b, *command)
        alone = pd.read_csv(io.StringIO(out)).iloc[0]
        assert alone["ratio"] == pytest.approx(both.loc[b, "ratio"]) and alone["p_holm"] == alone["p_value"]
    assert both["p_holm"].to_numpy() == pytest.approx(holm(both["p_value"].to_numpy()))
    assert (both["p_holm"] > both["p_value"]).any(), "one family of two: the smaller p doubles"
    code, out, _ = run_main(monkeypatch, capsys, "compare", "polygrad", "ar-diffusion,linear", *command[:2])
    assert code == 0 and "| polygrad vs ar-diffusion | hopper |" in out and "| polygrad vs linear | hopper |" in out
    code, _, err = run_main(monkeypatch, capsys, "compare", "polygrad", "linear,linear", *command[:2])
    assert code == 2 and "model B linear,linear: linear given twice" in err


# ----------------------------------------------------------------------------- growths of error on other recordings

GROWTH = [1.5, 1.2, 1.9, 1.35]  # polygrad's error at 1,000 transitions over its own with all the data, per recording
LEVEL_OF = [1.0, 3.0, 0.5, 2.0]  # each recording's error level with all the data (a growth cancels it)
FULL_OF = [16000, 15000, 17500, 14000]  # each recording's full training size
SEED_NOISE = {"polygrad": [1.0, 1.1, 0.95], "mlp-ensemble": [1.0, 0.9, 1.2]}


def write_size_recording(root, k: int, sizes=(1000, 0)) -> ResultsStore:
    """Recording k of hopper: the ensemble's error doubles at 1,000 transitions on every recording, polygrad's
    grows by `GROWTH[k]`; each seed's small-data error moves by its own noise."""
    store = ResultsStore(root)
    for model in ("polygrad", "mlp-ensemble", "persistence"):
        for size in sizes:
            for seed in range(3):
                growth = {"polygrad": GROWTH[k], "mlp-ensemble": 2.0, "persistence": 1.0}[model]
                noise = SEED_NOISE.get(model, [1.0] * 3)[seed]
                last = LEVEL_OF[k] * (1 + seed) * (growth * noise if size else 1.0)
                rows = pd.DataFrame([("mse", step, last * step / 5) for step in range(1, 6)],
                                    columns=["metric", "step", "value"])
                data = {"steps": 1, **({"train_transitions": size} if size else {})}
                store.write(Cell(model, "hopper", "wmbench/hopper/sac-replay-v0", "behaviour-std0.2", "quick", 5, seed,
                                 config_hash=f"{model[:2]}{size}"),
                            rows.assign(config=json.dumps({"data": data, model: {}}), n_trajectories=8,
                                        dataset_train_transitions=FULL_OF[k]))
    return store


def test_a_growth_of_error_is_compared_over_recordings_each_against_its_own_full_data(tmp_path):
    """4 recordings of different sizes and error levels: polygrad's growth to 1,000 transitions is each
    recording's `GROWTH` (times its seeds' noise), whatever the level; over the recordings it gets the t interval
    of their mean log growths, and against the ensemble's steady 2x its own; the full size is no growth."""
    stores = [write_size_recording(tmp_path / f"r{k}", k) for k in range(4)]
    others = {str(s.root): s.read() for s in stores[1:]}
    shifts, spread, across = compare_grid_recordings(stores[0].read(), others, TRAIN_SIZE, "quick")
    rows = across.set_index(["a", "b"])
    assert set(across["grid"]) == {1000} and (across["recordings"] == 4).all()
    noise = {model: np.log(values).mean() for model, values in SEED_NOISE.items()}
    for b, means in (("", np.log(GROWTH) + noise["polygrad"]),
                     ("mlp-ensemble", np.log(GROWTH) + noise["polygrad"] - np.log(2.0) - noise["mlp-ensemble"])):
        low, high = stats.t.interval(0.95, 3, loc=means.mean(), scale=stats.sem(means))
        assert tuple(rows.loc[("polygrad", b), ["ratio", "ratio_low", "ratio_high"]]) == pytest.approx(
            (np.exp(means.mean()), np.exp(low), np.exp(high)))
    assert rows.loc[("polygrad", ""), "verdict"] == "worse"  # its error grows on every recording
    assert rows.loc[("mlp-ensemble", ""), "ratio"] == pytest.approx(2.0 * np.exp(noise["mlp-ensemble"]))
    assert rows.loc[("mlp-ensemble", ""), "tau"] == 0.0  # the same growth on every recording
    moved = shifts.set_index(["a", "b", "other"]).loc[("polygrad", "", str(stores[2].root))]
    assert moved["shift"] == pytest.approx(GROWTH[2] / GROWTH[0])
    assert spread.set_index("panel").loc["hopper", "recordings"] == 4
    for table in (across, shifts):  # Holm within each kind of growth (own; PolyGRAD's over another's)
        for _, part in table.groupby(table["b"] == ""):
            assert part["p_holm"].to_numpy() == pytest.approx(holm(part["p_value"].to_numpy()))


def test_the_grid_report_adds_other_recordings_and_names_a_store_it_cannot_use(tmp_path, monkeypatch, capsys):
    stores = [write_size_recording(tmp_path / f"r{k}", k) for k in range(3)]
    others = [arg for s in stores[1:] for arg in ("--other-recording", str(s.root))]
    code, _, err = run_main(monkeypatch, capsys, "report", "--results", str(stores[0].root), "--out",
                            str(tmp_path / "out"), "--against", TRAIN_SIZE, *others)
    readme = (tmp_path / "out" / "README.md").read_text()
    assert code == 0 and "## Other recordings of the datasets" in readme
    assert "| polygrad (own) | hopper | 5 | 1,000 |" in readme
    assert "| polygrad vs mlp-ensemble | hopper | 5 | 1,000 |" in readme
    assert (pd.read_csv(tmp_path / "out" / "recording_comparisons.csv")["recordings"] == 3).all()
    full_only = write_size_recording(tmp_path / "full", 3, sizes=(0,))
    code, _, err = run_main(monkeypatch, capsys, "report", "--results", str(stores[0].root), "--out",
                            str(tmp_path / "o2"), "--against", TRAIN_SIZE, "--other-recording", str(full_only.root))
    assert code == 2 and f"error: {full_only.root}: " in err and "one value of" in err
    assert len(err.strip().splitlines()) == 1
