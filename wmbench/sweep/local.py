"""The local backend: checkpoint groups in this process, or in `workers` processes of this machine."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Callable

import torch

from wmbench.cells import EvalRequest, cell_of
from wmbench.results import ResultsStore
from wmbench.sweep.grid import Evaluator, Outcome, run_group

ORPHAN_CHECK_S = 1.0  # how often a worker looks whether its driver is still there


def _init_worker(threads: int, driver: int) -> None:
    torch.set_num_threads(threads)
    threading.Thread(target=_exit_when_orphaned, args=(driver,), daemon=True).start()


def _exit_when_orphaned(driver: int) -> None:
    """End this worker once its driver is gone (killed, even by SIGKILL, which it cannot pass on): the
    worker is then re-parented. Its cell's files are atomic and locked, so a rerun resumes."""
    while os.getppid() == driver:
        time.sleep(ORPHAN_CHECK_S)
    os._exit(1)


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
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                             initargs=(threads, os.getpid())) as pool:
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
