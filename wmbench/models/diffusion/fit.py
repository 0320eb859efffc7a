"""Settings and the training routine shared by every diffusion world model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from wmbench.config import param
from wmbench.models.diffusion.ema import EMA
from wmbench.models.training import train_steps


@dataclass
class DiffusionConfig:
    diffusion_steps: int = param(128, "denoising steps")
    tau: float = param(1.0, "cosine-power schedule exponent (0.1: noise arrives in the last step)")
    width: int = param(1024, "residual MLP width")
    blocks: int = param(6, "residual MLP blocks")
    lr: float = param(3e-4, "Adam learning rate")
    batch_size: int = param(256, "training examples per gradient step")
    train_steps: int = param(1_000_000, "gradient steps")
    ema_decay: float = param(0.99, "EMA decay of the generation weights")
    ema_every: int = param(10, "steps between EMA updates")
    ema_start: int = param(2000, "step from which the EMA averages (before: a copy)")


def fit_denoiser(
    denoiser: nn.Module, loss_fn: Callable[[torch.Tensor], torch.Tensor], n_items: int, config: DiffusionConfig,
    *, generator: torch.Generator, device: torch.device, desc: str, progress: bool = True,
    after_step: Callable[[int], None] | None = None,
) -> tuple[float, float]:
    """Train `denoiser` on `loss_fn(item indices)` with an EMA of its weights, then load the averaged
    weights into it (they are what generates). Returns `(last loss, seconds)`."""
    ema = EMA(denoiser, config.ema_decay, config.ema_every, config.ema_start)

    def update(step: int) -> None:
        ema.update(denoiser, step)
        if after_step is not None:
            after_step(step)

    denoiser.train()
    loss, seconds = train_steps(loss_fn, denoiser.parameters(), n_items, steps=config.train_steps,
                                batch_size=config.batch_size, lr=config.lr, generator=generator, device=device,
                                desc=desc, progress=progress, after_step=update)
    denoiser.load_state_dict(ema.model.state_dict())
    denoiser.eval()
    return loss, seconds
