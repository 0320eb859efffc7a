"""Where wmbench keeps things. Each location has an environment variable that overrides it."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def datasets_root() -> Path:
    """Minari datasets: `MINARI_DATASETS_PATH`, else `datasets/` in the repository."""
    return Path(os.environ.get("MINARI_DATASETS_PATH", REPO_ROOT / "datasets"))


def profiles_dir() -> Path:
    """Model-config profiles (TOML): `WMBENCH_PROFILES`, else `models/` in the repository."""
    return Path(os.environ.get("WMBENCH_PROFILES", REPO_ROOT / "models"))


def checkpoints_root() -> Path:
    """Trained-model cache: `WMBENCH_CACHE`, else `models/cache/` in the repository."""
    return Path(os.environ.get("WMBENCH_CACHE", REPO_ROOT / "models" / "cache"))


def results_root() -> Path:
    """Results store: `WMBENCH_RESULTS`, else `reports/results/` in the repository."""
    return Path(os.environ.get("WMBENCH_RESULTS", REPO_ROOT / "reports" / "results"))


def atomic_write_bytes(path: Path, payload: bytes) -> None:
    """Write a file so that readers see the old version or the new one, never a torn one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(payload)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
