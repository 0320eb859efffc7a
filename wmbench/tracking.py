"""Watching a run while it happens: its scalars and parameters to TensorBoard, W&B or MLflow, and its
progress to whoever drives it (a sweep's live table).

The work reports to the *current* tracker, a context variable, so the training loop, delta tuning,
the learning curve and the RL loop need no logger argument, and a user's own model logs the same way:
`tracking.log("train", {"loss": 0.1}, step)`. Outside `tracking.watch(...)` the tracker ignores
everything, and `tracking.logging(group)` is False, so nothing is computed only to be thrown away.

Scalars come in groups (`train`, `tune`, `curve`, `eval`, `rl`), each with its own step: updates,
tuning iterations, rollout steps, real environment steps. A resumed computation says where its group
starts again (`tracking.restart(group, step)`): TensorBoard then hides what the interrupted run had
logged from that step on (its purge), so a resumed training shows each step once.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import os
import time
import warnings
from pathlib import Path
from typing import Callable, Iterator, Mapping

from wmbench.errors import UsageError
from wmbench.paths import runs_root

BACKENDS = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}  # name -> the module it needs
PROGRESS_EVERY_S = 1.0  # at most one progress report per second and stage: a sweep's table needs no more


def check_backend(backend: str | None) -> None:
    """One clear line for a back-end that is unknown or not installed (before any work is done)."""
    if backend is None:
        return
    if backend not in BACKENDS:
        raise UsageError(f"unknown log back-end {backend!r}; choose one of: {', '.join(BACKENDS)}, none")
    try:
        __import__(BACKENDS[backend])
    except ImportError:
        raise UsageError(f"--log {backend} needs the {BACKENDS[backend]} package: pip install 'wmbench[{backend}]'") \
            from None


class Logger:
    """A back-end: where one run's scalars and parameters are written."""

    def scalars(self, group: str, values: Mapping[str, float], step: int) -> None:
        raise NotImplementedError

    def restart(self, group: str, step: int) -> None:
        """`group` starts again at `step`: what an earlier process logged there at `step` and later is stale."""

    def params(self, params: Mapping) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class TensorBoardLogger(Logger):
    """One event folder per group (`FOLDER/train`, `FOLDER/tune`, ...): each group has its own step,
    and a restart purges only its own group."""

    def __init__(self, folder: Path):
        self.folder, self.writers = folder, {}

    def _writer(self, group: str, purge_step: int | None = None):
        from torch.utils.tensorboard import SummaryWriter

        if group in self.writers and purge_step is not None:
            self.writers.pop(group).close()
        if group not in self.writers:
            self.writers[group] = SummaryWriter(str(self.folder / group), purge_step=purge_step)
        return self.writers[group]

    def scalars(self, group: str, values: Mapping[str, float], step: int) -> None:
        writer = self._writer(group)
        for name, value in values.items():
            writer.add_scalar(f"{group}/{name}", value, step)

    def restart(self, group: str, step: int) -> None:
        if (self.folder / group).is_dir():  # a first run has nothing to purge
            self._writer(group, purge_step=step)

    def params(self, params: Mapping) -> None:
        text = json.dumps(params, indent=2, sort_keys=True, default=str)
        self._writer("params").add_text("params", "    " + text.replace("\n", "\n    "), 0)  # markdown code block
        self.writers["params"].flush()

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()
        self.writers.clear()


class WandbLogger(Logger):
    """A W&B run (offline unless `WANDB_MODE` says otherwise: `wandb sync` uploads it later), its id
    fixed by the cell, so that a resumed cell continues its run. Each group's scalars are plotted
    against the group's own step (`GROUP/step`). W&B keeps every point: a resumed training's repeated
    steps are drawn twice there."""

    def __init__(self, folder: Path, name: str):
        import wandb

        folder.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "wmbench"), name=name, dir=str(folder),
                              id=hashlib.sha1(name.encode()).hexdigest()[:16], resume="allow",
                              mode=os.environ.get("WANDB_MODE", "offline"),
                              settings=wandb.Settings(silent=True))  # no banner between the progress bars
        self.groups: set[str] = set()

    def scalars(self, group: str, values: Mapping[str, float], step: int) -> None:
        if group not in self.groups:
            self.run.define_metric(f"{group}/*", step_metric=f"{group}/step")
            self.groups.add(group)
        self.run.log({f"{group}/{name}": value for name, value in values.items()} | {f"{group}/step": step})

    def params(self, params: Mapping) -> None:
        self.run.config.update(dict(params), allow_val_change=True)

    def close(self) -> None:
        self.run.finish()


class MLflowLogger(Logger):
    """A run in a local MLflow file store (`mlflow ui --backend-store-uri FOLDER`), found again by the
    cell's name, so that a resumed cell continues its run."""

    def __init__(self, folder: Path, name: str):
        from mlflow.tracking import MlflowClient

        folder.mkdir(parents=True, exist_ok=True)
        # MLflow 3 keeps its file store only on request (a database needs the full mlflow and a server-side schema)
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        with warnings.catch_warnings():  # ... and warns that it is in maintenance mode
            warnings.simplefilter("ignore")
            self.client = MlflowClient(tracking_uri=folder.resolve().as_uri())
            experiment = self.client.get_experiment_by_name("wmbench")
            experiment_id = experiment.experiment_id if experiment else self.client.create_experiment("wmbench")
            found = self.client.search_runs([experiment_id], filter_string=f"tags.`wmbench.cell` = '{name}'")
        self.new = not found
        self.run_id = found[0].info.run_id if found else \
            self.client.create_run(experiment_id, run_name=name[-250:], tags={"wmbench.cell": name}).info.run_id

    def scalars(self, group: str, values: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(f"{group}/{name}", float(value), now, step)
                                                    for name, value in values.items()])

    def params(self, params: Mapping) -> None:
        from mlflow.entities import Param

        if self.new:  # MLflow refuses to change a parameter; a resumed run keeps those it started with
            flat = _flatten(params)
            self.client.log_batch(self.run_id, params=[Param(k, str(v)[:6000]) for k, v in flat.items()])

    def close(self) -> None:
        self.client.set_terminated(self.run_id)


def _flatten(params: Mapping, prefix: str = "") -> dict:
    flat = {}
    for key, value in params.items():
        if isinstance(value, Mapping):
            flat |= _flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def open_logger(backend: str, folder: Path, name: str) -> Logger:
    """The back-end's logger of the run `name`, its files under `folder` (MLflow: one store for all runs)."""
    check_backend(backend)
    if backend == "tensorboard":
        return TensorBoardLogger(folder)
    if backend == "wandb":
        return WandbLogger(folder, name)
    return MLflowLogger(runs_root() / "mlflow", name)


class Tracker:
    """What running work reports to: an optional logger (of the `groups` named, or of all) and an
    optional progress callback `on_progress(stage, done, total)` (called at most once a second per
    stage, and at each stage's end)."""

    def __init__(self, logger: Logger | None = None, on_progress: Callable[[str, int, int], None] | None = None,
                 groups: frozenset[str] | None = None):
        self.logger, self.on_progress, self.groups = logger, on_progress, groups
        self._last: dict[str, float] = {}

    def logging(self, group: str) -> bool:
        return self.logger is not None and (self.groups is None or group in self.groups)

    def log(self, group: str, values: Mapping[str, float], step: int) -> None:
        if self.logging(group):
            self.logger.scalars(group, values, step)

    def restart(self, group: str, step: int) -> None:
        if self.logging(group):
            self.logger.restart(group, step)

    def params(self, params: Mapping) -> None:
        if self.logger is not None:
            self.logger.params(params)

    def progress(self, stage: str, done: int, total: int) -> None:
        if self.on_progress is None:
            return
        now = time.monotonic()
        if done >= total or now - self._last.get(stage, -PROGRESS_EVERY_S) >= PROGRESS_EVERY_S:
            self._last[stage] = now
            self.on_progress(stage, done, total)


_current: contextvars.ContextVar[Tracker] = contextvars.ContextVar("wmbench_tracker", default=Tracker())


@contextlib.contextmanager
def watch(tracker: Tracker) -> Iterator[Tracker]:
    """Make `tracker` the current one for the block; its logger is closed at the end."""
    token = _current.set(tracker)
    try:
        yield tracker
    finally:
        _current.reset(token)
        if tracker.logger is not None:
            tracker.logger.close()


@contextlib.contextmanager
def logged_run(backend: str | None, folder: Path, name: str, params: Mapping,
               groups: frozenset[str] | None = None) -> Iterator[Tracker]:
    """The block's work logged to `backend` (None: not logged) as the run `name` under `folder`, with
    `params` (only the scalars of `groups`, if given); progress still goes wherever the enclosing
    tracker sends it."""
    outer = _current.get()
    if backend is None:
        yield outer
        return
    with watch(Tracker(open_logger(backend, folder, name), outer.on_progress, groups)) as tracker:
        tracker.params(params)
        yield tracker


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """No scalars logged in the block, progress still reported (work that would repeat a logged group)."""
    token = _current.set(Tracker(None, _current.get().on_progress))
    try:
        yield
    finally:
        _current.reset(token)


def current() -> Tracker:
    return _current.get()


def logging(group: str) -> bool:
    """Whether `group`'s scalars are written anywhere (worth computing only then)."""
    return _current.get().logging(group)


def log(group: str, values: Mapping[str, float], step: int) -> None:
    _current.get().log(group, values, step)


def restart(group: str, step: int) -> None:
    _current.get().restart(group, step)


def progress(stage: str, done: int, total: int) -> None:
    _current.get().progress(stage, done, total)
