"""Autoregressive transformer world model: a causal GPT over per-step tokens.

Token t embeds the z-scored `(s_t, a_t)`; the output at token t is a deterministic prediction of
the z-scored `[s_{t+1} - s_t, r_t, term_t]`, trained with MSE (steps padded past a termination
are masked out). Rollouts slide a window of the last `context` steps (15, as the paper).

Two details differ on purpose from the authors' code, which had an action-normalisation mismatch
between training and rollout and rewards shifted by one step: here actions are z-scored with the
same statistics in training and in rollouts, and token t's reward target is r_t, the reward of
taking a_t in s_t (the transition the token describes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from wmbench.config import param
from wmbench.data import Normaliser, OfflineData
from wmbench.models.base import AutoregressiveWorldModel, FitReport, register_model
from wmbench.models.diffusion import TransformerDenoiser
from wmbench.models.training import TrainingConfig, train_steps

CONTEXT = 15


@dataclass
class TransformerConfig(TrainingConfig):
    lr: float = param(1e-4, "Adam learning rate", above=0)
    batch_size: int = param(1024, "windows of 15 steps per gradient step", low=1)
    train_steps: int = param(100_000, "gradient steps", low=1)
    dim: int = param(312, "token width", low=1)
    layers: int = param(6, "transformer blocks", low=1)
    heads: int = param(4, "attention heads", low=1)


@register_model("transformer")
class TransformerWorldModel(AutoregressiveWorldModel):
    """Causal transformer, context 15, deterministic next-step prediction."""

    Config = TransformerConfig
    context = CONTEXT

    def __init__(self, obs_dim: int, act_dim: int, config: TransformerConfig | None = None):
        super().__init__(obs_dim, act_dim, config)
        c = self.config
        self.target_dim = obs_dim + 2
        self.net = TransformerDenoiser(CONTEXT, obs_dim, act_dim, c.dim, c.layers, c.heads, out_dim=self.target_dim)
        self.obs_norm = Normaliser.identity(obs_dim)
        self.act_norm = Normaliser.identity(act_dim)
        self.target_norm = Normaliser.identity(self.target_dim)
        self._caches: list[list[torch.Tensor]] | None = None  # per block, during a rollout only

    def _predict(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """Raw `obs [B, T, obs]`, `act [B, T, act]` (T <= 15) -> z-scored targets `[B, T, obs + 2]`."""
        return self.net(self.obs_norm.normalise(obs), self.act_norm.normalise(act))

    @staticmethod
    def _targets(data: OfflineData) -> np.ndarray:
        return np.concatenate([data.next_observations - data.observations, data.rewards[:, None],
                               data.terminals[:, None].astype(np.float32)], axis=1)

    def loss_items(self, data: OfflineData) -> tuple[int, Callable[[torch.Tensor], torch.Tensor]]:
        index, padded = data.windows(CONTEXT)
        if len(index) == 0:
            raise ValueError(f"no episode of {data.dataset_id} is long enough for windows of {CONTEXT} steps")
        as_tensor = lambda a: torch.as_tensor(a, device=self.device)  # noqa: E731
        obs, act = as_tensor(data.observations), as_tensor(data.actions)
        y = self.target_norm.normalise(as_tensor(self._targets(data)))
        index, weight = as_tensor(index), as_tensor((~padded).astype(np.float32))[..., None]

        def loss(ids: torch.Tensor) -> torch.Tensor:  # windows gathered per batch, not materialised
            rows, w = index[ids], weight[ids]
            error = (self._predict(obs[rows], act[rows]) - y[rows]).square() * w
            return error.sum() / (w.sum() * self.target_dim)

        return len(index), loss

    def fit(self, data: OfflineData, *, generator=None, progress=True, state_path=None) -> FitReport:
        c, device = self.config, self.device
        generator = generator or torch.Generator(device).manual_seed(0)
        norm = data.normalising
        self.obs_norm = Normaliser.fit(norm.observations).to(device)
        self.act_norm = Normaliser.fit(norm.actions).to(device)
        self.target_norm = Normaliser.fit(self._targets(norm)).to(device)
        n_windows, loss = self.loss_items(data)
        self.net.train()
        result = train_steps(loss, self.net, n_windows, c, generator=generator, desc=f"fit {self.name}", owner=self,
                             state_path=state_path, progress=progress)
        self.eval()
        self.fit_report = FitReport(steps=c.train_steps, seconds=result.seconds, loss=result.loss,
                                    extra={"windows": n_windows, "resumed_from": result.resumed_from})
        return self.fit_report

    def rollout(self, init_obs, policy, horizon, *, generator):
        """The shared rollout, with a key-value cache while the context window still grows.

        Positions are learned per window slot, so once the window slides every token moves to a new
        slot and all keys and values change: from step 15 on, each step runs the whole window."""
        self._caches = [[] for _ in self.net.blocks]
        try:
            return super().rollout(init_obs, policy, horizon, generator=generator)
        finally:
            self._caches = None

    def step(self, obs_hist, act_hist, *, generator):
        tokens, caches = obs_hist.shape[1], self._caches
        cached = caches[0][0].shape[2] if caches and caches[0] else 0
        if caches is not None and cached == tokens - 1:  # the window grew by one step: run only that token
            out = self.net(self.obs_norm.normalise(obs_hist[:, -1:]), self.act_norm.normalise(act_hist[:, -1:]),
                           caches=caches, start=tokens - 1)
        else:
            out = self._predict(obs_hist, act_hist)
        target = self.target_norm.unnormalise(out[:, -1])
        return obs_hist[:, -1] + target[:, : self.obs_dim], target[:, self.obs_dim], target[:, self.obs_dim + 1] > 0.5
