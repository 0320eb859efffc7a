"""RL in imagination, the online loop (`run_imagination`), for any registered world model:

1. `random_steps` uniform random real steps fill the replay buffer; the model trains `pretrain_updates`
   updates on it.
2. Each iteration: the actor-critic (`wmbench.rl.learner`, shared by every model) takes
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
uninterrupted one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from wmbench import metrics
from wmbench.config import config_section, param
from wmbench.data import Normaliser, OfflineData
from wmbench.errors import UsageError
from wmbench.models.base import WorldModel
from wmbench.oracle import RealEnv
from wmbench.rl.evaluation import RLConfig, RunLog, check_rl
from wmbench.rl.learner import ActorCritic, ActorCriticConfig
from wmbench.rl.state import load_state, rng_state, save_state, set_rng_state
from wmbench.timing import Stopwatch


@config_section("imagination")
@dataclass
class ImaginationConfig(ActorCriticConfig):
    """The online loop of RL in imagination, and its actor-critic (POLYGRAD_NOTES)."""

    random_steps: int = param(5000, "uniform random real steps that start the replay buffer", low=1)
    steps_per_iteration: int = param(1000, "real steps collected between the loop's training phases", low=1)
    model_updates_per_step: float = param(1.0, "world-model updates per real step (the authors: 1)", low=0)
    agent_updates_per_step: float = param(0.25, "actor-critic updates per real step (the authors: 0.25)", low=0)
    pretrain_updates: int = param(1000, "world-model updates on the random steps before the first actor update", low=0)
    delta_lr: float = param(3e-3, "PolyGRAD: rate of delta's rule, one step per imagined batch (paper's online runs)",
                            low=0)
    error_trajectories: int = param(256, "trajectories from fresh real states that measure the model's error", low=1)


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


STATE_KEYS = ("buffer", "learner", "model", "log", "seconds", "episodes", "rng")  # of a resumable run


def run_imagination(model: WorldModel, real: RealEnv, rl: RLConfig, config: ImaginationConfig, *, seed: int,
                    state_path: Path | None = None, device: str = "cpu", progress: bool = True) -> pd.DataFrame:
    """The online loop (module docstring) for an untrained `model` in `real`: its rows
    `(metric, step, value)`, `step` counting real environment steps."""
    check_configs(rl, config)
    torch.manual_seed(seed)
    generator, rng = torch.Generator(device).manual_seed(seed), np.random.default_rng(seed)
    model.to(device)
    collector, watch = Collector(real, seed), Stopwatch(device)
    saved = load_state(state_path, STATE_KEYS, (RunLog, OfflineData)) if state_path is not None else None
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
        log.resumed()
        set_rng_state(saved["rng"], generator, rng)

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
                                        "rng": rng_state(generator, rng)})
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


def check_configs(rl: RLConfig, config: ImaginationConfig) -> None:
    """One clear line for settings the loop cannot run with."""
    check_rl(rl)
    if not 0 < config.random_steps < rl.env_steps:
        raise UsageError(f"imagination.random_steps ({config.random_steps}) must be positive and below the run's "
                         f"real steps ({rl.env_steps}); raise --env-steps")
    if config.steps_per_iteration < 1 or config.imagined < 1 or config.horizon < 1 or config.error_trajectories < 1:
        raise UsageError("imagination.steps_per_iteration, imagined, horizon and error_trajectories must be positive")
    if config.model_updates_per_step < 0 or config.agent_updates_per_step < 0 or config.pretrain_updates < 0:
        raise UsageError("imagination.model_updates_per_step, agent_updates_per_step and pretrain_updates must not be "
                         "negative")
