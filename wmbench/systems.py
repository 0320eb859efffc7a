"""Known dynamical systems with known answers, for tests, benchmarks and FLOP counts.

`LinearSystem` is `s' = A s + B a + noise`, `r = c.s + d.a`: it makes `OfflineData` whose dynamics a
model can be checked against, plays as a gymnasium env (`LinearSystemEnv`), and stands in for the
real simulator of an online run (`linear_real_env`).
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from wmbench.data import OfflineData
from wmbench.oracle import RealEnv


@dataclass(frozen=True)
class LinearSystem:
    """`s' = A s + B clip(a) + noise_std * eps`, `r = c.s + d.clip(a)`; never terminates."""

    A: np.ndarray
    B: np.ndarray
    c: np.ndarray
    d: np.ndarray
    noise_std: float = 0.0

    @classmethod
    def random(cls, obs_dim: int = 3, act_dim: int = 2, noise_std: float = 0.0, seed: int = 0) -> LinearSystem:
        rng = np.random.default_rng(seed)
        q, _ = np.linalg.qr(rng.normal(size=(obs_dim, obs_dim)))
        return cls(A=0.9 * q, B=rng.normal(size=(obs_dim, act_dim)) * 0.5,
                   c=rng.normal(size=obs_dim), d=rng.normal(size=act_dim), noise_std=noise_std)

    @property
    def obs_dim(self) -> int:
        return self.A.shape[0]

    @property
    def act_dim(self) -> int:
        return self.B.shape[1]

    def step(self, obs: np.ndarray, act: np.ndarray, rng: np.random.Generator | None = None):
        """`(next_obs, reward)` for batches `[..., obs]`, `[..., act]`; noisy only given an `rng`
        (without one: the mean next state)."""
        act = np.clip(act, -1.0, 1.0)
        next_obs = obs @ self.A.T + act @ self.B.T
        if self.noise_std and rng is not None:
            next_obs = next_obs + self.noise_std * rng.normal(size=next_obs.shape)
        return next_obs, obs @ self.c + act @ self.d

    def rollout(self, init_obs: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Noise-free replay: `init_obs [B, obs]`, `actions [B, H, act]` -> obs `[B, H+1, obs]`, rewards `[B, H]`."""
        obs, rewards = [init_obs], []
        for t in range(actions.shape[1]):
            nxt, r = self.step(obs[-1], actions[:, t])
            obs.append(nxt)
            rewards.append(r)
        return np.stack(obs, axis=1), np.stack(rewards, axis=1)

    def dataset(self, episodes: int = 40, length: int = 50, seed: int = 0) -> OfflineData:
        """Episodes of uniform random actions from N(0, I) starts, as `OfflineData`."""
        rng = np.random.default_rng(seed)
        obs = [rng.normal(size=(episodes, self.obs_dim))]
        actions = rng.uniform(-1.0, 1.0, size=(episodes, length, self.act_dim))
        rewards = []
        for t in range(length):
            nxt, r = self.step(obs[-1], actions[:, t], rng)
            obs.append(nxt)
            rewards.append(r)
        obs = np.stack(obs, axis=1)  # [E, L+1, obs]
        flat = lambda a: a.reshape(episodes * length, *a.shape[2:]).astype(np.float32)  # noqa: E731
        return OfflineData(
            dataset_id="testing/linear-v0", env="linear",
            observations=flat(obs[:, :-1]), actions=flat(actions), rewards=flat(np.stack(rewards, 1)),
            next_observations=flat(obs[:, 1:]), terminals=np.zeros(episodes * length, bool),
            episode_starts=np.arange(0, episodes * length + 1, length, dtype=np.int64),
        )


class LinearSystemEnv(gym.Env):
    """`LinearSystem` as a gymnasium env: starts drawn from N(0, I), episodes cut after `length` steps."""

    def __init__(self, system: LinearSystem, length: int = 50):
        self.system, self.length = system, length
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (system.obs_dim,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (system.act_dim,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.state, self.t = self.np_random.normal(size=self.system.obs_dim), 0
        return self.state.astype(np.float32), {}

    def step(self, action):
        self.state, reward = self.system.step(self.state, np.asarray(action, np.float64), self.np_random)
        self.t += 1
        return self.state.astype(np.float32), float(reward), False, self.t >= self.length, {}


def linear_real_env(system: LinearSystem, length: int = 50):
    """The `RealEnv` of a linear system, for online runs in tests: its state is the observation."""
    return RealEnv(name="linear", obs_dim=system.obs_dim, act_dim=system.act_dim,
                   make=lambda: LinearSystemEnv(system, length),
                   sim_state=lambda env: (env.unwrapped.state.copy(), np.zeros(0)),
                   replay=lambda qpos, qvel, actions: system.rollout(qpos, actions)[0])
