"""Settings and the training routine shared by every diffusion world model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from wmbench.config import param
from wmbench.models.base import FitReport
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


@dataclass
class DenoiserLoss:
    """A diffusion loss in three parts, so that several seeds can train as one batched network:
    `inputs(ids)` gathers the minibatch of items `ids`, `draws(inputs, generator)` takes the loss's
    random numbers (from torch's global generator when `generator` is None, in the order the loss has
    always taken them, so a seed's numbers do not change), and `compute(denoiser, inputs, draws)` is
    the deterministic rest (`denoiser` None: the model's own). Called with `ids`, the plain loss."""

    n_items: int
    inputs: Callable[[torch.Tensor], tuple[torch.Tensor, ...]]
    draws: Callable[[tuple[torch.Tensor, ...], torch.Generator | None], tuple[torch.Tensor, ...]]
    compute: Callable[[Callable | None, tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]], torch.Tensor]

    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        inputs = self.inputs(ids)
        return self.compute(None, inputs, self.draws(inputs, None))


@dataclass
class DenoiserTraining:
    """What training a diffusion world model takes, once its normalisers are fitted: the network,
    its loss, and `finish(result)`, which the model runs after training (its fit report, eval mode)."""

    model: nn.Module  # the world model, saved in training states and snapshots
    denoiser: nn.Module
    loss: DenoiserLoss
    config: DiffusionConfig
    desc: str
    finish: Callable[[TrainResult], FitReport]

    def run(self, *, generator: torch.Generator, progress: bool = True, state_path: Path | None = None,
            after_step: Callable[[int], None] | None = None) -> FitReport:
        """Train this one seed (`fit_seeds` in `wmbench.models.seeds` trains several as one network)."""
        result = fit_denoiser(self.model, self.denoiser, self.loss, self.loss.n_items, self.config,
                              generator=generator, desc=self.desc, progress=progress, after_step=after_step,
                              state_path=state_path)
        return self.finish(result)


class TrainsAsDenoiser:
    """A world model whose training is one `DenoiserTraining`: `fit` runs it for one seed, and
    several seeds of the same settings can train together as one batched network (`fit_seeds`)."""

    def denoiser_training(self, data) -> DenoiserTraining:
        """Fit the normalisers to `data` (an `OfflineData`) and say how the denoiser trains on it."""
        raise NotImplementedError


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
