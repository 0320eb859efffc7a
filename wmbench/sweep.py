"""`wmbench sweep`: a grid of evaluations that resumes, runs in parallel and survives failing cells.

A cell already in the results store is skipped, so an interrupted sweep run again does only the
missing cells. Before any worker starts, the datasets and evaluation policies the grid needs are
made once in this process (workers would otherwise race to make the same ones). Cells that share
a checkpoint (an autoregressive model at several horizons) run one after another in one worker,
so the model is trained once. A cell that raises is recorded beside where its results would be
(`<cell>.failed.txt`, with the traceback) and the others go on.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import time
import traceback
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import torch
from tqdm.auto import tqdm

from wmbench.config import canonical_overrides
from wmbench.evaluate import EvalRequest, cell_of, evaluate, prepare_inputs
from wmbench.models.base import get_model_class
from wmbench.paths import atomic_write_bytes
from wmbench.ray_backend import RayOptions
from wmbench.results import Cell, ResultsStore

Evaluator = Callable[..., object]  # `evaluate`'s signature; tests pass their own


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


def _checkpoint_group(request: EvalRequest) -> tuple:
    """Requests with equal keys share a trained model."""
    cell = cell_of(request)
    horizon = cell.horizon if get_model_class(cell.model).fixed_horizon else None
    return (cell.model, cell.env, cell.dataset, request.profile, cell.seed, horizon,
            canonical_overrides(request.overrides, {cell.model}))


def _run_group(requests: list[EvalRequest], store_root: str, evaluator: Evaluator) -> list[tuple[Cell, str | None, float]]:
    """Evaluate cells one after another; `(cell, traceback or None, seconds)` for each."""
    store = ResultsStore(store_root)
    outcomes = []
    for request in requests:
        cell, start = cell_of(request), time.perf_counter()
        try:
            evaluator(request, store=store, progress=False, say=lambda message: None)
            error = None
            failure_path(store, cell).unlink(missing_ok=True)
        except Exception:  # noqa: BLE001 - one cell's failure must not stop the sweep
            error = traceback.format_exc()
            atomic_write_bytes(failure_path(store, cell), error.encode())
        outcomes.append((cell, error, time.perf_counter() - start))
    return outcomes


def _init_worker(threads: int) -> None:
    torch.set_num_threads(threads)


def run_sweep(requests: list[EvalRequest], *, workers: int = 1, store: ResultsStore | None = None,
              evaluator: Evaluator = evaluate, progress: bool = True, say: Callable[[str], None] = print,
              ray: RayOptions | None = None) -> SweepOutcome:
    """Run the requests' missing cells; workers > 1 runs checkpoint groups in parallel processes,
    `ray` runs each group as a Ray task (`wmbench.ray_backend`)."""
    store = store or ResultsStore()
    outcome = SweepOutcome()
    pending: dict[tuple, list[EvalRequest]] = defaultdict(list)
    for request in requests:
        cell = cell_of(request)
        if store.has(cell):
            outcome.skipped.append(cell)
        else:
            pending[_checkpoint_group(request)].append(request)
    n_pending = sum(map(len, pending.values()))
    say(f"sweep: {len(requests)} cells, {len(outcome.skipped)} already in {store.root}, {n_pending} to run")
    if not pending:
        return outcome

    if evaluator is evaluate:  # the shared inputs, made once here rather than raced for by workers
        todo = list(itertools.chain(*pending.values()))
        shared = {(c.env, c.dataset, r.profile, r.overrides, c.policy) for c, r in zip(map(cell_of, todo), todo)}
        for env, dataset_id, profile, overrides, policy in sorted(shared):
            say(f"preparing {dataset_id} and its {policy} evaluation policy ({profile})")
            prepare_inputs(env, dataset_id, profile, overrides, policy, make_missing=True, progress=progress, say=say)

    bar = tqdm(total=n_pending, desc="sweep", unit="cell", disable=not progress)

    def record(results: list[tuple[Cell, str | None, float]]) -> None:
        for cell, error, seconds in results:
            if error is None:
                outcome.done.append(cell)
                bar.write(f"done    {_label(cell)} ({seconds:.0f} s)")
            else:
                outcome.failed[cell] = error.strip().splitlines()[-1]
                bar.write(f"FAILED  {_label(cell)}: {outcome.failed[cell]}")
            bar.update()
        bar.set_postfix(failed=len(outcome.failed))

    groups = list(pending.values())
    if ray is not None:
        from wmbench.ray_backend import run_groups

        run_groups(groups, store, evaluator, ray, record, bar.write)
    elif workers <= 1:
        for group in groups:
            record(_run_group(group, str(store.root), evaluator))
    else:
        threads = max(1, (os.cpu_count() or 1) // workers)
        context = multiprocessing.get_context("spawn")  # no forked torch/OpenMP state
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker, initargs=(threads,)) as pool:
            futures = {pool.submit(_run_group, group, str(store.root), evaluator): group for group in groups}
            try:
                for future in as_completed(futures):
                    try:
                        record(future.result())
                    except Exception as err:  # noqa: BLE001 - e.g. a worker killed for memory
                        record([(cell_of(r), f"worker died: {err!r}", 0.0) for r in futures[future]])
            except KeyboardInterrupt:
                pool.shutdown(wait=False, cancel_futures=True)
                raise
    bar.close()
    return outcome


def _label(cell: Cell) -> str:
    return f"{cell.model} {cell.env} h={cell.horizon} seed={cell.seed}"
