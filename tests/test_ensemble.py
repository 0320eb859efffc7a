import numpy as np
import torch
import torch.nn.functional as F

from wmbench.models.ensemble import BatchedLinear, EnsembleConfig, MLPEnsemble
from wmbench.testing import LinearSystem, WorldModelConformance, simple_policy

SMALL = dict(members=3, elites=2, hidden=32, layers=2, weight_decay=[2.5e-5, 5e-5, 1e-4], max_epochs=3)


class TestConformance(WorldModelConformance):
    def make_model(self, obs_dim, act_dim):
        return MLPEnsemble(obs_dim, act_dim, EnsembleConfig(**SMALL))


def test_batched_linear_equals_one_linear_per_member():
    layer = BatchedLinear(4, 5, 3)
    x = torch.randn(4, 10, 5)
    expected = torch.stack([F.linear(x[e], layer.weight[e].T, layer.bias[e, 0]) for e in range(4)])
    torch.testing.assert_close(layer(x), expected)
    members = torch.tensor([2, 0])  # a subset of members, in any order, on its own inputs
    subset = torch.stack([F.linear(x[i], layer.weight[m].T, layer.bias[m, 0]) for i, m in enumerate(members)])
    torch.testing.assert_close(layer(x[:2], members), subset)


def test_learns_a_known_linear_system():
    """One-step error far below the state variance, and short open-loop rollouts that track the truth."""
    system = LinearSystem.random(obs_dim=4, act_dim=2, noise_std=0.0, seed=1)
    train = system.dataset(episodes=100, length=60, seed=0)
    torch.manual_seed(0)
    model = MLPEnsemble(4, 2, EnsembleConfig(hidden=64, layers=3, weight_decay=[1e-5] * 4, max_epochs=60))
    model.fit(train, generator=torch.Generator().manual_seed(0), progress=False)

    test = system.dataset(episodes=20, length=60, seed=99)
    with torch.no_grad():
        next_obs, reward, _ = model.step(torch.as_tensor(test.observations)[:, None],
                                         torch.as_tensor(test.actions)[:, None], generator=torch.Generator())
    state_mse = np.mean((next_obs.numpy() - test.next_observations) ** 2)
    reward_mse = np.mean((reward.numpy() - test.rewards) ** 2)
    assert state_mse < 0.01 * test.next_observations.var(), state_mse  # > 99% of the variance explained
    assert reward_mse < 0.01 * test.rewards.var(), reward_mse

    policy = simple_policy(4, 2, std=0.2)
    init = torch.as_tensor(test.observations[:64])
    traj = model.rollout(init, policy, 10, generator=torch.Generator().manual_seed(0))
    true_obs, _ = system.rollout(init.numpy(), traj.actions.numpy())
    rollout_mse = np.mean((traj.observations.numpy() - true_obs) ** 2, axis=(0, 2))
    assert rollout_mse[10] < 0.05 * true_obs.var(), rollout_mse


def test_elites_are_the_best_holdout_members():
    system = LinearSystem.random(noise_std=0.05)
    model = MLPEnsemble(3, 2, EnsembleConfig(**SMALL))
    report = model.fit(system.dataset(), generator=torch.Generator().manual_seed(0), progress=False)
    assert len(set(model.elite_ids.tolist())) == 2
    assert report.steps > 0 and report.extra["epochs"] >= 1
