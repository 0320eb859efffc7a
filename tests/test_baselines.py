"""The autoregressive diffusion and transformer baselines against known answers."""

import numpy as np
import pytest
import torch

from wmbench.models.ardiffusion import ARDiffusion, ARDiffusionConfig, ARDiffusionTwoRow
from wmbench.models.transformer import CONTEXT, TransformerConfig, TransformerWorldModel
from wmbench.testing import LinearSystem, WorldModelConformance, simple_policy

TINY_DIFFUSION = dict(diffusion_steps=8, width=64, blocks=2, train_steps=40, batch_size=64, ema_start=10)
TINY_TRANSFORMER = dict(dim=32, layers=2, heads=2, train_steps=40, batch_size=32)


class TestARDiffusionConformance(WorldModelConformance):
    def make_model(self, obs_dim, act_dim):
        return ARDiffusion(obs_dim, act_dim, ARDiffusionConfig(**TINY_DIFFUSION))


class TestARDiffusionTwoRowConformance(WorldModelConformance):
    def make_model(self, obs_dim, act_dim):
        return ARDiffusionTwoRow(obs_dim, act_dim, ARDiffusionConfig(**TINY_DIFFUSION))


class TestTransformerConformance(WorldModelConformance):
    def make_model(self, obs_dim, act_dim):
        return TransformerWorldModel(obs_dim, act_dim, TransformerConfig(**TINY_TRANSFORMER))


def one_step(model, data):
    with torch.no_grad():
        next_obs, reward, _ = model.step(torch.as_tensor(data.observations)[:, None],
                                         torch.as_tensor(data.actions)[:, None],
                                         generator=torch.Generator().manual_seed(0))
    return next_obs.numpy(), reward.numpy()


@pytest.mark.parametrize("make", [
    lambda: ARDiffusion(4, 2, ARDiffusionConfig(diffusion_steps=16, width=128, blocks=2, train_steps=1500,
                                                ema_start=300, lr=1e-3)),
    lambda: ARDiffusionTwoRow(4, 2, ARDiffusionConfig(diffusion_steps=16, width=128, blocks=2, train_steps=1500,
                                                      ema_start=300, lr=1e-3)),
    lambda: TransformerWorldModel(4, 2, TransformerConfig(dim=32, layers=2, heads=2, train_steps=800,
                                                          batch_size=32, lr=2e-3)),
    lambda: TransformerWorldModel(4, 2, TransformerConfig(dim=32, layers=2, heads=2, train_steps=800,
                                                          batch_size=32, lr=2e-3, precision="bf16")),
], ids=["ar-diffusion", "ar-diffusion-2row", "transformer", "transformer-bf16-training"])
def test_learns_a_known_linear_system(make):
    """One-step predictions explain > 95% of the next-state and reward variance."""
    system = LinearSystem.random(obs_dim=4, act_dim=2, seed=1)
    torch.manual_seed(0)
    model = make()
    model.fit(system.dataset(episodes=100, length=60), generator=torch.Generator().manual_seed(0), progress=False)
    test = system.dataset(episodes=10, length=60, seed=99)
    next_obs, reward = one_step(model.eval(), test)
    assert np.mean((next_obs - test.next_observations) ** 2) < 0.05 * test.next_observations.var()
    assert np.mean((reward - test.rewards) ** 2) < 0.05 * test.rewards.var()


def test_ar_diffusion_samples_the_true_next_state_distribution():
    """s' = A s + B a + 0.3 eps: at one (s, a), samples have mean A s + B a and std 0.3 per dim."""
    system = LinearSystem.random(obs_dim=2, act_dim=1, noise_std=0.3, seed=2)
    torch.manual_seed(0)
    model = ARDiffusion(2, 1, ARDiffusionConfig(diffusion_steps=32, width=256, blocks=2, train_steps=4000,
                                                batch_size=512, ema_start=1000, lr=1e-3))
    model.fit(system.dataset(episodes=200, length=50), generator=torch.Generator().manual_seed(0), progress=False)
    obs, act = np.array([[0.3, -0.5]]), np.array([[0.4]])
    with torch.no_grad():
        samples = model.eval().step(torch.as_tensor(np.repeat(obs, 4000, 0), dtype=torch.float32)[:, None],
                                    torch.as_tensor(np.repeat(act, 4000, 0), dtype=torch.float32)[:, None],
                                    generator=torch.Generator().manual_seed(1))[0].numpy()
    mean, _ = system.step(obs, act)
    np.testing.assert_allclose(samples.mean(0), mean[0], atol=0.06)
    np.testing.assert_allclose(samples.std(0), [0.3, 0.3], atol=0.06)


def test_transformer_sees_exactly_the_last_15_steps():
    """Each step gets the last min(t + 1, 15) generated states and executed actions, in order."""
    model = TransformerWorldModel(3, 2, TransformerConfig(**TINY_TRANSFORMER)).eval()
    seen = []
    real_step = model.step

    def spy(obs_hist, act_hist, *, generator):
        seen.append((obs_hist.clone(), act_hist.clone()))
        return real_step(obs_hist, act_hist, generator=generator)

    model.step = spy
    policy = simple_policy(3, 2)
    traj = model.rollout(torch.randn(4, 3), policy, 20, generator=torch.Generator().manual_seed(0))
    assert [len(o[0]) for o, _ in seen] == [min(t + 1, CONTEXT) for t in range(20)]
    for t, (obs_hist, act_hist) in enumerate(seen):
        first = max(0, t + 1 - CONTEXT)
        assert torch.equal(obs_hist, traj.observations[:, first : t + 1])
        assert torch.equal(act_hist, policy.clip(traj.actions[:, first : t + 1]))


def test_transformer_prediction_depends_only_on_its_context():
    """Causality: changing a step outside the last 15 leaves the prediction unchanged, inside changes it."""
    model = TransformerWorldModel(3, 2, TransformerConfig(**TINY_TRANSFORMER)).eval()
    obs, act = torch.randn(2, CONTEXT, 3), torch.randn(2, CONTEXT, 2)
    base = model.step(obs, act, generator=torch.Generator())[0]
    changed_last = obs.clone()
    changed_last[:, -1] += 1.0
    assert not torch.allclose(model.step(changed_last, act, generator=torch.Generator())[0], base)
    # The causal mask: a prefix's prediction ignores later steps.
    prefix = model._predict(obs[:, :5], act[:, :5])
    torch.testing.assert_close(model._predict(obs, act)[:, :5], prefix, atol=1e-5, rtol=0)


def test_transformer_kv_cache_rollout_equals_the_full_window_rollout():
    """The cached rollout (one new token per step while the window grows) is the uncached one, on
    both sides of the window filling up (step 15)."""
    from wmbench.models.base import AutoregressiveWorldModel

    torch.manual_seed(0)
    model = TransformerWorldModel(3, 2, TransformerConfig(**TINY_TRANSFORMER)).eval()
    policy, init = simple_policy(3, 2), torch.randn(8, 3)
    cached = model.rollout(init, policy, 20, generator=torch.Generator().manual_seed(0))
    full = AutoregressiveWorldModel.rollout(model, init, policy, 20, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(cached.observations, full.observations, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(cached.rewards, full.rewards, atol=1e-5, rtol=1e-5)
    assert model._caches is None, "the cache lives only during a rollout"
