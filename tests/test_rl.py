"""`wmbench rl`: the online loop learns on a linear system through an exact model, resumes exactly,
stores the same rows for every model and PPO, refuses bad settings in one line; the models' online
hooks do what they say."""

import contextlib
import dataclasses
import math

import pandas as pd
import pytest
import torch
from test_imagination import optimal_direction

from wmbench import rl
from wmbench.models.base import get_model_class
from wmbench.results import RL_DATASET, ResultsStore
from wmbench.rl import loop as rl_loop
from wmbench.testing import LinearSystem, linear_real_env, simple_policy

LOOP = rl.ImaginationConfig(random_steps=200, steps_per_iteration=200, model_updates_per_step=0.5,
                            agent_updates_per_step=0.25, pretrain_updates=50, imagined=128, horizon=10,
                            actor_lr=1e-3, critic_lr=1e-3, hidden=64, error_trajectories=32)


def test_the_loop_with_an_exact_model_moves_the_real_return_towards_the_optimum():
    system = LinearSystem.random(obs_dim=3, act_dim=2, seed=0)
    real = linear_real_env(system, length=50)
    settings = rl.RLConfig(env_steps=1400, eval_every=600, eval_episodes=8)
    rows = rl.run_imagination(get_model_class("linear")(3, 2), real, settings, LOOP, seed=0, progress=False)

    returns = rows[rows["metric"] == "return"].set_index("step")["value"]
    assert list(returns.index) == [0, 600, 1200, 1400]
    best = optimal_direction(system, LOOP.gamma, 50)
    optimum = rl.episode_returns(real, lambda obs: best, settings.eval_episodes, rl.eval_seed(0))[0].mean()
    gap = optimum - returns[0]
    assert gap > 0 and returns[1400] > returns[0] + 0.5 * gap, (returns.to_dict(), optimum)
    # the exact model's error on fresh real steps is ~0 (least squares on noise-free dynamics)
    assert rows.loc[rows["metric"] == "one_step_mse", "value"].max() < 1e-6
    updates = rows[rows["metric"] == "agent_updates"].set_index("step")["value"]
    assert updates[1400] == round(0.25 * 1200)  # every real step after the random ones, at the ratio


def tiny_polygrad():
    torch.manual_seed(0)  # its initial weights
    cls = get_model_class("polygrad")
    return cls(3, 2, cls.Config(diffusion_steps=4, width=32, blocks=1, horizon=4, batch_size=32, ema_start=5))


@contextlib.contextmanager
def dies_at_second_save(monkeypatch, module):
    """Inside the block, `module.save_state` saves and then, at its second call, raises KeyboardInterrupt
    (an interrupted run with a state to resume from); the real one is back afterwards."""
    save, saves = module.save_state, []

    def save_then_die(path, value):
        save(path, value)
        saves.append(path)
        if len(saves) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(module, "save_state", save_then_die)
    try:
        yield
    finally:
        monkeypatch.setattr(module, "save_state", save)


def test_an_interrupted_run_resumes_and_ends_as_an_uninterrupted_one(tmp_path, monkeypatch):
    real = linear_real_env(LinearSystem.random(obs_dim=3, act_dim=2, noise_std=0.05, seed=1), length=30)
    settings = rl.RLConfig(env_steps=500, eval_every=200, eval_episodes=2)
    loop = dataclasses.replace(LOOP, random_steps=100, steps_per_iteration=100, imagined=16, horizon=4,
                               agent_updates_per_step=0.05, pretrain_updates=10, model_updates_per_step=0.1)
    whole = rl.run_imagination(tiny_polygrad(), real, settings, loop, seed=3, progress=False)

    state = tmp_path / "run.rl-state.pt"
    with dies_at_second_save(monkeypatch, rl_loop), pytest.raises(KeyboardInterrupt):
        rl.run_imagination(tiny_polygrad(), real, settings, loop, seed=3, state_path=state, progress=False)
    resumed = rl.run_imagination(tiny_polygrad(), real, settings, loop, seed=3, state_path=state, progress=False)

    def results(frame):  # timings differ between runs; everything else must not
        return frame[~frame["metric"].str.startswith("wall_")].reset_index(drop=True)

    assert results(whole)["metric"].isin(["return", "one_step_mse", "delta"]).sum() > 5
    pd.testing.assert_frame_equal(results(resumed), results(whole))


def test_fit_online_trains_from_the_current_weights_for_the_given_updates():
    system = LinearSystem.random(obs_dim=3, act_dim=2, seed=0)
    data = system.dataset(episodes=10, length=30)
    model = tiny_polygrad()
    report = model.fit_online(data, 7, generator=torch.Generator().manual_seed(0))
    assert report.steps == 7 and model.config.train_steps == tiny_polygrad().config.train_steps
    before = [p.detach().clone() for p in model.parameters()]
    model.fit_online(data, 3, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():  # 3 updates: no EMA step, so only the forced last one keeps them
        moved = [(a - b).abs().max().item() for a, b in zip(before, model.parameters())]
    assert 0 < max(moved) < 1.0  # a few more updates from where it was, not a fresh start


def test_polygrad_follows_the_policy_one_delta_step_per_batch():
    model, policy = tiny_polygrad(), simple_policy(3, 2, std=0.5)
    obs = torch.randn(64, 3)
    traj = model.rollout(obs, policy, 4, generator=torch.Generator().manual_seed(0))
    z_std = float(policy.standardise(traj.observations[:, :-1], traj.actions).std(dim=(0, 1)).mean())
    before = math.log(model.delta)
    model.follow_policy(policy, traj, rate=0.1)
    assert len(model.delta_history) == 1
    assert math.log(model.delta) == pytest.approx(min(before + 0.1 * (z_std - 1), 2 * math.log(0.5)), abs=1e-5)


@pytest.fixture
def rl_home(tmp_path, monkeypatch):
    """Results and RL states of this test alone."""
    monkeypatch.setenv("WMBENCH_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("WMBENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path


def test_smoke_runs_of_a_world_model_and_ppo_store_the_same_rows(rl_home):
    from typer.testing import CliRunner

    from wmbench.cli import app

    runner = CliRunner()
    for model in ("mlp-ensemble", "ppo"):
        result = runner.invoke(app, ["rl", "--model", model, "--env", "hopper", "--profile", "smoke"])
        assert result.exit_code == 0, result.output
        assert "env step" in result.output and "return" in result.output
    table = ResultsStore(rl_home / "results").read(dataset=RL_DATASET)
    returns = table[table["metric"] == "return"]
    steps = {model: sorted(set(group["step"])) for model, group in returns.groupby("model")}
    assert steps == {"mlp-ensemble": [0, 400, 800], "ppo": [0, 400, 800]}
    shared = {"return", "return_std", "episode_length", "policy_std", "wall_evaluation_s"}
    for model, group in table.groupby("model"):
        assert shared <= set(group["metric"]), model
        assert group.loc[group["metric"] == "return", "value"].notna().all()
    ensemble = table[table["model"] == "mlp-ensemble"]
    assert ensemble.loc[ensemble["metric"] == "one_step_mse", "value"].gt(0).all()
    # finished: no state left
    assert list((rl_home / "cache" / "rl").rglob("*")) and not list((rl_home / "cache").rglob("*.rl-state.pt"))

    again = runner.invoke(app, ["rl", "--model", "ppo", "--env", "hopper", "--profile", "smoke"])
    assert again.exit_code == 0 and "already in the results store" in again.output


@pytest.mark.parametrize("args, message", [
    (["--model", "polygrad", "--env-steps", "100"], "imagination.random_steps (400) must be positive and below"),
    (["--model", "nope"], "unknown model 'nope'"),
    (["--model", "ppo", "--set", "rl.eval_every=0"], "rl.eval_every must be >= 1, got 0"),
    (["--model", "ppo", "--set", "ppo.batch_size=1"], "ppo.batch_size must be >= 2"),
    (["--model", "ppo", "--seed", "-3"], "--seed must be from 0 to"),
    (["--model", "ppo", "--env-steps", "0"], "rl.env_steps must be >= 1, got 0 (from --env-steps)"),
    (["--model", "ppo", "--env", "pong"], "unknown env"),
])
def test_bad_settings_get_one_line(rl_home, monkeypatch, capsys, args, message):
    from test_cli import run_main

    code, _, err = run_main(monkeypatch, capsys, "rl", "--profile", "smoke", *args)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (rl_home / "results").exists()
