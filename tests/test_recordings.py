"""How comparisons move between two recordings of the datasets (`report --other-recording`), on known numbers."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from test_cli import run_main

from wmbench.report import write_report
from wmbench.report.recordings import compare_recordings
from wmbench.report.stats import between_spread, welch_interval
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


@pytest.mark.parametrize("tau", [0.0, 0.2])
def test_between_spread_recovers_a_known_recording_spread(tau):
    """400 comparisons, each a log ratio whose true value moves by N(0, tau) per recording, measured by 5 seeds
    of N(0, 0.1) on each: the spread is found again from the shifts and their seeds' variances."""
    rng = np.random.default_rng(0)
    true = rng.normal(0, 1, 400)
    here = (true + rng.normal(0, tau, 400))[:, None] + rng.normal(0, 0.1, (400, 5))
    there = (true + rng.normal(0, tau, 400))[:, None] + rng.normal(0, 0.1, (400, 5))
    variances = here.var(axis=1, ddof=1) / 5 + there.var(axis=1, ddof=1) / 5
    estimate = between_spread(there.mean(axis=1) - here.mean(axis=1), variances)
    assert estimate == pytest.approx(tau, abs=0.025)


def test_a_comparison_that_moves_with_the_recording_is_found_and_widened(tmp_path):
    here = write_recording(tmp_path / "here", {"hopper": 1.0, "walker2d": 1.0})
    there = write_recording(tmp_path / "there", {"hopper": 2.0, "walker2d": 1.0})
    shifts, spread = compare_recordings(here.read(), there.read(), "quick")
    shifts = shifts.set_index(["a", "b", "panel"])
    moved = shifts.loc[("polygrad", "ar-diffusion", "hopper")]
    assert moved["shift"] == pytest.approx(2.0) and moved["p_holm"] < 0.05  # every seed's ratio doubled
    assert shifts.loc[("polygrad", "ar-diffusion", "walker2d"), "shift"] == pytest.approx(1.0)
    assert shifts.loc[("polygrad", "ar-diffusion", "walker2d"), "p_holm"] == pytest.approx(1.0)
    # hopper's comparisons of polygrad moved by log 2 against seeds of almost no spread: tau near log(2) / 2 there
    tau = spread.set_index("panel")["tau"]
    assert tau["walker2d"] == 0.0 and 0.3 < tau["hopper"] < np.log(2)
    half = 1.959964 * np.sqrt(moved["var_here"] + tau["hopper"] ** 2)  # the seeds' variance and the recording's
    assert (moved["counted_low"], moved["counted_high"]) == pytest.approx(
        (moved["ratio_here"] / np.exp(half), moved["ratio_here"] * np.exp(half)))


def test_the_report_adds_the_other_recording_and_refuses_what_cannot_pair(tmp_path, monkeypatch, capsys):
    here = write_recording(tmp_path / "here", {"hopper": 1.0, "walker2d": 1.0})
    there = write_recording(tmp_path / "there", {"hopper": 2.0, "walker2d": 1.0})
    write_report(here, tmp_path / "out", other_recording=there)
    readme = (tmp_path / "out" / "README.md").read_text()
    assert "## Another recording of the datasets" in readme and "| polygrad vs ar-diffusion | hopper | 10 |" in readme
    assert len(pd.read_csv(tmp_path / "out" / "recording_shifts.csv")) == 6  # 3 pairs x 2 envs

    other_env = write_recording(tmp_path / "cheetah", {"halfcheetah": 1.0})
    code, _, err = run_main(monkeypatch, capsys, "report", "--results", str(here.root), "--out", str(tmp_path / "o2"),
                            "--other-recording", str(other_env.root))
    assert code == 2 and "the two stores share no cell" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_main(monkeypatch, capsys, "report", "--results", str(here.root), "--other-recording",
                            str(tmp_path / "nowhere"))
    assert code == 2 and "does not exist" in err
    code, _, err = run_main(monkeypatch, capsys, "report", "--results", str(here.root), "--against", "policy_std",
                            "--other-recording", str(there.root))
    assert code == 2 and "not with --against" in err
