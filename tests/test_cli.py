"""The CLI end to end (through the installed `wmbench` script) and every bad input a user can make."""

import io
import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from wmbench import WorldModel, cli
from wmbench.config import profile_label
from wmbench.errors import UsageError
from wmbench.evaluate import EvalRequest, cell_of, checkpoint_path, evaluate
from wmbench.models.base import get_model_class
from wmbench.results import Cell, ResultsStore

WMBENCH = shutil.which("wmbench") or os.path.join(os.path.dirname(sys.executable), "wmbench")


def run_main(monkeypatch, capsys, *args):
    """Run the CLI's real entry function in-process: `(exit code, stdout, stderr)`."""
    monkeypatch.setattr(sys, "argv", ["wmbench", *args])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def test_evaluate_end_to_end_then_resume(hopper_dataset):
    args = [WMBENCH, "evaluate", "--model", "mlp-ensemble", "--env", "hopper", "--profile", "smoke", "--horizon", "5"]
    first = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    assert "mse_norm" in first.stdout and "generation:" in first.stdout

    table = ResultsStore().read(model="mlp-ensemble", env="hopper", horizon=5)
    per_step = table[table["metric"].isin(["mse", "mse_norm", "reward_mse", "term_disagree"])]
    assert sorted(per_step["step"].unique()) == [1, 2, 3, 4, 5]
    assert len(per_step) == 4 * 5
    assert (table["dataset"] == hopper_dataset).all() and (table["n_trajectories"] == 16).all()
    for column in ("git_commit", "versions", "device", "created"):
        assert table[column].notna().all()
    stages = table[table["metric"].str.startswith("wall_")].set_index("metric")["value"]
    assert set(stages.index) == {f"wall_{s}_s" for s in ("data", "model", "rollout", "oracle", "metrics")}
    assert (stages > 0).all()
    mse = per_step[per_step["metric"] == "mse"].sort_values("step")["value"].to_numpy()
    assert (mse > 0).all() and mse[-1] > mse[0], "open-loop error grows with the horizon"

    again = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "already in the results store" in again.stderr
    assert "training" not in again.stderr

    printed = subprocess.run([WMBENCH, "results", "--format", "csv", "--model", "mlp-ensemble"],
                             capture_output=True, text=True, timeout=120)
    assert printed.returncode == 0
    assert len(pd.read_csv(io.StringIO(printed.stdout))) == len(table)


@pytest.mark.parametrize("model", ["polygrad", "polygrad-transformer"])
def test_polygrad_end_to_end(hopper_dataset, model):
    args = [WMBENCH, "evaluate", "--model", model, "--env", "hopper", "--profile", "smoke", "--horizon", "4"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    table = ResultsStore().read(model=model, horizon=4)
    metrics = set(table["metric"])
    assert {"mse", "action_z_std", "action_z_mean", "action_ks", "action_z_hist", "delta"} <= metrics
    deltas = table[table["metric"] == "delta"]
    assert len(deltas) == 3  # the smoke profile's tuning iterations, stored step by step


@pytest.mark.parametrize("model", ["ar-diffusion", "transformer"])
def test_autoregressive_baselines_end_to_end(hopper_dataset, model):
    args = [WMBENCH, "evaluate", "--model", model, "--env", "hopper", "--profile", "smoke", "--horizon", "3"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    table = ResultsStore().read(model=model, horizon=3)
    mse = table[table["metric"] == "mse"]
    assert sorted(mse["step"]) == [1, 2, 3] and (mse["value"] > 0).all()
    z_std = float(table.loc[table["metric"] == "action_z_std", "value"].iloc[0])
    assert 0.6 < z_std < 1.4  # on-policy by construction; 16 x 3 draws of 3 dims


def test_polygrad_trains_one_model_per_horizon(hopper_dataset, tmp_path):
    store = ResultsStore(tmp_path)
    for horizon in (3, 5):
        evaluate(EvalRequest(model="polygrad", env="hopper", horizon=horizon, profile="smoke"), store=store,
                 progress=False, say=lambda m: None)
    path = checkpoint_path(get_model_class("polygrad"), Cell("polygrad", "hopper", hopper_dataset, "bc", "smoke", 3, 0))
    model = WorldModel.load(path)
    assert model.config.horizon == 3 and path.name.endswith("-h3.pt")
    with pytest.raises(UsageError, match="trained on \\(h = 3\\).*--horizon 5"):
        model.check_horizon(5)


def test_same_seed_gives_identical_results(hopper_dataset, tmp_path, monkeypatch):
    request = EvalRequest(model="mlp-ensemble", env="hopper", horizon=4, seed=7, profile="smoke")
    tables = []
    for run in ("a", "b"):  # separate caches: both runs train from scratch
        monkeypatch.setenv("WMBENCH_CACHE", str(tmp_path / run))
        store = ResultsStore(tmp_path / f"results-{run}")
        tables.append(evaluate(request, store=store, progress=False, say=lambda m: None))
    deterministic = lambda t: t[~t["metric"].str.endswith("_s")].reset_index(drop=True)  # noqa: E731 (timings)
    pd.testing.assert_series_equal(deterministic(tables[0])["value"], deterministic(tables[1])["value"])
    other = evaluate(EvalRequest(**{**request.__dict__, "seed": 8}), store=ResultsStore(tmp_path / "c"),
                     progress=False, say=lambda m: None)
    assert not deterministic(other)["value"].equals(deterministic(tables[0])["value"])


@pytest.mark.parametrize("args, expected", [
    (["--model", "nope"], "unknown model 'nope'; choose one of: ar-diffusion, ar-diffusion-2row, linear, mlp-ensemble"),
    (["--env", "ant"], "unknown env 'ant'; choose one of: halfcheetah, hopper, walker2d"),
    (["--profile", "huge"], "unknown profile 'huge'; choose one of: paper, quick, smoke"),
    (["--horizon", "0"], "--horizon must be a number of steps from 1"),
    (["--n-trajectories", "-3"],
     "evaluate.n_trajectories must be >= 1 and <= 1,000,000, got -3 (from --n-trajectories)"),
    (["--device", "tpu"], "unknown device 'tpu'"),
    (["--dataset", "mujoco/hopper/medium-v0"], "minari download mujoco/hopper/medium-v0"),
    (["--env", "walker2d", "--no-make"], "wmbench data make walker2d"),
    (["--policy", "ppo"], "unknown policy 'ppo'; choose one of: bc, behaviour"),
    (["--precision", "fp8"], "unknown precision 'fp8'; choose one of: fp32, bf16"),
    (["--policy", "behaviour"], "has no SAC behaviour policy"),
    (["--policy", "behaviour", "--policy-std", "0"], "--policy-std must be positive"),
    (["--policy-std", "-1"], "--policy-std must be positive"),  # with bc too: never ignored silently
    (["--seed", "-1"], "--seed must be from 0 to"),
    (["--seed", "99999999999999999999"], "--seed must be from 0 to"),
    (["--horizon", "100000000"], "--horizon must be a number of steps from 1 to 10000"),
    (["--n-trajectories", "100000000000"], "evaluate.n_trajectories must be >= 1 and <= 1,000,000"),
    (["--n-trajectories", "5", "--set", "evaluate.n_trajectories=0"],
     "evaluate.n_trajectories must be >= 1 and <= 1,000,000, got 0 (from --set)"),  # --set wins over the flag
    (["--n-trajectories", "1000000", "--horizon", "2000"], "GiB of memory; a cell is limited to"),
    (["--model", "polygrad", "--set", "polygrad.width=-4"], "polygrad.width must be >= 1, got -4"),
    (["--model", "polygrad", "--set", "polygrad.width=0"], "polygrad.width must be >= 1, got 0"),
    (["--model", "polygrad", "--set", "polygrad.train_steps=-1"], "polygrad.train_steps must be >= 1"),
    (["--model", "polygrad", "--set", "polygrad.tau=nan"], "polygrad.tau must be > 0, got nan"),
    (["--model", "polygrad", "--set", "polygrad.guidance='up'"], "must be one of: gradient, none, sample"),
    (["--set", "policy.lr=inf"], "policy.lr must be > 0, got inf"),
    (["--set", "mlp-ensemble.elites=50"], "mlp-ensemble: elites (50) must be at most members (3)"),
    (["--set", "mlp-ensemble.weight_decay=[1.0]"], "mlp-ensemble: weight_decay needs 3 numbers"),
    (["--set", "data.train_transitions=100000000"], "cannot train on 100000000 transitions; its training split"),
    (["--dataset", "../../outside/ds-v0"], "is not a dataset id"),
    (["--dataset", "/abs/path"], "is not a dataset id"),
    (["--model", "polygrad", "--set", "polygrad.precision='tf32'"], "precision = tf32 is a CUDA feature"),
])
def test_bad_input_gives_one_clear_line(monkeypatch, capsys, hopper_dataset, args, expected, workspace):
    before = sorted(workspace["WMBENCH_RESULTS"].rglob("*.csv.gz"))
    code, _, err = run_main(monkeypatch, capsys, "evaluate", "--env", "hopper", "--profile", "smoke", *args)
    assert code == 2
    assert expected in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert sorted(workspace["WMBENCH_RESULTS"].rglob("*.csv.gz")) == before, "nothing stored"


def test_too_little_data_for_a_model_is_one_line_after_its_progress(monkeypatch, capsys, hopper_dataset, workspace):
    before = sorted(workspace["WMBENCH_RESULTS"].rglob("*.csv.gz"))
    code, _, err = run_main(monkeypatch, capsys, "evaluate", "--env", "hopper", "--profile", "smoke", "--model",
                            "mlp-ensemble", "--set", "data.train_transitions=20")
    assert code == 2 and "Traceback" not in err
    assert "mlp-ensemble needs more than" in err.strip().splitlines()[-1]  # found while fitting: after the bars
    assert sorted(workspace["WMBENCH_RESULTS"].rglob("*.csv.gz")) == before, "nothing stored"


def test_a_profile_file_from_any_folder_is_named_by_its_content(monkeypatch, capsys, hopper_dataset, tmp_path):
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    mine = folder / "mine.toml"
    mine.write_text('extends = "smoke"\n[linear]\n')
    code, _, err = run_main(monkeypatch, capsys, "evaluate", "--model", "linear", "--env", "hopper", "--profile",
                            str(mine))
    assert code in (0, None), err
    (first,) = ResultsStore().read(model="linear", dataset=hopper_dataset, profile=profile_label(str(mine)))[
        "profile"].unique()
    assert first.startswith("mine-") and len(first) == len("mine-") + 8
    mine.write_text('extends = "smoke"\n# edited\n[linear]\n')
    assert profile_label(str(mine)) != first, "an edited file is another profile"

    binary = folder / "binary.toml"
    binary.write_bytes(bytes(range(128, 256)))
    code, _, err = run_main(monkeypatch, capsys, "evaluate", "--model", "linear", "--env", "hopper", "--profile",
                            str(binary))
    assert code == 2 and "is not a text file" in err and len(err.strip().splitlines()) == 1


def test_corrupt_checkpoint_names_the_file_and_stores_nothing(monkeypatch, capsys, hopper_dataset, tmp_path):
    monkeypatch.setenv("WMBENCH_RESULTS", str(tmp_path / "results"))
    cell = Cell("mlp-ensemble", "hopper", hopper_dataset, "bc", "smoke", 3, 5)
    path = checkpoint_path(get_model_class("mlp-ensemble"), cell)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"this is not a checkpoint")
    code, _, err = run_main(monkeypatch, capsys, "evaluate", "--env", "hopper", "--profile", "smoke",
                            "--horizon", "3", "--seed", "5")
    assert code == 2 and str(path) in err and "corrupt" in err
    assert ResultsStore().read().empty


def test_corrupt_dataset_names_the_file_and_stores_nothing(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "datasets"))
    monkeypatch.setenv("WMBENCH_RESULTS", str(tmp_path / "results"))
    code, _, _ = run_main(monkeypatch, capsys, "data", "make", "walker2d", "--steps", "50")
    assert code == 0
    data_file = tmp_path / "datasets/wmbench/walker2d/random-v0/data/main_data.hdf5"
    data_file.write_bytes(b"\x89HDF-truncated")
    code, _, err = run_main(monkeypatch, capsys, "evaluate", "--env", "walker2d", "--profile", "smoke")
    assert code == 2 and "corrupt or unreadable" in err and str(data_file.parent) in err
    assert ResultsStore().read().empty


def test_data_commands(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    code, out, err = run_main(monkeypatch, capsys, "data", "list")
    assert code == 0 and out == "" and f"no datasets in {tmp_path} yet" in err
    code, out, _ = run_main(monkeypatch, capsys, "data", "make", "halfcheetah", "--steps", "120", "--seed", "3")
    assert code == 0 and "wmbench/halfcheetah/random-v0" in out
    code, _, err = run_main(monkeypatch, capsys, "data", "make", "halfcheetah", "--steps", "120")
    assert code == 2 and "--overwrite" in err
    code, out, _ = run_main(monkeypatch, capsys, "data", "list")
    assert out.strip() == "wmbench/halfcheetah/random-v0\t120 steps"
    code, out, _ = run_main(monkeypatch, capsys, "data", "show", "wmbench/halfcheetah/random-v0")
    assert '"steps": 120' in out and '"behaviour_policy": "random"' in out and '"seed": 3' in out
    code, _, err = run_main(monkeypatch, capsys, "data", "make", "halfcheetah", "--steps", "0")
    assert code == 2 and "--steps must be from 2 to" in err
    code, _, err = run_main(monkeypatch, capsys, "data", "make", "halfcheetah", "--policy", "ppo")
    assert code == 2 and "unknown behaviour policy 'ppo'; choose one of: random, sac" in err

    code, out, _ = run_main(monkeypatch, capsys, "data", "make", "walker2d", "--policy", "sac", "--steps", "300",
                            "--final-episodes", "1")
    assert code == 0 and "wmbench/walker2d/sac-replay-v0" in out and "300 steps" in out
    assert "wmbench/walker2d/sac-final-v0" in out and "1 episodes" in out
    code, out, _ = run_main(monkeypatch, capsys, "data", "show", "wmbench/walker2d/sac-final-v0")
    assert '"behaviour_policy": "sac-final"' in out and '"episodes": 1' in out


@pytest.mark.parametrize("args, expected", [
    (["--models", "mlp-ensemble,nope"], "unknown model 'nope'"),
    (["--envs", "hopper,ant"], "unknown env 'ant'"),
    (["--horizons", "10,x"], "--horizons takes a comma-separated list"),
    (["--seeds", ""], "--seeds takes a comma-separated list"),
    (["--seeds", "0,1,0"], "--seeds 0,1,0: 0 given twice"),
    (["--models", "linear,linear"], "--models linear,linear: linear given twice"),
    (["--profile", "huge"], "unknown profile 'huge'"),
    (["--workers", "0"], "--workers must be from 1 to 256"),
    (["--batch-seeds", "--backend", "ray"], "--batch-seeds trains on this machine"),
    (["--grid", "foo=1,2"], "--grid takes SECTION.KEY=V1,V2,..."),  # each error names the option it came from
    (["--grid", "nosuch.key=1,2"], "unknown config section 'nosuch' in --grid"),
    (["--grid", "policy.lr=abc,1"], "--grid policy.lr: expected a number"),
    (["--grid", "data.train_transitions=-5,5000"], "data.train_transitions must be >= 0, got -5 (from --grid)"),
])
def test_sweep_bad_input_fails_before_running_anything(monkeypatch, capsys, args, expected):
    code, out, err = run_main(monkeypatch, capsys, "sweep", "--profile", "smoke", *args)
    assert code == 2 and expected in err and "sweep:" not in out
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize("args, expected", [
    (["--precision", "fp8"], "unknown precision 'fp8'; choose one of: fp32, bf16"),
    (["--models", "nope"], "unknown model 'nope'"),
    (["--batch", "0"], "--batch (1 to 1,000,000), --repeats (1 to 1,000), --updates"),
    (["--train", "--updates", "0"], "--batch (1 to 1,000,000), --repeats (1 to 1,000), --updates"),
    (["--train", "--seeds", "0"], "--updates (1 to 1,000,000) and --seeds (1 to 64) must be in range"),
    (["--train", "--precision", "tf32"], "precision = tf32 is a CUDA feature"),
    (["--precision", "tf32"], "unknown precision 'tf32'; choose one of: fp32, bf16"),  # generation has no tf32
])
def test_bench_bad_input(monkeypatch, capsys, args, expected):
    code, _, err = run_main(monkeypatch, capsys, "bench", "--profile", "smoke", "--horizons", "2", *args)
    assert code == 2 and expected in err and len(err.strip().splitlines()) == 1


def test_models_lists_registered_models_with_their_config(monkeypatch, capsys):
    code, out, _ = run_main(monkeypatch, capsys, "models", "--config")
    assert code == 0 and "mlp-ensemble" in out and "elites = 5" in out
    assert "compile = false" in out and "precision = \"fp32\"" in out, "defaults as --set and TOML write them"


def test_a_default_sweep_evaluates_the_reference_models():
    """`wmbench sweep` with no --models sweeps what `make reference-study` sweeps: the reference's models."""
    from pathlib import Path

    from wmbench.cli.run import REFERENCE_MODELS

    makefile = (Path(__file__).parents[1] / "Makefile").read_text()
    make_models = next(line.split(":=")[1].strip() for line in makefile.splitlines()
                       if line.startswith("REFERENCE_MODELS"))
    assert sorted(make_models.split(",")) == sorted(REFERENCE_MODELS.split(","))


def test_help_explains_the_commands(monkeypatch, capsys):
    code, out, _ = run_main(monkeypatch, capsys, "evaluate", "--help")
    assert code == 0 and "--horizon" in out and "smoke" in out
    code, out, _ = run_main(monkeypatch, capsys, "sweep", "--help")
    assert code == 0 and "'wmbench[ray]'" in out  # square brackets survive the help's markup
    code, out, _ = run_main(monkeypatch, capsys, "--help")
    listed = " ".join(out.replace("│", " ").split())
    assert code == 0 and "evaluate Train (or load) a world model, generate on-policy trajectories, replay them in " \
        "the simulator and store the errors. rl" in listed, "the command list shows each command's first sentence"


def test_bf16_generation_is_a_cell_of_its_own(hopper_dataset, tmp_path):
    store = ResultsStore(tmp_path)
    fp32 = EvalRequest(model="polygrad", env="hopper", horizon=4, profile="smoke")
    bf16 = EvalRequest(**{**fp32.__dict__, "precision": "bf16"})
    tables = [evaluate(r, store=store, progress=False, say=lambda m: None) for r in (fp32, bf16)]
    assert "__h4__s0__bf16__" in store.path(cell_of(bf16)).name
    assert "bf16" not in store.path(cell_of(fp32)).name
    assert set(store.read()["precision"]) == {"fp32", "bf16"}
    mse = [t.loc[t["metric"] == "mse", "value"].to_numpy() for t in tables]
    assert np.isfinite(mse[1]).all() and not np.array_equal(mse[0], mse[1]), "bf16 generation differs"


def test_workspace_problems_get_one_line(monkeypatch, capsys, hopper_dataset, tmp_path):
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    monkeypatch.setenv("WMBENCH_RESULTS", str(a_file))
    code, _, err = run_main(monkeypatch, capsys, "evaluate", "--model", "linear", "--env", "hopper", "--profile",
                            "smoke")
    assert code == 2 and "Not a directory" in err and "check the workspace" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_a_stored_cell_is_read_without_writing_anything(monkeypatch, hopper_dataset, tmp_path):
    store = ResultsStore(tmp_path / "results")
    request = EvalRequest(model="linear", env="hopper", profile="smoke")
    stored = evaluate(request, store=store, progress=False, say=lambda m: None)

    def read_only(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path))

    monkeypatch.setattr(ResultsStore, "lock", read_only)  # as in a read-only workspace: no lock can be taken
    again = evaluate(request, store=store, progress=False, say=lambda m: None)
    pd.testing.assert_frame_equal(again, stored)


def test_reading_commands_say_what_the_store_lacks(monkeypatch, capsys, tmp_path):
    store = ResultsStore(tmp_path / "results")
    code, out, err = run_main(monkeypatch, capsys, "results", "--results", str(store.root.parent))
    assert code == 0 and out == "" and "no results in" in err, "an empty store says so instead of an empty table"
    for args in (["report", "--against", "data.train_transitions", "--out", str(tmp_path / "out")],
                 ["report", "--out", str(tmp_path / "out")]):
        code, _, err = run_main(monkeypatch, capsys, *args, "--results", str(store.root.parent))
        assert code == 2 and err.strip() == "wmbench: error: the results store is empty: run `wmbench evaluate` " \
                                            "or `wmbench sweep` first", err
    code, _, err = run_main(monkeypatch, capsys, "compare", "polygrad", "linear", "--results", str(store.root.parent))
    assert code == 2 and f"no evaluation results in {store.root.parent}: run `wmbench evaluate`" in err, err
    rows = pd.DataFrame({"metric": ["mse"], "step": [1], "value": [0.5], "n_trajectories": [16]})
    for model, env in (("linear", "hopper"), ("polygrad", "walker2d")):
        store.write(Cell(model, env, f"wmbench/{env}/random-v0", "bc", "smoke", 1, 0), rows)
    code, _, err = run_main(monkeypatch, capsys, "compare", "linear", "linear", "--results", str(store.root))
    assert code == 2 and "the store has one linear: compare two models" in err, err
    code, out, _ = run_main(monkeypatch, capsys, "results", "--results", str(store.root), "--format", "csv",
                            "--env", "hopper")
    assert code == 0 and list(pd.read_csv(io.StringIO(out))["model"]) == ["linear"]
    code, _, err = run_main(monkeypatch, capsys, "results", "--results", str(store.root), "--env", "mars")
    assert code == 2 and err.strip() == "wmbench: error: no stored row has env 'mars'; the store's: hopper, walker2d"
    dims = pd.DataFrame({"metric": ["mse_dim[torso angle]", "mse_dim[thigh angle]"], "step": [1, 1],
                         "value": [0.1, 0.2], "n_trajectories": [16, 16]})
    store.write(Cell("linear", "hopper", "wmbench/hopper/random-v0", "bc", "smoke", 2, 0), dims)
    code, _, err = run_main(monkeypatch, capsys, "results", "--results", str(store.root), "--metric", "mse_dimm")
    assert code == 2 and err.strip().endswith("the store's: mse, mse_dim[...]"), "a family of names is one entry"
    code, _, err = run_main(monkeypatch, capsys, "results", "--results", str(store.root), "--env", "hopper",
                            "--model", "polygrad")
    assert code == 2 and "no stored row matches these filters together" in err
