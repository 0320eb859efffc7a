"""The evaluation policy: `Normal(mean = tanh(m(s)), std = exp(log_std) + min_std)`.

This is the policy family of the PolyGRAD paper: a Gaussian with a tanh-bounded mean and a learned,
state-independent std with a floor; not a tanh-squashed Gaussian. Samples may leave the action
space; the environment (and every world model) clips them when they are executed.
"""

from __future__ import annotations

import copy
import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import trange

from wmbench.config import config_section, param
from wmbench.data import Normaliser, OfflineData
from wmbench.errors import CheckpointError
from wmbench.paths import atomic_write_bytes


@config_section("policy")
@dataclass
class PolicyConfig:
    """The behaviour-cloning evaluation policy (`--policy bc`)."""

    hidden: int = param(256, "width of the two hidden layers (ELU + LayerNorm)", low=1)
    min_std: float = param(0.1, "floor added to exp(log_std), as in the paper", low=0)
    steps: int = param(5000, "behaviour-cloning gradient steps", low=1)
    batch_size: int = param(256, "behaviour-cloning batch size", low=1)
    lr: float = param(1e-3, "Adam learning rate for behaviour cloning", above=0)


class GaussianPolicy(nn.Module):
    """`pi(a | s)` on raw observations `[..., obs]` and raw actions `[..., act]`."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: int = 256, min_std: float = 0.1,
                 action_low: float = -1.0, action_high: float = 1.0):
        super().__init__()
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.hidden, self.min_std = hidden, min_std
        self.action_low, self.action_high = action_low, action_high
        self.obs_norm = Normaliser.identity(obs_dim)
        self.net = nn.Sequential(
            nn.Linear(obs_dim, hidden), nn.LayerNorm(hidden), nn.ELU(),
            nn.Linear(hidden, hidden), nn.LayerNorm(hidden), nn.ELU(),
            nn.Linear(hidden, act_dim),
        )
        self.log_std = nn.Parameter(torch.zeros(act_dim))

    def mean_std(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`obs [..., obs] -> (mean [..., act], std [act])`."""
        mean = torch.tanh(self.net(self.obs_norm.normalise(obs)))
        return mean, self.log_std.exp() + self.min_std

    def sample(self, obs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        mean, std = self.mean_std(obs)
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return mean + std * noise

    def log_prob(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """`log pi(a | s)` summed over action dims: `[...]`."""
        mean, std = self.mean_std(obs)
        z = (act - mean) / std
        return (-0.5 * z.square() - std.log() - 0.5 * math.log(2 * math.pi)).sum(-1)

    def score(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """`grad_a log pi(a | s)` in closed form: `-(a - mean) / std^2`, `[..., act]`."""
        mean, std = self.mean_std(obs)
        return -(act - mean) / std.square()

    def standardise(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """`(a - mean(s)) / std`: N(0, I) for actions drawn from this policy."""
        mean, std = self.mean_std(obs)
        return (act - mean) / std

    def clip(self, act: torch.Tensor) -> torch.Tensor:
        """The action the environment executes."""
        return act.clamp(self.action_low, self.action_high)

    def with_std(self, std: float) -> GaussianPolicy:
        """A frozen copy with the same mean and a fixed std (the policy-entropy axis)."""
        if std <= 0:
            raise ValueError("policy std must be positive")
        other = copy.deepcopy(self)
        other.min_std = 0.0
        other.log_std = nn.Parameter(torch.full_like(self.log_std, math.log(std)), requires_grad=False)
        return other

    # ------------------------------------------------------------------ fitting and persistence

    @classmethod
    def fit(cls, data: OfflineData, config: PolicyConfig | None = None, seed: int = 0,
            progress: bool = True) -> GaussianPolicy:
        """Behaviour cloning: maximum likelihood of the dataset's actions."""
        config = config or PolicyConfig()
        torch.manual_seed(seed)
        policy = cls(data.obs_dim, data.act_dim, hidden=config.hidden, min_std=config.min_std)
        policy.obs_norm = Normaliser.fit(data.observations)
        obs = torch.as_tensor(data.observations)
        act = torch.as_tensor(data.actions)
        optimiser = torch.optim.Adam(policy.parameters(), lr=config.lr)
        generator = torch.Generator().manual_seed(seed)
        for _ in trange(config.steps, desc="fit policy (BC)", disable=not progress, leave=False):
            idx = torch.randint(0, len(obs), (config.batch_size,), generator=generator, device="cpu")
            loss = -policy.log_prob(obs[idx], act[idx]).mean()
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
        return policy.eval().requires_grad_(False)

    def save(self, path: str | Path) -> None:
        import io

        buffer = io.BytesIO()
        torch.save({
            "kind": "GaussianPolicy",
            "args": dict(obs_dim=self.obs_dim, act_dim=self.act_dim, hidden=self.hidden,
                         min_std=self.min_std, action_low=self.action_low, action_high=self.action_high),
            "state_dict": self.state_dict(),
        }, buffer)
        atomic_write_bytes(Path(path), buffer.getvalue())

    @classmethod
    def load(cls, path: str | Path) -> GaussianPolicy:
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
            policy = cls(**payload["args"])
            policy.load_state_dict(payload["state_dict"])
        except Exception as err:
            raise CheckpointError(f"policy file {path} is corrupt or unreadable ({type(err).__name__}); "
                                  f"delete it and it will be refitted") from err
        return policy.eval().requires_grad_(False)

    def fingerprint(self) -> str:
        """Changes whenever the policy's distribution can change (weights, std, normaliser)."""
        digest = hashlib.sha1(repr((self.min_std, self.action_low, self.action_high)).encode())
        for name, tensor in sorted(self.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().numpy().tobytes())
        return digest.hexdigest()[:16]
