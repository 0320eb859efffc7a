"""`wmbench reproduce` and the clean-tree rule for committed stores: cells that can be traced and rerun."""

import json
import subprocess

import pandas as pd
import pytest
import torch
from test_cli import run_main

from wmbench import provenance
from wmbench.cells import EvalRequest
from wmbench.errors import UsageError
from wmbench.evaluate import evaluate
from wmbench.paths import PACKAGE_ROOT
from wmbench.reproduce import recorded_threads, reproduce
from wmbench.results import ResultsStore


@pytest.fixture(scope="module")
def smoke_cell(hopper_dataset, tmp_path_factory):
    """A stored smoke cell at one torch thread, as the reference cells are made."""
    store = ResultsStore(tmp_path_factory.mktemp("stored"))
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        evaluate(EvalRequest(model="mlp-ensemble", env="hopper", horizon=5, seed=1, profile="smoke"), store=store,
                 progress=False)
    finally:
        torch.set_num_threads(saved)
    (path,) = store.root.glob("*/*/*.csv.gz")
    return path


def test_reproduce_round_trip_is_identical(smoke_cell, monkeypatch, capsys):
    result = reproduce(smoke_cell, progress=False)
    assert result.problems == []
    assert len(result.diff) > 50 and result.differing.empty, result.differing
    assert not result.diff["metric"].str.endswith("_s").any(), "times are not compared"
    assert torch.get_num_threads() != 1 or recorded_threads(result.stored["device"].iloc[0]) == 1

    code, out, _ = run_main(monkeypatch, capsys, "reproduce", str(smoke_cell))
    assert code == 0 and f"{len(result.diff)} of {len(result.diff)} numbers identical" in out


def test_reproduce_detects_a_changed_config(smoke_cell, tmp_path, monkeypatch, capsys):
    rows = pd.read_csv(smoke_cell)
    config = json.loads(rows["config"].iloc[0])
    config["mlp-ensemble"]["hidden"] = config["mlp-ensemble"]["hidden"] * 2  # as if the row said another width
    edited = tmp_path / smoke_cell.name
    rows.assign(config=json.dumps(config)).to_csv(edited, index=False)

    result = reproduce(edited, progress=False)
    assert any("does not hash" in p for p in result.problems)
    assert not result.differing.empty, "a wider ensemble gives other numbers"
    code, out, _ = run_main(monkeypatch, capsys, "reproduce", str(edited))
    assert code == 1 and "does not hash" in out and "max |difference|" in out


def test_reproduce_detects_another_evaluation_policy(smoke_cell, tmp_path):
    """A BC policy fitted again elsewhere has other weights: the rerun is not the same experiment."""
    rows = pd.read_csv(smoke_cell)
    assert rows["policy_fingerprint"].nunique() == 1 and len(rows["policy_fingerprint"].iloc[0]) == 16
    edited = tmp_path / smoke_cell.name
    rows.assign(policy_fingerprint="0123456789abcdef").to_csv(edited, index=False)
    result = reproduce(edited, progress=False)
    assert any("the evaluation policy differs: policy_fingerprint 0123456789abcdef stored" in p
               for p in result.problems)
    assert not result.identical


def test_reproduce_refuses_what_is_not_one_cell(tmp_path, monkeypatch, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("model,env\nx,y")
    code, _, err = run_main(monkeypatch, capsys, "reproduce", str(bad))
    assert code == 2 and "not a readable results file" in err


def test_a_stored_value_this_version_refuses_is_blamed_on_the_file_not_on_set(smoke_cell, tmp_path, monkeypatch,
                                                                              capsys):
    rows = pd.read_csv(smoke_cell)
    for key, value, said in [("hidden", 0, "mlp-ensemble.hidden must be >= 1, got 0 (from the stored config)"),
                             ("width_of_old", 3, "unknown key 'width_of_old' in the stored config")]:
        config = json.loads(rows["config"].iloc[0])
        config["mlp-ensemble"][key] = value
        edited = tmp_path / smoke_cell.name
        rows.assign(config=json.dumps(config)).to_csv(edited, index=False)
        code, _, err = run_main(monkeypatch, capsys, "reproduce", str(edited))
        assert code == 2 and said in err and "--set" not in err and "from a checkout of that commit" in err, err
        assert len(err.strip().splitlines()) == 1


def test_recorded_threads():
    assert recorded_threads("x86_64 (1 threads)") == 1 and recorded_threads("x86_64 (16 threads)") == 16
    assert recorded_threads("NVIDIA H200") is None


def test_a_committed_store_needs_a_clean_tree(monkeypatch, tmp_path):
    if not (PACKAGE_ROOT.parent / ".git").exists():
        pytest.skip("needs wmbench's git checkout")
    reference = PACKAGE_ROOT.parent / "reports" / "reference"
    assert provenance.in_checkout(reference)
    assert not provenance.in_checkout(PACKAGE_ROOT.parent / "results"), "a workspace store is git-ignored"
    assert not provenance.in_checkout(tmp_path)

    monkeypatch.setattr(provenance, "git_commit", lambda: "0123456789ab+dirty")
    with pytest.raises(UsageError, match="--allow-dirty"):
        provenance.check_clean_tree(reference)
    provenance.check_clean_tree(reference, allow_dirty=True)
    provenance.check_clean_tree(tmp_path)
    monkeypatch.setattr(provenance, "git_commit", lambda: "0123456789ab")
    provenance.check_clean_tree(reference)


def test_evaluate_into_a_committed_store_from_a_dirty_tree_is_refused(monkeypatch, capsys, hopper_dataset):
    if not (PACKAGE_ROOT.parent / ".git").exists():
        pytest.skip("needs wmbench's git checkout")
    reference = PACKAGE_ROOT.parent / "reports" / "reference"
    monkeypatch.setenv("WMBENCH_RESULTS", str(reference))
    monkeypatch.setattr(provenance, "git_commit", lambda: "0123456789ab+dirty")
    before = subprocess.run(["git", "status", "--porcelain", str(reference)], capture_output=True, text=True,
                            cwd=PACKAGE_ROOT.parent).stdout
    code, _, err = run_main(monkeypatch, capsys, "evaluate", "--model", "linear", "--env", "hopper", "--profile",
                            "smoke")
    assert code == 2 and "uncommitted changes" in err
    assert subprocess.run(["git", "status", "--porcelain", str(reference)], capture_output=True, text=True,
                          cwd=PACKAGE_ROOT.parent).stdout == before, "nothing written"


def test_metrics_newer_than_the_stored_cell_are_not_differences(smoke_cell, tmp_path):
    rows = pd.read_csv(smoke_cell)
    older = tmp_path / smoke_cell.name
    kept = rows[rows["metric"] != "action_w1"]  # as a cell stored before W1 was added
    kept.assign(n_rows=len(kept)).to_csv(older, index=False)
    result = reproduce(older, progress=False)
    assert result.identical and result.added == ["action_w1"]
