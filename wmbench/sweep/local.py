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
from wmbench.sweep.grid import Evaluator, Outcome, Progress, run_group

ORPHAN_CHECK_S = 1.0  # how often a worker looks whether its driver is still there
_to_driver = None  # in a worker: the queue its progress goes back to the driver by


def _init_worker(threads: int, driver: int, progress) -> None:
    global _to_driver
    _to_driver = progress
    torch.set_num_threads(threads)
    threading.Thread(target=_exit_when_orphaned, args=(driver,), daemon=True).start()


def _report(cell, stage: str, done: int, total: int) -> None:
    """A worker's progress, sent to the driver (picklable: it names the queue set up at the worker's start)."""
    _to_driver.put((cell, stage, done, total))


def _exit_when_orphaned(driver: int) -> None:
    """End this worker once its driver is gone (killed, even by SIGKILL, which it cannot pass on): the
    worker is then re-parented. Its cell's files are atomic and locked, so a rerun resumes."""
    while os.getppid() == driver:
        time.sleep(ORPHAN_CHECK_S)
    os._exit(1)


def run_local(groups: list[list[EvalRequest]], store: ResultsStore, evaluator: Evaluator, workers: int,
              record: Callable[[list[Outcome]], None], report: Progress | None = None) -> None:
    """Run every group; `record` each group's outcomes as they come back, and `report` each cell's
    progress as it runs. Each of `workers` > 1 processes gets cores / workers torch threads."""
    if workers <= 1:
        for group in groups:
            record(run_group(group, str(store.root), evaluator, report))
        return
    threads = max(1, (os.cpu_count() or 1) // workers)
    context = multiprocessing.get_context("spawn")  # no forked torch/OpenMP state
    progress = context.SimpleQueue()
    relay = threading.Thread(target=_relay, args=(progress, report), name="wmbench-sweep-progress", daemon=True)
    relay.start()
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                             initargs=(threads, os.getpid(), progress)) as pool:
        futures = {pool.submit(run_group, group, str(store.root), evaluator, _report): group for group in groups}
        try:
            for future in as_completed(futures):
                try:
                    record(future.result())
                except Exception as err:  # noqa: BLE001 - e.g. a worker killed for memory
                    record([(cell_of(r), f"worker died: {err!r}", 0.0) for r in futures[future]])
        except KeyboardInterrupt:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        finally:
            progress.put(None)


def _relay(progress, report: Progress | None) -> None:
    """Pass the workers' progress to `report` until told to stop (None)."""
    while (item := progress.get()) is not None:
        if report is not None:
            report(*item)
