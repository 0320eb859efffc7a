"""Making datasets: record episodes with the simulator state of every observation and write them
as Minari datasets (`wmbench data make`; the SAC runs of `wmbench.sac` record through the same
`EpisodeRecorder`).

Minari writes without jax through `EpisodeBuffer` + `create_dataset_from_buffers`; a dataset is
staged beside the datasets root and moved into place, so a reader never sees half of one.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Callable

import gymnasium as gym
import numpy as np
from tqdm.auto import tqdm

from wmbench.data import CARD_FILE, dataset_dir, default_dataset_id
from wmbench.envs import EnvSpec
from wmbench.errors import DatasetError
from wmbench.oracle import simulator_state
from wmbench.paths import datasets_root
from wmbench.provenance import git_commit, package_version, package_versions

MAX_DATASET_STEPS = 100_000_000  # 100x the paper's datasets

ActionFn = Callable[[np.ndarray], np.ndarray]


class EpisodeRecorder(gym.Wrapper):
    """Keeps every episode the wrapped env plays, with the simulator state (qpos, qvel) of every
    observation, whoever drives it (`collect_episodes`, or an RL library's training loop)."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.episodes: list[dict[str, np.ndarray]] = []
        self._episode: dict[str, list] | None = None

    def _state(self) -> tuple[np.ndarray, np.ndarray]:
        return simulator_state(self.env)

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        qpos, qvel = self._state()
        self._episode = {"observations": [obs], "actions": [], "rewards": [], "terminations": [],
                         "truncations": [], "qpos": [qpos], "qvel": [qvel]}
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        qpos, qvel = self._state()
        for key, value in (("observations", obs), ("actions", np.asarray(action, np.float32)), ("rewards", reward),
                           ("terminations", terminated), ("truncations", truncated), ("qpos", qpos), ("qvel", qvel)):
            self._episode[key].append(value)
        if terminated or truncated:
            self._close_episode()
        return obs, reward, terminated, truncated, info

    def _close_episode(self) -> None:
        if self._episode and self._episode["actions"]:
            self.episodes.append({k: np.asarray(v) for k, v in self._episode.items()})
        self._episode = None

    def finish(self) -> list[dict[str, np.ndarray]]:
        """All episodes; an episode cut by the end of the run is kept, truncated at its last step."""
        if self._episode and self._episode["actions"]:
            self._episode["truncations"][-1] = True
        self._close_episode()
        return self.episodes


def collect_episodes(
    env: EnvSpec, act: ActionFn, steps: int, seed: int, progress: bool = True, max_episodes: int | None = None,
) -> list[dict[str, np.ndarray]]:
    """Run `act` in the env for `steps` steps (or until `max_episodes` have ended); episodes carry
    the simulator state of every obs."""
    recorder, obs = EpisodeRecorder(env.make()), None
    total = steps if max_episodes is None else max_episodes
    bar = tqdm(total=total, desc=f"collect {env.name}", unit="step" if max_episodes is None else "episode",
               disable=not progress, leave=False)
    for _ in range(steps):
        if max_episodes is not None and len(recorder.episodes) == max_episodes:
            break
        if obs is None:
            obs, _ = recorder.reset(seed=seed + len(recorder.episodes))
        obs, _, terminated, truncated, _ = recorder.step(np.asarray(act(obs), dtype=np.float32))
        if terminated or truncated:
            obs = None
            bar.update(max_episodes is not None)
        bar.update(max_episodes is None)
    bar.close()
    return recorder.finish()


def write_dataset(
    dataset_id: str, env: EnvSpec, episodes: list[dict[str, np.ndarray]], card: dict,
    algorithm_name: str, overwrite: bool = False,
) -> Path:
    """Write episodes as a Minari dataset plus its card, atomically (staged, then moved in)."""
    import minari
    from minari.data_collector import EpisodeBuffer

    root, target = datasets_root(), dataset_dir(dataset_id)
    if target.exists() and not overwrite:
        raise DatasetError(f"dataset {dataset_id} already exists at {target}; pass --overwrite to replace it")
    staging = root / f".staging-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    buffers = [
        EpisodeBuffer(
            id=i, seed=card.get("seed", 0) + i, observations=ep["observations"], actions=ep["actions"],
            rewards=list(ep["rewards"]), terminations=list(ep["terminations"]),
            truncations=list(ep["truncations"]), infos={"qpos": ep["qpos"], "qvel": ep["qvel"]},
        )
        for i, ep in enumerate(episodes)
    ]
    previous = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(staging)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # author/permalink nags
            minari.create_dataset_from_buffers(
                dataset_id, buffers, env=env.gym_id, algorithm_name=algorithm_name,
                author="wmbench", description=card.get("description"),
                code_permalink=f"wmbench {git_commit()}",
            )
    finally:
        if previous is None:
            del os.environ["MINARI_DATASETS_PATH"]
        else:
            os.environ["MINARI_DATASETS_PATH"] = previous
    (staging / dataset_id / CARD_FILE).write_text(json.dumps(card, indent=2))
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        shutil.rmtree(target)
    os.replace(staging / dataset_id, target)
    shutil.rmtree(staging, ignore_errors=True)
    return target


def make_card(env: EnvSpec, policy: str, steps: int, seed: int, episodes: list[dict], **extra) -> dict:
    returns = np.array([ep["rewards"].sum() for ep in episodes])
    return {
        "env": env.name, "gym_id": env.gym_id, "behaviour_policy": policy, "steps": int(steps),
        "episodes": len(episodes), "seed": int(seed),
        "return_mean": float(returns.mean()), "return_min": float(returns.min()),
        "return_max": float(returns.max()), "wmbench_version": package_version("wmbench"),
        "wmbench_commit": git_commit(),
        "versions": package_versions(), **extra,
    }


def make_random_dataset(env: EnvSpec, steps: int, seed: int = 0, progress: bool = True,
                        overwrite: bool = False) -> str:
    """Uniform random actions: the dataset `wmbench/ENV/random-v0`."""
    dataset_id = default_dataset_id(env.name, "random")
    if dataset_dir(dataset_id).exists() and not overwrite:  # before the steps, not after them
        raise DatasetError(f"dataset {dataset_id} already exists at {dataset_dir(dataset_id)}; "
                           "pass --overwrite to replace it")
    rng = np.random.default_rng(seed)
    episodes = collect_episodes(
        env, lambda obs: rng.uniform(-1.0, 1.0, env.act_dim), steps, seed, progress=progress
    )
    card = make_card(env, "random", steps, seed, episodes,
                     description=f"{steps} steps of uniform random actions in {env.gym_id}")
    write_dataset(dataset_id, env, episodes, card, algorithm_name="random", overwrite=overwrite)
    return dataset_id
