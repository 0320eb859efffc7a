"""A training's saved files: resumable training states and snapshots, written and read as data.

A training state holds the world model, its EMA, the optimiser, every random-number generator and
the step; a background thread writes it atomically, so the loop waits only for a copy into host
memory. A snapshot is the model as it would be saved at that step (its EMA weights), for learning
curves. Both sit beside the model's checkpoint, and a later training of the same cell finds them.
"""

from __future__ import annotations

import io
import threading
from pathlib import Path

import torch
from torch import nn

from wmbench.errors import CheckpointError
from wmbench.models.base import FitReport, WorldModel
from wmbench.paths import atomic_write_bytes

STATE_FORMAT = 1

STATE_SUFFIX = ".train-state.pt"


def training_state_path(checkpoint: Path) -> Path:
    """Where the resumable training state of the model saved at `checkpoint` lives while it trains."""
    return checkpoint.with_name(checkpoint.stem + STATE_SUFFIX)


def snapshot_path(state_path: Path, step: int) -> Path:
    """The snapshot of the model after `step` updates, beside its training state (and checkpoint)."""
    return state_path.with_name(f"{state_path.name.removesuffix(STATE_SUFFIX)}.step-{step}.pt")


def rng_state(generator: torch.Generator) -> dict:
    state = {"generator": generator.get_state(), "cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(generator: torch.Generator, state: dict) -> None:
    generator.set_state(state["generator"])
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_snapshot(path: Path, owner: nn.Module, net: nn.Module, ema: nn.Module | None, report: FitReport) -> None:
    """Save `owner` as it would be saved if training ended now: the EMA weights in `net`, `report` as
    its fit report. The training weights are put back exactly (in place: the optimiser keeps them)."""
    if not isinstance(owner, WorldModel):
        raise TypeError("snapshots need the world model as `owner`")
    training, fit_report = {k: v.clone() for k, v in net.state_dict().items()}, owner.fit_report
    with torch.no_grad():
        if ema is not None:
            net.load_state_dict(ema.state_dict())
        owner.fit_report = report
        owner.save(path)
        net.load_state_dict(training)
    owner.fit_report = fit_report


class StateWriter:
    """Writes training states from a background thread: the loop waits only for a copy of the state
    into host memory, not for its serialisation and the disk (0.45 s for PolyGRAD at width 1024 on a
    CPU, some thousand updates of a GPU). One write at a time; a failed write raises at the next
    `submit` or `wait`."""

    def __init__(self):
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def submit(self, path: Path, state: dict) -> None:
        self.wait()
        state = _to_host(state)  # copied now: training goes on changing the tensors in place

        def write() -> None:
            try:
                buffer = io.BytesIO()
                torch.save(state, buffer)
                atomic_write_bytes(path, buffer.getvalue())
            except BaseException as err:  # noqa: BLE001 - raised in the training thread by wait()
                self._error = err

        self._thread = threading.Thread(target=write, name="wmbench-state-writer")
        self._thread.start()

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error


def _to_host(value):
    """`value` with every tensor copied to CPU memory (nested dicts, lists and tuples followed)."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {k: _to_host(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_host(v) for v in value)
    return value


def training_state(step: int, seconds: float, owner: nn.Module, ema: nn.Module | None, optimiser_state: dict,
                   rng: dict) -> dict:
    """What a training state file holds (`ema`: the EMA's model; `rng`: as `rng_state` gives it)."""
    return {"format": STATE_FORMAT, "step": step, "seconds": seconds, "owner": owner.state_dict(),
            "ema": None if ema is None else ema.state_dict(), "optimiser": optimiser_state, "rng": rng}


def read_training_state(path: Path) -> dict:
    """A saved training state, read as data; `CheckpointError` if it is not one."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"training-state format {state.get('format')!r}")
    except Exception as err:
        raise CheckpointError(f"training state {path} is corrupt or unreadable ({type(err).__name__}); "
                              "delete it to train from the start") from err
    return state


def load_state(path: Path, owner: nn.Module, ema: nn.Module | None, optimiser, generator) -> tuple[int, float]:
    """Restore a saved training state; `(step, seconds trained)`."""
    state = read_training_state(path)
    try:
        owner.load_state_dict(state["owner"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        optimiser.load_state_dict(state["optimiser"])
        set_rng_state(generator, state["rng"])
    except Exception as err:
        raise CheckpointError(f"training state {path} is corrupt or unreadable ({type(err).__name__}); "
                              "delete it to train from the start") from err
    return int(state["step"]), float(state["seconds"])
