"""Ground truth: replay actions in the real simulator from exact simulator states.

`replay` returns what a gymnasium `env.step` loop returns after `env.set_state(qpos, qvel)` on a
freshly reset simulator (zero solver warm start),
for a whole batch at once through `mujoco.rollout` (multi-threaded C, no Python loop over steps).
Actions are clipped to the action space, as an executed action is; replay goes on past a
termination and reports where each one happened.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

import gymnasium as gym
import mujoco
import numpy as np
from mujoco import rollout

from wmbench.envs import EnvSpec, get_env, mujoco_model


@dataclass(frozen=True)
class Replay:
    """Simulated outcome of a batch of action sequences (numpy, float64)."""

    observations: np.ndarray  # [B, H+1, obs]  s_0 .. s_H
    rewards: np.ndarray  # [B, H]
    terminals: np.ndarray  # [B, H] bool: s_{t+1} is terminal (unhealthy)
    qpos: np.ndarray  # [B, H+1, nq]
    qvel: np.ndarray  # [B, H+1, nv]


class Oracle:
    """Batched, exact replay for one env. Reuse an instance: it holds one MjData per thread."""

    def __init__(self, env: EnvSpec, threads: int | None = None):
        self.env = env
        self.model = mujoco_model(env.name)
        threads = threads or min(os.cpu_count() or 1, 8)
        self._datas = [mujoco.MjData(self.model) for _ in range(threads)]
        self._spec = mujoco.mjtState.mjSTATE_FULLPHYSICS
        # Full-physics state layout is [time, qpos, qvel, act, ...]; these envs have no actuator
        # state, history or plugins, so a state is exactly [0, qpos, qvel].
        nstate = mujoco.mj_stateSize(self.model, self._spec)
        if nstate != 1 + env.nq + env.nv:
            raise RuntimeError(f"{env.gym_id}: unexpected MuJoCo state size {nstate}")
        low, high = self.model.actuator_ctrlrange.T
        self._ctrl_low, self._ctrl_high = low.copy(), high.copy()

    def replay(self, qpos: np.ndarray, qvel: np.ndarray, actions: np.ndarray) -> Replay:
        """`qpos [B, nq]`, `qvel [B, nv]`, `actions [B, H, act]` -> `Replay`."""
        env = self.env
        qpos = np.asarray(qpos, dtype=np.float64)
        qvel = np.asarray(qvel, dtype=np.float64)
        actions = np.clip(np.asarray(actions, dtype=np.float64), self._ctrl_low, self._ctrl_high)
        batch, horizon, _ = actions.shape
        init = np.concatenate([np.zeros((batch, 1)), qpos, qvel], axis=1)
        control = np.repeat(actions, env.frame_skip, axis=1)
        # The solver's warm start is hidden state outside (qpos, qvel): fix it at zero, as after a
        # reset, or a replay would depend on what the reused per-thread MjData simulated before.
        warmstart = np.zeros((batch, self.model.nv))
        states, _ = rollout.rollout(self.model, self._datas, init, control, initial_warmstart=warmstart)
        after = states[:, env.frame_skip - 1 :: env.frame_skip]  # the state after each env step
        qpos_all = np.concatenate([qpos[:, None], after[..., 1 : 1 + env.nq]], axis=1)
        qvel_all = np.concatenate([qvel[:, None], after[..., 1 + env.nq :]], axis=1)
        healthy = env.is_healthy(qpos_all[:, 1:], qvel_all[:, 1:])
        rewards = env.reward(qpos_all[:, :-1, 0], qpos_all[:, 1:, 0], actions, healthy)
        terminals = ~healthy if env.terminates else np.zeros_like(healthy)
        return Replay(
            observations=env.observe(qpos_all, qvel_all),
            rewards=rewards,
            terminals=terminals,
            qpos=qpos_all,
            qvel=qvel_all,
        )


def simulator_state(env: gym.Env) -> tuple[np.ndarray, np.ndarray]:
    """`(qpos, qvel)` of a MuJoCo env now: the exact state of its current observation."""
    data = env.unwrapped.data
    return data.qpos.copy(), data.qvel.copy()


@dataclass(frozen=True)
class RealEnv:
    """The real environment of an online run (`wmbench rl`): a gymnasium env, the simulator state of
    its current observation (`qpos`, `qvel`), and a replay of actions from such states (a model's
    error is measured against it). `wmbench.systems` makes one of a known linear system for tests."""

    name: str
    obs_dim: int
    act_dim: int
    make: Callable[[], gym.Env]
    sim_state: Callable[[gym.Env], tuple[np.ndarray, np.ndarray]]
    replay: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]  # qpos, qvel, actions [B, H, act] -> obs

    @classmethod
    def mujoco(cls, name: str) -> RealEnv:
        spec = get_env(name)
        oracle = Oracle(spec)
        return cls(spec.name, spec.obs_dim, spec.act_dim, spec.make, simulator_state,
                   lambda qpos, qvel, actions: oracle.replay(qpos, qvel, actions).observations)
