"""Autoregressive diffusion: one-step diffusion models rolled out step by step under the policy.

Two variants, both conditioned on the executed (clipped) action like every wmbench model:

- `ar-diffusion` (wmbench's design): diffuses `y = [s_{t+1}, r_t, term_t]` (each dim z-scored)
  conditioned on the clean, z-scored `(s_t, a_t)`, with PolyGRAD's schedule, x0 prediction and
  residual-MLP denoiser.
- `ar-diffusion-2row` (the authors' baseline): PolyGRAD's trajectory model at two rows
  `[s_t, r_t, term_t], [s_{t+1}, r_{t+1}, term_{t+1}]`, `s_t` inpainted, the actions `[a_t, a_{t+1}]`
  as the denoiser's scaled input in training and `[a_t, 0]` at sampling; the state is read from
  row 2, reward and termination from row 1. It sees `s_t` only through inpainting, where the
  first variant is given it as a clean condition.

A rollout is repeated ordinary DDPM sampling, one full chain of `diffusion_steps` per environment
step. The paper found autoregressive diffusion the most accurate baseline and the most expensive: H
times the denoiser passes of PolyGRAD for a trajectory of H steps.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from wmbench.config import param
from wmbench.data import Normaliser, OfflineData
from wmbench.models.base import AutoregressiveWorldModel, FitReport, register_model
from wmbench.models.diffusion import (
    DenoiserLoss,
    DenoiserTraining,
    DiffusionConfig,
    DiffusionSchedule,
    ResidualMLPDenoiser,
    TrainsAsDenoiser,
)
from wmbench.models.polygrad import PolyGRAD, PolyGRADConfig


@dataclass
class ARDiffusionConfig(DiffusionConfig):
    diffusion_steps: int = param(128, "denoising steps per environment step", low=1)


@register_model("ar-diffusion")
class ARDiffusion(TrainsAsDenoiser, AutoregressiveWorldModel):
    """One-step DDPM over [s', r, term] given (s, a), sampled autoregressively."""

    Config = ARDiffusionConfig
    context = 1

    def __init__(self, obs_dim: int, act_dim: int, config: ARDiffusionConfig | None = None):
        super().__init__(obs_dim, act_dim, config)
        c = self.config
        self.target_dim = obs_dim + 2
        # rows = 1; the condition [s, a] enters where PolyGRAD's actions do, unscaled.
        self.denoiser = ResidualMLPDenoiser(1, self.target_dim, obs_dim + act_dim, c.width, c.blocks)
        self.schedule = DiffusionSchedule(c.diffusion_steps, c.tau)
        self.cond_norm = Normaliser.identity(obs_dim + act_dim)
        self.target_norm = Normaliser.identity(self.target_dim)

    def _loss(self, denoiser: Callable | None, inputs: tuple[torch.Tensor, ...],
              draws: tuple[torch.Tensor, ...]) -> torch.Tensor:
        (y0, cond), (t, noise) = inputs, draws
        return F.mse_loss((denoiser or self.denoiser)(self.schedule.add_noise(y0, t, noise), cond, t), y0)

    @staticmethod
    def _pairs(data: OfflineData) -> tuple[np.ndarray, np.ndarray]:
        """Raw `(cond [N, obs + act], target [N, obs + 2])` of every transition."""
        cond = np.concatenate([data.observations, data.actions], axis=1)
        target = np.concatenate([data.next_observations, data.rewards[:, None],
                                 data.terminals[:, None].astype(np.float32)], axis=1)
        return cond, target

    def loss_items(self, data: OfflineData) -> tuple[int, Callable[[torch.Tensor], torch.Tensor]]:
        loss = self.denoiser_loss(data)
        return loss.n_items, loss

    def denoiser_loss(self, data: OfflineData) -> DenoiserLoss:
        """x0-prediction L2 loss of `[s', r, term]` given `(s, a)`, over every transition of `data`."""
        cond, target = (torch.as_tensor(a, device=self.device) for a in self._pairs(data))
        cond, y0 = self.cond_norm.normalise(cond)[:, None], self.target_norm.normalise(target)[:, None]
        return DenoiserLoss(len(y0), lambda idx: (y0[idx], cond[idx]), self.schedule.training_draws, self._loss)

    def denoiser_training(self, data: OfflineData) -> DenoiserTraining:
        cond, target = self._pairs(data.normalising)
        self.cond_norm = Normaliser.fit(cond).to(self.device)
        self.target_norm = Normaliser.fit(target).to(self.device)
        return DenoiserTraining(self, self.denoiser, self.denoiser_loss(data), self.config, f"fit {self.name}",
                                lambda result: _finish(self, result))

    def fit(self, data: OfflineData, *, generator=None, progress=True, state_path=None) -> FitReport:
        generator = generator or torch.Generator(self.device).manual_seed(0)
        return self.denoiser_training(data).run(generator=generator, progress=progress, state_path=state_path)

    def step(self, obs_hist, act_hist, *, generator):
        obs = obs_hist[:, -1]
        cond = self.cond_norm.normalise(torch.cat([obs, act_hist[:, -1]], dim=-1))[:, None]
        y = self.schedule.sample(lambda y_t, t: self.denoiser(y_t, cond, t), (len(obs), 1, self.target_dim),
                                 generator, obs.device)
        y = self.target_norm.unnormalise(y[:, 0])
        return y[:, : self.obs_dim], y[:, self.obs_dim], y[:, self.obs_dim + 1] > 0.5


@register_model("ar-diffusion-2row")
class ARDiffusionTwoRow(TrainsAsDenoiser, AutoregressiveWorldModel):
    """The authors' autoregressive diffusion: PolyGRAD's trajectory model of two rows, sampled
    without guidance, one chain per environment step."""

    Config = ARDiffusionConfig
    context = 1

    def __init__(self, obs_dim: int, act_dim: int, config: ARDiffusionConfig | None = None):
        super().__init__(obs_dim, act_dim, config)
        self.trajectory = PolyGRAD(obs_dim, act_dim, PolyGRADConfig(**dataclasses.asdict(self.config), horizon=1))

    def denoiser_training(self, data: OfflineData) -> DenoiserTraining:
        model = self.trajectory
        model.fit_normalisers(data)
        loss = model.denoiser_loss(data)
        return DenoiserTraining(self, model.denoiser, loss, self.config, f"fit {self.name}",
                                lambda result: _finish(self, result, windows=loss.n_items))

    def fit(self, data: OfflineData, *, generator=None, progress=True, state_path=None) -> FitReport:
        generator = generator or torch.Generator(self.device).manual_seed(0)
        return self.denoiser_training(data).run(generator=generator, progress=progress, state_path=state_path)

    def loss_items(self, data: OfflineData) -> tuple[int, Callable[[torch.Tensor], torch.Tensor]]:
        return self.trajectory.loss_items(data)

    def step(self, obs_hist, act_hist, *, generator):
        model, obs_dim = self.trajectory, self.obs_dim
        obs, act = obs_hist[:, -1], act_hist[:, -1]
        s0 = model.x_norm.normalise(torch.cat([obs, obs.new_zeros(len(obs), 2)], dim=-1))[:, :obs_dim]
        actions = torch.stack([model.act_norm.normalise(act), torch.zeros_like(act)], dim=1)  # a_{t+1}: 0

        def denoise(x, t):
            return model.denoiser(model._inpaint(x, s0), model.schedule.sqrt_alpha_bar[t].view(-1, 1, 1) * actions, t)

        x = model.schedule.sample(denoise, (len(obs), 2, obs_dim + 2), generator, obs.device)
        x = model.x_norm.unnormalise(x)
        return x[:, 1, :obs_dim], x[:, 0, obs_dim], x[:, 0, obs_dim + 1] > 0.5


def _finish(model: AutoregressiveWorldModel, result, **extra) -> FitReport:
    """After training: eval mode and the fit report."""
    model.eval()
    model.fit_report = FitReport(steps=model.config.train_steps, seconds=result.seconds, loss=result.loss,
                                 extra={**extra, "resumed_from": result.resumed_from})
    return model.fit_report
