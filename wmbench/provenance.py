"""Where a number came from: code version, package versions and hardware."""

from __future__ import annotations

import functools
import platform
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from wmbench.errors import UsageError
from wmbench.paths import PACKAGE_ROOT


@functools.cache
def git_commit() -> str:
    """The source checkout's HEAD commit, with `+dirty` when tracked files differ; for an installed
    package (no checkout around it) its release, `wmbench==VERSION`."""
    checkout = PACKAGE_ROOT.parent
    if not (checkout / "pyproject.toml").is_file() or not (checkout / ".git").exists():
        return f"wmbench=={package_version('wmbench')}"
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=checkout, capture_output=True,
            text=True, timeout=10, check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=checkout,
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def in_checkout(path: Path) -> bool:
    """Whether `path` lies inside wmbench's source checkout where git does not ignore it: a store
    that will be committed (`reports/reference/`), not a workspace's `results/`."""
    checkout = PACKAGE_ROOT.parent.resolve()
    try:
        inside = Path(path).resolve().relative_to(checkout)
    except ValueError:
        return False
    if not (checkout / ".git").exists():
        return False
    # a file inside: `/results/` matches only a directory, which need not exist yet
    ignored = subprocess.run(["git", "check-ignore", "--quiet", str(inside / "cell.csv")], cwd=checkout,
                             capture_output=True, timeout=10)
    return ignored.returncode != 0


def check_clean_tree(store: Path, allow_dirty: bool = False) -> None:
    """A committed store is written only by committed code, so that every cell names the code that
    made it; `allow_dirty` writes anyway (the cells' `git_commit` then ends in `+dirty`)."""
    if allow_dirty or not git_commit().endswith("+dirty") or not in_checkout(store):
        return
    raise UsageError(f"{store} is a store inside wmbench's checkout (it will be committed) and the tree has "
                     "uncommitted changes: commit them first, so that every cell names the code that made it, "
                     "or pass --allow-dirty (the cells are then marked +dirty)")


def package_version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "absent"


@functools.cache
def package_versions() -> str:
    return " ".join(
        f"{p}={package_version(p)}" for p in ("wmbench", "torch", "mujoco", "gymnasium", "minari", "numpy")
    )


def device_name(device: str) -> str:
    """A human-readable name for the hardware a computation ran on."""
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return f"{platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)"


def provenance(device: str = "cpu") -> dict[str, str]:
    """The columns every stored result carries."""
    return {
        "git_commit": git_commit(),
        "versions": package_versions(),
        "device": device_name(device),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
