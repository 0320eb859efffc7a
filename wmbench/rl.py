"""`wmbench rl`: reinforcement learning in a world model's imagination (the paper's Algorithm 3) as a
downstream score of every world model, next to model-free PPO at the same number of real steps.

The online loop, for any registered world model (`run_imagination`):

1. `random_steps` uniform random real steps fill the replay buffer; the model trains `pretrain_updates`
   updates on it.
2. Each iteration: the actor-critic (`wmbench.imagination`, shared by every model) takes
   `agent_updates_per_step * steps_per_iteration` updates, each on `imagined` trajectories that the
   model generates from real start states of the buffer under the current actor (PolyGRAD's delta
   takes one step of its rule per batch, as in the paper's online runs); the actor then collects
   `steps_per_iteration` real steps (actions sampled, executed clipped); the model's error on these
   fresh steps is measured before it trains `model_updates_per_step * steps_per_iteration` more
   updates on the grown buffer (`WorldModel.fit_online`, from its current weights).
3. Every `eval_every` real steps (and at step 0): the real return of the actor's mean action over
   `eval_episodes` episodes, the actor's std, the model's one-step error on the fresh steps, and
   the wall time of each stage so far, stored as rows (`step` = real environment steps).

The authors interleave at a finer grain (4 real steps, one actor-critic update, 4 model updates);
iterations of `steps_per_iteration` keep those ratios while refitting the normalisers once per
iteration rather than once per episode (`docs/FIDELITY.md`).

Resuming: at each evaluation the whole loop state (buffer, networks, optimisers, random-number
generators, rows, timers) is written atomically and the running episode is cut, so a rerun of an
interrupted run continues from its last evaluation and, on a CPU, ends with the numbers of an
uninterrupted one. PPO (stable-baselines3, `run_ppo`) resumes from its agent saved at its last
evaluation, with the rollout then in progress collected again.
"""

from __future__ import annotations

import dataclasses
import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import gymnasium as gym
import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from wmbench import metrics
from wmbench.config import build_config, canonical_overrides, config_hash, config_section, identity, param, profile_label
from wmbench.data import Normaliser, OfflineData, simulator_state
from wmbench.envs import get_env
from wmbench.errors import CheckpointError, UsageError
from wmbench.evaluate import model_config, resolve_device
from wmbench.imagination import ActorCritic, ActorCriticConfig
from wmbench.models.base import WorldModel, get_model_class
from wmbench.paths import atomic_write_bytes, checkpoints_root
from wmbench.provenance import provenance
from wmbench.results import RL_DATASET, Cell, ResultsStore
from wmbench.timing import Stopwatch

PPO = "ppo"  # `--model ppo`: the model-free baseline


@config_section("rl")
@dataclass
class RLConfig:
    """What every `wmbench rl` run shares, PPO included."""

    env_steps: int = param(1_000_000, "real environment steps of a run (the paper: 1M; 1.5M on HalfCheetah)")
    eval_every: int = param(10_000, "real steps between evaluations of the policy")
    eval_episodes: int = param(10, "episodes of the deterministic (mean) action per evaluation")


@config_section("imagination")
@dataclass
class ImaginationConfig(ActorCriticConfig):
    """The online loop of RL in imagination, and its actor-critic (POLYGRAD_NOTES)."""

    random_steps: int = param(5000, "uniform random real steps that start the replay buffer")
    steps_per_iteration: int = param(1000, "real steps collected between the loop's training phases")
    model_updates_per_step: float = param(1.0, "world-model updates per real step (the authors: 1)")
    agent_updates_per_step: float = param(0.25, "actor-critic updates per real step (the authors: 0.25)")
    pretrain_updates: int = param(1000, "world-model updates on the random steps before the first actor update")
    delta_lr: float = param(3e-3, "PolyGRAD: rate of delta's rule, one step per imagined batch (paper's online runs)")
    error_trajectories: int = param(256, "trajectories from fresh real states that measure the model's error")


@config_section("ppo")
@dataclass
class PPOConfig:
    """The model-free baseline: stable-baselines3 PPO (its defaults)."""

    n_steps: int = param(2048, "real steps per PPO rollout")
    batch_size: int = param(64, "minibatch size")
    n_epochs: int = param(10, "epochs per rollout")
    learning_rate: float = param(3e-4, "Adam learning rate")


@dataclass(frozen=True)
class RLRequest:
    """What a user asks `wmbench rl` for; unset fields come from the profile."""

    model: str
    env: str
    seed: int = 0
    profile: str = "quick"
    overrides: tuple[str, ...] = ()
    env_steps: int | None = None
    device: str = "cpu"


# ----------------------------------------------------------------------------- the real environment

@dataclass(frozen=True)
class RealEnv:
    """The real environment of a run: a gymnasium env, the simulator state of its current observation
    (`qpos`, `qvel`), and a replay of actions from such states (the model's error is measured against it)."""

    name: str
    obs_dim: int
    act_dim: int
    make: Callable[[], gym.Env]
    sim_state: Callable[[gym.Env], tuple[np.ndarray, np.ndarray]]
    replay: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]  # qpos, qvel, actions [B, H, act] -> obs

    @classmethod
    def mujoco(cls, name: str) -> RealEnv:
        from wmbench.oracle import Oracle

        spec = get_env(name)
        oracle = Oracle(spec)
        return cls(spec.name, spec.obs_dim, spec.act_dim, spec.make, simulator_state,
                   lambda qpos, qvel, actions: oracle.replay(qpos, qvel, actions).observations)


class Collector:
    """Runs the real env with a policy and hands back what it saw as `OfflineData`. The env carries on
    across calls (an episode spans collections: each call's part of it is a segment of its own);
    `cut` ends the episode in progress, so that after a cut the loop's state holds no env state."""

    def __init__(self, real: RealEnv, seed: int, episodes: int = 0):
        self.real, self.seed, self.episodes = real, seed, episodes
        self.env, self.obs = real.make(), None

    def collect(self, steps: int, act: Callable[[np.ndarray], np.ndarray]) -> OfflineData:
        keys = ("observations", "actions", "rewards", "next_observations", "terminals", "qpos", "qvel")
        columns, starts = {key: [] for key in keys}, [0]
        for i in range(steps):
            if self.obs is None:
                self.obs, _ = self.env.reset(seed=self.seed * 100_000 + self.episodes)
                self.episodes += 1
                if i:
                    starts.append(i)
            qpos, qvel = self.real.sim_state(self.env)
            action = np.clip(np.asarray(act(self.obs), dtype=np.float32), -1.0, 1.0)  # stored as executed
            next_obs, reward, terminated, truncated, _ = self.env.step(action)
            for key, value in zip(keys, (self.obs, action, reward, next_obs, terminated, qpos, qvel)):
                columns[key].append(value)
            self.obs = None if terminated or truncated else next_obs
        arrays = {key: np.asarray(value) for key, value in columns.items()}
        return OfflineData(
            dataset_id=f"online/{self.real.name}", env=self.real.name,
            observations=arrays["observations"].astype(np.float32), actions=arrays["actions"],
            rewards=arrays["rewards"].astype(np.float32),
            next_observations=arrays["next_observations"].astype(np.float32),
            terminals=arrays["terminals"].astype(bool), episode_starts=np.asarray(starts + [steps], np.int64),
            qpos=arrays["qpos"].astype(np.float64), qvel=arrays["qvel"].astype(np.float64),
        )

    def cut(self) -> None:
        self.obs = None


def concatenate(parts: list[OfflineData]) -> OfflineData:
    """The transitions of `parts`, one after the other (each part's episodes kept apart)."""
    offsets = np.cumsum([0] + [p.n_transitions for p in parts])
    join = lambda name: np.concatenate([getattr(p, name) for p in parts])  # noqa: E731
    return OfflineData(
        dataset_id=parts[0].dataset_id, env=parts[0].env, observations=join("observations"), actions=join("actions"),
        rewards=join("rewards"), next_observations=join("next_observations"), terminals=join("terminals"),
        episode_starts=np.concatenate([p.episode_starts[:-1] + o for p, o in zip(parts, offsets)] + [offsets[-1:]]),
        qpos=join("qpos"), qvel=join("qvel"),
    )


def episode_returns(real: RealEnv, act: Callable[[np.ndarray], np.ndarray], episodes: int,
                    seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`(returns, lengths)` of `episodes` episodes of `act` from resets seeded `seed`, `seed + 1`, ..."""
    env, returns, lengths = real.make(), [], []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        total, length, done = 0.0, 0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(np.clip(act(obs), -1.0, 1.0))
            total, length, done = total + float(reward), length + 1, terminated or truncated
        returns.append(total)
        lengths.append(length)
    env.close()
    return np.asarray(returns), np.asarray(lengths)


def eval_seed(seed: int) -> int:
    """Reset seeds of a run's evaluation episodes: the same for every model at one seed."""
    return 1_000_000 + 1000 * seed


def model_error(model: WorldModel, actor, fresh: OfflineData, real: RealEnv, horizon: int, n: int,
                generator: torch.Generator) -> tuple[float, float]:
    """`(error at step 1, error at step horizon)`: state MSE of the model's trajectories from fresh
    real states under `actor`, against the simulator replaying their actions (the paper's protocol)."""
    device = model.device
    index = torch.randint(0, fresh.n_transitions, (min(n, fresh.n_transitions),), generator=generator,
                          device=generator.device).cpu().numpy()
    with torch.no_grad():
        traj = model.rollout(torch.as_tensor(fresh.observations[index], device=device), actor, horizon,
                             generator=generator)
    true = real.replay(fresh.qpos[index], fresh.qvel[index], traj.actions.cpu().numpy())
    mse = metrics.state_mse(traj.observations.float().cpu().numpy(), true)
    return float(mse[1]), float(mse[horizon])


# ----------------------------------------------------------------------------- RL in imagination

def _rng_state(generator: torch.Generator, rng: np.random.Generator) -> dict:
    return {"generator": generator.get_state(), "torch": torch.get_rng_state(), "numpy": rng.bit_generator.state}


def _set_rng_state(state: dict, generator: torch.Generator, rng: np.random.Generator) -> None:
    generator.set_state(state["generator"])
    torch.set_rng_state(state["torch"])
    rng.bit_generator.state = state["numpy"]


def save_state(path: Path, state: dict) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_state(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=False)  # numpy arrays and rows: our own file
    except Exception as err:
        raise CheckpointError(f"RL state {path} is corrupt or unreadable ({type(err).__name__}); delete it to "
                              "start the run again") from err


def run_imagination(model: WorldModel, real: RealEnv, rl: RLConfig, config: ImaginationConfig, *, seed: int,
                    state_path: Path | None = None, device: str = "cpu", progress: bool = True) -> pd.DataFrame:
    """The online loop (module docstring) for an untrained `model` in `real`: its rows
    `(metric, step, value)`, `step` counting real environment steps."""
    check_configs(rl, config)
    torch.manual_seed(seed)
    generator, rng = torch.Generator(device).manual_seed(seed), np.random.default_rng(seed)
    model.to(device)
    collector, watch = Collector(real, seed), Stopwatch(device)
    saved = load_state(state_path) if state_path is not None else None
    if saved is None:
        with watch("real_steps"):
            buffer = collector.collect(config.random_steps, lambda obs: rng.uniform(-1, 1, real.act_dim))
    else:
        buffer = saved["buffer"]
    # the actor and critic see states z-scored by the random steps' statistics, fixed for the run
    learner = ActorCritic(real.obs_dim, real.act_dim, config, obs_norm=Normaliser.fit(buffer.observations[
        :config.random_steps])).to(device)
    if saved is None:
        log = RunLog(rows=[], counts={"env_step": 0, "model_updates": 0, "agent_updates": 0, "last_eval": 0})
        log.evaluate(0, learner.actor, real, rl, seed, watch, model=model)  # the initial policy
        log.counts["env_step"] = config.random_steps
        if config.pretrain_updates:
            with watch("world_model"):
                model.fit_online(buffer, config.pretrain_updates, generator=generator)
        log.counts["model_updates"] = config.pretrain_updates
    else:
        learner.load_state_dict(saved["learner"])
        model.load_state_dict(saved["model"])
        log, watch.seconds, collector.episodes = saved["log"], dict(saved["seconds"]), saved["episodes"]
        _set_rng_state(saved["rng"], generator, rng)

    def act(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            obs = torch.as_tensor(obs, dtype=torch.float32, device=device)
            return learner.actor.sample(obs[None], generator=generator)[0].cpu().numpy()

    counts = log.counts
    bar = tqdm(total=rl.env_steps, initial=counts["env_step"], desc=f"rl {model.name} {real.name}", unit="step",
               disable=not progress, leave=False)
    while True:
        if log.due(rl):
            log.evaluate(counts["env_step"], learner.actor, real, rl, seed, watch, model=model)
            collector.cut()  # the loop's state now holds no env state: a resumed run is the same run
            if state_path is not None:
                save_state(state_path, {"buffer": buffer, "learner": learner.state_dict(), "model": model.state_dict(),
                                        "log": log, "seconds": dict(watch.seconds), "episodes": collector.episodes,
                                        "rng": _rng_state(generator, rng)})
            bar.set_postfix(ret=f"{log.latest('return'):.0f}")
        if counts["env_step"] >= rl.env_steps:
            break
        steps = min(config.steps_per_iteration, rl.env_steps - counts["env_step"])
        starts = torch.as_tensor(buffer.observations, device=device)
        for _ in range(round(config.agent_updates_per_step * steps)):
            with watch("imagination"):
                index = torch.randint(0, len(starts), (config.imagined,), generator=generator, device=generator.device)
                traj = learner.imagine(model, starts[index.to(device)], generator)
                model.follow_policy(learner.actor, traj, config.delta_lr)
            with watch("actor_critic"):
                log.imagined.append(learner.update(traj)["imagined_return"])
            counts["agent_updates"] += 1
        with watch("real_steps"):
            fresh = collector.collect(steps, act)
        counts["env_step"] += steps
        bar.update(steps)
        if log.due(rl):  # measured before the model trains on these steps
            with watch("evaluation"):
                log.error = model_error(model, learner.actor, fresh, real, config.horizon, config.error_trajectories,
                                        generator)
        buffer = concatenate([buffer, fresh])
        updates = round(config.model_updates_per_step * steps)
        if updates:  # (a budget of 0 means "no cap" to some models' own loops)
            with watch("world_model"):
                model.fit_online(buffer, updates, generator=generator)
        counts["model_updates"] += updates
    bar.close()
    return log.frame()


def check_configs(rl: RLConfig, config: ImaginationConfig | None = None) -> None:
    """One clear line for settings the loop cannot run with."""
    if rl.env_steps < 1 or rl.eval_every < 1 or rl.eval_episodes < 1:
        raise UsageError(f"rl.env_steps, rl.eval_every and rl.eval_episodes must be positive, got {rl.env_steps}, "
                         f"{rl.eval_every} and {rl.eval_episodes}")
    if config is None:
        return
    if not 0 < config.random_steps < rl.env_steps:
        raise UsageError(f"imagination.random_steps ({config.random_steps}) must be positive and below the run's "
                         f"real steps ({rl.env_steps}); raise --env-steps")
    if config.steps_per_iteration < 1 or config.imagined < 1 or config.horizon < 1 or config.error_trajectories < 1:
        raise UsageError("imagination.steps_per_iteration, imagined, horizon and error_trajectories must be positive")
    if config.model_updates_per_step < 0 or config.agent_updates_per_step < 0 or config.pretrain_updates < 0:
        raise UsageError("imagination.model_updates_per_step, agent_updates_per_step and pretrain_updates must not be "
                         "negative")


@dataclass
class RunLog:
    """The rows of a run so far, and what the next evaluation reports."""

    rows: list[tuple[str, int, float]]
    counts: dict[str, int]
    imagined: list[float] = dataclasses.field(default_factory=list)  # imagined returns since the last evaluation
    error: tuple[float, float] | None = None  # the model's error on the latest fresh steps

    def due(self, rl: RLConfig) -> bool:
        """An evaluation is due at the run's end and when a multiple of `eval_every` was crossed."""
        step, last = self.counts["env_step"], self.counts["last_eval"]
        return step > last and (step // rl.eval_every > last // rl.eval_every or step >= rl.env_steps)

    def evaluate(self, step: int, actor, real: RealEnv, rl: RLConfig, seed: int, watch: Stopwatch,
                 model: WorldModel | None = None) -> None:
        with watch("evaluation"):
            def mean_action(obs: np.ndarray) -> np.ndarray:
                with torch.no_grad():
                    mean, _ = actor.mean_std(torch.as_tensor(obs, dtype=torch.float32, device=actor.log_std.device))
                    return mean.cpu().numpy()

            returns, lengths = episode_returns(real, mean_action, rl.eval_episodes, eval_seed(seed))
            with torch.no_grad():
                std = actor.mean_std(torch.zeros(1, real.obs_dim, device=actor.log_std.device))[1].mean().item()
        self.record(step, returns, lengths, std, watch)
        if self.error is not None:
            self.rows += [("one_step_mse", step, self.error[0]), ("horizon_mse", step, self.error[1])]
        if self.imagined:
            self.rows.append(("imagined_return", step, float(np.mean(self.imagined))))
        delta = model.diagnostics().get("delta") if model is not None else None
        if delta:
            self.rows.append(("delta", step, float(delta[-1])))
        self.rows += [(name, step, float(self.counts[name])) for name in ("model_updates", "agent_updates")]
        self.error, self.imagined = None, []

    def record(self, step: int, returns: np.ndarray, lengths: np.ndarray, std: float, watch: Stopwatch) -> None:
        """The rows every run stores at an evaluation, PPO's included."""
        self.rows += [("return", step, float(returns.mean())), ("return_std", step, float(returns.std())),
                      ("episode_length", step, float(lengths.mean())), ("policy_std", step, std)]
        self.rows += [(f"wall_{stage}_s", step, seconds) for stage, seconds in watch.seconds.items()]
        self.counts["last_eval"] = step

    def latest(self, metric: str) -> float:
        return next((value for name, _, value in reversed(self.rows) if name == metric), float("nan"))

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=["metric", "step", "value"])


# ----------------------------------------------------------------------------- PPO, the model-free baseline

def run_ppo(real: RealEnv, rl: RLConfig, config: PPOConfig, *, seed: int, state_path: Path | None = None,
            progress: bool = True) -> pd.DataFrame:
    """stable-baselines3 PPO for `rl.env_steps` real steps, evaluated like the imagination loop."""
    import time

    from stable_baselines3 import PPO as StableBaselinesPPO
    from stable_baselines3.common.callbacks import BaseCallback

    check_configs(rl)
    watch, env = Stopwatch(), real.make()
    saved = load_state(state_path) if state_path is not None else None
    if saved is None:
        torch.manual_seed(seed)
        agent = StableBaselinesPPO("MlpPolicy", env, seed=seed, n_steps=config.n_steps, batch_size=config.batch_size,
                                   n_epochs=config.n_epochs, learning_rate=config.learning_rate, device="cpu",
                                   verbose=0)
        log = RunLog(rows=[], counts={"env_step": 0, "last_eval": 0})
    else:
        agent = StableBaselinesPPO.load(io.BytesIO(saved["agent"]), env=env, device="cpu")
        log, watch.seconds = saved["log"], dict(saved["seconds"])

    def evaluate(step: int) -> None:
        with watch("evaluation"):
            returns, lengths = episode_returns(real, lambda obs: agent.predict(obs, deterministic=True)[0],
                                               rl.eval_episodes, eval_seed(seed))
        with torch.no_grad():
            log.record(step, returns, lengths, agent.policy.log_std.exp().mean().item(), watch)

    class Evaluations(BaseCallback):
        """Evaluates and saves every `eval_every` steps; stops the run at exactly `env_steps`."""

        def _on_training_start(self) -> None:
            self.clock = time.perf_counter()
            self.bar = tqdm(total=rl.env_steps, initial=self.num_timesteps, desc=f"rl ppo {real.name}", unit="step",
                            disable=not progress, leave=False)

        def _on_step(self) -> bool:
            log.counts["env_step"] = self.num_timesteps
            self.bar.update()
            if log.due(rl):
                now = time.perf_counter()
                watch.seconds["ppo"] = watch.seconds.get("ppo", 0.0) + now - self.clock
                evaluate(self.num_timesteps)
                if state_path is not None:
                    saved_agent = io.BytesIO()
                    agent.save(saved_agent)
                    save_state(state_path, {"agent": saved_agent.getvalue(), "log": log,
                                            "seconds": dict(watch.seconds)})
                self.bar.set_postfix(ret=f"{log.latest('return'):.0f}")
                self.clock = time.perf_counter()
            return self.num_timesteps < rl.env_steps

        def _on_training_end(self) -> None:
            self.bar.close()

    if saved is None:
        evaluate(0)
    agent.learn(total_timesteps=rl.env_steps - agent.num_timesteps, callback=Evaluations(),
                reset_num_timesteps=False)
    return log.frame()


# ----------------------------------------------------------------------------- a run, end to end

def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_configs(request: RLRequest) -> dict:
    """The resolved configs of a run, by section: `rl`, then `ppo`, or `imagination` and the model's."""
    env = get_env(request.env).name
    profile, overrides = request.profile, request.overrides
    configs = {"rl": build_config(RLConfig, profile, "rl", overrides, env=env, env_steps=request.env_steps)}
    if request.model == PPO:
        configs[PPO] = build_config(PPOConfig, profile, PPO, overrides, env=env)
    else:
        imagination = build_config(ImaginationConfig, profile, "imagination", overrides, env=env)
        model_cls = get_model_class(request.model)
        configs["imagination"] = imagination
        configs[request.model] = model_config(model_cls, profile, imagination.horizon, overrides, env)
    return configs


def cell_of(request: RLRequest, configs: dict | None = None) -> Cell:
    """The results-store identity of a run (checks the names and settings); `configs`: its
    `run_configs`, when the caller has them."""
    env = get_env(request.env)
    configs = configs or run_configs(request)
    check_configs(configs["rl"], configs.get("imagination"))
    horizon = 0 if request.model == PPO else configs["imagination"].horizon
    return Cell(model=request.model, env=env.name, dataset=RL_DATASET, policy="online",
                profile=profile_label(request.profile), horizon=horizon, seed=request.seed,
                config_hash=config_hash({name: identity(config) for name, config in configs.items()}))


def rl_state_path(cell: Cell) -> Path:
    """Where an unfinished run keeps its state between evaluations."""
    return checkpoints_root() / "rl" / cell.env / f"{cell.relative_path().stem}.rl-state.pt"


def run(request: RLRequest, *, store: ResultsStore | None = None, force: bool = False, progress: bool = True,
        say: Callable[[str], None] = _say) -> pd.DataFrame:
    """Run (or resume) one RL run and store its rows; a run already in the store is returned as stored."""
    store = store or ResultsStore()
    configs = run_configs(request)
    cell = cell_of(request, configs)
    device = resolve_device(request.device)
    with store.lock(cell, lambda: say(f"waiting: another process is running {store.path(cell)}")):
        stored = None if force else store.load(cell)
        if stored is not None:
            say(f"already in the results store: {store.path(cell)} (pass --force to run again)")
            return stored
        state_path = rl_state_path(cell)
        if force:
            state_path.unlink(missing_ok=True)
        if state_path.is_file():
            say(f"resuming from {state_path} (its last evaluation)")
        real = RealEnv.mujoco(cell.env)
        if request.model == PPO:
            table = run_ppo(real, configs["rl"], configs[PPO], seed=request.seed, state_path=state_path,
                            progress=progress)
        else:
            model_cls = get_model_class(request.model)
            torch.manual_seed(request.seed)
            model = model_cls(real.obs_dim, real.act_dim, configs[request.model])
            table = run_imagination(model, real, configs["rl"], configs["imagination"], seed=request.seed,
                                    state_path=state_path, device=device, progress=progress)
        table = table.assign(overrides=canonical_overrides(request.overrides),
                             config=json.dumps({k: identity(v) for k, v in configs.items()}, sort_keys=True),
                             **provenance(device))
        store.write(cell, table)
        state_path.unlink(missing_ok=True)
    return store.load(cell)


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """The table printed after a run: one row per evaluation."""
    wide = table.pivot_table(index="step", columns="metric", values="value")
    columns = [c for c in ("return", "return_std", "episode_length", "policy_std", "one_step_mse", "horizon_mse")
               if c in wide]
    return wide[columns].reset_index()
