import math

import numpy as np
import pytest
import torch

from wmbench.data import OfflineData
from wmbench.errors import CheckpointError
from wmbench.policy import GaussianPolicy, PolicyConfig
from wmbench.testing import simple_policy


@pytest.fixture
def policy():
    torch.manual_seed(0)
    p = GaussianPolicy(5, 3, hidden=16)
    with torch.no_grad():
        p.log_std.copy_(torch.tensor([-1.0, 0.0, 0.5]))
    return p.eval()


def test_score_matches_autograd(policy):
    obs, act = torch.randn(64, 5), torch.randn(64, 3, requires_grad=True)
    (grad,) = torch.autograd.grad(policy.log_prob(obs, act).sum(), act)
    torch.testing.assert_close(policy.score(obs, act.detach()), grad)


def test_log_prob_matches_torch_normal(policy):
    obs, act = torch.randn(64, 5), torch.randn(64, 3)
    mean, std = policy.mean_std(obs)
    expected = torch.distributions.Normal(mean, std).log_prob(act).sum(-1)
    torch.testing.assert_close(policy.log_prob(obs, act), expected)


def test_family_is_tanh_mean_with_floored_std(policy):
    mean, std = policy.mean_std(torch.randn(1000, 5) * 100)
    assert mean.abs().max() <= 1.0
    torch.testing.assert_close(std, torch.exp(torch.tensor([-1.0, 0.0, 0.5])) + 0.1)


def test_samples_standardise_to_unit_gaussian(policy):
    obs = torch.randn(20000, 5)
    act = policy.sample(obs, generator=torch.Generator().manual_seed(0))
    z = policy.standardise(obs, act)
    assert z.mean().abs() < 0.02 and (z.std() - 1).abs() < 0.02


def test_with_std_overrides_std_and_keeps_mean(policy):
    narrow = policy.with_std(0.05)
    obs = torch.randn(10, 5)
    torch.testing.assert_close(narrow.mean_std(obs)[0], policy.mean_std(obs)[0])
    torch.testing.assert_close(narrow.mean_std(obs)[1], torch.full((3,), 0.05))
    with pytest.raises(ValueError):
        policy.with_std(0.0)


def test_behaviour_cloning_recovers_a_known_policy():
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(20000, 4)).astype(np.float32)
    weights = rng.normal(size=(4, 2)) * 0.7
    actions = (np.tanh(obs @ weights) + 0.3 * rng.normal(size=(20000, 2))).astype(np.float32)
    offline = OfflineData("test/bc-v0", "toy", obs, actions, np.zeros(20000, np.float32), obs,
                          np.zeros(20000, bool), np.array([0, 20000]))
    policy = GaussianPolicy.fit(offline, PolicyConfig(hidden=64, steps=1500, lr=3e-3), progress=False)
    test_obs = torch.randn(2000, 4)
    mean, std = policy.mean_std(test_obs)
    assert (mean - torch.tanh(test_obs @ torch.as_tensor(weights, dtype=torch.float32))).abs().mean() < 0.05
    torch.testing.assert_close(std, torch.full((2,), 0.3), atol=0.02, rtol=0)


def test_save_load_and_corrupt_file(tmp_path, policy):
    path = tmp_path / "policy.pt"
    policy.save(path)
    loaded = GaussianPolicy.load(path)
    obs = torch.randn(8, 5)
    torch.testing.assert_close(loaded.mean_std(obs)[0], policy.mean_std(obs)[0])
    path.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match=str(path)):
        GaussianPolicy.load(path)


def test_simple_policy_has_requested_std():
    p = simple_policy(3, 2, std=0.3)
    assert math.isclose(float(p.mean_std(torch.zeros(1, 3))[1][0]), 0.3, rel_tol=1e-6)
