"""Test kit for world models, public so that extension packages can use it.

`LinearSystem` (from `wmbench.systems`) is a known dynamical system that makes `OfflineData` with a
known answer. `WorldModelConformance` is a pytest mixin: a new model's test file is a few lines,

    class TestMyModel(WorldModelConformance):
        def make_model(self, obs_dim, act_dim):
            return MyModel(obs_dim, act_dim, MyModel.Config(steps=200))

and checks shapes, dtypes, the start state, determinism under a seed, distinct samples under
different seeds, and the save/load round trip.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wmbench.data import Normaliser
from wmbench.models.base import WorldModel
from wmbench.policy import GaussianPolicy
from wmbench.systems import LinearSystem, LinearSystemEnv, linear_real_env

__all__ = ["LinearSystem", "LinearSystemEnv", "WorldModelConformance", "linear_real_env", "simple_policy"]


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

    def test_objective_is_seeded_and_leaves_the_global_generator_alone(self, fitted, system):
        unseen = system.dataset(episodes=6, seed=9)
        state = torch.random.get_rng_state()
        value = fitted.objective(unseen)
        assert torch.equal(torch.random.get_rng_state(), state), "objective forks the generator it seeds"
        if value is not None:  # a model without a training objective (persistence) says None
            assert np.isfinite(value) and value == fitted.objective(unseen)
            assert value != fitted.objective(unseen, seed=1) or fitted.loss_items(unseen)[0] <= 1
