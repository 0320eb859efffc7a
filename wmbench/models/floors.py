"""Reference floors: models that train in seconds, so that every table says what "learned" means.

`persistence` predicts that nothing moves: every future state is the start state. `linear` fits
least-squares linear dynamics `[s', r, term] = W [s, a, 1]` (on z-scored inputs and targets) and
rolls them out autoregressively. A world model that does not beat them has learned the mean, not
the dynamics.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np
import torch

from wmbench.data import Normaliser, OfflineData
from wmbench.models.base import AutoregressiveWorldModel, FitReport, register_model


@register_model("persistence")
class Persistence(AutoregressiveWorldModel):
    """Floor: `s_k = s_0` for every k; the reward is the data's mean; never terminal."""

    context = 1
    online_budget = None  # closed form: refitted in full

    def __init__(self, obs_dim: int, act_dim: int, config=None):
        super().__init__(obs_dim, act_dim, config)
        self.register_buffer("mean_reward", torch.zeros(()))

    def fit(self, data: OfflineData, *, generator=None, progress=True, state_path=None) -> FitReport:
        start = time.perf_counter()
        self.mean_reward.fill_(float(data.rewards.mean()))
        self.fit_report = FitReport(seconds=time.perf_counter() - start)
        return self.fit_report

    def step(self, obs_hist, act_hist, *, generator):
        obs = obs_hist[:, -1]
        terminal = torch.zeros(len(obs), dtype=torch.bool, device=obs.device)
        return obs.clone(), self.mean_reward.expand(len(obs)).clone(), terminal


@register_model("linear")
class LinearDynamics(AutoregressiveWorldModel):
    """Floor: least-squares linear dynamics on `[s, a]`, rolled out step by step."""

    context = 1
    online_budget = None  # closed form: refitted in full

    def __init__(self, obs_dim: int, act_dim: int, config=None):
        super().__init__(obs_dim, act_dim, config)
        self.input_norm = Normaliser.identity(obs_dim + act_dim)
        self.target_norm = Normaliser.identity(obs_dim + 2)
        self.register_buffer("weights", torch.zeros(obs_dim + act_dim + 1, obs_dim + 2))

    def fit(self, data: OfflineData, *, generator=None, progress=True, state_path=None) -> FitReport:
        start, device = time.perf_counter(), self.device
        inputs, targets = self._pairs(data.normalising)
        self.input_norm, self.target_norm = Normaliser.fit(inputs).to(device), Normaliser.fit(targets).to(device)
        x, y = self._tensors(data)
        # SVD-based on CPU: a constant dim (a terminal flag that never fires) does no harm
        solution = torch.linalg.lstsq(x.cpu(), y.cpu(), driver="gelsd").solution.to(device)
        self.weights.copy_(solution)
        loss = float(torch.mean((x @ solution - y) ** 2))
        self.fit_report = FitReport(seconds=time.perf_counter() - start, loss=loss)
        return self.fit_report

    @staticmethod
    def _pairs(data: OfflineData) -> tuple[np.ndarray, np.ndarray]:
        """Raw `(inputs [N, obs + act], targets [N, obs + 2])`: next state, reward and termination."""
        return (np.concatenate([data.observations, data.actions], axis=1),
                np.concatenate([data.next_observations, data.rewards[:, None],
                                data.terminals[:, None].astype(np.float32)], axis=1))

    def _tensors(self, data: OfflineData) -> tuple[torch.Tensor, torch.Tensor]:
        """z-scored inputs with a constant 1, and z-scored targets (float64)."""
        inputs, targets = (torch.as_tensor(a, device=self.device) for a in self._pairs(data))
        x = self.input_norm.normalise(inputs).double()
        return torch.cat([x, x.new_ones(len(x), 1)], dim=1), self.target_norm.normalise(targets).double()

    def loss_items(self, data: OfflineData) -> tuple[int, Callable[[torch.Tensor], torch.Tensor]]:
        """The least-squares objective: the mean squared error of the z-scored targets."""
        x, y = self._tensors(data)
        return len(x), lambda ids: torch.mean((x[ids] @ self.weights.double() - y[ids]) ** 2)

    def step(self, obs_hist, act_hist, *, generator):
        x = self.input_norm.normalise(torch.cat([obs_hist[:, -1], act_hist[:, -1]], dim=-1))
        y = self.target_norm.unnormalise(torch.cat([x, x.new_ones(len(x), 1)], dim=-1) @ self.weights)
        return y[:, : self.obs_dim], y[:, self.obs_dim], y[:, self.obs_dim + 1] > 0.5
