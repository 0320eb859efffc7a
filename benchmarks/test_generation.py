"""Generation cost: `rollout` of 256 trajectories per registered model at the `quick` profile's sizes.

Weights do not change the cost, so the models are untrained (no fitting in the benchmark).
`wmbench bench` measures the same with FLOP counts and the machine's matmul peak.
"""

import pytest
import torch
from conftest import HORIZONS, MODELS, ROUNDS

from wmbench.bench import build_untrained


@pytest.mark.parametrize("horizon", HORIZONS)
@pytest.mark.parametrize("name", MODELS)
def test_rollout_256(benchmark, name, horizon):
    model, policy, init = build_untrained(name, "halfcheetah", horizon, batch=256, profile="quick")
    benchmark.pedantic(lambda: model.rollout(init, policy, horizon, generator=torch.Generator().manual_seed(0)),
                       rounds=ROUNDS, warmup_rounds=1)
