"""The oracle must return exactly what a gymnasium `env.step` loop returns."""

import numpy as np
import pytest

from wmbench.envs import ENVS, get_env
from wmbench.oracle import Oracle


def step_loop(name, qpos, qvel, actions):
    """Reference: gymnasium's own env.step from `set_state(qpos, qvel)`, clipping as executed, with
    the solver warm start zeroed as in a freshly reset simulator."""
    env = get_env(name).make().unwrapped
    env.reset(seed=0)
    obs, rewards, terms = [], [], []
    for q, v, acts in zip(qpos, qvel, actions):
        env.set_state(q, v)
        env.data.qacc_warmstart[:] = 0.0
        traj = [env._get_obs()]
        r_traj, t_traj = [], []
        for a in acts:
            o, r, term, _, _ = env.step(np.clip(a, -1.0, 1.0))
            traj.append(o)
            r_traj.append(r)
            t_traj.append(term)
        obs.append(traj)
        rewards.append(r_traj)
        terms.append(t_traj)
    return np.array(obs), np.array(rewards), np.array(terms)


def start_states(name, n, seed):
    """Diverse start states: a few random steps from reset."""
    env = get_env(name).make()
    rng = np.random.default_rng(seed)
    qpos, qvel = [], []
    for i in range(n):
        env.reset(seed=seed + i)
        for _ in range(rng.integers(0, 8)):
            env.step(env.action_space.sample())
        qpos.append(env.unwrapped.data.qpos.copy())
        qvel.append(env.unwrapped.data.qvel.copy())
    return np.array(qpos), np.array(qvel)


@pytest.mark.parametrize("name", sorted(ENVS))
def test_replay_equals_gymnasium_step_loop(name):
    spec = get_env(name)
    qpos, qvel = start_states(name, 4, seed=1)
    # Large actions (beyond the bounds, so clipping matters) make Hopper and Walker2d fall.
    actions = np.random.default_rng(2).uniform(-1.5, 1.5, size=(4, 120, spec.act_dim))
    replay = Oracle(spec).replay(qpos, qvel, actions)
    obs, rewards, terms = step_loop(name, qpos, qvel, actions)
    np.testing.assert_allclose(replay.observations, obs, rtol=0, atol=1e-8)
    np.testing.assert_allclose(replay.rewards, rewards, rtol=0, atol=1e-8)
    np.testing.assert_array_equal(replay.terminals, terms)
    if spec.terminates:
        assert terms.any(), "the test should include a fall"
        assert not terms.all(axis=1).any(), "replay continues past a termination"


def test_replay_shapes_and_start():
    spec = get_env("walker2d")
    qpos, qvel = start_states("walker2d", 3, seed=0)
    replay = Oracle(spec).replay(qpos, qvel, np.zeros((3, 7, spec.act_dim)))
    assert replay.observations.shape == (3, 8, spec.obs_dim)
    assert replay.rewards.shape == replay.terminals.shape == (3, 7)
    np.testing.assert_array_equal(replay.qpos[:, 0], qpos)
    np.testing.assert_array_equal(replay.observations[:, 0], spec.observe(qpos, qvel))


def test_replay_does_not_depend_on_what_ran_before():
    """Per-thread simulator data is reused across calls and trajectories; results must not be."""
    spec = get_env("halfcheetah")
    qpos, qvel = start_states("halfcheetah", 8, seed=3)
    actions = np.random.default_rng(4).uniform(-1, 1, size=(8, 80, spec.act_dim))
    oracle = Oracle(spec)
    first = oracle.replay(qpos, qvel, actions)
    oracle.replay(qpos[::-1].copy(), qvel[::-1].copy(), actions[::-1].copy())
    again = oracle.replay(qpos, qvel, actions)
    alone = Oracle(spec, threads=1).replay(qpos[5:6], qvel[5:6], actions[5:6])
    np.testing.assert_array_equal(first.observations, again.observations)
    np.testing.assert_array_equal(first.observations[5:6], alone.observations)
