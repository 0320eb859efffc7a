"""The resumable state of an RL run: written atomically at each evaluation, read back on a rerun.

The file is read with `weights_only=True`, so loading it runs no code: everything in it is turned
into tensors and plain containers first (`plain`), and back on load (`restore`), where a dataclass
is rebuilt only if it is one of the classes the caller names.
"""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import numpy as np
import torch

from wmbench.errors import CheckpointError
from wmbench.paths import atomic_write_bytes

_ARRAY, _CLASS = "__ndarray__", "__dataclass__"


def rng_state(generator: torch.Generator, rng: np.random.Generator) -> dict:
    return {"generator": generator.get_state(), "torch": torch.get_rng_state(), "numpy": rng.bit_generator.state}


def set_rng_state(state: dict, generator: torch.Generator, rng: np.random.Generator) -> None:
    generator.set_state(state["generator"])
    torch.set_rng_state(state["torch"])
    rng.bit_generator.state = state["numpy"]


def plain(value):
    """`value` as tensors, numbers, strings and containers (what `weights_only` loading allows)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {_CLASS: type(value).__name__,
                **{f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}}
    if isinstance(value, np.ndarray):
        return {_ARRAY: torch.from_numpy(np.ascontiguousarray(value))}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(plain(item) for item in value)
    return value


def restore(value, classes: dict[str, type]):
    """The inverse of `plain`; a dataclass not in `classes` (by name) is refused."""
    if isinstance(value, dict) and _ARRAY in value:
        return value[_ARRAY].numpy()
    if isinstance(value, dict) and _CLASS in value:
        name = value[_CLASS]
        if name not in classes:
            raise ValueError(f"unexpected object {name!r}")
        return classes[name](**{k: restore(v, classes) for k, v in value.items() if k != _CLASS})
    if isinstance(value, dict):
        return {key: restore(item, classes) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(restore(item, classes) for item in value)
    return value


def save_state(path: Path, state: dict) -> None:
    buffer = io.BytesIO()
    torch.save(plain(state), buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_state(path: Path, keys: tuple[str, ...], classes: tuple[type, ...] = ()) -> dict | None:
    """The state saved at `path` (None if there is none), with its `keys` checked; read as data."""
    if not path.is_file():
        return None
    try:
        state = restore(torch.load(path, map_location="cpu", weights_only=True), {c.__name__: c for c in classes})
        missing = [key for key in keys if key not in state]
        if missing:
            raise ValueError(f"no {', '.join(missing)}")
    except Exception as err:  # noqa: BLE001 - pickle, zip, torch and shape errors all mean the file is unusable
        reason = str(err).splitlines()[0][:120] if isinstance(err, ValueError) else type(err).__name__
        raise CheckpointError(f"RL state {path} is corrupt, unreadable or not wmbench's ({reason}); delete it to "
                              "start the run again") from err
    return state
