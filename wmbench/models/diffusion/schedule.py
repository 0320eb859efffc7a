"""The cosine-power noise schedule of PolyGRAD and the DDPM posterior, precomputed once."""

from __future__ import annotations

import math

import torch
from torch import nn


class DiffusionSchedule(nn.Module):
    """`alpha_bar(u) = cos(pi u / 2)^(2 tau)` on `steps + 1` evenly spaced u in [0, 1] (no offset);
    `beta_i = 1 - alpha_bar(u_{i+1}) / alpha_bar(u_i)` clipped to [0, 0.999]; everything else is
    derived from the clipped betas. Index t = 0 .. steps-1; t = 0 is the least noisy step.

    All tensors are buffers (moved with `.to(device)`), float32 for use, computed in float64.
    """

    def __init__(self, steps: int = 128, tau: float = 1.0):
        super().__init__()
        self.steps, self.tau = steps, tau
        u = torch.linspace(0, 1, steps + 1, dtype=torch.float64)
        alpha_bar_u = torch.cos(math.pi * u / 2) ** (2 * tau)
        betas = (1 - alpha_bar_u[1:] / alpha_bar_u[:-1]).clamp(0, 0.999)
        alphas = 1 - betas
        alpha_bar = torch.cumprod(alphas, dim=0)
        alpha_bar_prev = torch.cat([torch.ones(1, dtype=torch.float64), alpha_bar[:-1]])
        posterior_var = betas * (1 - alpha_bar_prev) / (1 - alpha_bar)
        buffers = {
            "betas": betas,
            "alpha_bar": alpha_bar,
            "sqrt_alpha_bar": alpha_bar.sqrt(),
            "sqrt_one_minus_alpha_bar": (1 - alpha_bar).sqrt(),
            # q(x_{t-1} | x_t, x0) = N(c1 x0 + c2 x_t, posterior_var)
            "posterior_c1": betas * alpha_bar_prev.sqrt() / (1 - alpha_bar),
            "posterior_c2": (1 - alpha_bar_prev) * alphas.sqrt() / (1 - alpha_bar),
            "posterior_std": (0.5 * posterior_var.clamp(min=1e-20).log()).exp(),
        }
        for name, value in buffers.items():
            self.register_buffer(name, value.float(), persistent=False)

    def training_draws(self, inputs: tuple[torch.Tensor, ...],
                       generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """A training loss's random numbers for the clean targets `inputs[0]` (`[B, ...]`): a uniform
        step t per item, then the noise, in that order (torch's global generator when `generator` is
        None)."""
        x0 = inputs[0]
        t = torch.randint(0, self.steps, (x0.shape[0],), device=x0.device, generator=generator)
        return t, torch.randn(x0.shape, device=x0.device, generator=generator)

    def add_noise(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """`q(x_t | x0)`: `sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) noise`, t of shape `[B]`."""
        shape = (-1,) + (1,) * (x0.dim() - 1)
        return self.sqrt_alpha_bar[t].view(shape) * x0 + self.sqrt_one_minus_alpha_bar[t].view(shape) * noise

    def sample(self, denoise, shape: tuple[int, ...], generator: torch.Generator,
               device: torch.device | str = "cpu") -> torch.Tensor:
        """Ordinary DDPM ancestral sampling with an x0-predicting `denoise(x_t, t [B]) -> x0_hat`."""
        x = torch.randn(shape, generator=generator, device=device)
        for t in reversed(range(self.steps)):
            steps = torch.full((shape[0],), t, device=device, dtype=torch.long)
            x0_hat = denoise(x, steps)
            x = self.posterior_c1[t] * x0_hat + self.posterior_c2[t] * x
            if t > 0:
                x = x + self.posterior_std[t] * torch.randn(shape, generator=generator, device=device)
        return x
