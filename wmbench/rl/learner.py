"""RL in imagination (the paper's Algorithm 3), its learner: an on-policy actor-critic updated only
on trajectories a world model imagines under the current policy.

Settings follow POLYGRAD_NOTES: gamma 0.99, GAE lambda 0.9, normalised advantages, entropy bonus
1e-5, 2 x 256 ELU MLPs with LayerNorm for the actor (wmbench's `GaussianPolicy`) and the critic, and
a slow copy of the critic (EMA 0.995) that gives the values the advantages and targets are computed
from. The learner is shared by every world model: it sees only `Trajectories` (observations,
actions, rewards, terminals), so whatever model imagined them is never changed by an update.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from wmbench import metrics
from wmbench.config import param
from wmbench.data import Normaliser
from wmbench.models.base import Trajectories, WorldModel
from wmbench.policy import GaussianPolicy


@dataclass
class ActorCriticConfig:
    gamma: float = param(0.99, "discount", low=0, high=1)
    lam: float = param(0.9, "GAE lambda", low=0, high=1)
    entropy: float = param(1e-5, "entropy bonus weight", low=0)
    critic_ema: float = param(0.995, "decay of the slow critic that gives the values", low=0, high=1)
    actor_lr: float = param(3e-4, "actor Adam learning rate", above=0)
    critic_lr: float = param(3e-4, "critic Adam learning rate", above=0)
    hidden: int = param(256, "width of the actor's and critic's two hidden layers", low=1)
    imagined: int = param(1024, "imagined trajectories per update, from real start states", low=1)
    horizon: int = param(10, "steps per imagined trajectory", low=1)


def gae(rewards: torch.Tensor, values: torch.Tensor, terminals: torch.Tensor, gamma: float,
        lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimates and lambda-returns, `[B, H]` each, from rewards `[B, H]`,
    values `[B, H+1]` (the last one bootstraps) and terminals `[B, H]` (s_{t+1} terminal: no value
    after it)."""
    keep = 1.0 - terminals.float()
    deltas = rewards + gamma * keep * values[:, 1:] - values[:, :-1]
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        running = deltas[:, t] + gamma * lam * keep[:, t] * running
        advantages[:, t] = running
    return advantages, advantages + values[:, :-1]


def step_weights(terminals: torch.Tensor) -> torch.Tensor:
    """`[B, H]`: 1 for step t when no termination came before it, i.e. when the state it leads to is
    alive (`metrics.alive_mask` of states 1..H): the step into a terminal state counts, later ones not."""
    alive = metrics.alive_mask(terminals.cpu().numpy())[:, 1:]
    return torch.as_tensor(alive, dtype=torch.float32, device=terminals.device)


class Critic(nn.Module):
    """`V(s)` on raw observations: 2 x `hidden` ELU MLP with LayerNorm."""

    def __init__(self, obs_dim: int, hidden: int = 256):
        super().__init__()
        self.obs_norm = Normaliser.identity(obs_dim)
        self.net = nn.Sequential(nn.Linear(obs_dim, hidden), nn.LayerNorm(hidden), nn.ELU(),
                                 nn.Linear(hidden, hidden), nn.LayerNorm(hidden), nn.ELU(), nn.Linear(hidden, 1))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(self.obs_norm.normalise(obs)).squeeze(-1)


class ActorCritic:
    """The learner: `imagine` a batch with a world model under the actor, then `update` on it."""

    def __init__(self, obs_dim: int, act_dim: int, config: ActorCriticConfig | None = None,
                 obs_norm: Normaliser | None = None):
        self.config = c = config or ActorCriticConfig()
        self.actor = GaussianPolicy(obs_dim, act_dim, hidden=c.hidden)
        self.critic = Critic(obs_dim, c.hidden)
        if obs_norm is not None:  # the data's statistics: both networks see z-scored states
            self.actor.obs_norm, self.critic.obs_norm = copy.deepcopy(obs_norm), copy.deepcopy(obs_norm)
        self.slow_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=c.actor_lr)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=c.critic_lr)

    def to(self, device: torch.device | str) -> ActorCritic:
        for module in (self.actor, self.critic, self.slow_critic):
            module.to(device)
        return self

    def state_dict(self) -> dict:
        """Networks and optimisers, for a resumable run."""
        return {name: getattr(self, name).state_dict()
                for name in ("actor", "critic", "slow_critic", "actor_opt", "critic_opt")}

    def load_state_dict(self, state: dict) -> None:
        for name, value in state.items():
            getattr(self, name).load_state_dict(value)

    def imagine(self, model: WorldModel, start_obs: torch.Tensor, generator: torch.Generator) -> Trajectories:
        """`config.imagined` trajectories of `config.horizon` steps from the given real start states."""
        self.actor.eval()
        with torch.no_grad():
            traj = model.rollout(start_obs, self.actor, self.config.horizon, generator=generator)
        # inference-mode tensors cannot enter autograd: the learner works on plain copies
        return Trajectories(*(t.detach().clone().float() if t.is_floating_point() else t.detach().clone()
                              for t in (traj.observations, traj.actions, traj.rewards, traj.terminals)))

    def update(self, traj: Trajectories) -> dict[str, float]:
        """One actor and one critic step on an imagined batch; returns the losses and statistics."""
        c = self.config
        self.actor.train()
        obs, act, terminals = traj.observations, traj.actions, traj.terminals.bool()
        weight = step_weights(terminals)
        with torch.no_grad():
            values = self.slow_critic(obs)
            advantages, returns = gae(traj.rewards, values, terminals, c.gamma, c.lam)
            valid = weight > 0
            normalised = (advantages - advantages[valid].mean()) / (advantages[valid].std() + 1e-8)

        mean, std = self.actor.mean_std(obs[:, :-1])
        log_prob = torch.distributions.Normal(mean, std).log_prob(act).sum(-1)
        entropy = torch.log(std).sum() + 0.5 * act.shape[-1] * (1.0 + torch.log(torch.tensor(2 * torch.pi)))
        actor_loss = -(normalised * log_prob * weight).sum() / weight.sum() - c.entropy * entropy
        self.actor_opt.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_opt.step()

        critic_loss = ((self.critic(obs[:, :-1]) - returns).square() * weight).sum() / weight.sum()
        self.critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_opt.step()
        with torch.no_grad():
            torch._foreach_lerp_(list(self.slow_critic.parameters()), list(self.critic.parameters()),
                                 1.0 - c.critic_ema)
        self.actor.eval()
        return {"actor_loss": actor_loss.item(), "critic_loss": critic_loss.item(),
                "imagined_return": float((traj.rewards * weight).sum(1).mean()), "std": std.mean().item()}
