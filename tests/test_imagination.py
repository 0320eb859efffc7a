"""The imagined-RL learner: GAE by hand, updates that leave the world model alone, and learning on a
linear system whose optimal actions are known, through an exact (least-squares) world model."""

import numpy as np
import pytest
import torch

from wmbench.data import Normaliser
from wmbench.models.base import get_model_class
from wmbench.rl.learner import ActorCritic, ActorCriticConfig, gae, step_weights
from wmbench.testing import LinearSystem


def test_gae_and_returns_by_hand():
    rewards = torch.tensor([[1.0, 2.0, 3.0]])
    values = torch.tensor([[0.5, 1.0, 1.5, 2.0]])
    terminals = torch.tensor([[False, True, False]])  # s_2 is terminal: nothing after step 1 counts
    gamma, lam = 0.9, 0.5
    d0 = 1.0 + 0.9 * 1.0 - 0.5
    d1 = 2.0 + 0.0 - 1.0
    d2 = 3.0 + 0.9 * 2.0 - 1.5
    expected = torch.tensor([[d0 + 0.45 * d1, d1, d2]])
    advantages, returns = gae(rewards, values, terminals, gamma, lam)
    torch.testing.assert_close(advantages, expected)
    torch.testing.assert_close(returns, expected + values[:, :-1])
    torch.testing.assert_close(step_weights(terminals), torch.tensor([[1.0, 1.0, 0.0]]))


def linear_setup(seed: int = 0):
    system = LinearSystem.random(obs_dim=3, act_dim=2, seed=seed)
    data = system.dataset(episodes=60, length=40)
    model = get_model_class("linear")(3, 2)
    model.fit(data, progress=False)
    config = ActorCriticConfig(imagined=256, horizon=10, actor_lr=1e-3, critic_lr=1e-3, hidden=64)
    torch.manual_seed(seed)
    learner = ActorCritic(3, 2, config, obs_norm=Normaliser.fit(data.observations))
    starts = torch.as_tensor(data.observations, dtype=torch.float32)
    return system, model, learner, starts


def test_an_update_changes_the_actor_and_critic_and_never_the_world_model():
    _, model, learner, starts = linear_setup()
    generator = torch.Generator().manual_seed(0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    actor, critic = ([p.clone() for p in m.parameters()] for m in (learner.actor, learner.critic))
    traj = learner.imagine(model, starts[torch.randint(0, len(starts), (64,), generator=generator, device="cpu")],
                           generator)
    learner.update(traj)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert any(not torch.equal(a, b) for a, b in zip(actor, learner.actor.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(critic, learner.critic.parameters()))


def optimal_direction(system: LinearSystem, gamma: float, horizon: int) -> np.ndarray:
    """With linear dynamics and reward, an action's effect on the return does not depend on the
    state: at the first step its gradient is d + sum_k gamma^k B^T (A^T)^(k-1) c; the optimum is
    its sign (actions saturate at the bounds)."""
    gradient, effect = system.d.copy(), system.B.copy()
    for k in range(1, horizon):
        gradient += gamma ** k * effect.T @ system.c
        effect = system.A @ effect
    return np.sign(gradient)


def test_imagined_rl_with_an_exact_model_moves_the_policy_towards_the_optimum():
    system, model, learner, starts = linear_setup()
    generator = torch.Generator().manual_seed(0)
    target = torch.as_tensor(optimal_direction(system, learner.config.gamma, learner.config.horizon),
                             dtype=torch.float32)

    def real_return() -> float:  # the mean action, replayed in the true system from 256 starts
        obs0 = starts[:256]
        with torch.no_grad():
            obs, total = obs0.numpy(), 0.0
            for t in range(learner.config.horizon):
                act = learner.actor.mean_std(torch.as_tensor(obs, dtype=torch.float32))[0].numpy()
                obs, reward = system.step(obs, act)
                total += learner.config.gamma ** t * reward.mean()
        return total

    def agreement() -> float:
        with torch.no_grad():
            return float((torch.sign(learner.actor.mean_std(starts[:256])[0]) == target).float().mean())

    def optimal_return() -> float:  # the saturated optimal action at every step
        obs, total = starts[:256].numpy(), 0.0
        for t in range(learner.config.horizon):
            obs, reward = system.step(obs, np.broadcast_to(target.numpy(), (len(obs), 2)))
            total += learner.config.gamma ** t * reward.mean()
        return total

    first_return, first_agreement = real_return(), agreement()
    for _ in range(150):
        idx = torch.randint(0, len(starts), (learner.config.imagined,), generator=generator, device="cpu")
        learner.update(learner.imagine(model, starts[idx], generator))
    gap = optimal_return() - first_return
    assert gap > 0 and real_return() > first_return + 0.5 * gap, (first_return, real_return(), optimal_return())
    assert agreement() > max(0.9, first_agreement), (first_agreement, agreement())


@pytest.mark.parametrize("terminal_at", [0, 4])
def test_steps_after_a_termination_carry_no_weight(terminal_at):
    terminals = torch.zeros(1, 6, dtype=torch.bool)
    terminals[0, terminal_at] = True
    weight = step_weights(terminals)
    assert weight[0, : terminal_at + 1].eq(1).all() and weight[0, terminal_at + 1:].eq(0).all()
