"""Test kit for world models, public so that extension packages can use it.

`LinearSystem` is a known dynamical system (`s' = A s + B a + noise`, `r = c.s + d.a`) that makes
`OfflineData` with a known answer. `WorldModelConformance` is a pytest mixin: a new model's test
file is a few lines,

    class TestMyModel(WorldModelConformance):
        def make_model(self, obs_dim, act_dim):
            return MyModel(obs_dim, act_dim, MyModel.Config(steps=200))

and checks shapes, dtypes, the start state, determinism under a seed, distinct samples under
different seeds, and the save/load round trip.
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import pytest
import torch

from wmbench.data import Normaliser, OfflineData
from wmbench.models.base import WorldModel
from wmbench.policy import GaussianPolicy


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
    """The `RealEnv` of `wmbench.rl` for a linear system: its state is the observation."""
    from wmbench.rl import RealEnv

    return RealEnv(name="linear", obs_dim=system.obs_dim, act_dim=system.act_dim,
                   make=lambda: LinearSystemEnv(system, length),
                   sim_state=lambda env: (env.unwrapped.state.copy(), np.zeros(0)),
                   replay=lambda qpos, qvel, actions: system.rollout(qpos, actions)[0])


def simple_policy(obs_dim: int, act_dim: int, std: float = 0.3, seed: int = 0) -> GaussianPolicy:
    """A small random-weight Gaussian policy with a fixed std."""
    torch.manual_seed(seed)
    policy = GaussianPolicy(obs_dim, act_dim, hidden=32)
    policy.obs_norm = Normaliser.identity(obs_dim)
    return policy.with_std(std).eval().requires_grad_(False)


class WorldModelConformance:
    """Pytest mixin checking the `WorldModel` contract. Subclasses define `make_model`."""

    obs_dim = 3
    act_dim = 2
    horizon = 6
    batch = 8

    def make_model(self, obs_dim: int, act_dim: int) -> WorldModel:
        raise NotImplementedError("subclass WorldModelConformance and return an untrained model")

    # Class-scoped fixtures (fit once per test class) must be classmethods in pytest >= 9.
    @pytest.fixture(scope="class")
    @classmethod
    def system(cls) -> LinearSystem:
        return LinearSystem.random(cls.obs_dim, cls.act_dim, noise_std=0.01)

    @pytest.fixture(scope="class")
    @classmethod
    def fitted(cls, system) -> WorldModel:
        torch.manual_seed(0)
        model = cls().make_model(cls.obs_dim, cls.act_dim)
        model.fit(system.dataset(), generator=torch.Generator().manual_seed(0), progress=False)
        return model.eval()

    @pytest.fixture(scope="class")
    @classmethod
    def policy(cls) -> GaussianPolicy:
        return simple_policy(cls.obs_dim, cls.act_dim)

    def _rollout(self, model: WorldModel, policy: GaussianPolicy, seed: int):
        init = torch.as_tensor(np.random.default_rng(1).normal(size=(self.batch, self.obs_dim)), dtype=torch.float32)
        return model.rollout(init, policy, self.horizon, generator=torch.Generator().manual_seed(seed))

    def test_is_registered(self, fitted):
        from wmbench.models.base import get_model_class

        assert fitted.name, "decorate the class with @register_model(name)"
        assert get_model_class(fitted.name) is type(fitted)

    def test_rollout_shapes_and_dtypes(self, fitted, policy):
        traj = self._rollout(fitted, policy, seed=0)
        traj.validate(self.batch, self.horizon, self.obs_dim, self.act_dim)
        assert torch.isfinite(traj.observations).all() and torch.isfinite(traj.rewards).all()

    def test_rollout_starts_at_init_obs(self, fitted, policy):
        traj = self._rollout(fitted, policy, seed=0)
        expected = np.random.default_rng(1).normal(size=(self.batch, self.obs_dim)).astype(np.float32)
        np.testing.assert_allclose(traj.observations[:, 0].cpu().numpy(), expected, atol=1e-6)

    def test_same_seed_same_trajectories(self, fitted, policy):
        a, b = self._rollout(fitted, policy, seed=3), self._rollout(fitted, policy, seed=3)
        for name in ("observations", "actions", "rewards", "terminals"):
            assert torch.equal(getattr(a, name), getattr(b, name)), name

    def test_different_seeds_different_actions(self, fitted, policy):
        a, b = self._rollout(fitted, policy, seed=3), self._rollout(fitted, policy, seed=4)
        assert not torch.equal(a.actions, b.actions)

    def test_save_load_round_trip(self, fitted, policy, tmp_path):
        path = tmp_path / "model.pt"
        fitted.save(path)
        loaded = WorldModel.load(path)
        assert type(loaded) is type(fitted) and loaded.config == fitted.config
        a, b = self._rollout(fitted, policy, seed=5), self._rollout(loaded, policy, seed=5)
        for name in ("observations", "actions", "rewards", "terminals"):
            assert torch.equal(getattr(a, name), getattr(b, name)), name
