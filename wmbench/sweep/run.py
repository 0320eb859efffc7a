"""`wmbench sweep`, the driver: skips stored cells, makes the shared inputs, hands the checkpoint
groups to a backend (`local` processes or `ray` tasks) and reports each cell as it comes back."""

from __future__ import annotations

import contextlib
import itertools
from typing import Callable, Iterator

from rich.console import Console
from rich.live import Live

from wmbench.cells import EvalRequest, cell_of
from wmbench.evaluate import evaluate
from wmbench.results import ResultsStore
from wmbench.sweep.grid import Evaluator, Outcome, SweepOutcome, label, pending_groups, prepare_shared_inputs
from wmbench.sweep.local import run_local
from wmbench.sweep.ray_backend import RayOptions, check_requests, run_ray
from wmbench.sweep.seeds import batch_by_default, train_seed_batches
from wmbench.sweep.status import SweepStatus


def run_sweep(requests: list[EvalRequest], *, workers: int = 1, store: ResultsStore | None = None,
              evaluator: Evaluator = evaluate, progress: bool = True, say: Callable[[str], None] = print,
              ray: RayOptions | None = None, batch_seeds: bool | None = None) -> SweepOutcome:
    """Run the requests' missing cells; workers > 1 runs checkpoint groups in parallel processes,
    `ray` runs each group as a Ray task (`wmbench.sweep.ray_backend`). With `batch_seeds` (default:
    on a GPU; local backend), the seeds of each diffusion model train together first
    (`wmbench.sweep.seeds`)."""
    if ray is not None:
        check_requests(requests)
    store = store or ResultsStore()
    outcome = SweepOutcome()
    groups = pending_groups(requests, store, outcome)
    n_pending = sum(map(len, groups))
    say(f"sweep: {len(requests)} cells, {len(outcome.skipped)} already in {store.root}, {n_pending} to run")
    if not groups:
        return outcome
    if evaluator is evaluate:  # the shared inputs, made once here rather than raced for by workers
        pending = list(itertools.chain(*groups))
        prepare_shared_inputs(pending, progress, say)
        if ray is None and (batch_by_default(pending) if batch_seeds is None else batch_seeds):
            train_seed_batches(pending, progress, say)

    status = SweepStatus([cell_of(r) for r in itertools.chain(*groups)], outcome.skipped, workers if ray is None else 1)

    with _live(status, progress, say) as write:
        def record(results: list[Outcome]) -> None:
            for cell, error, seconds in results:
                status.finished(cell, error, seconds)
                if error is None:
                    outcome.done.append(cell)
                    write(f"done    {label(cell)} ({seconds:.0f} s)")
                else:
                    outcome.failed[cell] = error.strip().splitlines()[-1]
                    write(f"FAILED  {label(cell)}: {outcome.failed[cell]}")

        if ray is not None:
            run_ray(groups, store, evaluator, ray, record, write)
        else:
            run_local(groups, store, evaluator, workers, record, status.progress)
    return outcome


@contextlib.contextmanager
def _live(status: SweepStatus, progress: bool, say: Callable[[str], None]) -> Iterator[Callable[[str], None]]:
    """On a terminal, the sweep's live table (on stderr, once a second) while the block runs, left
    drawn at its end, an interruption included; elsewhere (a log file) the headline at the end. Yields
    how to print a line above the table."""
    console = Console(stderr=True)
    if not progress or not console.is_terminal:
        try:
            yield say
        finally:
            if progress:
                say(status.headline())
        return
    with Live(status.render(), console=console, refresh_per_second=1, get_renderable=status.render) as live:
        yield lambda message: live.console.print(message, highlight=False, soft_wrap=True)
