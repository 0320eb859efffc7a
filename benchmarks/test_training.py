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
            cls(DATA.obs_dim, DATA.act_dim, config).fit(DATA, generator=torch.Generator().manual_seed(0), progress=False)

    benchmark.pedantic(fit, rounds=ROUNDS, warmup_rounds=1)
    benchmark.extra_info["updates_per_s"] = LOGGED_STEPS / benchmark.stats.stats.median
