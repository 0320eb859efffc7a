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
from wmbench.cells import EvalRequest, cell_of
from wmbench.config import canonical_overrides
from wmbench.evaluate import prepare_inputs
from wmbench.models.base import get_model_class
from wmbench.paths import atomic_write_bytes
from wmbench.results import Cell, ResultsStore

Evaluator = Callable[..., object]  # `wmbench.evaluate.evaluate`'s signature; tests pass their own
Outcome = tuple[Cell, str | None, float]  # a cell, its traceback (None: done), its seconds


def grid(models: Iterable[str], envs: Iterable[str], horizons: Iterable[int], seeds: Iterable[int],
         **common) -> list[EvalRequest]:
    """Every combination, env-major (datasets are made in this order), checked before anything runs."""
    requests = [EvalRequest(model=m, env=e, horizon=h, seed=s, **common)
                for e, m, s, h in itertools.product(envs, models, seeds, horizons)]
    for request in requests:  # an unknown model, env, profile or override fails here, before hours of work
        cell_of(request)
    return requests


@dataclass
class SweepOutcome:
    done: list[Cell] = field(default_factory=list)
    skipped: list[Cell] = field(default_factory=list)
    failed: dict[Cell, str] = field(default_factory=dict)  # cell -> the error's last line


def failure_path(store: ResultsStore, cell: Cell) -> Path:
    return store.path(cell).with_suffix(".failed.txt")


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
            canonical_overrides(request.overrides, {cell.model}))


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


def run_group(requests: list[EvalRequest], store_root: str, evaluator: Evaluator) -> list[Outcome]:
    """Evaluate cells one after another (in whatever process a backend runs this): their outcomes,
    each cell's failure file written or removed."""
    store = ResultsStore(store_root)
    outcomes = []
    for request in requests:
        cell, start = cell_of(request), time.perf_counter()
        try:
            evaluator(request, store=store, progress=False, say=lambda message: None)
            error = None
        except Exception:  # noqa: BLE001 - one cell's failure must not stop the sweep
            error = traceback.format_exc()
        record_failure(store, cell, error)
        outcomes.append((cell, error, time.perf_counter() - start))
    return outcomes


def label(cell: Cell) -> str:
    return f"{cell.model} {cell.env} h={cell.horizon} seed={cell.seed}"
