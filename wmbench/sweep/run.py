"""`wmbench sweep`, the driver: skips stored cells, makes the shared inputs, hands the checkpoint
groups to a backend (`local` processes or `ray` tasks) and reports each cell as it comes back."""

from __future__ import annotations

import itertools
from typing import Callable

from tqdm.auto import tqdm

from wmbench.cells import EvalRequest
from wmbench.evaluate import evaluate
from wmbench.results import ResultsStore
from wmbench.sweep.grid import Evaluator, Outcome, SweepOutcome, label, pending_groups, prepare_shared_inputs
from wmbench.sweep.local import run_local
from wmbench.sweep.ray_backend import RayOptions, run_ray


def run_sweep(requests: list[EvalRequest], *, workers: int = 1, store: ResultsStore | None = None,
              evaluator: Evaluator = evaluate, progress: bool = True, say: Callable[[str], None] = print,
              ray: RayOptions | None = None) -> SweepOutcome:
    """Run the requests' missing cells; workers > 1 runs checkpoint groups in parallel processes,
    `ray` runs each group as a Ray task (`wmbench.sweep.ray_backend`)."""
    store = store or ResultsStore()
    outcome = SweepOutcome()
    groups = pending_groups(requests, store, outcome)
    n_pending = sum(map(len, groups))
    say(f"sweep: {len(requests)} cells, {len(outcome.skipped)} already in {store.root}, {n_pending} to run")
    if not groups:
        return outcome
    if evaluator is evaluate:  # the shared inputs, made once here rather than raced for by workers
        prepare_shared_inputs(list(itertools.chain(*groups)), progress, say)

    bar = tqdm(total=n_pending, desc="sweep", unit="cell", disable=not progress)

    def record(results: list[Outcome]) -> None:
        for cell, error, seconds in results:
            if error is None:
                outcome.done.append(cell)
                bar.write(f"done    {label(cell)} ({seconds:.0f} s)")
            else:
                outcome.failed[cell] = error.strip().splitlines()[-1]
                bar.write(f"FAILED  {label(cell)}: {outcome.failed[cell]}")
            bar.update()
        bar.set_postfix(failed=len(outcome.failed))

    if ray is not None:
        run_ray(groups, store, evaluator, ray, record, bar.write)
    else:
        run_local(groups, store, evaluator, workers, record)
    bar.close()
    return outcome
