"""`wmbench sweep --backend ray`: checkpoint groups as Ray tasks, with no shared filesystem.

Each task gets what its cells need as bytes (the dataset folder, which holds the evaluation
policies too, and whatever the driver's cache holds of the group's checkpoint), evaluates them in a
temporary workspace of its own, and returns the cells' result files, their tracebacks, the
checkpoints it trained and, with `--log`, the cells' logs. The driver writes all of it: the results
store, `<cell>.failed.txt`, the checkpoints into its cache and the logs into its `runs/`, so a rerun
skips stored cells and reuses trained models, as the local backend does. A task whose worker dies
is retried once by Ray, then reported as failed.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable

from wmbench.cells import EvalRequest, cell_of, checkpoint_path, log_backend
from wmbench.data import dataset_dir
from wmbench.errors import UsageError
from wmbench.models.base import get_model_class
from wmbench.paths import atomic_write_bytes, checkpoints_root, datasets_root, results_root, runs_root
from wmbench.results import ResultsStore
from wmbench.sweep.grid import Evaluator, Outcome, record_failure, run_group

Files = dict[str, bytes]  # relative path -> contents
WORKSPACE_VARIABLES = ("WMBENCH_HOME", "MINARI_DATASETS_PATH", "WMBENCH_CACHE", "WMBENCH_RESULTS", "WMBENCH_RUNS")


@dataclass(frozen=True)
class RayOptions:
    address: str | None = None  # None: start a local Ray instance; "auto": join the running cluster
    cpus_per_task: float = 1
    gpus_per_task: float = 0


def read_files(root: Path, paths) -> Files:
    return {str(p.relative_to(root)): p.read_bytes() for p in paths if p.is_file()}


def write_files(root: Path, files: Files) -> None:
    """Write `files` under `root`; a name that would land outside it (absolute, or with `..`) is refused
    before anything is written: the names come from another machine."""
    for name in files:
        if not is_inside_name(name):
            raise UsageError(f"refusing to write {name!r} returned by a Ray task: a file name must be relative, "
                             f"without '..', to land inside {root}")
    for name, payload in files.items():
        atomic_write_bytes(root / name, payload)


def is_inside_name(name: str) -> bool:
    path = PurePosixPath(name)
    return bool(name) and not path.is_absolute() and ".." not in path.parts and "\\" not in name


def dataset_files(dataset_id: str) -> Files:
    """A dataset's folder (its data, card and evaluation policies), relative to the datasets root."""
    folder = dataset_dir(dataset_id)
    return read_files(datasets_root(), (p for p in folder.rglob("*") if not p.name.startswith(".")))


def checkpoint_files(request: EvalRequest) -> Files:
    """What the cache holds of a group's model: the checkpoint, its training state and snapshots."""
    path = checkpoint_path(get_model_class(request.model), cell_of(request), request.overrides,
                           request.profile)
    return read_files(checkpoints_root(), path.parent.glob(f"{path.stem}*")) if path.parent.is_dir() else {}


def evaluate_group(requests: list[EvalRequest], datasets: Files, checkpoints: Files, threads: int,
                   evaluator: Evaluator) -> tuple[list[Outcome], Files, Files, Files]:
    """In a Ray worker: `(outcomes, result files by cell path, checkpoint files it wrote, log files)`."""
    import torch

    saved = {name: os.environ.pop(name, None) for name in WORKSPACE_VARIABLES}
    try:
        with tempfile.TemporaryDirectory(prefix="wmbench-ray-") as home:
            os.environ["WMBENCH_HOME"] = home
            write_files(datasets_root(), datasets)
            write_files(checkpoints_root(), checkpoints)
            torch.set_num_threads(max(1, threads))
            outcomes = run_group(requests, str(results_root()), evaluator)
            results = read_files(results_root(), ResultsStore(results_root()).files())
            cache = checkpoints_root()
            trained = read_files(cache, cache.rglob("*.pt")) if cache.is_dir() else {}
            trained = {name: data for name, data in trained.items() if checkpoints.get(name) != data}
            logs = read_files(runs_root(), runs_root().rglob("*")) if runs_root().is_dir() else {}
    finally:
        for name, value in saved.items():
            os.environ.pop(name, None)
            if value is not None:
                os.environ[name] = value
    return outcomes, results, trained, logs


def check_requests(requests: list[EvalRequest]) -> None:
    """What Ray cannot do, refused before any work: an MLflow log (one local store per machine)."""
    if any(log_backend(r.log, r.profile, r.overrides) == "mlflow" for r in requests):
        raise UsageError("--log mlflow keeps one local store per machine, which Ray tasks cannot share; with "
                         "--backend ray log to tensorboard or wandb")


def run_ray(groups: list[list[EvalRequest]], store: ResultsStore, evaluator: Evaluator, options: RayOptions,
            record: Callable[[list[Outcome]], None], say: Callable[[str], None]) -> None:
    """Run every group as a Ray task; `record` each group's outcomes as they come back."""
    try:
        import ray
    except ImportError:
        raise UsageError("--backend ray needs Ray: pip install 'wmbench[ray]'") from None

    if not ray.is_initialized():
        ray.init(address=options.address, include_dashboard=False, log_to_driver=False,
                 **({} if options.address else {"num_cpus": os.cpu_count()}))
        say(f"ray: {'joined ' + options.address if options.address else 'started a local instance'} "
            f"({ray.cluster_resources().get('CPU', 0):g} CPUs, {ray.cluster_resources().get('GPU', 0):g} GPUs)")
    task = ray.remote(evaluate_group).options(num_cpus=options.cpus_per_task, num_gpus=options.gpus_per_task,
                                             max_retries=1)  # retried once if its worker dies
    shared = {}  # dataset id -> object ref: each dataset goes to the object store once
    pending = {}
    for group in groups:
        dataset = cell_of(group[0]).dataset
        if dataset not in shared:
            shared[dataset] = ray.put(dataset_files(dataset))
        pending[task.remote(group, shared[dataset], checkpoint_files(group[0]), int(options.cpus_per_task),
                            evaluator)] = group
    try:
        while pending:
            [ref], _ = ray.wait(list(pending), num_returns=1)
            group = pending.pop(ref)
            try:
                outcomes, results, trained, logs = ray.get(ref)
            except (ray.exceptions.RayError, OSError) as err:  # its worker died twice, or the task itself broke
                error = f"ray task failed: {type(err).__name__}: {str(err).strip().splitlines()[-1]}"
                outcomes, results, trained, logs = [(cell_of(r), error, 0.0) for r in group], {}, {}, {}
            write_files(checkpoints_root(), trained)
            write_files(runs_root(), logs)
            write_files(store.root, results)
            for cell, error, _ in outcomes:
                record_failure(store, cell, error)
            record(outcomes)
    except KeyboardInterrupt:  # what finished is stored; the rest is cancelled
        for ref in pending:
            ray.cancel(ref, force=True)
        raise
