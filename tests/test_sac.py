"""SAC datasets (a tiny-budget run), the `behaviour` evaluation policy and dataset cards in results."""

import numpy as np
import pytest
import torch

from wmbench.cells import EvalRequest, default_dataset
from wmbench.data import load_dataset, read_card
from wmbench.envs import get_env
from wmbench.errors import DatasetError
from wmbench.evaluate import evaluate
from wmbench.oracle import Oracle
from wmbench.results import ResultsStore
from wmbench.sac import behaviour_policy, make_sac_datasets, sac_policy_path

STEPS, FINAL_EPISODES = 400, 2


@pytest.fixture(scope="module")
def sac_root(tmp_path_factory):
    """Datasets of a 400-step SAC run on Hopper, in their own folder (other tests keep random data)."""
    root = tmp_path_factory.mktemp("sac-datasets")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MINARI_DATASETS_PATH", str(root))
        ids = make_sac_datasets(get_env("hopper"), STEPS, seed=0, final_episodes=FINAL_EPISODES,
                                learning_starts=200, progress=False)
    return root, ids


@pytest.fixture
def sac_datasets(sac_root, monkeypatch):
    root, ids = sac_root
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    return ids


def test_sac_make_writes_replay_and_final_datasets_with_cards(sac_datasets):
    replay_id, final_id = sac_datasets
    assert (replay_id, final_id) == ("wmbench/hopper/sac-replay-v0", "wmbench/hopper/sac-final-v0")
    replay, final = load_dataset(replay_id), load_dataset(final_id)
    assert replay.n_transitions == STEPS and final.n_episodes == FINAL_EPISODES
    for dataset_id, offline in ((replay_id, replay), (final_id, final)):
        card = read_card(dataset_id)
        assert card["steps"] == offline.n_transitions and card["episodes"] == offline.n_episodes
        assert card["return_mean"] == pytest.approx(offline.episode_returns().mean(), rel=1e-5)
        assert card["gym_id"] == "Hopper-v5" and card["seed"] == 0 and card["wmbench_version"]
        assert card["sac"]["learning_starts"] == 200
    assert read_card(replay_id)["behaviour_policy"] == "sac-replay"


def test_recorded_states_replay_to_the_recorded_observations(sac_datasets):
    """The replay buffer's qpos/qvel belong to its observations: the simulator reproduces them."""
    offline = load_dataset(sac_datasets[0])
    start, end = offline.episode_starts[0], offline.episode_starts[1]
    steps = min(end - start, 20)
    replay = Oracle(get_env("hopper")).replay(offline.qpos[start:start + 1], offline.qvel[start:start + 1],
                                              offline.actions[None, start:start + steps])
    np.testing.assert_allclose(replay.observations[0, 1:], offline.next_observations[start:start + steps], atol=1e-5)
    np.testing.assert_allclose(replay.rewards[0], offline.rewards[start:start + steps], atol=1e-4)


def test_behaviour_policy_mean_is_tanh_of_the_sac_actor_mean(sac_datasets):
    from stable_baselines3 import SAC

    agent = SAC.load(sac_policy_path(sac_datasets[0]), device="cpu")
    obs = torch.as_tensor(load_dataset(sac_datasets[0]).observations[:64])
    with torch.no_grad():
        actor_mean, _, _ = agent.actor.get_action_dist_params(obs)
    policy = behaviour_policy(sac_datasets[0], 0.05)
    mean, std = policy.mean_std(obs)
    torch.testing.assert_close(mean, torch.tanh(actor_mean))
    torch.testing.assert_close(std, torch.full((3,), 0.05))
    assert behaviour_policy(sac_datasets[1], 0.3).fingerprint() != policy.fingerprint()


def test_behaviour_policy_needs_a_sac_dataset(hopper_dataset):
    with pytest.raises(DatasetError, match="wmbench data make ENV --policy sac"):
        behaviour_policy(hopper_dataset, 0.1)


def test_default_dataset_is_the_replay_buffer_and_cards_reach_result_rows(sac_datasets, tmp_path):
    assert default_dataset("hopper") == sac_datasets[0]
    request = EvalRequest(model="mlp-ensemble", env="hopper", horizon=3, profile="smoke", policy="behaviour",
                          policy_std=0.05)
    table = evaluate(request, store=ResultsStore(tmp_path), progress=False, say=lambda m: None)
    assert set(table["dataset"]) == {sac_datasets[0]} and set(table["policy"]) == {"behaviour-std0.05"}
    assert set(table["dataset_behaviour_policy"]) == {"sac-replay"} and set(table["dataset_steps"]) == {STEPS}
    z_std = table.loc[table["metric"] == "action_z_std", "value"].item()
    assert 0.8 < z_std < 1.2, "actions drawn from the behaviour policy are calibrated to it"
