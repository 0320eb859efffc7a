"""A sweep's grid and its bookkeeping, below every backend: the cells, the checkpoint groups they
run in, the evaluation of one group, and what a failed cell leaves behind.

Cells that share a checkpoint (an autoregressive model at several horizons) form one group, run one
after another by one worker, so the model is trained once. A cell that raises is recorded beside
where its results would be (`<cell>.failed.txt`, with the traceback) and the others go on.
"""

from __future__ import annotations

import itertools
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import wmbench.sections  # noqa: F401 - every config section, also in a worker process
from wmbench import tracking
from wmbench.cells import EvalRequest, cell_of, log_backend
from wmbench.config import canonical_overrides, parse_overrides
from wmbench.errors import UsageError
from wmbench.evaluate import prepare_inputs
from wmbench.models.base import get_model_class
from wmbench.paths import atomic_write_bytes
from wmbench.results import SUFFIX, Cell, ResultsStore

Evaluator = Callable[..., object]  # `wmbench.evaluate.evaluate`'s signature; tests pass their own
Outcome = tuple[Cell, str | None, float]  # a cell, its traceback (None: done), its seconds


def grid(models: Iterable[str], envs: Iterable[str], horizons: Iterable[int], seeds: Iterable[int], *,
         axes: Iterable[str] = (), policy_stds: Iterable[float] = (), overrides: tuple[str, ...] = (),
         **common) -> list[EvalRequest]:
    """Every combination (env-major: datasets are made in this order), checked before anything runs.
    `axes` are `SECTION.KEY=V1,V2,...` settings varied too (each value its own cell, after the fixed
    `overrides`), `policy_stds` the behaviour policy's stds (each its own cell)."""
    settings = [overrides + combination for combination in itertools.product(*map(grid_axis, axes))]
    if len({item.partition("=")[0].strip() for item in overrides} | {axis.partition("=")[0].strip() for axis in axes}) \
            < len(overrides) + len(tuple(axes)):
        raise UsageError("each setting may be given once, by --set or by one --grid")
    stds = [{"policy_std": std} for std in policy_stds] or [{}]
    requests = [EvalRequest(model=m, env=e, horizon=h, seed=s, overrides=o, **std, **common)
                for e, m, o, std, s, h in itertools.product(envs, models, settings, stds, seeds, horizons)]
    for request in requests:  # an unknown model, env, profile, override or log back-end fails here, not hours later
        cell_of(request)
        log_backend(request.log, request.profile, request.overrides)
    return requests


def grid_axis(axis: str) -> tuple[str, ...]:
    """`SECTION.KEY=V1,V2` -> `("SECTION.KEY=V1", "SECTION.KEY=V2")`, each checked as `--set` checks its value."""
    key, sep, values = axis.partition("=")
    items = tuple(f"{key.strip()}={value.strip()}" for value in values.split(",") if value.strip())
    _, dot, name = key.strip().partition(".")
    if not sep or not items or not dot or not name:
        raise UsageError(f"--grid takes SECTION.KEY=V1,V2,... (e.g. data.train_transitions=5000,20000), got {axis!r}")
    if len(set(items)) < len(items):
        raise UsageError(f"--grid {axis}: a value is given twice")
    for item in items:
        parse_overrides((item,), flag="--grid")
    return items


@dataclass
class SweepOutcome:
    done: list[Cell] = field(default_factory=list)
    skipped: list[Cell] = field(default_factory=list)
    failed: dict[Cell, str] = field(default_factory=dict)  # cell -> the error's last line


def failure_path(store: ResultsStore, cell: Cell) -> Path:
    path = store.path(cell)
    return path.with_name(path.name.removesuffix(SUFFIX) + ".failed.txt")


def record_failure(store: ResultsStore, cell: Cell, error: str | None) -> None:
    """Write (or, once the cell is done, remove) the cell's failure file."""
    if error is None:
        failure_path(store, cell).unlink(missing_ok=True)
    else:
        atomic_write_bytes(failure_path(store, cell), error.encode())


def checkpoint_group(request: EvalRequest) -> tuple:
    """Requests with equal keys share a trained model."""
    cell = cell_of(request)
    horizon = cell.horizon if get_model_class(cell.model).fixed_horizon else None
    return (cell.model, cell.env, cell.dataset, request.profile, cell.seed, horizon,
            canonical_overrides(request.overrides, {cell.model, "data"}))


def pending_groups(requests: list[EvalRequest], store: ResultsStore,
                   outcome: SweepOutcome) -> list[list[EvalRequest]]:
    """The requests whose cells are not stored, by checkpoint group; stored cells go to `outcome.skipped`."""
    pending: dict[tuple, list[EvalRequest]] = {}
    for request in requests:
        cell = cell_of(request)
        if store.has(cell):
            outcome.skipped.append(cell)
        else:
            pending.setdefault(checkpoint_group(request), []).append(request)
    return list(pending.values())


def prepare_shared_inputs(requests: list[EvalRequest], progress: bool, say: Callable[[str], None]) -> None:
    """Make the datasets and evaluation policies the requests need, once, here: workers would
    otherwise race to make the same ones."""
    shared = {(c.env, c.dataset, r.profile, r.overrides, c.policy) for c, r in zip(map(cell_of, requests), requests)}
    for env, dataset_id, profile, overrides, policy in sorted(shared):
        say(f"preparing {dataset_id} and its {policy} evaluation policy ({profile})")
        prepare_inputs(env, dataset_id, profile, overrides, policy, make_missing=True, progress=progress, say=say)


Progress = Callable[[Cell, str, int, int], None]  # (cell, stage, done, total); stage "" when a cell starts,
# "done" or "failed" when it ends


def run_group(requests: list[EvalRequest], store_root: str, evaluator: Evaluator,
              report: Progress | None = None) -> list[Outcome]:
    """Evaluate cells one after another (in whatever process a backend runs this): their outcomes,
    each cell's failure file written or removed; each cell's start and stages' progress to `report`."""
    store = ResultsStore(store_root)
    outcomes = []
    for request in requests:
        cell, start = cell_of(request), time.perf_counter()
        on_progress = None if report is None else (lambda stage, done, total: report(cell, stage, done, total))
        try:
            if report is not None:
                report(cell, "", 0, 0)
            with tracking.watch(tracking.Tracker(on_progress=on_progress)):
                evaluator(request, store=store, progress=False, say=lambda message: None)
            error = None
        except Exception:  # noqa: BLE001 - one cell's failure must not stop the sweep
            error = traceback.format_exc()
        record_failure(store, cell, error)
        outcomes.append((cell, error, time.perf_counter() - start))
        if report is not None:  # the group's outcomes come back at its end; the table learns of each cell now
            report(cell, "failed" if error else "done", 0, 0)
    return outcomes


def label(cell: Cell) -> str:
    return f"{cell.model} {cell.env} h={cell.horizon} seed={cell.seed} {cell.policy} config {cell.config_hash}"
