"""Generation cost: `rollout` of 256 trajectories per model at the `quick` profile's sizes.

Weights do not change the cost, so the models are untrained (no fitting in the benchmark). Compare
rows of one run as ratios; never assert wall-clock limits. Horizons: `WMBENCH_BENCH_HORIZONS`
(default `10,50`; `10,50,200` for the long ones, minutes for ar-diffusion).
"""

import dataclasses
import os

import pytest
import torch

from wmbench.config import build_config
from wmbench.models.base import get_model_class
from wmbench.testing import simple_policy

OBS, ACT, BATCH = 17, 6, 256
HORIZONS = [int(h) for h in os.environ.get("WMBENCH_BENCH_HORIZONS", "10,50").split(",")]


@pytest.mark.parametrize("horizon", HORIZONS)
@pytest.mark.parametrize("name", ["polygrad", "ar-diffusion", "mlp-ensemble", "transformer"])
def test_rollout_256(benchmark, name, horizon):
    cls = get_model_class(name)
    config = build_config(cls.Config, "quick", name)
    if cls.fixed_horizon:
        config = dataclasses.replace(config, horizon=horizon)
    torch.manual_seed(0)
    model = cls(OBS, ACT, config).eval()
    policy = simple_policy(OBS, ACT)
    init = torch.randn(BATCH, OBS)
    benchmark.pedantic(lambda: model.rollout(init, policy, horizon, generator=torch.Generator().manual_seed(0)),
                       rounds=3, warmup_rounds=1)
