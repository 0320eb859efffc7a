"""`wmbench rl`, a run end to end: its configs, its cell in the results store, its resumable state,
and the loop (or PPO) that makes its rows."""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd
import torch

from wmbench import tracking
from wmbench.cells import MAX_SEED, log_backend, model_config, resolve_device
from wmbench.config import build_config, canonical_overrides, config_hash, identity, profile_label
from wmbench.envs import get_env
from wmbench.errors import UsageError
from wmbench.models.base import get_model_class
from wmbench.oracle import RealEnv
from wmbench.paths import checkpoints_root, runs_root
from wmbench.provenance import provenance
from wmbench.results import RL_DATASET, Cell, ResultsStore
from wmbench.rl.evaluation import RLConfig, check_rl
from wmbench.rl.loop import ImaginationConfig, check_configs, run_imagination
from wmbench.rl.ppo import PPO, PPOConfig, run_ppo


@dataclass(frozen=True)
class RLRequest:
    """What a user asks `wmbench rl` for; unset fields come from the profile."""

    model: str
    env: str
    seed: int = 0
    profile: str = "quick"
    overrides: tuple[str, ...] = ()
    env_steps: int | None = None
    device: str = "cpu"
    log: str | None = None  # a log back-end (tracking.BACKENDS), else the profile's; not part of the run's cell


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_configs(request: RLRequest) -> dict:
    """The resolved configs of a run, by section: `rl`, then `ppo`, or `imagination` and the model's."""
    env = get_env(request.env).name
    model_cls = None if request.model == PPO else get_model_class(request.model)  # (an unknown name fails first)
    profile, overrides = request.profile, request.overrides
    configs = {"rl": build_config(RLConfig, profile, "rl", overrides, env=env, env_steps=request.env_steps)}
    if model_cls is None:
        configs[PPO] = build_config(PPOConfig, profile, PPO, overrides, env=env)
    else:
        imagination = build_config(ImaginationConfig, profile, "imagination", overrides, env=env)
        configs["imagination"] = imagination
        configs[request.model] = model_config(model_cls, profile, imagination.horizon, overrides, env)
    return configs


def cell_of(request: RLRequest, configs: dict | None = None) -> Cell:
    """The results-store identity of a run (checks the names and settings); `configs`: its
    `run_configs`, when the caller has them."""
    env = get_env(request.env)
    if not 0 <= request.seed <= MAX_SEED:
        raise UsageError(f"--seed must be from 0 to {MAX_SEED}, got {request.seed}")
    configs = configs or run_configs(request)
    if request.model == PPO:
        check_rl(configs["rl"])
    else:
        check_configs(configs["rl"], configs["imagination"])
    horizon = 0 if request.model == PPO else configs["imagination"].horizon
    return Cell(model=request.model, env=env.name, dataset=RL_DATASET, policy="online",
                profile=profile_label(request.profile), horizon=horizon, seed=request.seed,
                config_hash=config_hash({name: identity(config) for name, config in configs.items()}))


def rl_state_path(cell: Cell) -> Path:
    """Where an unfinished run keeps its state between evaluations."""
    return checkpoints_root() / "rl" / cell.env / f"{cell.relative_path().stem}.rl-state.pt"


def run(request: RLRequest, *, store: ResultsStore | None = None, force: bool = False, progress: bool = True,
        say: Callable[[str], None] = _say) -> pd.DataFrame:
    """Run (or resume) one RL run and store its rows; a run already in the store is returned as stored."""
    store = store or ResultsStore()
    configs = run_configs(request)
    cell = cell_of(request, configs)
    device = resolve_device(request.device)
    backend = log_backend(request.log, request.profile, request.overrides)
    with store.lock(cell, lambda: say(f"waiting: another process is running {store.path(cell)}")):
        stored = None if force else store.load(cell)
        if stored is not None:
            say(f"already in the results store: {store.path(cell)} (pass --force to run again)")
            return stored
        state_path = rl_state_path(cell)
        if force:
            state_path.unlink(missing_ok=True)
        if state_path.is_file():
            say(f"resuming from {state_path} (its last evaluation)")
        real = RealEnv.mujoco(cell.env)
        name = cell.relative_path().with_suffix("")
        params = {"cell": dataclasses.asdict(cell), "config": {k: identity(v) for k, v in configs.items()},
                  "provenance": provenance(device)}
        # the world model's own training restarts at every iteration: the run's log is its evaluations
        with tracking.logged_run(backend, runs_root() / "rl" / name, f"rl/{name}", params, groups=frozenset({"rl"})):
            if request.model == PPO:
                table = run_ppo(real, configs["rl"], configs[PPO], seed=request.seed, state_path=state_path,
                                progress=progress)
            else:
                model_cls = get_model_class(request.model)
                torch.manual_seed(request.seed)
                model = model_cls(real.obs_dim, real.act_dim, configs[request.model])
                table = run_imagination(model, real, configs["rl"], configs["imagination"], seed=request.seed,
                                        state_path=state_path, device=device, progress=progress)
        table = table.assign(overrides=canonical_overrides(request.overrides),
                             config=json.dumps({k: identity(v) for k, v in configs.items()}, sort_keys=True),
                             **provenance(device))
        store.write(cell, table)
        state_path.unlink(missing_ok=True)
    return store.load(cell)


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """The table printed after a run: one row per evaluation."""
    wide = table.pivot_table(index="step", columns="metric", values="value")
    columns = [c for c in ("return", "return_std", "episode_length", "policy_std", "one_step_mse", "horizon_mse")
               if c in wide]
    return wide[columns].reset_index()
