"""PolyGRAD against known answers: an exact denoiser of a linear system, and fixed states."""


import numpy as np
import pytest
import torch
from torch import nn

from wmbench import WorldModel
from wmbench.errors import UsageError
from wmbench.models.diffusion import DiffusionSchedule
from wmbench.models.polygrad import PolyGRAD, PolyGRADConfig, PolyGRADTransformer
from wmbench.testing import LinearSystem, WorldModelConformance, simple_policy

TINY = dict(horizon=6, diffusion_steps=8, width=64, blocks=2, train_steps=40, batch_size=64, ema_start=10,
            tune_iterations=2, tune_batch_size=16)


class TestConformance(WorldModelConformance):
    def make_model(self, obs_dim, act_dim):
        return PolyGRAD(obs_dim, act_dim, PolyGRADConfig(**TINY))


class TestTransformerConformance(WorldModelConformance):
    def make_model(self, obs_dim, act_dim):
        return PolyGRADTransformer(obs_dim, act_dim, PolyGRADTransformer.Config(
            **{**TINY, "dim": 32, "layers": 2, "heads": 2}))


def test_schedule_matches_its_closed_form():
    steps, tau = 128, 1.0
    schedule = DiffusionSchedule(steps, tau)
    u = np.linspace(0, 1, steps + 1)
    alpha_bar_u = np.cos(np.pi * u / 2) ** (2 * tau)
    betas = np.clip(1 - alpha_bar_u[1:] / alpha_bar_u[:-1], 0, 0.999)
    np.testing.assert_allclose(schedule.betas.numpy(), betas, rtol=1e-6, atol=1e-9)
    # Before the last step's beta is clipped, the cumulative product is the closed form itself.
    np.testing.assert_allclose(schedule.alpha_bar[:-1].numpy(), alpha_bar_u[1:-1], rtol=1e-5)
    assert schedule.betas[-1] == pytest.approx(0.999)
    ab = np.cumprod(1 - betas)
    ab_prev = np.concatenate([[1.0], ab[:-1]])
    np.testing.assert_allclose(schedule.posterior_c1.numpy(), betas * np.sqrt(ab_prev) / (1 - ab), rtol=1e-5)
    np.testing.assert_allclose(schedule.posterior_c2.numpy(), (1 - ab_prev) * np.sqrt(1 - betas) / (1 - ab), rtol=1e-5)
    assert schedule.posterior_std[0] < 1e-9  # no noise at the last step
    sharp = DiffusionSchedule(128, tau=0.1)  # Hopper's setting: most noise arrives in the last step
    np.testing.assert_allclose(sharp.alpha_bar[:-1].numpy(), (np.cos(np.pi * u / 2) ** 0.2)[1:-1], rtol=1e-5)
    assert sharp.alpha_bar[63] > 0.9 and sharp.betas[-1] > 0.99


class ExactDenoiser(nn.Module):
    """The perfect denoiser of a deterministic linear system: whatever x_t, it returns the true
    trajectory that starts at x_t's first state and follows the given actions."""

    def __init__(self, model: PolyGRAD, system: LinearSystem):
        super().__init__()
        self.model, self.system = [model], system  # a list: not a registered submodule

    def forward(self, x, scaled_actions, t):
        model = self.model[0]
        actions = model.act_norm.unnormalise(scaled_actions / model.schedule.sqrt_alpha_bar[t].view(-1, 1, 1))
        s0 = model.x_norm.unnormalise(x)[:, 0, : model.obs_dim]
        obs, rewards = self.system.rollout(s0.double().numpy(), actions[:, :-1].double().numpy())
        last_reward = obs[:, -1] @ self.system.c + np.clip(actions[:, -1].double().numpy(), -1, 1) @ self.system.d
        rewards = np.concatenate([rewards, last_reward[:, None]], axis=1)
        rows = np.concatenate([obs, rewards[..., None], np.zeros_like(rewards)[..., None]], axis=-1)
        return model.x_norm.normalise(torch.as_tensor(rows, dtype=torch.float32))


def exact_model(system, **overrides):
    config = PolyGRADConfig(**{**TINY, "diffusion_steps": 32, **overrides})
    model = PolyGRAD(system.obs_dim, system.act_dim, config)
    model._window_batches(system.dataset(episodes=20, length=20))  # sets the normalisers
    model.denoiser = ExactDenoiser(model, system)
    return model.eval()


def init_obs(system, n=64, seed=1):
    return torch.as_tensor(np.random.default_rng(seed).normal(size=(n, system.obs_dim)), dtype=torch.float32)


@pytest.mark.parametrize("guidance", ["gradient", "none", "sample"])
def test_exact_denoiser_recovers_the_true_trajectory(guidance):
    system = LinearSystem.random(obs_dim=3, act_dim=2, seed=2)
    model = exact_model(system, guidance=guidance, action_clip_std=0.0, state_change_clip=0.0)
    init = init_obs(system)
    traj = model.rollout(init, simple_policy(3, 2), 6, generator=torch.Generator().manual_seed(0))
    true_obs, true_rewards = system.rollout(init.double().numpy(), traj.actions.double().numpy())
    np.testing.assert_allclose(traj.observations.numpy(), true_obs, atol=1e-4)
    np.testing.assert_allclose(traj.rewards.numpy(), true_rewards, atol=1e-4)
    assert not traj.terminals.any()


def test_default_clips_keep_the_trajectory_close_to_the_truth():
    system = LinearSystem.random(obs_dim=3, act_dim=2, seed=2)
    model = exact_model(system)
    init = init_obs(system)
    traj = model.rollout(init, simple_policy(3, 2), 6, generator=torch.Generator().manual_seed(0))
    true_obs, _ = system.rollout(init.double().numpy(), traj.actions.double().numpy())
    assert np.mean((traj.observations.numpy() - true_obs) ** 2) < 0.01 * true_obs.var()


def test_inpainting_keeps_the_first_state_exact_through_sampling():
    system = LinearSystem.random(seed=3)
    model = PolyGRAD(3, 2, PolyGRADConfig(**TINY))  # untrained: the worst case for s0
    model._window_batches(system.dataset())
    seen = []
    real_forward = model.denoiser.forward

    def spy(x, a, t):
        seen.append(model.x_norm.unnormalise(x)[:, 0, :3].clone())
        return real_forward(x, a, t)

    model.denoiser.forward = spy
    init = init_obs(system, n=8)
    traj = model.rollout(init, simple_policy(3, 2), 6, generator=torch.Generator().manual_seed(0))
    assert torch.equal(traj.observations[:, 0], init)
    assert len(seen) == model.schedule.steps
    for s0 in seen:  # the denoiser's input holds s0 at every step (up to float32 z-scoring)
        torch.testing.assert_close(s0, init, atol=1e-5, rtol=0)


def test_the_denoiser_is_given_the_executed_action_and_the_trajectory_the_drawn_one():
    system = LinearSystem.random(seed=3)
    model = PolyGRAD(3, 2, PolyGRADConfig(**TINY))
    model._window_batches(system.dataset())
    seen = []
    real_forward = model.denoiser.forward

    def spy(x, scaled, t):
        seen.append(model.act_norm.unnormalise(scaled / model.schedule.sqrt_alpha_bar[t].view(-1, 1, 1)))
        return real_forward(x, scaled, t)

    model.denoiser.forward = spy
    wide = simple_policy(3, 2, std=2.0)  # most of its actions leave [-1, 1]
    traj = model.rollout(init_obs(system, n=64), wide, 6, generator=torch.Generator().manual_seed(0))
    assert (traj.actions.abs() > 1.5).float().mean() > 0.1  # stored as drawn: the calibration sees them
    assert max(float(a.abs().max()) for a in seen) <= 1.0 + 1e-5


def constant_state_system(obs_dim=3, act_dim=2):
    """States never change, so the policy's action distribution at each state is fixed."""
    return LinearSystem(A=np.eye(obs_dim), B=np.zeros((obs_dim, act_dim)), c=np.zeros(obs_dim), d=np.zeros(act_dim))


def standardised_std(model, policy, init):
    traj = model.rollout(init, policy, model.config.horizon, generator=torch.Generator().manual_seed(123))
    return float(policy.standardise(traj.observations[:, :-1], traj.actions).std(dim=(0, 1)).mean())


def test_tuned_guidance_draws_actions_from_the_policy():
    system, policy = constant_state_system(), simple_policy(3, 2, std=0.3)
    model = exact_model(system, delta_init=1e-4, delta_lr=0.1, tune_batch_size=128)
    init = init_obs(system, n=512)
    before = standardised_std(model, policy, init)
    model.tune_delta(policy, init, iterations=120, generator=torch.Generator().manual_seed(0), progress=False)
    after = standardised_std(model, policy, init)
    assert not 0.9 <= before <= 1.1
    assert 0.9 <= after <= 1.1, (before, after, model.delta)


@pytest.mark.parametrize("start_delta, direction", [(1e-5, +1), (0.09, -1)])
def test_delta_tuning_moves_the_right_way(start_delta, direction):
    """From a delta too small (actions stay random: std(z) > 1) it grows; from one that pulls every
    action onto the mean (0.09 = std^2: std(z) < 1) it shrinks."""
    system, policy = constant_state_system(), simple_policy(3, 2, std=0.3)
    model = exact_model(system, delta_init=start_delta)
    history = model.tune_delta(policy, init_obs(system, n=256), iterations=3,
                               generator=torch.Generator().manual_seed(0), progress=False)
    assert np.sign(history[-1] - start_delta) == direction
    assert np.all(np.sign(np.diff([start_delta, *history])) == direction)


def test_tuning_stays_finite_for_a_nearly_deterministic_policy():
    """With std 0.02 the initial delta (0.005) already overshoots the mean 12-fold; unbounded, the
    rule would push delta to inf. It stays at most std^2 and the trajectories stay finite."""
    system, policy = constant_state_system(), simple_policy(3, 2, std=0.02)
    model = exact_model(system, delta_init=0.005, delta_lr=0.3)
    init = init_obs(system, n=128)
    history = model.tune_delta(policy, init, iterations=10, generator=torch.Generator().manual_seed(0), progress=False)
    assert np.isfinite(history).all() and max(history) <= 0.02 ** 2 * (1 + 1e-5)
    traj = model.rollout(init, policy, model.config.horizon, generator=torch.Generator().manual_seed(1))
    assert torch.isfinite(traj.observations).all() and torch.isfinite(traj.actions).all()


def test_prepare_tunes_once_per_policy_and_the_checkpoint_keeps_delta(tmp_path):
    system = LinearSystem.random(seed=4)
    model = PolyGRAD(3, 2, PolyGRADConfig(**TINY))
    data = system.dataset()
    model.fit(data, progress=False)
    policy = simple_policy(3, 2)
    assert model.prepare(policy, data, generator=torch.Generator().manual_seed(0), progress=False)
    assert len(model.delta_history) == TINY["tune_iterations"] and model.delta != pytest.approx(0.005)
    assert not model.prepare(policy, data, generator=torch.Generator(), progress=False)
    model.save(tmp_path / "p.pt")
    loaded = WorldModel.load(tmp_path / "p.pt")
    assert loaded.delta == pytest.approx(model.delta) and loaded.delta_history == model.delta_history
    assert not loaded.prepare(policy, data, generator=torch.Generator(), progress=False)
    assert loaded.prepare(policy.with_std(0.5), data, generator=torch.Generator(), progress=False)


def test_other_horizon_is_a_clear_error():
    model = PolyGRAD(3, 2, PolyGRADConfig(**TINY))
    with pytest.raises(UsageError, match="h = 6.*--horizon 7"):
        model.rollout(torch.zeros(2, 3), simple_policy(3, 2), 7, generator=torch.Generator())


def test_training_windows_pad_past_termination():
    from wmbench.data import OfflineData

    obs = np.arange(4, dtype=np.float32)[:, None]
    data = OfflineData("t", "toy", obs, np.ones((4, 1), np.float32), np.array([1, 2, 3, 4], np.float32), obs + 1,
                       np.array([False, False, False, True]), np.array([0, 4]))
    model = PolyGRAD(1, 1, PolyGRADConfig(**{**TINY, "horizon": 2}))
    n_windows, batch = model._window_batches(data)
    raw = model.x_norm.unnormalise(batch(torch.arange(n_windows))[0])
    assert len(raw) == 4  # windows start at every step of a terminated episode
    last = raw[-1]  # starts at the final transition: one real row, two padded
    torch.testing.assert_close(last[:, 0], torch.tensor([3.0, 4.0, 4.0]))  # padded with the terminal state
    torch.testing.assert_close(last[:, 1], torch.tensor([4.0, 0.0, 0.0]), atol=1e-5, rtol=0)  # rewards 0
    torch.testing.assert_close(last[:, 2], torch.tensor([1.0, 1.0, 1.0]), atol=1e-5, rtol=0)  # terminal from the end on


def test_delta_can_be_tuned_during_training():
    system = LinearSystem.random(seed=5)
    model = PolyGRAD(3, 2, PolyGRADConfig(**{**TINY, "tune_every": 10}))
    model.fit(system.dataset(), policy=simple_policy(3, 2), progress=False)
    assert len(model.delta_history) == TINY["train_steps"] // 10
