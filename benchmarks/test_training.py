"""One training step per registered model at the `quick` profile's sizes (batch and width).

`fit` is timed for a few steps on a HalfCheetah-sized linear system; the benchmark's `extra_info`
has the time per gradient step (setup, normalisers and windows included in the total).
"""

import dataclasses

import pytest
import torch
from conftest import MODELS, ROUNDS

from wmbench.config import build_config
from wmbench.models.base import get_model_class
from wmbench.models.flops import with_budget
from wmbench.systems import LinearSystem

STEPS = 5
DATA = LinearSystem.random(obs_dim=17, act_dim=6, noise_std=0.01).dataset(episodes=40, length=60)


def few_steps(config):
    """The profile's config with `STEPS` gradient steps and the EMA averaging from the start."""
    config = with_budget(config, STEPS)
    return dataclasses.replace(config, ema_start=0) if hasattr(config, "ema_start") else config


@pytest.mark.parametrize("name", MODELS)
def test_training_steps(benchmark, name):
    cls = get_model_class(name)
    config = few_steps(build_config(cls.Config, "quick", name))

    def fit():
        torch.manual_seed(0)
        cls(DATA.obs_dim, DATA.act_dim, config).fit(DATA, generator=torch.Generator().manual_seed(0), progress=False)

    benchmark.pedantic(fit, rounds=ROUNDS, warmup_rounds=1)
    benchmark.extra_info["seconds_per_step"] = benchmark.stats.stats.median / STEPS


LOGGED_STEPS = 300  # three loss read-backs (every 100 updates), each logged


@pytest.mark.parametrize("log", ["none", "tensorboard"])
def test_polygrad_training_with_and_without_logging(benchmark, log, tmp_path):
    """The cost of `--log tensorboard` on PolyGRAD's training (quick sizes): compare the two rows' medians."""
    from wmbench import tracking

    cls = get_model_class("polygrad")
    config = dataclasses.replace(with_budget(build_config(cls.Config, "quick", "polygrad"), LOGGED_STEPS), ema_start=0)

    def fit():
        logger = tracking.TensorBoardLogger(tmp_path / "runs") if log == "tensorboard" else None
        with tracking.watch(tracking.Tracker(logger)):
            torch.manual_seed(0)
            model = cls(DATA.obs_dim, DATA.act_dim, config)
            model.fit(DATA, generator=torch.Generator().manual_seed(0), progress=False)

    benchmark.pedantic(fit, rounds=ROUNDS, warmup_rounds=1)
    benchmark.extra_info["updates_per_s"] = LOGGED_STEPS / benchmark.stats.stats.median


SEEDS = 3
SEED_STEPS = 20


@pytest.mark.parametrize("together", [False, True], ids=["one-at-a-time", "as-one-network"])
def test_three_polygrad_seeds(benchmark, together):
    """3 PolyGRAD seeds at quick sizes, trained one after another or as one batched network
    (`sweep --batch-seeds`): compare the two rows' medians (the ratio is the throughput gain)."""
    from wmbench.models.seeds import fit_seeds

    cls = get_model_class("polygrad")
    config = dataclasses.replace(with_budget(build_config(cls.Config, "quick", "polygrad"), SEED_STEPS), ema_start=0)

    def fit():
        models, noise = [], []
        for seed in range(SEEDS):
            torch.manual_seed(seed)
            models.append(cls(DATA.obs_dim, DATA.act_dim, config))
            noise.append(torch.Generator().manual_seed(seed))
        generators = [torch.Generator().manual_seed(seed) for seed in range(SEEDS)]
        if together:
            fit_seeds([m.denoiser_training(DATA) for m in models], generators, noise, [None] * SEEDS, progress=False)
        else:
            for model, generator in zip(models, generators):
                model.fit(DATA, generator=generator, progress=False)

    benchmark.pedantic(fit, rounds=ROUNDS, warmup_rounds=1)
    benchmark.extra_info["seed_updates_per_s"] = SEEDS * SEED_STEPS / benchmark.stats.stats.median
