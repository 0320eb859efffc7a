"""Probabilistic MLP ensemble (MBPO-style, Janner et al. 2019), the autoregressive baseline.

Each member maps z-scored `[s, a]` to a diagonal Gaussian over z-scored `[s' - s, r]` plus a
termination logit. All members run together as batched matmuls (`[E, N, in] @ [E, in, out]`), so
the ensemble costs one kernel per layer, not one per member. Training follows MBPO: Gaussian NLL
with learned soft bounds on the log-variance, per-layer weight decay, a 10% hold-out set, early
stopping when no member improves by 1% for `patience` epochs, each member restored to its best
epoch, and the `elites` best members by hold-out MSE used for rollouts, a random elite per step.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from wmbench import tracking
from wmbench.config import param
from wmbench.data import Normaliser, OfflineData
from wmbench.errors import UsageError
from wmbench.models.base import AutoregressiveWorldModel, FitReport, register_model


@dataclass
class EnsembleConfig:
    members: int = param(7, "ensemble members trained", low=1)
    elites: int = param(5, "members with the lowest hold-out error, used for rollouts", low=1)
    hidden: int = param(200, "width of each hidden layer", low=1)
    layers: int = param(4, "hidden layers (Swish)", low=1)
    lr: float = param(1e-3, "Adam learning rate", above=0)
    batch_size: int = param(256, "minibatch size per member", low=1)
    holdout_fraction: float = param(0.1, "fraction of transitions held out for early stopping", above=0, high=0.9)
    holdout_max: int = param(5000, "cap on hold-out transitions", low=1)
    max_epochs: int = param(200, "epoch budget", low=1)
    max_steps: int = param(0, "gradient-step budget (0: none)", low=0)
    patience: int = param(5, "epochs without a 1% hold-out improvement before stopping", low=1)
    weight_decay: list = param([2.5e-5, 5e-5, 7.5e-5, 7.5e-5, 1e-4], "L2 per layer (MBPO)")

    def problem(self) -> str | None:
        """What is inconsistent between fields (`config.check_config` says it in one line), or None."""
        if self.elites > self.members:
            return f"elites ({self.elites}) must be at most members ({self.members})"
        if len(self.weight_decay) != self.layers + 1 or not all(isinstance(w, (int, float)) for w in self.weight_decay):
            return f"weight_decay needs {self.layers + 1} numbers (layers + 1: one per layer and the head)"
        return None


class BatchedLinear(nn.Module):
    """`E` independent linear layers applied at once: `[E, N, in] -> [E, N, out]`."""

    def __init__(self, members: int, in_dim: int, out_dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(members, in_dim, out_dim))
        self.bias = nn.Parameter(torch.zeros(members, 1, out_dim))
        nn.init.trunc_normal_(self.weight, std=1.0 / (2.0 * math.sqrt(in_dim)))

    def forward(self, x: torch.Tensor, members: torch.Tensor | None = None) -> torch.Tensor:
        if members is None:
            return torch.baddbmm(self.bias, x, self.weight)
        return torch.baddbmm(self.bias[members], x, self.weight[members])


@register_model("mlp-ensemble")
class MLPEnsemble(AutoregressiveWorldModel):
    Config = EnsembleConfig
    context = 1
    online_budget = "max_steps"

    def __init__(self, obs_dim: int, act_dim: int, config: EnsembleConfig | None = None):
        super().__init__(obs_dim, act_dim, config)
        c = self.config
        if c.problem():
            raise UsageError(f"mlp-ensemble: {c.problem()}")
        in_dim, self.target_dim = obs_dim + act_dim, obs_dim + 1
        widths = [in_dim] + [c.hidden] * c.layers
        self.layers = nn.ModuleList(BatchedLinear(c.members, a, b) for a, b in zip(widths, widths[1:]))
        self.head = BatchedLinear(c.members, c.hidden, 2 * self.target_dim + 1)
        self.max_logvar = nn.Parameter(torch.full((1, 1, self.target_dim), 0.5))
        self.min_logvar = nn.Parameter(torch.full((1, 1, self.target_dim), -10.0))
        self.input_norm = Normaliser.identity(in_dim)
        self.target_norm = Normaliser.identity(self.target_dim)
        self.register_buffer("elite_ids", torch.arange(c.elites))

    def forward(self, x: torch.Tensor, members: torch.Tensor | None = None):
        """z-scored inputs `[E, N, in]` -> `(mean, logvar [E, N, obs+1], term_logit [E, N])`."""
        for layer in self.layers:
            x = F.silu(layer(x, members))
        out = self.head(x, members)
        mean, logvar, term_logit = out.split([self.target_dim, self.target_dim, 1], dim=-1)
        logvar = self.max_logvar - F.softplus(self.max_logvar - logvar)
        logvar = self.min_logvar + F.softplus(logvar - self.min_logvar)
        return mean, logvar, term_logit.squeeze(-1)

    def step(self, obs_hist, act_hist, *, generator):
        obs = obs_hist[:, -1]
        x = self.input_norm.normalise(torch.cat([obs, act_hist[:, -1]], dim=-1))
        n_elites, batch = len(self.elite_ids), obs.shape[0]
        mean, logvar, term_logit = self(x.expand(n_elites, -1, -1), self.elite_ids)
        pick = torch.randint(n_elites, (batch,), generator=generator, device=obs.device)
        rows = torch.arange(batch, device=obs.device)
        mean, std = mean[pick, rows], (0.5 * logvar[pick, rows]).exp()
        noise = torch.randn(mean.shape, generator=generator, device=obs.device, dtype=mean.dtype)
        target = self.target_norm.unnormalise(mean + std * noise)
        return obs + target[:, :-1], target[:, -1], term_logit[pick, rows] > 0

    # ------------------------------------------------------------------ training

    def _data_loss(self, x, y, term) -> torch.Tensor:
        """Gaussian NLL and termination BCE, summed over members (`x [E, N, in]`)."""
        mean, logvar, term_logit = self(x)
        nll = (((mean - y).square() * (-logvar).exp()).mean(dim=(1, 2)) + logvar.mean(dim=(1, 2))).sum()
        bce = F.binary_cross_entropy_with_logits(term_logit, term, reduction="none").mean(dim=1).sum()
        return nll + bce

    def _loss(self, x, y, term) -> torch.Tensor:
        bounds = 0.01 * (self.max_logvar.sum() - self.min_logvar.sum())
        decay = sum(
            wd * 0.5 * layer.weight.square().sum()
            for wd, layer in zip(self.config.weight_decay, [*self.layers, self.head])
        )
        return self._data_loss(x, y, term) + bounds + decay

    @staticmethod
    def _pairs(data: OfflineData) -> tuple[np.ndarray, np.ndarray]:
        """Raw `(inputs [N, obs + act], targets [N, obs + 1])`: the state change and the reward."""
        return (np.concatenate([data.observations, data.actions], axis=1),
                np.concatenate([data.next_observations - data.observations, data.rewards[:, None]], axis=1))

    def _tensors(self, data: OfflineData) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """z-scored inputs and targets, and terminations, of every transition."""
        inputs, targets = (torch.as_tensor(a, device=self.device) for a in self._pairs(data))
        term = torch.as_tensor(data.terminals, dtype=torch.float32, device=self.device)
        return self.input_norm.normalise(inputs), self.target_norm.normalise(targets), term

    def loss_items(self, data: OfflineData) -> tuple[int, Callable[[torch.Tensor], torch.Tensor]]:
        """The data term per member (NLL + BCE over the members, divided by their number)."""
        x, y, term = self._tensors(data)
        members = self.config.members
        return len(x), lambda ids: self._data_loss(x[ids].expand(members, -1, -1), y[ids].expand(members, -1, -1),
                                                 term[ids].expand(members, -1)) / members

    @torch.no_grad()
    def _holdout_mse(self, x, y) -> torch.Tensor:
        mean, _, _ = self(x.expand(self.config.members, -1, -1))
        return (mean - y).square().mean(dim=(1, 2))

    def fit(self, data: OfflineData, *, generator=None, progress=True, state_path=None) -> FitReport:
        """MBPO's training (minutes even at the paper's budget: it stops early); it writes no
        training state, so `state_path` is unused."""
        c, device = self.config, self.device
        generator = generator or torch.Generator(device).manual_seed(0)
        inputs, targets = self._pairs(data.normalising)
        self.input_norm = Normaliser.fit(inputs).to(device)
        self.target_norm = Normaliser.fit(targets).to(device)
        x, y, term = self._tensors(data)

        order = torch.randperm(len(x), generator=generator, device=generator.device).to(device)
        n_hold = min(int(c.holdout_fraction * len(x)), c.holdout_max)
        hold, train = order[:n_hold], order[n_hold:]
        if n_hold == 0 or len(train) < c.batch_size:
            raise UsageError(f"mlp-ensemble needs more than {c.batch_size} training transitions "
                             f"and a hold-out set; got {len(x)} transitions")
        optimiser = torch.optim.Adam(self.parameters(), lr=c.lr, **({"fused": True} if device.type == "cuda"
                                                                    else {"foreach": True}))
        best = self._holdout_mse(x[hold], y[hold])
        snapshot = {k: v.clone() for k, v in self.state_dict().items()}
        stale, steps, epoch, loss = 0, 0, 0, torch.tensor(float("nan"))
        batches = len(train) // c.batch_size
        start = time.perf_counter()
        bar = tqdm(total=c.max_epochs, desc="fit mlp-ensemble", unit="epoch", disable=not progress, leave=False)
        self.train()
        while epoch < c.max_epochs and stale < c.patience and not (c.max_steps and steps >= c.max_steps):
            perms = torch.stack([torch.randperm(len(train), generator=generator, device=generator.device)
                                 for _ in range(c.members)])
            perms = train[perms.to(device)]  # an independent shuffle per member
            for b in range(batches):
                idx = perms[:, b * c.batch_size : (b + 1) * c.batch_size]
                loss = self._loss(x[idx], y[idx], term[idx])
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                steps += 1
                if c.max_steps and steps >= c.max_steps:
                    break
            epoch += 1
            mse = self._holdout_mse(x[hold], y[hold])
            improved = (best - mse) / best > 0.01
            if improved.any():
                best = torch.where(improved, mse, best)
                for k, v in self.state_dict().items():  # keep each improved member's weights
                    if v.dim() == 3 and v.shape[0] == c.members:
                        snapshot[k][improved] = v[improved]
                    else:
                        snapshot[k] = v.clone()
                stale = 0
            else:
                stale += 1
            bar.update()
            bar.set_postfix(holdout_mse=f"{best.mean().item():.4f}")
            tracking.progress("train", epoch, c.max_epochs)
            if tracking.logging("train"):  # against updates, like the other models' training
                tracking.log("train", {"loss": loss.item(), "holdout_mse": mse.mean().item(),
                                       "holdout_mse_best": best.mean().item(), "epoch": epoch}, steps)
        bar.close()
        self.load_state_dict(snapshot)
        self.eval()
        best = self._holdout_mse(x[hold], y[hold])
        self.elite_ids = torch.argsort(best)[: c.elites].to(device)
        self.fit_report = FitReport(
            steps=steps, seconds=time.perf_counter() - start, loss=loss.item(),
            extra={"epochs": epoch, "holdout_mse_elites": float(best[self.elite_ids].mean())},
        )
        return self.fit_report
