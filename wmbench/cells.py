"""A cell's identity: what a user asks `wmbench evaluate` for, the configs it resolves to, and the
names of its checkpoint and results.

Everything here is decided before any work is done, so that a sweep, a bench, a render or an RL
run can name a cell, check its settings and find its cached model without evaluating it.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch

from wmbench import data as datasets
from wmbench.config import (
    build_config,
    canonical_overrides,
    config_hash,
    config_section,
    identity,
    param,
    profile_label,
)
from wmbench.data import DataConfig
from wmbench.envs import get_env
from wmbench.errors import UsageError
from wmbench.models.base import WorldModel, get_model_class
from wmbench.models.training import TrainingConfig
from wmbench.paths import checkpoints_root
from wmbench.policy import PolicyConfig
from wmbench.results import Cell
from wmbench.tracking import BACKENDS, check_backend

POLICIES = ("bc", "behaviour")
PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16}  # of generation (autocast)
DEFAULT_POLICY_STD = 0.2  # of `behaviour`; the paper finds guidance breaks down below about 0.1
BEHAVIOUR_LABEL = "behaviour-std"  # a cell's policy: `bc`, or this followed by the std
MAX_SEED = 2 ** 31 - 1  # seeds reach numpy, torch and MuJoCo, whose smallest range this is
MAX_HORIZON = 10_000  # the paper's longest is 200; MuJoCo episodes are 1,000 steps
MAX_CELL_BYTES = 16 * 2 ** 30


@config_section("evaluate")
@dataclass
class EvalConfig:
    """How many trajectories an evaluation generates and replays."""

    n_trajectories: int = param(256, "trajectories generated and replayed per evaluation", low=1, high=1_000_000)
    warmup_trajectories: int = param(8, "batch of the untimed warm-up rollout", low=1)
    eval_every: int = param(0, "also evaluate the model (its EMA weights) every this many training updates, for "
                               "learning curves (0: at the end only)", low=0)


@config_section("log")
@dataclass
class LogConfig:
    """Where a run's scalars go while it runs (`--log` sets it too); never part of a cell's identity."""

    backend: str = param("none", "tensorboard, wandb or mlflow: log training, tuning, curves and results to it "
                                 "under WORKSPACE/runs (none: no logs)", runtime=True,
                         choices=("none", *BACKENDS))


def log_backend(log: str | None, profile: str, overrides: tuple[str, ...]) -> str | None:
    """The back-end a run logs to (`--log`, else the profile's `[log]`; None: no logs), checked installed."""
    backend = log or build_config(LogConfig, profile, "log", overrides).backend
    backend = None if backend == "none" else backend
    check_backend(backend)
    return backend


@dataclass(frozen=True)
class EvalRequest:
    """What a user asks `wmbench evaluate` for; unset fields come from the profile."""

    model: str
    env: str
    horizon: int = 10
    seed: int = 0
    profile: str = "quick"  # a name or a path to a TOML file
    overrides: tuple[str, ...] = ()  # `--set SECTION.KEY=VALUE`, as given
    dataset: str | None = None
    n_trajectories: int | None = None
    eval_every: int | None = None
    device: str = "cpu"
    policy: str = "bc"
    policy_std: float = DEFAULT_POLICY_STD
    precision: str = "fp32"
    log: str | None = None  # a log back-end (tracking.BACKENDS), else the profile's; not part of the cell


def resolve_device(device: str) -> str:
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("CUDA is not available on this machine; use --device cpu")
    if not (device == "cpu" or device.startswith("cuda")):
        raise UsageError(f"unknown device {device!r}; use cpu or cuda")
    return device


def dataset_fingerprint(dataset_id: str) -> str:
    """Changes whenever the dataset is remade with other contents, so stale checkpoints are not reused."""
    folder = datasets.dataset_dir(dataset_id)
    digest = hashlib.sha1()
    for name in ("data/metadata.json", datasets.CARD_FILE):
        if (folder / name).is_file():
            digest.update((folder / name).read_bytes())
    return digest.hexdigest()[:8]


def model_config(model_cls: type[WorldModel], profile: str, horizon: int, overrides: tuple[str, ...] = (),
                 env: str | None = None):
    """The model's config from the profile (its horizon's and env's tables included) and overrides;
    trajectory-level models get the requested horizon."""
    config = build_config(model_cls.Config, profile, model_cls.name, overrides, env=env, horizon=horizon)
    if model_cls.fixed_horizon:
        if "horizon" in canonical_overrides(overrides, {model_cls.name}):
            raise UsageError(f"set the horizon of {model_cls.name} with --horizon, not --set")
        config = dataclasses.replace(config, horizon=horizon)
    return config


def cell_config(request: EvalRequest) -> dict:
    """Every setting that shapes a cell's numbers: the model's config and the shared sections."""
    model_cls = get_model_class(request.model)
    profile, overrides = request.profile, request.overrides
    config = {
        request.model: model_config(model_cls, profile, request.horizon, overrides, get_env(request.env).name),
        "data": build_config(DataConfig, profile, "data", overrides),
        "policy": build_config(PolicyConfig, profile, "policy", overrides),
        "evaluate": eval_config(request),
    }
    return {name: identity(value) for name, value in config.items()}


def eval_config(request: EvalRequest) -> EvalConfig:
    config = build_config(EvalConfig, request.profile, "evaluate", request.overrides,
                          n_trajectories=request.n_trajectories, eval_every=request.eval_every)
    env = get_env(request.env)
    # what a cell holds at once, at least: generated and replayed states, actions and simulator states
    floats = config.n_trajectories * (request.horizon + 1) * (2 * env.obs_dim + env.act_dim + 2 * (env.nq + env.nv))
    if floats * 4 > MAX_CELL_BYTES:
        raise UsageError(f"{config.n_trajectories} trajectories of {request.horizon} steps would need at least "
                         f"{floats * 4 / 2 ** 30:.0f} GiB of memory; a cell is limited to "
                         f"{MAX_CELL_BYTES / 2 ** 30:.0f} GiB: use fewer trajectories or a shorter horizon")
    return config


def snapshot_steps(config, eval_every: int) -> list[int]:
    """The training steps a learning curve evaluates before the end (models of the shared training
    loop only: others are evaluated at the end alone)."""
    if not eval_every or not isinstance(config, TrainingConfig):
        return []
    return list(range(eval_every, config.train_steps, eval_every))


def checkpoint_path(model_cls: type[WorldModel], cell: Cell, overrides: tuple[str, ...] = (),
                    profile: str | None = None) -> Path:
    """Keyed by the dataset's fingerprint and the resolved config, so that neither a remade
    dataset, an edited profile nor an override silently reuses a stale model. `profile`: the
    request's (a profile file's path), where the cell keeps only its label."""
    profile = profile or cell.profile
    config = model_config(model_cls, profile, cell.horizon, overrides, cell.env)
    slug = f"{cell.dataset.replace('/', '.')}-{dataset_fingerprint(cell.dataset)}"
    horizon = f"-h{cell.horizon}" if model_cls.fixed_horizon else ""
    size = build_config(DataConfig, profile, "data", overrides).train_transitions
    subset = f"-n{size}" if size else ""  # trained on a subset of the training episodes
    name = f"{cell.model}-{profile_label(cell.profile)}-{config_hash(config)}-s{cell.seed}{horizon}{subset}.pt"
    return checkpoints_root() / cell.env / slug / name


def cell_of(request: EvalRequest) -> Cell:
    """The results-store identity of a request (checks the names; the default dataset filled in)."""
    env = get_env(request.env)
    get_model_class(request.model)
    if not 1 <= request.horizon <= MAX_HORIZON:
        raise UsageError(f"--horizon must be a number of steps from 1 to {MAX_HORIZON}, got {request.horizon}")
    if not 0 <= request.seed <= MAX_SEED:
        raise UsageError(f"--seed must be from 0 to {MAX_SEED}, got {request.seed}")
    if request.policy not in POLICIES:
        raise UsageError(f"unknown policy {request.policy!r}; choose one of: {', '.join(POLICIES)}")
    if not 0 < request.policy_std < float("inf"):  # with bc too: a bad value is never ignored silently
        raise UsageError(f"--policy-std must be positive, got {request.policy_std}")
    if request.precision not in PRECISIONS:
        raise UsageError(f"unknown precision {request.precision!r}; choose one of: {', '.join(PRECISIONS)}")
    label = request.policy if request.policy == "bc" else f"{BEHAVIOUR_LABEL}{request.policy_std:g}"
    return Cell(model=request.model, env=env.name, dataset=request.dataset or default_dataset(env.name),
                policy=label, profile=profile_label(request.profile), horizon=request.horizon, seed=request.seed,
                precision=request.precision, config_hash=config_hash(cell_config(request)))


def default_dataset(env: str) -> str:
    """The SAC replay buffer of the env when it has been made, else the random dataset."""
    replay = datasets.default_dataset_id(env, "sac-replay")
    return replay if datasets.dataset_exists(replay) else datasets.default_dataset_id(env, "random")
