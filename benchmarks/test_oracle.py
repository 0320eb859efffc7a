"""Oracle replay throughput: batched `mujoco.rollout` against a gymnasium `env.step` loop.

Run with `pytest benchmarks/ --benchmark-only`; compare the two rows of one run (a ratio), never
against a wall-clock limit.
"""

import numpy as np
import pytest

from wmbench.envs import get_env
from wmbench.oracle import Oracle

BATCH, HORIZON = 256, 10


@pytest.fixture(scope="module", params=["halfcheetah", "hopper"])
def case(request):
    spec = get_env(request.param)
    env = spec.make()
    env.reset(seed=0)
    qpos = np.repeat(env.unwrapped.data.qpos[None], BATCH, 0)
    qvel = np.repeat(env.unwrapped.data.qvel[None], BATCH, 0)
    actions = np.random.default_rng(0).uniform(-1, 1, (BATCH, HORIZON, spec.act_dim))
    return spec, qpos, qvel, actions


def test_oracle_mujoco_rollout(benchmark, case):
    spec, qpos, qvel, actions = case
    oracle = Oracle(spec)
    benchmark(oracle.replay, qpos, qvel, actions)


def test_oracle_gymnasium_step_loop(benchmark, case):
    spec, qpos, qvel, actions = case
    env = spec.make().unwrapped

    def loop():
        for q, v, acts in zip(qpos, qvel, actions):
            env.set_state(q, v)
            for a in acts:
                env.step(a)

    benchmark(loop)
