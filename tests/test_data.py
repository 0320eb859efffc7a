import json
import threading
import time

import minari
import numpy as np
import pytest

from wmbench import data, evaluate, recording
from wmbench.envs import get_env
from wmbench.errors import DatasetError


def test_make_then_load_round_trip(hopper_dataset):
    spec = get_env("hopper")
    offline = data.load_dataset(hopper_dataset)
    # Recollect with the same seed: the stored arrays are exactly what the env produced.
    rng = np.random.default_rng(0)
    episodes = recording.collect_episodes(spec, lambda o: rng.uniform(-1, 1, spec.act_dim), 3000, 0, progress=False)
    assert offline.n_episodes == len(episodes) > 1
    assert offline.n_transitions == 3000
    np.testing.assert_array_equal(offline.actions, np.concatenate([e["actions"] for e in episodes]))
    np.testing.assert_allclose(offline.rewards, np.concatenate([e["rewards"] for e in episodes]), rtol=1e-6)
    np.testing.assert_array_equal(offline.terminals, np.concatenate([e["terminations"] for e in episodes]))
    np.testing.assert_array_equal(offline.qpos, np.concatenate([e["qpos"][:-1] for e in episodes]))
    # Row t of the stored simulator state reproduces observation t.
    np.testing.assert_allclose(spec.observe(offline.qpos, offline.qvel), offline.observations, atol=1e-6)
    # Transitions chain inside an episode.
    np.testing.assert_array_equal(offline.next_observations[:-1][~np.isin(np.arange(1, 3000), offline.episode_starts)],
                                  offline.observations[1:][~np.isin(np.arange(1, 3000), offline.episode_starts)])


def test_is_a_real_minari_dataset(hopper_dataset):
    loaded = minari.load_dataset(hopper_dataset)
    assert loaded.total_steps == 3000
    episode = next(loaded.iterate_episodes())
    assert episode.infos["qpos"].shape == (len(episode.actions) + 1, 6)
    assert hopper_dataset in minari.list_local_datasets()


def test_card_and_listing(hopper_dataset):
    card = data.read_card(hopper_dataset)
    assert card["steps"] == 3000 and card["behaviour_policy"] == "random" and card["env"] == "hopper"
    assert (hopper_dataset, 3000) in data.list_datasets()


def test_split_is_by_episode_and_deterministic(hopper_dataset):
    offline = data.load_dataset(hopper_dataset)
    train, held = offline.split(0.2, seed=3)
    train2, held2 = offline.split(0.2, seed=3)
    _, held3 = offline.split(0.2, seed=4)
    np.testing.assert_array_equal(held.qpos, held2.qpos)
    np.testing.assert_array_equal(train.actions, train2.actions)
    assert not np.array_equal(held.qpos[:5], held3.qpos[:5])
    assert train.n_episodes + held.n_episodes == offline.n_episodes
    assert train.n_transitions + held.n_transitions == offline.n_transitions
    assert held.n_episodes == round(0.2 * offline.n_episodes)
    # Episodes are whole: every held-out episode's returns match one of the original episodes.
    assert set(np.round(held.episode_returns(), 4)) <= set(np.round(offline.episode_returns(), 4))


def test_flat_copy_loads_the_same_data_and_follows_the_dataset(hopper_dataset, tmp_path, monkeypatch):
    import shutil

    source = data.dataset_dir(hopper_dataset)
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    shutil.copytree(source, tmp_path / hopper_dataset)
    shutil.rmtree(tmp_path / hopper_dataset / "wmbench", ignore_errors=True)
    first = data.load_dataset(hopper_dataset)
    (flat,) = (tmp_path / hopper_dataset / "wmbench").glob("flat-*.npz")
    second = data.load_dataset(hopper_dataset)
    fields = ("observations", "actions", "rewards", "next_observations", "terminals", "episode_starts", "qpos", "qvel")
    for field in fields:
        np.testing.assert_array_equal(getattr(first, field), getattr(second, field))
    assert (second.env, second.exact_states, second.dataset_id) == (first.env, first.exact_states, hopper_dataset)

    flat.write_bytes(b"damaged")  # a damaged copy is rebuilt, not trusted
    np.testing.assert_array_equal(data.load_dataset(hopper_dataset).actions, first.actions)
    assert flat.read_bytes()[:2] == b"PK"

    remade = tmp_path / hopper_dataset / "data" / "main_data.hdf5"
    remade.write_bytes(b"not an hdf5 file")  # the dataset changed: the old flat copy must not answer
    with pytest.raises(DatasetError, match="corrupt or unreadable"):
        data.load_dataset(hopper_dataset)


def test_missing_dataset_says_how_to_get_it(workspace):
    remote = r"wmbench data make halfcheetah.*minari download mujoco/halfcheetah/medium-v0"
    with pytest.raises(DatasetError, match=remote):
        data.load_dataset("mujoco/halfcheetah/medium-v0")


def test_parallel_evaluations_make_a_missing_dataset_once(tmp_path, monkeypatch):
    """Two processes (here threads: the lock is per open file) asking for one missing random dataset:
    one makes it, the other waits and then finds it, instead of failing on a half-made folder."""
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    made, said = [], []

    def slow_make(env, steps, seed=0, progress=True):
        made.append(env.name)
        time.sleep(0.5)
        meta = data.dataset_dir("wmbench/hopper/random-v0") / "data" / "metadata.json"
        meta.parent.mkdir(parents=True)
        meta.write_text("{}")

    monkeypatch.setattr(evaluate, "make_random_dataset", slow_make)
    threads = [threading.Thread(target=evaluate.ensure_dataset,
                                args=("wmbench/hopper/random-v0", "smoke", (), True, False, said.append))
               for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert made == ["hopper"] and data.dataset_exists("wmbench/hopper/random-v0")
    assert "waiting: another process makes wmbench/hopper/random-v0" in said
    assert data.list_datasets() == [("wmbench/hopper/random-v0", 0)], "the lock file is no dataset"


def test_corrupt_dataset_names_the_file(hopper_dataset, tmp_path, monkeypatch):
    import shutil

    source = data.dataset_dir(hopper_dataset)
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    shutil.copytree(source, tmp_path / hopper_dataset)
    (tmp_path / hopper_dataset / "data" / "main_data.hdf5").write_bytes(b"not an hdf5 file")
    with pytest.raises(DatasetError, match=f"{tmp_path}.*corrupt or unreadable"):
        data.load_dataset(hopper_dataset)


def test_dataset_without_simulator_state_is_rebuilt_with_a_warning(tmp_path, monkeypatch):
    from minari.data_collector import EpisodeBuffer

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    spec = get_env("walker2d")
    rng = np.random.default_rng(0)
    episodes = recording.collect_episodes(spec, lambda o: rng.uniform(-1, 1, spec.act_dim), 200, 0, progress=False)
    buffers = [EpisodeBuffer(id=i, observations=e["observations"], actions=e["actions"], rewards=list(e["rewards"]),
                             terminations=list(e["terminations"]), truncations=list(e["truncations"]))
               for i, e in enumerate(episodes)]
    minari.create_dataset_from_buffers("remote/walker2d/style-v0", buffers, env=spec.gym_id)
    with pytest.warns(UserWarning, match="clip velocities"):
        offline = data.load_dataset("remote/walker2d/style-v0")
    assert not offline.exact_states
    np.testing.assert_array_equal(offline.qpos[:, 0], 0.0)
    np.testing.assert_allclose(spec.observe(offline.qpos, offline.qvel), offline.observations, atol=1e-6)


def test_normaliser_round_trip():
    import torch

    x = np.random.default_rng(0).normal(3.0, 5.0, size=(1000, 4)).astype(np.float32)
    norm = data.Normaliser.fit(x)
    z = norm.normalise(torch.as_tensor(x))
    np.testing.assert_allclose(z.mean(0).numpy(), 0.0, atol=1e-4)
    np.testing.assert_allclose(z.std(0, unbiased=False).numpy(), 1.0, atol=1e-4)
    np.testing.assert_allclose(norm.unnormalise(z).numpy(), x, atol=1e-4)
    assert json.dumps(norm.mean.tolist())
