import pytest

from wmbench.envs import ENVS, get_env, mujoco_model
from wmbench.errors import UsageError


@pytest.mark.parametrize("name", sorted(ENVS))
def test_spec_matches_gymnasium(name):
    spec = get_env(name)
    env = spec.make()
    model = mujoco_model(name)
    assert env.observation_space.shape == (spec.obs_dim,)
    assert env.action_space.shape == (spec.act_dim,)
    assert (model.nq, model.nv) == (spec.nq, spec.nv)
    assert env.unwrapped.frame_skip == spec.frame_skip
    assert env.unwrapped.dt == pytest.approx(spec.dt)


def test_lookup_by_gym_id_and_family_name():
    assert get_env("Hopper-v5") is get_env("hopper") is get_env("Hopper")


def test_unknown_env_lists_the_choices():
    with pytest.raises(UsageError, match="halfcheetah, hopper, walker2d"):
        get_env("ant")
