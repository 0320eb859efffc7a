"""Files wmbench reads never run code: a crafted SAC zip and a crafted RL state carry a payload that
would create a marker file when unpickled; wmbench must read them as data or refuse them."""

import base64
import dataclasses
import json
import pathlib
import pickle
import zipfile

import pytest
import torch
from test_rl import dies_at_second_save
from test_sac import sac_datasets, sac_root  # noqa: F401, F811 - the fixtures of a tiny SAC run

import wmbench.rl as rl
import wmbench.rl.ppo as rl_ppo
from wmbench import sac
from wmbench.errors import CheckpointError, DatasetError
from wmbench.rl.state import load_state, save_state
from wmbench.systems import LinearSystem, linear_real_env


class Payload:
    """Unpickling this creates `marker`: the stand-in for any code a crafted file could run."""

    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (self.marker,)


def rewrite_zip(source: pathlib.Path, target: pathlib.Path, replace: dict[str, bytes]) -> None:
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for name in old.namelist():
            new.writestr(name, replace.get(name, old.read(name)))


def poisoned_data_entry(source: pathlib.Path, marker: pathlib.Path) -> bytes:
    """stable-baselines3's `data` JSON with a `:serialized:` entry that cloudpickle-loads the payload."""
    with zipfile.ZipFile(source) as archive:
        data = json.loads(archive.read("data"))
    data["policy_class"][":serialized:"] = base64.b64encode(pickle.dumps(Payload(marker))).decode()
    return json.dumps(data).encode()


def test_a_crafted_sac_zip_does_not_run(sac_datasets, tmp_path, monkeypatch):  # noqa: F811 - the imported fixture
    from stable_baselines3 import SAC

    genuine = sac.sac_policy_path(sac_datasets[0])
    expected = sac.behaviour_policy(sac_datasets[0], 0.2)
    marker = tmp_path / "ran"

    # 1. a poisoned `data` entry beside genuine weights: SAC.load runs it, wmbench reads the weights only
    crafted = tmp_path / "data-payload.zip"
    rewrite_zip(genuine, crafted, {"data": poisoned_data_entry(genuine, marker)})
    with pytest.raises(Exception):  # noqa: B017 - the payload is no policy class; what matters is that it ran
        SAC.load(crafted, device="cpu")
    assert marker.exists(), "the crafted zip is malicious to stable-baselines3"
    marker.unlink()
    monkeypatch.setattr(sac, "sac_policy_path", lambda dataset_id: crafted)
    policy = sac.behaviour_policy(sac_datasets[0], 0.2)
    assert not marker.exists()
    obs = torch.randn(8, expected.net[0].in_features)
    torch.testing.assert_close(policy.mean_std(obs)[0], expected.mean_std(obs)[0])

    # 2. poisoned weights: refused in one line, the payload not run
    weights = tmp_path / "weights-payload.zip"
    poisoned = pickle.dumps({"actor.mu.weight": Payload(marker)})
    rewrite_zip(genuine, weights, {"policy.pth": poisoned})
    monkeypatch.setattr(sac, "sac_policy_path", lambda dataset_id: weights)
    with pytest.raises(DatasetError, match="corrupt, unreadable or not a stable-baselines3 SAC actor"):
        sac.behaviour_policy(sac_datasets[0], 0.2)
    assert not marker.exists()


def test_a_crafted_rl_state_does_not_run(tmp_path):
    marker, path = tmp_path / "ran", tmp_path / "run.rl-state.pt"
    torch.save({"buffer": Payload(marker)}, path)
    with pytest.raises(CheckpointError, match="delete it to start the run again"):
        load_state(path, ("buffer",))
    assert not marker.exists()


def test_an_rl_state_with_other_keys_or_classes_is_refused(tmp_path):
    path = tmp_path / "run.rl-state.pt"
    save_state(path, {"log": [("return", 0, 1.0)]})
    with pytest.raises(CheckpointError, match="no buffer"):
        load_state(path, ("buffer", "log"))

    @dataclasses.dataclass
    class Stranger:
        x: int

    save_state(path, {"buffer": Stranger(1)})
    with pytest.raises(CheckpointError, match="unexpected object 'Stranger'"):
        load_state(path, ("buffer",))
    assert load_state(path, ("buffer",), (Stranger,))["buffer"] == Stranger(1)


def test_an_interrupted_ppo_run_resumes_from_its_state(tmp_path, monkeypatch):
    real = linear_real_env(LinearSystem.random(obs_dim=3, act_dim=2, noise_std=0.05, seed=1), length=30)
    settings = rl.RLConfig(env_steps=384, eval_every=128, eval_episodes=2)
    config = rl_ppo.PPOConfig(n_steps=64, batch_size=32, n_epochs=2)
    whole = rl_ppo.run_ppo(real, settings, config, seed=2, progress=False)

    state = tmp_path / "ppo.rl-state.pt"
    with dies_at_second_save(monkeypatch, rl_ppo), pytest.raises(KeyboardInterrupt):
        rl_ppo.run_ppo(real, settings, config, seed=2, state_path=state, progress=False)
    resumed = rl_ppo.run_ppo(real, settings, config, seed=2, state_path=state, progress=False)

    returns = lambda f: f[f["metric"] == "return"].set_index("step")["value"]  # noqa: E731
    assert list(returns(resumed).index) == list(returns(whole).index) == [0, 128, 256, 384]
    # the evaluations before the interruption are the stored ones, not computed again
    assert returns(resumed).loc[:256].tolist() == returns(whole).loc[:256].tolist()


@pytest.mark.parametrize("name", ["../outside.csv", "/tmp/absolute.csv", "hopper/../../up.csv", "a\\..\\b.csv", ""])
def test_files_a_ray_task_returns_cannot_land_outside_their_root(tmp_path, name):
    from wmbench.errors import UsageError
    from wmbench.sweep.ray_backend import write_files

    root = tmp_path / "store"
    with pytest.raises(UsageError, match="refusing to write"):
        write_files(root, {"hopper/linear/fine.csv": b"x", name: b"payload"})
    assert not root.exists() and not (tmp_path / "outside.csv").exists(), "nothing written, not even the fine one"
    write_files(root, {"hopper/linear/fine.csv": b"x"})
    assert (root / "hopper/linear/fine.csv").read_bytes() == b"x"
