"""The local backend: checkpoint groups in this process, or in `workers` processes of this machine."""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Callable

import torch

from wmbench.cells import EvalRequest, cell_of
from wmbench.results import ResultsStore
from wmbench.sweep.grid import Evaluator, Outcome, run_group


def _init_worker(threads: int) -> None:
    torch.set_num_threads(threads)


def run_local(groups: list[list[EvalRequest]], store: ResultsStore, evaluator: Evaluator, workers: int,
              record: Callable[[list[Outcome]], None]) -> None:
    """Run every group; `record` each group's outcomes as they come back. Each of `workers` > 1
    processes gets cores / workers torch threads."""
    if workers <= 1:
        for group in groups:
            record(run_group(group, str(store.root), evaluator))
        return
    threads = max(1, (os.cpu_count() or 1) // workers)
    context = multiprocessing.get_context("spawn")  # no forked torch/OpenMP state
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker, initargs=(threads,)) as pool:
        futures = {pool.submit(run_group, group, str(store.root), evaluator): group for group in groups}
        try:
            for future in as_completed(futures):
                try:
                    record(future.result())
                except Exception as err:  # noqa: BLE001 - e.g. a worker killed for memory
                    record([(cell_of(r), f"worker died: {err!r}", 0.0) for r in futures[future]])
        except KeyboardInterrupt:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
