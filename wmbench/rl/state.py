"""The resumable state of an RL run: written atomically at each evaluation, read back on a rerun."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch

from wmbench.errors import CheckpointError
from wmbench.paths import atomic_write_bytes


def rng_state(generator: torch.Generator, rng: np.random.Generator) -> dict:
    return {"generator": generator.get_state(), "torch": torch.get_rng_state(), "numpy": rng.bit_generator.state}


def set_rng_state(state: dict, generator: torch.Generator, rng: np.random.Generator) -> None:
    generator.set_state(state["generator"])
    torch.set_rng_state(state["torch"])
    rng.bit_generator.state = state["numpy"]


def save_state(path: Path, state: dict) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_state(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=False)  # numpy arrays and rows: our own file
    except Exception as err:
        raise CheckpointError(f"RL state {path} is corrupt or unreadable ({type(err).__name__}); delete it to "
                              "start the run again") from err
