"""One evaluation, end to end: dataset -> policy -> model -> rollout -> oracle -> metrics -> store.

Every model of a cell's env, dataset, profile and seed is evaluated under the same policy (fitted
once per dataset and profile) from the same held-out start states (drawn with the seed), and the
generated actions are replayed in the simulator from the exact simulator state of each start.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from wmbench import data as datasets
from wmbench import metrics, tracking
from wmbench.cells import (
    BEHAVIOUR_LABEL,
    PRECISIONS,
    EvalConfig,
    EvalRequest,
    cell_config,
    cell_of,
    checkpoint_path,
    eval_config,
    log_backend,
    model_config,
    resolve_device,
    snapshot_steps,
)
from wmbench.config import build_config, canonical_overrides, config_hash, profile_label
from wmbench.data import DataConfig, OfflineData
from wmbench.envs import EnvSpec, get_env, observation_names
from wmbench.errors import DatasetError
from wmbench.models.base import Trajectories, WorldModel, get_model_class
from wmbench.models.flops import training_flop_per_update
from wmbench.models.precision import check_training_precision, warn_if_bf16_is_emulated
from wmbench.models.states import snapshot_path, training_state_path
from wmbench.oracle import Oracle, Replay
from wmbench.paths import datasets_root, file_lock, runs_root
from wmbench.policy import GaussianPolicy, PolicyConfig
from wmbench.provenance import provenance
from wmbench.recording import make_random_dataset
from wmbench.results import Cell, ResultsStore
from wmbench.timing import Stopwatch, timed

SPLIT_SEED = 0  # one train/held-out split per dataset, shared by every model and seed
HELD_OUT_FRACTION = 0.1
SUMMARY_STEPS = (1, 5, 10, 20, 50, 100, 200)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def ensure_dataset(dataset_id: str, profile: str, overrides: tuple[str, ...], make_missing: bool, progress: bool,
                   say: Callable[[str], None]) -> None:
    if datasets.dataset_exists(dataset_id):
        return
    parts = dataset_id.split("/")
    if not make_missing or parts[0] != "wmbench" or len(parts) != 3 or parts[2] != "random-v0":
        raise DatasetError(datasets.missing_dataset_message(dataset_id))
    config = build_config(DataConfig, profile, "data", overrides)
    lock = datasets_root() / f".{dataset_id.replace('/', '.')}.lock"  # outside the folder being made
    with file_lock(lock, lambda: say(f"waiting: another process makes {dataset_id}")):  # parallel evaluations
        if datasets.dataset_exists(dataset_id):  # made by the process we waited for
            return
        say(f"making {dataset_id} ({config.steps} random steps); for the paper's kind of data, the replay buffer "
            f"of an RL run, run `wmbench data make {parts[1]} --policy sac` (about 15 minutes)")
        make_random_dataset(get_env(parts[1]), config.steps, seed=0, progress=progress)


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


def load_or_fit_model(model_cls: type[WorldModel], cell: Cell, request: EvalRequest, train: OfflineData,
                      device: str, progress: bool, say: Callable[[str], None], eval_every: int = 0) -> WorldModel:
    """The cell's model, trained unless its checkpoint (and, for a learning curve, every snapshot) is cached."""
    path = checkpoint_path(model_cls, cell, request.overrides, request.profile)
    state_path = training_state_path(path)
    config = model_config(model_cls, request.profile, cell.horizon, request.overrides, cell.env)
    steps = snapshot_steps(config, eval_every)
    with file_lock(path.with_name(f".{path.name}.lock"), lambda: say(f"waiting: another process trains {path}")):
        missing = [step for step in steps if not snapshot_path(state_path, step).is_file()]
        if path.is_file() and not missing:
            say(f"loading {path}")
            model = WorldModel.load(path, device=device)
            model.check_horizon(cell.horizon)
            return model
        if path.is_file():
            say(f"training {cell.model} again to keep its weights every {eval_every} updates for the learning curve "
                "(the cached checkpoint holds only the final ones; training is seeded, so it ends the same)")
        torch.manual_seed(cell.seed)
        if steps:
            config = dataclasses.replace(config, snapshot_every=eval_every)
        model = model_cls(train.obs_dim, train.act_dim, config).to(device)
        resume = f", resuming from {state_path.name}" if state_path.is_file() else ""
        say(f"training {cell.model} on {train.n_transitions} transitions ({cell.profile} profile{resume})")
        model.fit(train, generator=torch.Generator(device).manual_seed(cell.seed), progress=progress,
                  state_path=state_path)
        model.save(path)
    return model.eval()


def adapt(model: WorldModel, path: Path, policy: GaussianPolicy, train: OfflineData, seed: int, device: str,
          progress: bool, say: Callable[[str], None]) -> None:
    """Let the model adapt to the evaluation policy (PolyGRAD tunes delta) and save it if it did."""
    if model.prepare(policy, train, generator=torch.Generator(device).manual_seed(seed), progress=progress):
        say(f"adapted {model.name} to the evaluation policy; saving")
        model.save(path)


def prepare_inputs(env: str, dataset_id: str, profile: str, overrides: tuple[str, ...], policy: str,
                   make_missing: bool, progress: bool, say: Callable[[str], None],
                   seed: int = 0) -> tuple[OfflineData, OfflineData, GaussianPolicy]:
    """The dataset (made if missing), the models' training data and the held-out split, and the
    evaluation policy (`bc`: fitted if missing; `behaviour-stdS`: the dataset's SAC policy with std S).
    With `data.train_transitions` set, the training data is a subset drawn with `seed`; the policy,
    normalisers and start states stay the full training split's."""
    ensure_dataset(dataset_id, profile, overrides, make_missing, progress, say)
    offline = datasets.load_dataset(dataset_id)
    if offline.env != env:
        raise DatasetError(f"dataset {dataset_id} was recorded in {offline.env}, not {env}")
    train, held_out = offline.split(HELD_OUT_FRACTION, seed=SPLIT_SEED)
    size = build_config(DataConfig, profile, "data", overrides).train_transitions
    learned_from = train.subset(size, seed=seed) if size else train  # a bad size is refused before any fitting
    if policy == "bc":
        return learned_from, held_out, load_or_fit_policy(dataset_id, train, profile, overrides, progress, say)
    from wmbench.sac import behaviour_policy

    return learned_from, held_out, behaviour_policy(dataset_id, float(policy.removeprefix(BEHAVIOUR_LABEL)))


def evaluate(request: EvalRequest, *, store: ResultsStore | None = None, make_missing: bool = True,
             force: bool = False, progress: bool = True,
             say: Callable[[str], None] = _say) -> pd.DataFrame:
    """Run one evaluation and store its rows; a cell already in the store is returned as stored.

    A cell is computed by one process at a time: a second process asking for it waits for the
    first and then returns its rows."""
    store = store or ResultsStore()
    cell = cell_of(request)
    config = eval_config(request)
    device = resolve_device(request.device)
    backend = log_backend(request.log, request.profile, request.overrides)
    warn_if_bf16_is_emulated(device, cell.precision)
    settings = model_config(get_model_class(cell.model), request.profile, cell.horizon, request.overrides, cell.env)
    check_training_precision(getattr(settings, "precision", "fp32"), device)

    def stored() -> pd.DataFrame | None:
        rows = None if force else store.load(cell)
        if rows is not None:
            say(f"already in the results store: {store.path(cell)} (pass --force to recompute)")
        return rows

    if (rows := stored()) is not None:  # read without the lock: a read-only store can still be read
        return rows
    with store.lock(cell, lambda: say(f"waiting: another process is computing {store.path(cell)}")):
        if (rows := stored()) is not None:  # computed by the process we waited for
            return rows
        name = cell.relative_path().with_suffix("")
        params = {"cell": dataclasses.asdict(cell), "config": cell_config(request), "provenance": provenance(device)}
        with tracking.logged_run(backend, runs_root() / name, str(name), params):
            store.write(cell, _compute(request, cell, config, device, make_missing, progress, say))
    return store.load(cell)


@dataclass
class Trial:
    """What every evaluation of one cell shares: the policy, the start states and the simulator."""

    request: EvalRequest
    env: EnvSpec
    oracle: Oracle  # one per cell: it holds a MuJoCo state per thread
    policy: GaussianPolicy
    held_out: OfflineData
    starts: np.ndarray  # indices into held_out
    obs_std: np.ndarray  # of all the training data (whatever subset a model learns from), for mse_norm
    device: str
    precision: str
    warmup: int

    @classmethod
    def of(cls, request: EvalRequest, cell: Cell, config: EvalConfig, train: OfflineData, held_out: OfflineData,
           policy: GaussianPolicy, device: str) -> Trial:
        """The cell's trial: `config.n_trajectories` start states drawn from the held-out data with its seed."""
        env = get_env(cell.env)
        starts = held_out.start_states(config.n_trajectories, np.random.default_rng(request.seed))
        return cls(request, env, Oracle(env), policy, held_out, starts, train.normalising.observations.std(axis=0),
                   device, cell.precision, config.warmup_trajectories)

    def run(self, model: WorldModel, say: Callable[[str], None],
            watch: Stopwatch) -> tuple[Trajectories, Replay, float]:
        """Generate from the start states (after an untimed warm-up), then replay the actions."""
        request, device = self.request, self.device
        autocast = torch.autocast(torch.device(device).type, dtype=PRECISIONS[self.precision],
                                  enabled=self.precision != "fp32")
        with watch("rollout"), autocast:
            init_obs = torch.as_tensor(self.held_out.observations[self.starts], device=device)
            model.rollout(init_obs[: min(self.warmup, len(init_obs))], self.policy, request.horizon,
                          generator=torch.Generator(device).manual_seed(request.seed + 1))
            traj, gen_time = timed(
                lambda: model.rollout(init_obs, self.policy, request.horizon,
                                      generator=torch.Generator(device).manual_seed(request.seed)),
                device,
            )
            traj = traj.float()  # autocast may hand back bf16 tensors
            traj.validate(len(self.starts), request.horizon, self.env.obs_dim, self.env.act_dim)
            diverged = int((~torch.isfinite(traj.observations).all(dim=(1, 2))).sum())
            if diverged:
                say(f"warning: {diverged} of {len(self.starts)} trajectories from {request.model} hold non-finite "
                    "states; their errors are NaN")
        with watch("oracle"):
            replay = self.oracle.replay(self.held_out.qpos[self.starts], self.held_out.qvel[self.starts],
                                        traj.actions.cpu().numpy())
        return traj, replay, gen_time


def _compute(request: EvalRequest, cell: Cell, config: EvalConfig, device: str, make_missing: bool,
             progress: bool, say: Callable[[str], None]) -> pd.DataFrame:
    """The rows of one cell (dataset, policy and model made or loaded on the way)."""
    model_cls = get_model_class(request.model)
    watch = Stopwatch(device)
    with watch("data"):  # dataset and policy, made or loaded
        train, held_out, policy = prepare_inputs(cell.env, cell.dataset, request.profile, request.overrides,
                                                 cell.policy, make_missing, progress, say, seed=request.seed)
        policy = policy.to(device)
    path = checkpoint_path(model_cls, cell, request.overrides, request.profile)
    with watch("model"):  # trained or loaded, then adapted to the policy
        model = load_or_fit_model(model_cls, cell, request, train, device, progress, say, config.eval_every)
        adapt(model, path, policy, train, request.seed, device, progress, say)

    trial = Trial.of(request, cell, config, train, held_out, policy, device)
    say(f"generating {len(trial.starts)} trajectories of {request.horizon} steps with {request.model}")
    traj, replay, gen_time = trial.run(model, say, watch)
    with watch("metrics"):
        rows = metric_rows(traj, replay, trial.obs_std, observation_names(trial.env.name))
        rows += calibration_rows(policy.standardise(traj.observations[:, :-1], traj.actions).cpu().numpy())
        rows += [(name, k, float(v)) for name, series in model.diagnostics().items() for k, v in enumerate(series)]
        rows += objective_rows(model, train, held_out)
    rows += [("gen_time_s", request.horizon, gen_time), ("fit_time_s", 0, model.fit_report.seconds)]
    table = pd.DataFrame(rows, columns=["metric", "step", "value"])
    if config.eval_every:
        with watch("curve"):
            table = pd.concat([table, curve_rows(model, path, config.eval_every, trial, table, train, progress,
                                                     say, watch)],
                              ignore_index=True)
    table = pd.concat([table, pd.DataFrame([(f"wall_{stage}_s", 0, seconds) for stage, seconds in
                                            watch.seconds.items()], columns=["metric", "step", "value"])],
                      ignore_index=True)
    log_results(table)
    return table.assign(
        n_trajectories=len(trial.starts), train_transitions=train.n_transitions, train_episodes=train.n_episodes,
        dataset_train_transitions=train.normalising.n_transitions,
        overrides=canonical_overrides(request.overrides),
        config=json.dumps(cell_config(request), sort_keys=True), **provenance(device),
        **datasets.card_columns(cell.dataset), policy_fingerprint=policy.fingerprint(),
    )


def log_results(table: pd.DataFrame) -> None:
    """A cell's numbers to its log (group `eval`): each per-step metric against the rollout step (the
    error-against-horizon curve), the others at step 0; the histogram of z and the curve left out."""
    if not tracking.logging("eval"):
        return
    rows = table[~table["metric"].str.startswith("curve_") & (table["metric"] != "action_z_hist")]
    for step, group in rows.groupby("step"):
        tracking.log("eval", dict(zip(group["metric"], group["value"])), int(step))


CURVE_METRICS = ("mse", "mse_alive", "alive_fraction", "mse_norm")  # stored per training step as curve_<metric>


def curve_rows(model: WorldModel, path: Path, eval_every: int, trial: Trial, final: pd.DataFrame,
               train: OfflineData, progress: bool, say: Callable[[str], None], watch: Stopwatch) -> pd.DataFrame:
    """The learning curve: every snapshot evaluated exactly like the final model (adapted to the
    policy first), then the final model's own rows; each with its training step and the training
    FLOPs spent to reach it."""
    steps = snapshot_steps(model.config, eval_every)
    flop = training_flop_per_update(type(model), model.config, trial.env, trial.device) if model.fit_report.steps \
        else 0
    frames = []
    for i, step in enumerate(tqdm(steps, desc=f"learning curve of {model.name}", disable=not progress, leave=False)):
        snap_path = snapshot_path(training_state_path(path), step)
        snapshot = WorldModel.load(snap_path, device=trial.device)
        with tracking.quiet():  # the tuning log is the final model's
            adapt(snapshot, snap_path, trial.policy, train, trial.request.seed, trial.device, False, lambda _: None)
        traj, replay, _ = trial.run(snapshot, say, watch)
        rows = metric_rows(traj, replay, trial.obs_std, observation_names(trial.env.name))
        frames.append(pd.DataFrame(rows, columns=["metric", "step", "value"]).assign(train_step=step))
        tracking.progress("curve", i + 1, len(steps))
    frames.append(final.assign(train_step=model.fit_report.steps))
    curve = pd.concat(frames, ignore_index=True)
    curve = curve[curve["metric"].isin(CURVE_METRICS)]
    curve = curve.assign(metric="curve_" + curve["metric"], train_flops=curve["train_step"] * float(flop))
    log_curve(curve, trial.request.horizon)
    return curve


def log_curve(curve: pd.DataFrame, horizon: int) -> None:
    """Each snapshot's errors at steps 1 and h to the log, against updates (group `curve`) and against
    training FLOPs (group `curve_flops`, its step the FLOPs)."""
    if not tracking.logging("curve"):
        return
    ends = curve[curve["step"].isin({1, horizon})]
    for (update, flops), snap in ends.groupby(["train_step", "train_flops"]):
        values = {f"{m.removeprefix('curve_')}_{s}": v for m, s, v in zip(snap["metric"], snap["step"], snap["value"])}
        tracking.log("curve", values, int(update))
        tracking.log("curve_flops", values, int(flops))


def metric_rows(traj, replay, obs_std: np.ndarray, dim_names: tuple[str, ...]) -> list[tuple[str, int, float]]:
    """Per-step metric rows `(metric, step, value)`; step k is the state after k transitions. The
    error of each obs dim at the last step is `mse_dim[NAME]` (e.g. `mse_dim[thigh angle]`)."""
    pred_obs = traj.observations.cpu().numpy()
    horizon = pred_obs.shape[1] - 1
    last = metrics.state_mse_per_dim(pred_obs, replay.observations)[horizon]
    per_dim = [(metrics.dim_metric(name), horizon, float(v)) for name, v in zip(dim_names, last, strict=True)]
    curves = {
        "mse": metrics.state_mse(pred_obs, replay.observations)[1:],
        "mse_norm": metrics.state_mse_normalised(pred_obs, replay.observations, obs_std)[1:],
        # the paper's mse goes on past the simulator's terminations; these say where that matters
        "mse_alive": metrics.state_mse_alive(pred_obs, replay.observations, replay.terminals)[1:],
        "alive_fraction": metrics.alive_fraction(replay.terminals)[1:],
        "reward_mse": metrics.reward_mse(traj.rewards.cpu().numpy(), replay.rewards),
        "term_disagree": metrics.termination_disagreement(traj.terminals.cpu().numpy(), replay.terminals),
    }
    return [(name, k + 1, float(v)) for name, curve in curves.items() for k, v in enumerate(curve)] + per_dim


def objective_rows(model: WorldModel, train: OfflineData, held_out: OfflineData) -> list[tuple[str, int, float]]:
    """The model's training objective on the data it learnt from and on the held-out episodes (step 0):
    their gap is its overfitting. None for a model without one (persistence)."""
    losses = {"train_loss": model.objective(train), "held_out_loss": model.objective(held_out)}
    return [(name, 0, value) for name, value in losses.items() if value is not None]


def calibration_rows(z: np.ndarray) -> list[tuple[str, int, float]]:
    """Action calibration (step 0) and the histogram of z (step = bin index of `HIST_EDGES`)."""
    calibration = metrics.action_calibration(z)
    rows = [("action_z_std", 0, calibration["std"]), ("action_z_mean", 0, calibration["mean"]),
            ("action_ks", 0, calibration["ks"]), ("action_w1", 0, calibration["w1"]),
            ("action_clip_fraction", 0, calibration["clip"])]
    return rows + [("action_z_hist", k, float(v)) for k, v in enumerate(metrics.action_histogram(z))]


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """The short table printed after an evaluation: per-step metrics at a few steps."""
    horizon = int(table["horizon"].iloc[0])
    steps = sorted({s for s in SUMMARY_STEPS if s <= horizon} | {horizon})
    per_step = table[table["metric"].isin(["mse", "mse_norm", "reward_mse", "term_disagree"])]
    wide = per_step[per_step["step"].isin(steps)].pivot_table(index="step", columns="metric", values="value",
                                                               dropna=False)  # NaN: a model that diverged
    return wide.reset_index()[["step", "mse", "mse_norm", "reward_mse", "term_disagree"]]
