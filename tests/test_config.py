"""Profiles (built-in, by path, `extends`) and `--set` overrides: parsed, checked, part of a cell's identity."""

import dataclasses

import pytest

from wmbench.config import available_profiles, build_config, canonical_overrides, load_profile, parse_overrides
from wmbench.errors import UsageError
from wmbench.evaluate import EvalRequest, cell_of, checkpoint_path, evaluate
from wmbench.models.base import get_model_class
from wmbench.models.polygrad import PolyGRADConfig
from wmbench.results import ResultsStore


def test_profiles_ship_inside_the_package():
    assert {"smoke", "quick", "paper"} <= set(available_profiles())
    assert load_profile("smoke")["polygrad"]["train_steps"] == 30


def test_a_profile_file_extends_another(tmp_path):
    mine = tmp_path / "mine.toml"
    mine.write_text('extends = "smoke"\n[polygrad]\ntrain_steps = 11\n')
    config = build_config(PolyGRADConfig, str(mine), "polygrad")
    assert config.train_steps == 11 and config.width == 64  # own key, then smoke's
    child = tmp_path / "child.toml"
    child.write_text('extends = "mine.toml"\n[polygrad]\nwidth = 32\n')  # relative to the naming file
    config = build_config(PolyGRADConfig, str(child), "polygrad")
    assert (config.train_steps, config.width, config.blocks) == (11, 32, 2)
    loop = tmp_path / "loop.toml"
    loop.write_text('extends = "loop.toml"\n')
    with pytest.raises(UsageError, match="extends itself"):
        load_profile(str(loop))


def test_per_env_tables_override_their_model_for_that_env_only(tmp_path):
    from wmbench.evaluate import model_config

    polygrad = get_model_class("polygrad")
    assert model_config(polygrad, "paper", 10, env="hopper").tau == 0.1  # the authors' Hopper setting
    assert model_config(polygrad, "paper", 10, env="halfcheetah").tau == 1.0
    assert model_config(polygrad, "paper", 10, ("polygrad.tau=0.5",), env="hopper").tau == 0.5  # --set wins
    child = tmp_path / "child.toml"
    child.write_text('extends = "paper"\n[polygrad.hopper]\nblocks = 3\n')  # merged key by key
    config = model_config(polygrad, str(child), 10, env="hopper")
    assert (config.tau, config.blocks, config.width) == (0.1, 3, 1024)
    request = dict(model="polygrad", horizon=10, profile="paper")
    assert cell_of(EvalRequest(env="hopper", **request)).config_hash != \
        cell_of(EvalRequest(env="walker2d", **request)).config_hash
    typo = tmp_path / "typo.toml"
    typo.write_text("[polygrad.hoper]\ntau = 0.1\n")
    with pytest.raises(UsageError, match=r"\[polygrad.hoper\]: not an env"):
        model_config(polygrad, str(typo), 10, env="hopper")


def test_per_horizon_tables_give_the_papers_width_at_long_horizons(tmp_path):
    from wmbench.evaluate import model_config

    polygrad = get_model_class("polygrad")
    assert [model_config(polygrad, "paper", h, env="walker2d").width for h in (10, 50, 200)] == [1024, 2048, 2048]
    assert model_config(polygrad, "paper", 50, ("polygrad.width=512",)).width == 512  # --set wins
    both = tmp_path / "both.toml"  # an env's table is applied after a horizon's
    both.write_text("[polygrad.h50]\nblocks = 3\ntau = 0.5\n[polygrad.hopper]\ntau = 0.1\n")
    config = model_config(polygrad, str(both), 50, env="hopper")
    assert (config.blocks, config.tau) == (3, 0.1)
    assert model_config(polygrad, str(both), 10, env="walker2d").blocks == 6


def test_overrides_are_parsed_as_toml_and_checked():
    parsed = parse_overrides(("polygrad.train_steps=7", "polygrad.lr=1e-4", "polygrad.guidance=none",
                              "mlp-ensemble.weight_decay=[1e-5, 1e-5, 1e-5]", "polygrad.delta_init=1"))
    assert parsed["polygrad"] == {"train_steps": 7, "lr": 1e-4, "guidance": "none", "delta_init": 1.0}
    assert isinstance(parsed["polygrad"]["delta_init"], float)
    assert parsed["mlp-ensemble"]["weight_decay"] == [1e-5] * 3
    assert parse_overrides(("data.steps=500",)) == {"data": {"steps": 500}}
    config = build_config(PolyGRADConfig, "smoke", "polygrad", ("polygrad.train_steps=7",))
    assert config.train_steps == 7 and config.width == 64


@pytest.mark.parametrize("item, message", [
    ("polygrad.nope=1", "unknown key 'nope' in --set polygrad.nope; valid keys of [polygrad]: action_clip_std"),
    ("nowhere.steps=1",
     "unknown config section 'nowhere' in --set; choose one of: data, evaluate, imagination, log, policy, ppo, rl"),
    ("polygrad.train_steps=many", "--set polygrad.train_steps: expected an integer"),
    ("polygrad.compile=1", "--set polygrad.compile: expected true or false (like false), got 1"),
    ("polygrad.train_steps", "--set takes SECTION.KEY=VALUE"),
    ("train_steps=3", "--set takes SECTION.KEY=VALUE"),
])
def test_bad_overrides_say_what_is_valid(item, message):
    with pytest.raises(UsageError, match=None) as error:
        parse_overrides((item,))
    assert message in str(error.value)


def test_overrides_are_part_of_the_identity_and_the_checkpoint_key(hopper_dataset):
    plain = EvalRequest(model="polygrad", env="hopper", horizon=3, profile="smoke")
    tuned = dataclasses.replace(plain, overrides=("polygrad.train_steps=7",))
    other_model = dataclasses.replace(plain, overrides=("ar-diffusion.train_steps=7",))
    assert cell_of(plain) != cell_of(tuned) and cell_of(plain).config_hash != cell_of(tuned).config_hash
    assert cell_of(plain) == cell_of(other_model), "another model's overrides do not touch this cell"
    cls = get_model_class("polygrad")
    assert checkpoint_path(cls, cell_of(plain)) != checkpoint_path(cls, cell_of(tuned), tuned.overrides)
    assert canonical_overrides(("polygrad.lr=1e-4", "data.steps=9"), {"polygrad"}) == "polygrad.lr=0.0001"
    with pytest.raises(UsageError, match="--horizon, not --set"):
        cell_of(dataclasses.replace(plain, overrides=("polygrad.horizon=5",)))


def test_an_override_reaches_the_model_and_both_cells_are_stored(hopper_dataset, tmp_path):
    store = ResultsStore(tmp_path)
    plain = EvalRequest(model="polygrad", env="hopper", horizon=3, profile="smoke")
    tuned = dataclasses.replace(plain, overrides=("polygrad.train_steps=7",))
    tables = [evaluate(r, store=store, progress=False, say=lambda m: None) for r in (plain, tuned)]
    assert len(list(tmp_path.glob("**/*.csv.gz"))) == 2
    assert tables[1]["overrides"].iloc[0] == "polygrad.train_steps=7"
    assert '"train_steps": 7' in tables[1]["config"].iloc[0] and '"train_steps": 30' in tables[0]["config"].iloc[0]
    assert tables[0]["config_hash"].iloc[0] != tables[1]["config_hash"].iloc[0]
    from wmbench.models.base import WorldModel

    model = WorldModel.load(checkpoint_path(get_model_class("polygrad"), cell_of(tuned), tuned.overrides))
    assert model.config.train_steps == 7 and model.fit_report.steps == 7
