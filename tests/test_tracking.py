"""Logs of a run while it happens: TensorBoard scalars read back with TensorBoard's own reader hold
the training loss at the logged steps and the final metrics; a resumed training continues its log
with each step once; without `--log` nothing is written; a missing back-end is one line."""

import sys

import pandas as pd
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from test_cli import run_main
from test_training import CONFIG, DATA, Interrupt

from wmbench import tracking
from wmbench.models import training
from wmbench.models.polygrad import PolyGRAD, PolyGRADConfig
from wmbench.models.training import EMA
from wmbench.results import ResultsStore
from wmbench.testing import simple_policy


def scalars(folder, tag: str) -> list[tuple[int, float]]:
    """`(step, value)` of a tag, as TensorBoard shows it (a resumed run's purged steps hidden)."""
    events = EventAccumulator(str(folder))
    events.Reload()
    return [(event.step, event.value) for event in events.Scalars(tag)]


def logged_training(folder, state_path=None) -> None:
    """A small PolyGRAD with delta tuned during training, logged to TensorBoard under `folder`."""
    with tracking.watch(tracking.Tracker(tracking.TensorBoardLogger(folder))):
        torch.manual_seed(0)
        model = PolyGRAD(3, 2, PolyGRADConfig(**CONFIG))
        model.fit(DATA, generator=torch.Generator().manual_seed(0), progress=False, state_path=state_path,
                  policy=simple_policy(3, 2))


def test_a_resumed_training_continues_its_log_with_each_step_once(tmp_path, monkeypatch):
    monkeypatch.setattr(training, "LOG_EVERY", 10)
    logged_training(tmp_path / "reference")
    update = EMA.update

    def failing_update(self, model, step, last=False):
        update(self, model, step, last)
        if step == 57:  # after the loss of step 50 and tuning step 2 are logged, the state saved at 40
            raise Interrupt

    monkeypatch.setattr(EMA, "update", failing_update)
    state = tmp_path / "model.train-state.pt"
    with pytest.raises(Interrupt):
        logged_training(tmp_path / "run", state)
    assert [step for step, _ in scalars(tmp_path / "run" / "train", "train/loss")] == [10, 20, 30, 40, 50]
    monkeypatch.setattr(EMA, "update", update)
    logged_training(tmp_path / "run", state)

    for group, tag in [("train", "train/loss"), ("train", "train/grad_norm"), ("tune", "tune/delta")]:
        reference, resumed = scalars(tmp_path / "reference" / group, tag), scalars(tmp_path / "run" / group, tag)
        assert resumed == reference, tag  # every step once, each value the uninterrupted training's
    assert [step for step, _ in scalars(tmp_path / "run" / "train", "train/loss")] == [10, 20, 30, 40, 50, 60]
    assert [step for step, _ in scalars(tmp_path / "run" / "tune", "tune/delta")] == [1, 2]
    lags = [lag for _, lag in scalars(tmp_path / "run" / "train", "train/ema_gap")]
    assert all(0 < lag < 0.5 for lag in lags), lags  # averaging from ema_start (10) on: behind, not far


def test_evaluate_logs_training_tuning_and_results_and_nothing_without_log(monkeypatch, capsys, hopper_dataset,
                                                                           workspace, tmp_path):
    monkeypatch.setenv("WMBENCH_RUNS", str(tmp_path / "runs"))
    code, _, err = run_main(monkeypatch, capsys, "evaluate", "--env", "hopper", "--profile", "smoke", "--model",
                            "polygrad", "--set", "polygrad.train_steps=250", "--eval-every", "100",
                            "--log", "tensorboard")
    assert code == 0, err
    store = ResultsStore(workspace["WMBENCH_RESULTS"])
    path = max(store.root.glob("hopper/polygrad/*.csv.gz"), key=lambda p: p.stat().st_mtime)
    rows = pd.read_csv(path)
    run = tmp_path / "runs" / path.relative_to(store.root).with_suffix("")
    # the training's steps alone (the short trainings that count FLOPs for the curve log nothing)
    assert [step for step, _ in scalars(run / "train", "train/loss")] == [100, 200, 250]
    curve = rows[(rows["metric"] == "curve_mse") & (rows["step"] == 10)]
    assert scalars(run / "curve", "curve/mse_10") == [(s, pytest.approx(v, rel=1e-6))
                                                      for s, v in zip(curve["train_step"], curve["value"])]
    assert [step for step, _ in scalars(run / "curve", "curve/mse_10")] == [100, 200, 250]
    mse = rows[rows["metric"] == "mse"]
    steps, values = zip(*scalars(run / "eval", "eval/mse"))  # the error against the horizon
    assert list(steps) == list(mse["step"]) and values == pytest.approx(list(mse["value"]), rel=1e-6)
    z_std = rows.loc[rows["metric"] == "action_z_std", "value"].iloc[0]
    assert scalars(run / "eval", "eval/action_z_std") == [(0, pytest.approx(z_std, rel=1e-6))]
    deltas = rows.loc[rows["metric"] == "delta", "value"]  # the final model's tuning path (not the snapshots')
    assert [delta for _, delta in scalars(run / "tune", "tune/delta")] == pytest.approx(list(deltas), rel=1e-6)
    assert len(scalars(run / "tune", "tune/std_z")) == len(deltas) > 0

    other = tmp_path / "quiet"
    monkeypatch.setenv("WMBENCH_RUNS", str(other))
    code, _, err = run_main(monkeypatch, capsys, "evaluate", "--env", "hopper", "--profile", "smoke", "--model",
                            "polygrad", "--set", "polygrad.train_steps=120")
    assert code == 0, err
    assert not other.exists(), "without --log nothing is written"


def test_a_missing_or_unknown_back_end_is_one_line(monkeypatch, capsys, hopper_dataset, workspace):
    monkeypatch.setitem(sys.modules, "wandb", None)  # as if not installed
    unknown = "unknown log back-end 'tensorbored'; choose one of: tensorboard, wandb, mlflow, none"
    for backend, message in [("wandb", "--log wandb needs the wandb package: pip install 'wmbench[wandb]'"),
                             ("tensorbored", unknown)]:
        for command in (["evaluate", "--env", "hopper"], ["sweep", "--envs", "hopper"]):
            command += ["--profile", "smoke"]
            code, _, err = run_main(monkeypatch, capsys, *command, "--log", backend)
            assert code == 2 and err.strip().splitlines() == [f"wmbench: error: {message}"], err


def test_mlflow_on_ray_is_refused_before_any_work(monkeypatch, capsys, workspace):
    code, out, err = run_main(monkeypatch, capsys, "sweep", "--envs", "hopper", "--profile", "smoke",
                              "--backend", "ray", "--log", "mlflow")
    assert code == 2 and "sweep:" not in out
    assert err.strip().splitlines() == ["wmbench: error: --log mlflow keeps one local store per machine, which Ray "
                                        "tasks cannot share; with --backend ray log to tensorboard or wandb"]


def test_an_rl_run_logs_each_evaluation(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from wmbench.cli import app

    for name in ("WMBENCH_RESULTS", "WMBENCH_CACHE", "WMBENCH_RUNS"):
        monkeypatch.setenv(name, str(tmp_path / name))
    result = CliRunner().invoke(app, ["rl", "--model", "ppo", "--env", "hopper", "--profile", "smoke",
                                      "--log", "tensorboard"])
    assert result.exit_code == 0, result.output
    table = ResultsStore(tmp_path / "WMBENCH_RESULTS").read()
    returns = table[table["metric"] == "return"]
    (run,) = (tmp_path / "WMBENCH_RUNS" / "rl").glob("*/*/*/rl")
    steps, values = zip(*scalars(run, "rl/return"))
    assert list(steps) == list(returns["step"]) and values == pytest.approx(list(returns["value"]), rel=1e-6)
    assert [step for step, _ in scalars(run, "rl/wall_evaluation_s")] == [0, 400, 800]


@pytest.mark.skipif(not __import__("importlib").util.find_spec("mlflow"), reason="needs mlflow")
def test_mlflow_continues_the_run_of_the_same_name(tmp_path):
    from mlflow.tracking import MlflowClient

    first = tracking.MLflowLogger(tmp_path, "hopper/polygrad/cell")
    first.params({"config": {"width": 64}})
    first.scalars("train", {"loss": 1.0}, 100)
    first.close()
    second = tracking.MLflowLogger(tmp_path, "hopper/polygrad/cell")
    second.params({"config": {"width": 64}})
    second.scalars("train", {"loss": 0.5}, 200)
    second.close()
    assert second.run_id == first.run_id
    client = MlflowClient(tracking_uri=tmp_path.resolve().as_uri())
    history = client.get_metric_history(first.run_id, "train/loss")
    assert [(m.step, m.value) for m in history] == [(100, 1.0), (200, 0.5)]
    assert client.get_run(first.run_id).data.params == {"config.width": "64"}
