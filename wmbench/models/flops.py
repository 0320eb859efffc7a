"""FLOPs of training: what one update of a model costs, counted by PyTorch's `FlopCounterMode`.

A model's cost per update does not depend on its data, so it is trained on a synthetic dataset of
the env's dimensions (`wmbench.systems.LinearSystem`). Learning curves put their points on a FLOP
axis with it (`wmbench.evaluate`); `wmbench bench --train` reports it beside the time per update.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from wmbench import tracking
from wmbench.envs import EnvSpec
from wmbench.models.base import WorldModel
from wmbench.models.seeds import fit_seeds
from wmbench.models.states import STATE_SUFFIX
from wmbench.systems import LinearSystem


def count_flops(fn) -> int:
    """The FLOPs of the matmuls, convolutions and attention that `fn()` runs."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def with_budget(config, updates: int):
    """`config` with a training budget of `updates` gradient steps, whatever the model calls it."""
    names = {f.name for f in dataclasses.fields(config)}
    return dataclasses.replace(config, **{name: updates for name in names & {"train_steps", "max_steps"}})


def synthetic_fitter(cls: type[WorldModel], config, spec: EnvSpec, device: str):
    """`fit(n)`: a fresh model of `config` trained for `n` updates on a synthetic dataset of the env's
    dimensions (a model's cost per update does not depend on its data)."""
    data = LinearSystem.random(spec.obs_dim, spec.act_dim, noise_std=0.01).dataset(episodes=40, length=60)

    def fit(n: int) -> WorldModel:
        torch.manual_seed(0)
        model = cls(spec.obs_dim, spec.act_dim, with_budget(config, n)).to(device)
        # training states are written as in a real run; nothing is logged or reported: a measurement, not a run
        with tempfile.TemporaryDirectory() as folder, tracking.watch(tracking.Tracker()):
            model.fit(data, generator=torch.Generator(device).manual_seed(0), progress=False,
                      state_path=Path(folder) / f"bench{STATE_SUFFIX}")
        return model

    return fit


def synthetic_seeds_fitter(cls: type[WorldModel], config, spec: EnvSpec, device: str, seeds: int):
    """`fit(n)`: like `synthetic_fitter`, `seeds` fresh models trained together for `n` updates as one
    batched network (`wmbench.models.seeds`)."""
    data = LinearSystem.random(spec.obs_dim, spec.act_dim, noise_std=0.01).dataset(episodes=40, length=60)

    def fit(n: int) -> list[WorldModel]:
        models, noise = [], []
        for seed in range(seeds):
            torch.manual_seed(seed)
            models.append(cls(spec.obs_dim, spec.act_dim, with_budget(config, n)).to(device))
            noise.append(torch.Generator(device).manual_seed(seed))
        with tempfile.TemporaryDirectory() as folder, tracking.watch(tracking.Tracker()):
            fit_seeds([m.denoiser_training(data) for m in models],
                      [torch.Generator(device).manual_seed(s) for s in range(seeds)], noise,
                      [Path(folder) / f"bench{s}{STATE_SUFFIX}" for s in range(seeds)], progress=False)
        return models

    return fit


def training_flop_per_update(cls: type[WorldModel], config, spec: EnvSpec, device: str = "cpu", warmup: int = 10,
                             counted: int = 5) -> int:
    """FLOPs of one training update, as the difference between trainings of `warmup + counted` and
    `warmup` updates (setup cancels out); every update costs the same."""
    if hasattr(config, "cuda_graph"):  # the FLOP counter sees operations as they are launched, not replayed
        config = dataclasses.replace(config, cuda_graph=False)
    fit = synthetic_fitter(cls, config, spec, device)
    return (count_flops(lambda: fit(warmup + counted)) - count_flops(lambda: fit(warmup))) // counted
