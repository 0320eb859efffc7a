"""The GPU lease's script (`benchmarks/gpu_study.py`) as its CPU dry run: a 15-minute lease is no place to find a
broken command in it. The README's two leases, at smoke sizes: lease A trains one model, evaluates it along the way
and returns its cells and its BC policy; lease B, given that policy, fits none, so its cells pair with A's."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pandas as pd
import pytest

from wmbench.results import ResultsStore

REPO = Path(__file__).resolve().parent.parent
# the study keeps everything under its own workspace (WMBENCH_STUDY_HOME); the tests' folder overrides would send
# its datasets and results elsewhere
OVERRIDES = ("MINARI_DATASETS_PATH", "WMBENCH_CACHE", "WMBENCH_RESULTS", "WMBENCH_HOME")


def lease(root: Path, name: str, *args: str) -> Path:
    """One dry-run lease (2 seeds, evaluated at 100 and 200 updates); its results.tgz unpacked into `returned/`."""
    out = root / name
    env = {key: value for key, value in os.environ.items() if key not in OVERRIDES}
    env["WMBENCH_STUDY_HOME"] = str(root / f"{name}-home")
    run = subprocess.run([sys.executable, "benchmarks/gpu_study.py", "--device", "cpu", "--profile", "smoke",
                          "--skip-checks", "--skip-targets", "--seeds", "0,1", "--every", "100",
                          "--max-updates", "200", "--rate-updates", "50", "--budget", "400", "--out", str(out), *args],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    with tarfile.open(out / "results.tgz") as tar:
        tar.extractall(out / "returned", filter="data")
    return out


def cells(out: Path, model: str) -> pd.DataFrame:
    """The model's evaluation rows that a lease returned (its store also holds the rate step's `bench` cells)."""
    rows = ResultsStore(out / "returned" / "results").read(model=model, dataset="wmbench/hopper/random-v0")
    assert not rows.empty, f"{out.name}'s results.tgz holds no {model} cell"
    return rows


@pytest.fixture(scope="module")
def lease_a(tmp_path_factory) -> Path:
    return lease(tmp_path_factory.mktemp("study"), "a", "--models", "polygrad")


@pytest.mark.slow
def test_a_lease_trains_evaluates_along_the_way_and_returns_its_cells_and_policy(lease_a):
    summary = (lease_a / "summary.md").read_text()
    assert "study: ok" in summary and "floors: exit 0" in summary, summary
    polygrad = cells(lease_a, "polygrad")
    assert set(polygrad.seed) == {0, 1}
    assert set(polygrad.loc[polygrad.metric == "curve_mse", "train_step"]) == {100, 200}
    assert polygrad.overrides.str.contains("polygrad.train_steps=200").all()
    for floor in ("linear", "persistence"):
        assert set(cells(lease_a, floor).seed) == {0, 1}, floor
    assert len(list((lease_a / "returned" / "policies").glob("**/policy-*.pt"))) == 1


@pytest.mark.slow
def test_the_next_lease_evaluates_under_the_policy_the_first_returned(lease_a, tmp_path):
    policies = lease_a / "returned" / "policies"
    lease_b = lease(tmp_path, "b", "--models", "ar-diffusion-2row", "--policies", str(policies))
    assert "policies from" in (lease_b / "summary.md").read_text()
    for log in lease_b.glob("*.log"):
        assert "fitting the behaviour-cloning policy" not in log.read_text(), log.name
    two_row = cells(lease_b, "ar-diffusion-2row")
    assert set(two_row.seed) == {0, 1}
    assert set(two_row.policy_fingerprint) == set(cells(lease_a, "polygrad").policy_fingerprint)
