"""The model-free baseline of `wmbench rl`: stable-baselines3 PPO at the same real steps, evaluated
and resumed like the imagination loop (from its agent saved at its last evaluation, with the
rollout then in progress collected again)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from wmbench.config import config_section, param
from wmbench.oracle import RealEnv
from wmbench.rl.evaluation import RLConfig, RunLog, check_rl, episode_returns, eval_seed
from wmbench.rl.state import load_state, save_state
from wmbench.timing import Stopwatch

PPO = "ppo"  # `--model ppo`: the model-free baseline
COUNTERS = ("num_timesteps", "_n_updates", "_episode_num", "_current_progress_remaining")  # of the SB3 agent
STATE_KEYS = ("policy", "optimizer", "counters", "log", "seconds")


@config_section("ppo")
@dataclass
class PPOConfig:
    """The model-free baseline: stable-baselines3 PPO (its defaults)."""

    n_steps: int = param(2048, "real steps per PPO rollout", low=2)
    batch_size: int = param(64, "minibatch size", low=2)
    n_epochs: int = param(10, "epochs per rollout", low=1)
    learning_rate: float = param(3e-4, "Adam learning rate", above=0)


def run_ppo(real: RealEnv, rl: RLConfig, config: PPOConfig, *, seed: int, state_path: Path | None = None,
            progress: bool = True) -> pd.DataFrame:
    """stable-baselines3 PPO for `rl.env_steps` real steps, evaluated like the imagination loop."""
    from stable_baselines3 import PPO as StableBaselinesPPO
    from stable_baselines3.common.callbacks import BaseCallback

    check_rl(rl)
    watch, env = Stopwatch(), real.make()
    saved = load_state(state_path, STATE_KEYS, (RunLog,)) if state_path is not None else None
    torch.manual_seed(seed)
    agent = StableBaselinesPPO("MlpPolicy", env, seed=seed, n_steps=config.n_steps, batch_size=config.batch_size,
                               n_epochs=config.n_epochs, learning_rate=config.learning_rate, device="cpu", verbose=0)
    if saved is None:
        log = RunLog(rows=[], counts={"env_step": 0, "last_eval": 0})
    else:  # what `PPO.load` would restore, read as data (its zip unpickles)
        agent.policy.load_state_dict(saved["policy"])
        agent.policy.optimizer.load_state_dict(saved["optimizer"])
        for name, value in saved["counters"].items():
            setattr(agent, name, value)
        log, watch.seconds = saved["log"], dict(saved["seconds"])
        log.resumed()

    def evaluate(step: int) -> None:
        with watch("evaluation"):
            returns, lengths = episode_returns(real, lambda obs: agent.predict(obs, deterministic=True)[0],
                                               rl.eval_episodes, eval_seed(seed))
        with torch.no_grad():
            log.record(step, returns, lengths, agent.policy.log_std.exp().mean().item(), watch)
        log.publish(step)

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
                    save_state(state_path, {"policy": agent.policy.state_dict(),
                                            "optimizer": agent.policy.optimizer.state_dict(),
                                            "counters": {name: getattr(agent, name) for name in COUNTERS},
                                            "log": log, "seconds": dict(watch.seconds)})
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
