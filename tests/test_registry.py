from importlib import metadata

import pytest
import torch

from wmbench import WorldModel, available_models, get_model_class, register_model
from wmbench.errors import UsageError
from wmbench.models import base
from wmbench.testing import WorldModelConformance


@pytest.fixture
def extension(monkeypatch):
    """Pretend an installed package exposes `toy_extension:PersistenceModel` as `toy-persistence`."""
    entry = metadata.EntryPoint(name="toy-persistence", value="toy_extension:PersistenceModel",
                                group=base.ENTRY_POINT_GROUP)
    real = metadata.entry_points
    monkeypatch.setattr(metadata, "entry_points",
                        lambda **kw: [entry] if kw.get("group") == base.ENTRY_POINT_GROUP else real(**kw))
    yield
    base._REGISTRY.pop("toy-persistence", None)


def test_builtin_models_are_listed():
    assert "mlp-ensemble" in available_models()


def test_unknown_model_lists_the_choices():
    with pytest.raises(UsageError, match="mlp-ensemble"):
        get_model_class("no-such-model")


def test_entry_point_adds_a_model_without_editing_wmbench(extension, tmp_path):
    cls = get_model_class("toy-persistence")
    assert cls.name == "toy-persistence"
    model = cls(3, 2)
    model.fit(None)
    model.save(tmp_path / "m.pt")
    loaded = WorldModel.load(tmp_path / "m.pt")
    assert isinstance(loaded, cls) and float(loaded.fitted) == 1.0


def test_a_name_cannot_be_taken_twice():
    with pytest.raises(ValueError, match="already registered"):
        @register_model("mlp-ensemble")
        class Impostor(WorldModel):
            def fit(self, data, **kw): ...
            def rollout(self, *a, **kw): ...


def test_register_model_rejects_non_models():
    with pytest.raises(TypeError):
        register_model("x")(object)


class TestPersistenceConformance(WorldModelConformance):
    """The mixin also accepts a model that learns nothing, and catches its trivial rollouts' shape."""

    @pytest.fixture(scope="class", autouse=True)
    @classmethod
    def _registered(cls):
        from toy_extension import PersistenceModel

        register_model("toy-persistence")(PersistenceModel)
        yield
        base._REGISTRY.pop("toy-persistence", None)

    def make_model(self, obs_dim, act_dim):
        from toy_extension import PersistenceModel

        return PersistenceModel(obs_dim, act_dim)


def test_trajectories_validate_catches_wrong_shapes():
    from wmbench import Trajectories

    good = Trajectories(torch.zeros(2, 4, 3), torch.zeros(2, 3, 1), torch.zeros(2, 3),
                        torch.zeros(2, 3, dtype=torch.bool))
    good.validate(2, 3, 3, 1)
    with pytest.raises(ValueError, match="rewards"):
        Trajectories(good.observations, good.actions, torch.zeros(2, 4), good.terminals).validate(2, 3, 3, 1)
