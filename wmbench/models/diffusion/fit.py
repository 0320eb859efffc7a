"""Settings and the training routine shared by every diffusion world model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from wmbench.config import param
from wmbench.models.training import EMA, TrainingConfig, TrainResult, train_steps


@dataclass
class DiffusionConfig(TrainingConfig):
    diffusion_steps: int = param(128, "denoising steps", low=1)
    tau: float = param(1.0, "cosine-power schedule exponent (0.1: noise arrives in the last step)", above=0)
    width: int = param(1024, "residual MLP width", low=1)
    blocks: int = param(6, "residual MLP blocks", low=1)
    ema_decay: float = param(0.99, "EMA decay of the generation weights", low=0, high=1)
    ema_every: int = param(10, "steps between EMA updates", low=1)
    ema_start: int = param(2000, "step from which the EMA averages (before: a copy)", low=0)


def fit_denoiser(
    owner: nn.Module, denoiser: nn.Module, loss_fn: Callable[[torch.Tensor], torch.Tensor], n_items: int,
    config: DiffusionConfig, *, generator: torch.Generator, desc: str, progress: bool = True,
    after_step: Callable[[int], None] | None = None, state_path: Path | None = None,
) -> TrainResult:
    """Train `denoiser` (a part of the world model `owner`) on `loss_fn(item indices)` with an EMA of
    its weights, then load the averaged weights into it (they are what generates)."""
    ema = EMA(denoiser, config.ema_decay, config.ema_every, config.ema_start)
    denoiser.train()
    result = train_steps(loss_fn, denoiser, n_items, config, generator=generator, desc=desc, owner=owner, ema=ema,
                         after_step=after_step, state_path=state_path, progress=progress)
    denoiser.load_state_dict(ema.model.state_dict())
    denoiser.eval()
    return result
