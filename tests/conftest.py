"""Every test runs against temporary dataset, checkpoint and results folders, never the repo's."""

from __future__ import annotations

import os

import pytest

import wmbench.sections  # noqa: F401 - every config section, as the commands declare them
from wmbench.envs import get_env
from wmbench.recording import make_random_dataset

SMOKE_STEPS = 3000  # the smoke profile's dataset size


@pytest.fixture(scope="session")
def workspace(tmp_path_factory):
    """Folders for datasets, checkpoints and results, set through wmbench's environment variables."""
    root = tmp_path_factory.mktemp("wmbench")
    paths = {
        "WMBENCH_HOME": root / "home",
        "MINARI_DATASETS_PATH": root / "datasets",
        "WMBENCH_CACHE": root / "cache",
        "WMBENCH_RESULTS": root / "results",
    }
    saved = {k: os.environ.get(k) for k in paths}
    os.environ.update({k: str(v) for k, v in paths.items()})
    yield paths
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def hopper_dataset(workspace) -> str:
    """A smoke-sized random Hopper dataset (Hopper falls often: short episodes, terminations)."""
    return make_random_dataset(get_env("hopper"), SMOKE_STEPS, seed=0, progress=False)


@pytest.fixture(autouse=True)
def _isolated(workspace):
    """Apply the temporary folders to every test."""


def pytest_configure(config):
    """An xdist worker (`make test` runs one per core) trains on one torch thread, and so do the processes it starts:
    the workers already fill the cores, and more threads than cores only slow them all down."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        os.environ["OMP_NUM_THREADS"] = "1"
        torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    """`gpu` tests run only where CUDA is available (`make gpu-check` runs them on a GPU machine)."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
