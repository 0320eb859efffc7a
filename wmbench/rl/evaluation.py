"""What every `wmbench rl` run shares, PPO's included: the `rl` section, the evaluation of a policy
by its real return, and the rows a run stores at each evaluation."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
import torch

from wmbench import tracking
from wmbench.config import config_section, param
from wmbench.errors import UsageError
from wmbench.models.base import WorldModel
from wmbench.oracle import RealEnv
from wmbench.timing import Stopwatch


@config_section("rl")
@dataclass
class RLConfig:
    """What every `wmbench rl` run shares, PPO included."""

    env_steps: int = param(1_000_000, "real environment steps of a run (the paper: 1M; 1.5M on HalfCheetah)", low=1)
    eval_every: int = param(10_000, "real steps between evaluations of the policy", low=1)
    eval_episodes: int = param(10, "episodes of the deterministic (mean) action per evaluation", low=1)


def check_rl(rl: RLConfig) -> None:
    """One clear line for settings no run can go with."""
    if rl.env_steps < 1 or rl.eval_every < 1 or rl.eval_episodes < 1:
        raise UsageError(f"rl.env_steps, rl.eval_every and rl.eval_episodes must be positive, got {rl.env_steps}, "
                         f"{rl.eval_every} and {rl.eval_episodes}")


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
        self.publish(step)

    def record(self, step: int, returns: np.ndarray, lengths: np.ndarray, std: float, watch: Stopwatch) -> None:
        """The rows every run stores at an evaluation, PPO's included."""
        self.rows += [("return", step, float(returns.mean())), ("return_std", step, float(returns.std())),
                      ("episode_length", step, float(lengths.mean())), ("policy_std", step, std)]
        self.rows += [(f"wall_{stage}_s", step, seconds) for stage, seconds in watch.seconds.items()]
        self.counts["last_eval"] = step

    def publish(self, step: int) -> None:
        """The rows of the evaluation at `step` to the run's log (group `rl`, against real steps)."""
        tracking.log("rl", {name: value for name, at, value in self.rows if at == step}, step)

    def resumed(self) -> None:
        """The run goes on from its last saved evaluation: what the interrupted process logged later is stale."""
        tracking.restart("rl", self.counts["last_eval"] + 1)

    def latest(self, metric: str) -> float:
        return next((value for name, _, value in reversed(self.rows) if name == metric), float("nan"))

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=["metric", "step", "value"])
