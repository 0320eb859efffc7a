"""Where wmbench keeps things: one workspace folder for everything a run writes.

The workspace is `WMBENCH_HOME` (set by `wmbench --workspace DIR`), else the current directory.
Inside it: `datasets/` (the Minari root), `models/cache/` (trained models), `results/` (the
results store) and `runs/` (logs, with `--log`). Each location also has its own environment
variable that overrides it. Nothing is ever written inside the installed package.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import os
from pathlib import Path
from typing import Callable, Iterator

PACKAGE_ROOT = Path(__file__).resolve().parent


def workspace() -> Path:
    """`WMBENCH_HOME`, else the current directory."""
    return Path(os.environ.get("WMBENCH_HOME") or Path.cwd())


def datasets_root() -> Path:
    """Minari datasets: `MINARI_DATASETS_PATH`, else `datasets/` in the workspace."""
    return Path(os.environ.get("MINARI_DATASETS_PATH") or workspace() / "datasets")


def checkpoints_root() -> Path:
    """Trained-model cache: `WMBENCH_CACHE`, else `models/cache/` in the workspace."""
    return Path(os.environ.get("WMBENCH_CACHE") or workspace() / "models" / "cache")


def results_root() -> Path:
    """The results store: `WMBENCH_RESULTS`, else `results/` in the workspace."""
    return Path(os.environ.get("WMBENCH_RESULTS") or workspace() / "results")


def runs_root() -> Path:
    """Logs of runs watched as they happen (`--log`): `WMBENCH_RUNS`, else `runs/` in the workspace."""
    return Path(os.environ.get("WMBENCH_RUNS") or workspace() / "runs")


def user_profiles_dir() -> Path | None:
    """An extra folder of profiles (`WMBENCH_PROFILES`), searched before the built-in ones."""
    folder = os.environ.get("WMBENCH_PROFILES")
    return Path(folder) if folder else None


def atomic_write_bytes(path: Path, payload: bytes) -> None:
    """Write a file so that readers see the old version or the new one, never a torn one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(payload)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):  # left by a writer that was killed
        pid = stale.name[len(path.name) + 2:-len(".tmp")]
        if pid.isdigit() and not _alive(int(pid)):
            stale.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


@contextlib.contextmanager
def file_lock(path: Path, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created if needed) for the block; another process
    asking for it waits (after `on_wait()` is called once). The OS releases it if the holder dies."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait()
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
