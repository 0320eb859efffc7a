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
from wmbench.testing import LinearSystem

STEPS = 5
DATA = LinearSystem.random(obs_dim=17, act_dim=6, noise_std=0.01).dataset(episodes=40, length=60)


def few_steps(config):
    """The profile's config with `STEPS` gradient steps, whatever the model calls that budget."""
    names = {f.name for f in dataclasses.fields(config)}
    changes = {name: STEPS for name in names & {"train_steps", "max_steps"}}
    return dataclasses.replace(config, **changes, **({"ema_start": 0} if "ema_start" in names else {}))


@pytest.mark.parametrize("name", MODELS)
def test_training_steps(benchmark, name):
    cls = get_model_class(name)
    config = few_steps(build_config(cls.Config, "quick", name))

    def fit():
        torch.manual_seed(0)
        cls(DATA.obs_dim, DATA.act_dim, config).fit(DATA, generator=torch.Generator().manual_seed(0), progress=False)

    benchmark.pedantic(fit, rounds=ROUNDS, warmup_rounds=1)
    benchmark.extra_info["seconds_per_step"] = benchmark.stats.stats.median / STEPS
