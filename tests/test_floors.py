"""The reference floors against known answers on a linear system."""

import numpy as np
import torch

from wmbench import metrics
from wmbench.models.floors import LinearDynamics, Persistence
from wmbench.testing import LinearSystem, WorldModelConformance, simple_policy

HORIZON = 8


class TestPersistenceConformance(WorldModelConformance):
    def make_model(self, obs_dim, act_dim):
        return Persistence(obs_dim, act_dim)


class TestLinearConformance(WorldModelConformance):
    def make_model(self, obs_dim, act_dim):
        return LinearDynamics(obs_dim, act_dim)


def rollout_and_truth(model, system):
    policy = simple_policy(system.obs_dim, system.act_dim, std=0.5)
    init = torch.as_tensor(np.random.default_rng(3).normal(size=(64, system.obs_dim)), dtype=torch.float32)
    traj = model.rollout(init, policy, HORIZON, generator=torch.Generator().manual_seed(0))
    true_obs, true_rewards = system.rollout(init.numpy().astype(np.float64), traj.actions.numpy())
    return traj, true_obs, true_rewards


def test_linear_is_exact_on_noise_free_linear_dynamics():
    system = LinearSystem.random(obs_dim=4, act_dim=2, seed=1)
    model = LinearDynamics(4, 2)
    model.fit(system.dataset(episodes=50, length=40), progress=False)
    traj, true_obs, true_rewards = rollout_and_truth(model, system)
    # the policy's actions leave [-1, 1]; the model is given the clipped, executed ones as the system is
    assert (traj.actions.abs() > 1).any()
    np.testing.assert_allclose(traj.observations.numpy(), true_obs, atol=2e-4)
    np.testing.assert_allclose(traj.rewards.numpy(), true_rewards, atol=2e-4)
    assert not traj.terminals.any()


def test_persistence_error_is_the_closed_form_of_how_far_the_state_moves():
    system = LinearSystem.random(obs_dim=3, act_dim=2, seed=2)
    model = Persistence(3, 2)
    data = system.dataset()
    model.fit(data, progress=False)
    traj, true_obs, _ = rollout_and_truth(model, system)
    expected = np.mean((true_obs - true_obs[:, :1]) ** 2, axis=(0, 2))  # mean |s_k - s_0|^2
    np.testing.assert_allclose(metrics.state_mse(traj.observations.numpy(), true_obs), expected, rtol=1e-5)
    np.testing.assert_allclose(traj.rewards.numpy(), data.rewards.mean(), rtol=1e-5)
