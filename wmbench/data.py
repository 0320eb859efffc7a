"""Offline datasets: load local Minari datasets, split them by episode, normalise them
(`wmbench.recording` makes them).

A wmbench dataset is a plain Minari dataset (readable by `minari.load_dataset` and Minari's CLI)
whose episode infos hold the simulator state of every observation as `qpos` and `qvel`, so that
the oracle can restart the simulator exactly at any stored observation. Beside Minari's `data/`
folder sits `wmbench_card.json`, the dataset card (behaviour policy, steps, seed, returns, code).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from wmbench.config import config_section, param
from wmbench.envs import get_env
from wmbench.errors import DatasetError
from wmbench.paths import atomic_write_bytes, datasets_root

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the hub unless a user asks to

CARD_FILE = "wmbench_card.json"


@config_section("data")
@dataclass
class DataConfig:
    """The dataset an evaluation makes on first use."""

    steps: int = param(100_000, "environment steps of a dataset made on first use", low=2)
    train_transitions: int = param(0, "train the world model on about this many transitions: whole training "
                                      "episodes in an order drawn with the cell's seed, so a smaller subset lies "
                                      "inside a larger one (0: every training episode)", low=0, added=True)


def default_dataset_id(env: str, policy: str = "random") -> str:
    return f"wmbench/{env}/{policy}-v0"


DATASET_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*(/[A-Za-z0-9_][A-Za-z0-9_.-]*)*-v[0-9]+")


def dataset_dir(dataset_id: str) -> Path:
    """The folder of a Minari dataset id (`namespace/name-vN`) under the datasets root; an id that is
    not one (a path: absolute, `..`, a backslash) is refused, so no id reaches outside the root."""
    if not isinstance(dataset_id, str) or not DATASET_ID.fullmatch(dataset_id):
        raise DatasetError(f"{dataset_id!r} is not a dataset id: ids look like wmbench/hopper/sac-replay-v0 "
                           "(`wmbench data list` shows the local ones); to use a dataset folder elsewhere, point "
                           "MINARI_DATASETS_PATH at its root")
    return datasets_root() / dataset_id


def dataset_exists(dataset_id: str) -> bool:
    return (dataset_dir(dataset_id) / "data" / "metadata.json").is_file()


@dataclass(frozen=True)
class OfflineData:
    """Transitions of whole episodes, stored contiguously in episode order.

    Transition `i` is `(observations[i], actions[i]) -> (rewards[i], next_observations[i],
    terminals[i])`; episode `e` owns transitions `episode_starts[e] : episode_starts[e + 1]`.
    `qpos`/`qvel` are the simulator state of `observations[i]` (float64, exact).
    """

    dataset_id: str
    env: str
    observations: np.ndarray  # [N, obs] float32
    actions: np.ndarray  # [N, act] float32
    rewards: np.ndarray  # [N] float32
    next_observations: np.ndarray  # [N, obs] float32
    terminals: np.ndarray  # [N] bool: next_observations[i] is terminal
    episode_starts: np.ndarray  # [E + 1] int64
    qpos: np.ndarray | None = None  # [N, nq] float64
    qvel: np.ndarray | None = None  # [N, nv] float64
    exact_states: bool = True
    """False when qpos/qvel were rebuilt from observations (datasets that store no state)."""
    drawn_from: OfflineData | None = None
    """The data a subset was drawn from (`subset`): models fit their normalisers on it, so that the
    scale a model works in does not change with the amount of data it learns from."""

    @property
    def normalising(self) -> OfflineData:
        """What a model fits its normalisers on: all the data a subset was drawn from, else this."""
        return self.drawn_from if self.drawn_from is not None else self

    @property
    def n_transitions(self) -> int:
        return len(self.actions)

    @property
    def n_episodes(self) -> int:
        return len(self.episode_starts) - 1

    @property
    def obs_dim(self) -> int:
        return self.observations.shape[1]

    @property
    def act_dim(self) -> int:
        return self.actions.shape[1]

    def episode_returns(self) -> np.ndarray:
        return np.add.reduceat(self.rewards, self.episode_starts[:-1]) if self.n_episodes else np.zeros(0)

    def select_episodes(self, episodes: np.ndarray) -> OfflineData:
        """A dataset holding the given episodes, in the given order."""
        starts, ends = self.episode_starts[episodes], self.episode_starts[np.asarray(episodes) + 1]
        index = np.concatenate([np.arange(s, e) for s, e in zip(starts, ends)]) if len(starts) else np.zeros(0, int)
        lengths = ends - starts
        pick = lambda a: None if a is None else a[index]  # noqa: E731
        return OfflineData(
            dataset_id=self.dataset_id, env=self.env,
            observations=self.observations[index], actions=self.actions[index],
            rewards=self.rewards[index], next_observations=self.next_observations[index],
            terminals=self.terminals[index],
            episode_starts=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
            qpos=pick(self.qpos), qvel=pick(self.qvel), exact_states=self.exact_states,
        )

    def subset(self, transitions: int, seed: int) -> OfflineData:
        """Whole episodes, in an order drawn with `seed`, up to the first that brings the count to at
        least `transitions`: nested (a smaller subset is a prefix of a larger one of the same seed)."""
        if not 0 < transitions <= self.n_transitions:
            raise DatasetError(f"{self.dataset_id}: cannot train on {transitions} transitions; its training "
                               f"split holds {self.n_transitions} (data.train_transitions: 1 to {self.n_transitions}, "
                               "or 0 for all)")
        order = np.random.default_rng(seed).permutation(self.n_episodes)
        lengths = np.diff(self.episode_starts)[order]
        n = int(np.searchsorted(np.cumsum(lengths), transitions)) + 1
        return dataclasses.replace(self.select_episodes(np.sort(order[:n])), drawn_from=self)

    def split(self, held_out_fraction: float = 0.1, seed: int = 0) -> tuple[OfflineData, OfflineData]:
        """`(train, held_out)` by whole episodes; the same seed gives the same split."""
        if self.n_episodes < 2:
            raise DatasetError(f"{self.dataset_id}: a train/held-out split needs at least 2 episodes")
        order = np.random.default_rng(seed).permutation(self.n_episodes)
        n_held = min(max(1, round(held_out_fraction * self.n_episodes)), self.n_episodes - 1)
        return self.select_episodes(np.sort(order[n_held:])), self.select_episodes(np.sort(order[:n_held]))

    def windows(self, rows: int) -> tuple[np.ndarray, np.ndarray]:
        """Every window of `rows` consecutive steps inside one episode: `(index, padded)`, both
        `[W, rows]`. `index` points into the transitions; a window may run past an episode's
        termination, and then its steps after the last one are `padded` (index repeats the last
        transition: the caller pads states with its terminal `next_observation`, actions with its
        action, rewards with 0 and terminals with 1). Windows never run past a truncation."""
        starts, ends = self.episode_starts[:-1], self.episode_starts[1:]
        terminated = self.terminals[np.maximum(ends - 1, 0)] & (ends > starts)
        index, padded = [], []
        offsets = np.arange(rows)
        for start, end, done in zip(starts, ends, terminated):
            last_start = end - 1 if done else end - rows
            if last_start < start:
                continue
            raw = np.arange(start, last_start + 1)[:, None] + offsets
            padded.append(raw >= end)
            index.append(np.minimum(raw, end - 1))
        if not index:
            return np.zeros((0, rows), np.int64), np.zeros((0, rows), bool)
        return np.concatenate(index), np.concatenate(padded)

    def start_states(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Indices of `n` transitions drawn uniformly (with replacement) as rollout start states."""
        return rng.integers(0, self.n_transitions, size=n)


class Normaliser(nn.Module):
    """Per-dimension z-scoring `(x - mean) / (std + 1e-6)` as a module (statistics are buffers)."""

    def __init__(self, mean: np.ndarray | torch.Tensor, std: np.ndarray | torch.Tensor):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(np.asarray(mean), dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(np.asarray(std), dtype=torch.float32) + 1e-6)

    @classmethod
    def fit(cls, x: np.ndarray) -> Normaliser:
        x = np.asarray(x, dtype=np.float64).reshape(-1, *np.shape(x)[1:])
        return cls(x.mean(axis=0), x.std(axis=0))

    @classmethod
    def identity(cls, dim: int) -> Normaliser:
        return cls(np.zeros(dim), np.ones(dim) - 1e-6)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def unnormalise(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.std + self.mean


# ----------------------------------------------------------------------------- loading datasets

def missing_dataset_message(dataset_id: str) -> str:
    parts = dataset_id.split("/")
    env_hint = parts[1] if len(parts) == 3 else "ENV"
    return (
        f"dataset {dataset_id} is not in {datasets_root()}: make one locally with "
        f"`wmbench data make {env_hint}`, or on a machine with network run "
        f"`minari download {dataset_id}` and copy its folder to {datasets_root() / dataset_id}"
    )


def read_card(dataset_id: str) -> dict:
    path = dataset_dir(dataset_id) / CARD_FILE
    try:
        card = json.loads(path.read_bytes()) if path.is_file() else {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DatasetError(f"dataset card {path} is unreadable ({type(err).__name__}); remake the dataset") from err
    if not isinstance(card, dict):
        raise DatasetError(f"dataset card {path} is not a JSON object; remake the dataset")
    return card


CARD_COLUMNS = ("behaviour_policy", "steps", "episodes", "seed", "return_mean", "return_min", "return_max",
                "wmbench_version", "wmbench_commit")


def card_columns(dataset_id: str) -> dict[str, object]:
    """The dataset card's facts as `dataset_*` columns of a result row (empty for a card-less dataset)."""
    card = read_card(dataset_id)
    return {f"dataset_{key}": card[key] for key in CARD_COLUMNS if key in card}


_warned_clip: set[str] = set()


def load_dataset(dataset_id: str) -> OfflineData:
    """Load a local Minari dataset as `OfflineData` (never downloads).

    The first load also writes the flat arrays beside the dataset (`wmbench/flat-KEY.npz`, KEY from
    the size and mtime of its data files): Minari reads one HDF5 group per episode, seconds for
    thousands of short episodes, and the flat copy loads in milliseconds. A remade dataset gets a
    new key; a damaged copy is rebuilt."""
    if not dataset_exists(dataset_id):
        raise DatasetError(missing_dataset_message(dataset_id))
    folder = dataset_dir(dataset_id)
    key = hashlib.sha1(repr(sorted((f.name, f.stat().st_size, f.stat().st_mtime_ns)
                                   for f in (folder / "data").iterdir())).encode()).hexdigest()[:12]
    flat = folder / "wmbench" / f"flat-{key}.npz"
    if flat.is_file():
        try:
            with np.load(flat, allow_pickle=False) as arrays:
                fields = {name: arrays[name] for name in arrays.files}
            return OfflineData(dataset_id=dataset_id, env=str(fields.pop("env")),
                               exact_states=bool(fields.pop("exact_states")), **fields)
        except (OSError, ValueError, KeyError, TypeError):
            pass  # rebuilt below
    data = _read_minari(dataset_id)
    buffer = io.BytesIO()
    arrays = {f.name: getattr(data, f.name) for f in dataclasses.fields(data)
              if f.name not in ("dataset_id", "drawn_from")}
    np.savez(buffer, **arrays)
    for stale in flat.parent.glob("flat-*.npz"):
        stale.unlink(missing_ok=True)
    atomic_write_bytes(flat, buffer.getvalue())
    return data


def _read_minari(dataset_id: str) -> OfflineData:
    from minari.dataset.minari_dataset import MinariDataset

    data_path = dataset_dir(dataset_id) / "data"
    try:
        dataset = MinariDataset(data_path)
        env_spec = json.loads(dataset.storage.metadata["env_spec"])
        env = get_env(env_spec["id"])
        episodes = list(dataset.storage.get_episodes(range(dataset.total_episodes)))
    except DatasetError:
        raise
    except Exception as err:  # h5py/arrow/json errors all mean the same thing to a user
        raise DatasetError(f"dataset {dataset_id} at {data_path} is corrupt or unreadable "
                           f"({type(err).__name__}: {err}); remake it or download it again") from err
    if not episodes:
        raise DatasetError(f"dataset {dataset_id} has no episodes; remake it")

    has_state = all({"qpos", "qvel"} <= set(ep["infos"] or {}) for ep in episodes)
    if not has_state and env.clips_velocity and dataset_id not in _warned_clip:
        _warned_clip.add(dataset_id)
        warnings.warn(f"{dataset_id} stores no simulator state: rebuilding it from observations "
                      f"with x = 0, but {env.gym_id} observations clip velocities at +-10, so "
                      f"replays from clipped states are not exact", stacklevel=2)

    obs = [np.asarray(ep["observations"], dtype=np.float64) for ep in episodes]
    if has_state:
        qpos = [np.asarray(ep["infos"]["qpos"], dtype=np.float64) for ep in episodes]
        qvel = [np.asarray(ep["infos"]["qvel"], dtype=np.float64) for ep in episodes]
    else:
        qpos, qvel = zip(*(env.state_from_obs(o) for o in obs))
    lengths = np.array([len(ep["actions"]) for ep in episodes])
    if obs[0].shape[-1] != env.obs_dim:
        raise DatasetError(f"dataset {dataset_id}: observations have {obs[0].shape[-1]} dims, "
                           f"{env.gym_id} has {env.obs_dim}")
    return OfflineData(
        dataset_id=dataset_id,
        env=env.name,
        observations=np.concatenate([o[:-1] for o in obs]).astype(np.float32),
        actions=np.concatenate([ep["actions"] for ep in episodes]).astype(np.float32),
        rewards=np.concatenate([ep["rewards"] for ep in episodes]).astype(np.float32),
        next_observations=np.concatenate([o[1:] for o in obs]).astype(np.float32),
        terminals=np.concatenate([ep["terminations"] for ep in episodes]).astype(bool),
        episode_starts=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        qpos=np.concatenate([q[:-1] for q in qpos]),
        qvel=np.concatenate([v[:-1] for v in qvel]),
        exact_states=has_state,
    )


def list_datasets() -> list[tuple[str, int]]:
    """`(dataset_id, total_steps)` of every local dataset."""
    root = datasets_root()
    found = []
    for meta in sorted(root.glob("**/data/metadata.json")):
        if any(part.startswith(".") for part in meta.relative_to(root).parts):
            continue  # staging folders of an interrupted write
        dataset_id = meta.parent.parent.relative_to(root).as_posix()
        try:
            steps = int(json.loads(meta.read_text()).get("total_steps", 0))
        except (OSError, json.JSONDecodeError, ValueError):
            steps = -1
        found.append((dataset_id, steps))
    return found
