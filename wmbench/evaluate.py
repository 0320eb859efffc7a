"""One evaluation, end to end: dataset -> policy -> model -> rollout -> oracle -> metrics -> store.

Every model of a cell's env, dataset, profile and seed is evaluated under the same policy (fitted
once per dataset and profile) from the same held-out start states (drawn with the seed), and the
generated actions are replayed in the simulator from the exact simulator state of each start.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from wmbench import data as datasets
from wmbench import metrics
from wmbench.config import (
    build_config,
    canonical_overrides,
    config_hash,
    config_section,
    identity,
    param,
    profile_label,
)
from wmbench.data import OfflineData
from wmbench.envs import get_env
from wmbench.errors import DatasetError, UsageError
from wmbench.models.base import WorldModel, get_model_class
from wmbench.oracle import Oracle
from wmbench.paths import checkpoints_root, file_lock
from wmbench.policy import GaussianPolicy, PolicyConfig
from wmbench.provenance import provenance
from wmbench.results import Cell, ResultsStore
from wmbench.timing import Stopwatch, timed

SPLIT_SEED = 0  # one train/held-out split per dataset, shared by every model and seed
HELD_OUT_FRACTION = 0.1
SUMMARY_STEPS = (1, 5, 10, 20, 50, 100, 200)
POLICIES = ("bc", "behaviour")
PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16}  # of generation (autocast)
DEFAULT_POLICY_STD = 0.2  # of `behaviour`; the paper finds guidance breaks down below about 0.1
BEHAVIOUR_LABEL = "behaviour-std"  # a cell's policy: `bc`, or this followed by the std


@config_section("data")
@dataclass
class DataConfig:
    """The dataset an evaluation makes on first use."""

    steps: int = param(100_000, "environment steps of a dataset made on first use")


@config_section("evaluate")
@dataclass
class EvalConfig:
    """How many trajectories an evaluation generates and replays."""

    n_trajectories: int = param(256, "trajectories generated and replayed per evaluation")
    warmup_trajectories: int = param(8, "batch of the untimed warm-up rollout")


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
    device: str = "cpu"
    policy: str = "bc"
    policy_std: float = DEFAULT_POLICY_STD
    precision: str = "fp32"


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


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


def ensure_dataset(dataset_id: str, profile: str, overrides: tuple[str, ...], make_missing: bool, progress: bool,
                   say: Callable[[str], None]) -> None:
    if datasets.dataset_exists(dataset_id):
        return
    parts = dataset_id.split("/")
    if not make_missing or parts[0] != "wmbench" or len(parts) != 3 or parts[2] != "random-v0":
        raise DatasetError(datasets.missing_dataset_message(dataset_id))
    config = build_config(DataConfig, profile, "data", overrides)
    say(f"making {dataset_id} ({config.steps} random steps); for the paper's kind of data, the replay buffer "
        f"of an RL run, run `wmbench data make {parts[1]} --policy sac` (about 15 minutes)")
    datasets.make_random_dataset(get_env(parts[1]), config.steps, seed=0, progress=progress)


def load_or_fit_policy(dataset_id: str, train: OfflineData, profile: str, overrides: tuple[str, ...],
                       progress: bool, say: Callable[[str], None]) -> GaussianPolicy:
    config = build_config(PolicyConfig, profile, "policy", overrides)
    path = datasets.dataset_dir(dataset_id) / "wmbench" / f"policy-bc-{profile_label(profile)}-{config_hash(config)}.pt"
    with file_lock(path.with_name(f".{path.name}.lock")):  # parallel evaluations fit it once
        if path.is_file():
            return GaussianPolicy.load(path)
        say(f"fitting the behaviour-cloning policy of {dataset_id} ({profile_label(profile)})")
        policy = GaussianPolicy.fit(train, config, progress=progress)
        policy.save(path)
    return policy


def model_config(model_cls: type[WorldModel], profile: str, horizon: int, overrides: tuple[str, ...] = ()):
    """The model's config from the profile and overrides; trajectory-level models get the requested horizon."""
    config = build_config(model_cls.Config, profile, model_cls.name, overrides)
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
        request.model: model_config(model_cls, profile, request.horizon, overrides),
        "data": build_config(DataConfig, profile, "data", overrides),
        "policy": build_config(PolicyConfig, profile, "policy", overrides),
        "evaluate": build_config(EvalConfig, profile, "evaluate", overrides, n_trajectories=request.n_trajectories),
    }
    return {name: identity(value) for name, value in config.items()}


def checkpoint_path(model_cls: type[WorldModel], cell: Cell, overrides: tuple[str, ...] = ()) -> Path:
    """Keyed by the dataset's fingerprint and the resolved config, so that neither a remade
    dataset, an edited profile nor an override silently reuses a stale model."""
    config = model_config(model_cls, cell.profile, cell.horizon, overrides)
    slug = f"{cell.dataset.replace('/', '.')}-{dataset_fingerprint(cell.dataset)}"
    horizon = f"-h{cell.horizon}" if model_cls.fixed_horizon else ""
    name = f"{cell.model}-{profile_label(cell.profile)}-{config_hash(config)}-s{cell.seed}{horizon}.pt"
    return checkpoints_root() / cell.env / slug / name


def load_or_fit_model(model_cls: type[WorldModel], cell: Cell, request: EvalRequest, train: OfflineData,
                      device: str, progress: bool, say: Callable[[str], None]) -> WorldModel:
    path = checkpoint_path(model_cls, cell, request.overrides)
    with file_lock(path.with_name(f".{path.name}.lock"), lambda: say(f"waiting: another process trains {path}")):
        if path.is_file():
            say(f"loading {path}")
            model = WorldModel.load(path, device=device)
            model.check_horizon(cell.horizon)
            return model
        torch.manual_seed(cell.seed)
        config = model_config(model_cls, request.profile, cell.horizon, request.overrides)
        model = model_cls(train.obs_dim, train.act_dim, config).to(device)
        state_path = path.with_name(f"{path.stem}.train-state.pt")
        resume = f", resuming from {state_path.name}" if state_path.is_file() else ""
        say(f"training {cell.model} on {train.n_transitions} transitions ({cell.profile} profile{resume})")
        model.fit(train, generator=torch.Generator(device).manual_seed(cell.seed), progress=progress,
                  state_path=state_path)
        model.save(path)
    return model.eval()


def cell_of(request: EvalRequest) -> Cell:
    """The results-store identity of a request (checks the names; the default dataset filled in)."""
    env = get_env(request.env)
    get_model_class(request.model)
    if request.horizon < 1:
        raise UsageError(f"--horizon must be a positive number of steps, got {request.horizon}")
    if request.policy not in POLICIES:
        raise UsageError(f"unknown policy {request.policy!r}; choose one of: {', '.join(POLICIES)}")
    if request.policy == "behaviour" and not request.policy_std > 0:
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


def prepare_inputs(env: str, dataset_id: str, profile: str, overrides: tuple[str, ...], policy: str,
                   make_missing: bool, progress: bool,
                   say: Callable[[str], None]) -> tuple[OfflineData, OfflineData, GaussianPolicy]:
    """The dataset (made if missing), its train/held-out split and the evaluation policy (`bc`:
    fitted if missing; `behaviour-stdS`: the dataset's SAC policy with std S): everything the
    models of one env, dataset, profile and policy share."""
    ensure_dataset(dataset_id, profile, overrides, make_missing, progress, say)
    offline = datasets.load_dataset(dataset_id)
    if offline.env != env:
        raise DatasetError(f"dataset {dataset_id} was recorded in {offline.env}, not {env}")
    train, held_out = offline.split(HELD_OUT_FRACTION, seed=SPLIT_SEED)
    if policy == "bc":
        return train, held_out, load_or_fit_policy(dataset_id, train, profile, overrides, progress, say)
    from wmbench.sac import behaviour_policy

    return train, held_out, behaviour_policy(dataset_id, float(policy.removeprefix(BEHAVIOUR_LABEL)))


def evaluate(request: EvalRequest, *, store: ResultsStore | None = None, make_missing: bool = True,
             force: bool = False, progress: bool = True,
             say: Callable[[str], None] = _say) -> pd.DataFrame:
    """Run one evaluation and store its rows; a cell already in the store is returned as stored.

    A cell is computed by one process at a time: a second process asking for it waits for the
    first and then returns its rows."""
    store = store or ResultsStore()
    cell = cell_of(request)
    eval_config = build_config(EvalConfig, request.profile, "evaluate", request.overrides,
                               n_trajectories=request.n_trajectories)
    if eval_config.n_trajectories < 1:
        raise UsageError(f"--n-trajectories must be positive, got {eval_config.n_trajectories}")
    device = resolve_device(request.device)
    with store.lock(cell, lambda: say(f"waiting: another process is computing {store.path(cell)}")):
        stored = None if force else store.load(cell)
        if stored is not None:
            say(f"already in the results store: {store.path(cell)} (pass --force to recompute)")
            return stored
        store.write(cell, _compute(request, cell, eval_config, device, make_missing, progress, say))
    return store.load(cell)


def _compute(request: EvalRequest, cell: Cell, eval_config: EvalConfig, device: str, make_missing: bool,
             progress: bool, say: Callable[[str], None]) -> pd.DataFrame:
    """The rows of one cell (dataset, policy and model made or loaded on the way)."""
    model_cls = get_model_class(request.model)
    env, watch = get_env(cell.env), Stopwatch(device)
    with watch("data"):  # dataset and policy, made or loaded
        train, held_out, policy = prepare_inputs(cell.env, cell.dataset, request.profile, request.overrides,
                                                 cell.policy, make_missing, progress, say)
        policy = policy.to(device)
    with watch("model"):  # trained or loaded, then adapted to the policy
        model = load_or_fit_model(model_cls, cell, request, train, device, progress, say)
        if model.prepare(policy, train, generator=torch.Generator(device).manual_seed(request.seed), progress=progress):
            say(f"adapted {request.model} to the evaluation policy; saving")
            model.save(checkpoint_path(model_cls, cell, request.overrides))

    autocast = torch.autocast(torch.device(device).type, dtype=PRECISIONS[cell.precision],
                              enabled=cell.precision != "fp32")
    with watch("rollout"), autocast:
        starts = held_out.start_states(eval_config.n_trajectories, np.random.default_rng(request.seed))
        init_obs = torch.as_tensor(held_out.observations[starts], device=device)
        n_warm = min(eval_config.warmup_trajectories, len(starts))
        model.rollout(init_obs[:n_warm], policy, request.horizon,
                      generator=torch.Generator(device).manual_seed(request.seed + 1))
        say(f"generating {len(starts)} trajectories of {request.horizon} steps with {request.model}")
        traj, gen_time = timed(
            lambda: model.rollout(init_obs, policy, request.horizon,
                                  generator=torch.Generator(device).manual_seed(request.seed)),
            device,
        )
        traj = traj.float()  # autocast may hand back bf16 tensors
        traj.validate(len(starts), request.horizon, env.obs_dim, env.act_dim)
        diverged = int((~torch.isfinite(traj.observations).all(dim=(1, 2))).sum())
        if diverged:
            say(f"warning: {diverged} of {len(starts)} trajectories from {request.model} hold non-finite states; "
                "their errors are NaN")
    with watch("oracle"):
        replay = Oracle(env).replay(held_out.qpos[starts], held_out.qvel[starts], traj.actions.cpu().numpy())

    with watch("metrics"):
        rows = metric_rows(traj, replay, obs_std=train.observations.std(axis=0))
        rows += calibration_rows(policy.standardise(traj.observations[:, :-1], traj.actions).cpu().numpy())
        rows += [(name, k, float(v)) for name, series in model.diagnostics().items() for k, v in enumerate(series)]
    rows += [("gen_time_s", request.horizon, gen_time), ("fit_time_s", 0, model.fit_report.seconds)]
    rows += [(f"wall_{stage}_s", 0, seconds) for stage, seconds in watch.seconds.items()]
    return pd.DataFrame(rows, columns=["metric", "step", "value"]).assign(
        n_trajectories=len(starts), overrides=canonical_overrides(request.overrides),
        config=json.dumps(cell_config(request), sort_keys=True), **provenance(device),
        **datasets.card_columns(cell.dataset),
    )


def metric_rows(traj, replay, obs_std: np.ndarray) -> list[tuple[str, int, float]]:
    """Per-step metric rows `(metric, step, value)`; step k is the state after k transitions."""
    pred_obs = traj.observations.cpu().numpy()
    curves = {
        "mse": metrics.state_mse(pred_obs, replay.observations)[1:],
        "mse_norm": metrics.state_mse_normalised(pred_obs, replay.observations, obs_std)[1:],
        "reward_mse": metrics.reward_mse(traj.rewards.cpu().numpy(), replay.rewards),
        "term_disagree": metrics.termination_disagreement(traj.terminals.cpu().numpy(), replay.terminals),
    }
    return [(name, k + 1, float(v)) for name, curve in curves.items() for k, v in enumerate(curve)]


def calibration_rows(z: np.ndarray) -> list[tuple[str, int, float]]:
    """Action calibration (step 0) and the histogram of z (step = bin index of `HIST_EDGES`)."""
    calibration = metrics.action_calibration(z)
    rows = [("action_z_std", 0, calibration["std"]), ("action_z_mean", 0, calibration["mean"]),
            ("action_ks", 0, calibration["ks"])]
    return rows + [("action_z_hist", k, float(v)) for k, v in enumerate(metrics.action_histogram(z))]


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """The short table printed after an evaluation: per-step metrics at a few steps."""
    horizon = int(table["horizon"].iloc[0])
    steps = sorted({s for s in SUMMARY_STEPS if s <= horizon} | {horizon})
    per_step = table[table["metric"].isin(["mse", "mse_norm", "reward_mse", "term_disagree"])]
    wide = per_step[per_step["step"].isin(steps)].pivot_table(index="step", columns="metric", values="value",
                                                               dropna=False)  # NaN: a model that diverged
    return wide.reset_index()[["step", "mse", "mse_norm", "reward_mse", "term_disagree"]]
