"""The minibatch training loop shared by the gradient-trained world models.

What every such model needs lives here once: minibatch indices drawn on the device of the
generator (no host round trip), a fused (CUDA) or foreach (CPU) Adam, the loss read back only every
`LOG_EVERY` updates, bf16 autocast, `torch.compile`, on CUDA the whole update (forward, backward,
Adam) captured once as a CUDA graph and replayed, and a resumable training state: every
`checkpoint_every` updates the model, its EMA, the optimiser, every random-number generator and the
step are copied to host memory and written atomically by a background thread, and a later `fit`
with the same `state_path` continues from there. On a CPU an interrupted and resumed training ends
with exactly the weights of an uninterrupted one. Every
`snapshot_every` updates the model as it would be saved then (EMA weights) is written beside the
training state, for learning curves; saving one draws no random number and leaves training unchanged.

Seeding contract: the same seed on the same device gives the same numbers. Minibatches and
sampling noise come from the generator passed to `fit` (on the training device); the loss's own
draws (diffusion step, noise) from torch's global generator of that device, seeded by the caller.
CPU and CUDA draw different streams, so their numbers differ. A CUDA graph replays the eager
update's draws: it advances the default CUDA generator by what the eager kernels would take.
"""

from __future__ import annotations

import copy
import io
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from tqdm.auto import tqdm

from wmbench import tracking
from wmbench.config import param
from wmbench.models.base import FitReport, WorldModel
from wmbench.models.precision import TF32, TRAIN_PRECISIONS, check_training_precision, warn_if_bf16_is_emulated
from wmbench.paths import atomic_write_bytes

LOG_EVERY = 100  # updates between loss read-backs (each one waits for the device)
GRAPH_WARMUP = 3  # eager updates before a CUDA graph is captured (the optimiser's state and cuBLAS set up)
STATE_FORMAT = 1


@dataclass
class TrainingConfig:
    """Settings of the shared training loop (a base of the models' configs)."""

    lr: float = param(3e-4, "Adam learning rate", above=0)
    batch_size: int = param(256, "training examples per gradient step", low=1)
    train_steps: int = param(1_000_000, "gradient steps", low=1)
    precision: str = param("fp32", "training precision: fp32, bf16 (autocast; the paper trained with fp16) or, on "
                                   "CUDA, tf32 (fp32 weights, matmuls in TensorFloat-32)", choices=TRAIN_PRECISIONS)
    compile: bool = param(False, "torch.compile the network for training")
    cuda_graph: bool = param(True, "on CUDA, capture the update (forward, backward, Adam) as a CUDA graph and replay "
                                   "it: the same computation without a kernel launch per operation (ignored on a "
                                   "CPU and with compile)", runtime=True)
    checkpoint_every: int = param(10_000, "updates between resumable training states (0: none)", runtime=True, low=0)
    snapshot_every: int = param(0, "updates between saved snapshots of the model (its EMA weights), for learning "
                                   "curves; set by --eval-every (0: none)", runtime=True, low=0)


STATE_SUFFIX = ".train-state.pt"


def training_state_path(checkpoint: Path) -> Path:
    """Where the resumable training state of the model saved at `checkpoint` lives while it trains."""
    return checkpoint.with_name(checkpoint.stem + STATE_SUFFIX)


def snapshot_path(state_path: Path, step: int) -> Path:
    """The snapshot of the model after `step` updates, beside its training state (and checkpoint)."""
    return state_path.with_name(f"{state_path.name.removesuffix(STATE_SUFFIX)}.step-{step}.pt")


def random_index(n: int, size: int, generator: torch.Generator, device: torch.device | str) -> torch.Tensor:
    """`size` uniform indices below `n`, drawn on the generator's device, returned on `device`."""
    idx = torch.randint(0, n, (size,), generator=generator, device=generator.device)
    return idx.to(device, non_blocking=True)


def draw_index(n: int, generator: torch.Generator, *, out: torch.Tensor) -> torch.Tensor:
    """Fill `out` with uniform indices below `n` drawn with `generator` (on its device), in place: a
    CUDA graph reads the same buffer at every replay."""
    if generator.device == out.device:
        return torch.randint(0, n, out.shape, generator=generator, device=out.device, out=out)
    return out.copy_(random_index(n, out.numel(), generator, out.device))


def _rng_state(generator: torch.Generator) -> dict:
    state = {"generator": generator.get_state(), "cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(generator: torch.Generator, state: dict) -> None:
    generator.set_state(state["generator"])
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class EMA:
    """Every `every` steps from step `start` on, `ema = decay * ema + (1 - decay) * weights`
    (before `start`, the average is a plain copy), as in the PolyGRAD code; also at the last step, so
    that no update is lost when a training ends between two averaging steps (a short online fit)."""

    def __init__(self, model: nn.Module, decay: float = 0.99, every: int = 10, start: int = 2000):
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay, self.every, self.start = decay, every, start

    @torch.no_grad()
    def update(self, model: nn.Module, step: int, last: bool = False) -> None:
        if step % self.every and not last:
            return
        weight = 1.0 if step < self.start else 1.0 - self.decay
        torch._foreach_lerp_(list(self.model.parameters()), list(model.parameters()), weight)
        for ema_b, b in zip(self.model.buffers(), model.buffers()):
            ema_b.copy_(b)


@dataclass
class TrainResult:
    loss: float  # the last loss read back
    seconds: float  # of training, before an interruption included
    resumed_from: int  # the step a saved training state was resumed from (0: none)


def train_steps(
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    net: nn.Module,
    n_items: int,
    config: TrainingConfig,
    *,
    generator: torch.Generator,
    desc: str,
    owner: nn.Module | None = None,
    ema: EMA | None = None,
    after_step: Callable[[int], None] | None = None,
    state_path: Path | None = None,
    progress: bool = True,
) -> TrainResult:
    """Adam on `loss_fn(indices)` for uniformly drawn minibatches of item indices.

    `net` holds the trained parameters; `owner` (default: `net`) is what the training state saves
    and restores (the whole world model: normalisers and tuning state too); `ema` is updated after
    every step, then `after_step(step)` runs (step counts from 1).
    """
    owner = owner if owner is not None else net
    device = next(net.parameters()).device
    if config.precision not in TRAIN_PRECISIONS:
        raise ValueError(f"training precision must be one of {', '.join(TRAIN_PRECISIONS)}, got {config.precision!r}")
    check_training_precision(config.precision, device)
    warn_if_bf16_is_emulated(device, config.precision)
    graphed = config.cuda_graph and device.type == "cuda" and not config.compile
    fused = {"fused": True, "capturable": graphed} if device.type == "cuda" else {"foreach": True}
    optimiser = torch.optim.Adam(net.parameters(), lr=config.lr, **fused)
    start_step, seconds_before = 0, 0.0
    if state_path is not None and state_path.is_file():
        start_step, seconds_before = _load_state(state_path, owner, ema, optimiser, generator)
    if config.compile:
        net.compile()
    # how an update's arithmetic is done: bf16 autocast (whose weight cache cannot live across graph
    # replays), TF32 matmuls, or plain fp32
    autocast = TF32() if config.precision == "tf32" else \
        torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.precision == "bf16", cache_enabled=not graphed)
    index = torch.empty(config.batch_size, dtype=torch.long, device=device)
    update = _Update(loss_fn, optimiser, index, autocast, graphed, desc)

    start, loss, last = time.perf_counter(), None, float("nan")
    bar = tqdm(total=config.train_steps, initial=start_step, desc=desc, disable=not progress, leave=False)
    writer, rate = _StateWriter(), _Rate(start_step)
    if start_step:
        tracking.restart("train", start_step + 1)  # the interrupted run may have logged past its saved state
    try:
        for step in range(start_step + 1, config.train_steps + 1):
            draw_index(n_items, generator, out=index)
            loss = update(last=step == config.train_steps)
            if ema is not None:
                ema.update(net, step, last=step == config.train_steps)
            if after_step is not None:
                after_step(step)
            if step % LOG_EVERY == 0 or step == config.train_steps:  # a short training is logged too
                last = loss.item()
                bar.set_postfix(loss=f"{last:.4f}")
                if tracking.logging("train"):
                    tracking.log("train", _training_scalars(last, net, ema, optimiser, rate(step)), step)
            tracking.progress("train", step, config.train_steps)
            if state_path is not None and config.snapshot_every and step % config.snapshot_every == 0 \
                    and step < config.train_steps:  # the last one is the model itself
                report = FitReport(steps=step, seconds=seconds_before + time.perf_counter() - start, loss=loss.item())
                _save_snapshot(snapshot_path(state_path, step), owner, net, ema, report)
            if state_path is not None and config.checkpoint_every and step % config.checkpoint_every == 0 \
                    and step < config.train_steps:
                writer.submit(state_path, _training_state(step, seconds_before + time.perf_counter() - start, owner,
                                                          ema, optimiser, generator))
            bar.update()
    finally:
        writer.wait()  # a state being written lands before an error goes up
        bar.close()
    if loss is not None:
        last = loss.item()
    if state_path is not None:
        state_path.unlink(missing_ok=True)  # finished: the caller saves the model itself
    return TrainResult(last, seconds_before + time.perf_counter() - start, start_step)


class _Rate:
    """Updates per second since the previous call (the loss read-back before it has synchronised the device)."""

    def __init__(self, step: int):
        self.step, self.time = step, time.perf_counter()

    def __call__(self, step: int) -> float:
        now = time.perf_counter()
        rate = (step - self.step) / max(now - self.time, 1e-9)
        self.step, self.time = step, now
        return rate


@torch.no_grad()
def _training_scalars(loss: float, net: nn.Module, ema: EMA | None, optimiser: torch.optim.Optimizer,
                      updates_per_s: float) -> dict[str, float]:
    """What a log shows of training every `LOG_EVERY` updates: the loss, the pace, the learning rate, the
    norm of the latest gradient and how far the EMA weights lag behind the trained ones (relative)."""
    values = {"loss": loss, "updates_per_s": updates_per_s, "lr": float(optimiser.param_groups[0]["lr"]),
              "grad_norm": _norm([p.grad for p in net.parameters() if p.grad is not None])}
    if ema is not None:
        trained = list(net.parameters())
        values["ema_gap"] = _norm(torch._foreach_sub(list(ema.model.parameters()), trained)) / _norm(trained)
    return values


def _norm(tensors: list[torch.Tensor]) -> float:
    """The L2 norm of all the tensors together (NaN for none)."""
    return float(torch.linalg.vector_norm(torch.stack(torch._foreach_norm(tensors)))) if tensors else float("nan")


class _Update:
    """One update (forward, backward, Adam) on the minibatch of item indices in `index`. With
    `graphed`, the first `GRAPH_WARMUP` updates run eagerly on a side stream (as capture requires),
    the next is captured once as a CUDA graph, and every later one replays it: the same kernels on
    the same buffers, without a launch from Python per operation. The gradients are None at capture,
    so each replay writes them afresh; the loss is the graph's output tensor, rewritten each replay."""

    def __init__(self, loss_fn: Callable[[torch.Tensor], torch.Tensor], optimiser: torch.optim.Optimizer,
                 index: torch.Tensor, autocast: torch.autocast, graphed: bool, desc: str):
        self.loss_fn, self.optimiser, self.index, self.autocast = loss_fn, optimiser, index, autocast
        self.graphed, self.desc, self.eager_updates = graphed, desc, 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self.loss: torch.Tensor | None = None
        if graphed:
            self.side = torch.cuda.Stream(index.device)

    def __call__(self, last: bool = False) -> torch.Tensor:
        if self.graph is not None:
            self.graph.replay()
        elif not self.graphed:
            self.loss = self._eager()
        elif self.eager_updates < GRAPH_WARMUP or last:  # no capture for a single update
            main = torch.cuda.current_stream(self.index.device)
            self.side.wait_stream(main)
            with torch.cuda.stream(self.side):
                self.loss = self._eager()
            main.wait_stream(self.side)
            self.eager_updates += 1
        else:
            self._capture()
        return self.loss

    def _eager(self) -> torch.Tensor:
        with self.autocast:
            loss = self.loss_fn(self.index)
        self.optimiser.zero_grad(set_to_none=True)
        loss.backward()
        self.optimiser.step()
        # detached, so that no autograd node outlives its update: a node kept from a warm-up update on
        # the side stream would meet the next backward on another stream
        return loss.detach()

    def _capture(self) -> None:
        graph = torch.cuda.CUDAGraph()
        self.optimiser.zero_grad(set_to_none=True)
        try:
            with torch.cuda.graph(graph):
                self.loss = self._eager()
        except RuntimeError as err:  # an operation that cannot be captured: train as before
            warnings.warn(f"{self.desc}: CUDA graph capture failed ({str(err).splitlines()[0]}); training goes "
                          "on without it (set cuda_graph = false to skip the attempt)", stacklevel=3)
            self.graphed = False
            self.loss = self._eager()
            return
        self.graph = graph
        graph.replay()  # capturing ran nothing


def _save_snapshot(path: Path, owner: nn.Module, net: nn.Module, ema: EMA | None, report: FitReport) -> None:
    """Save `owner` as it would be saved if training ended now: the EMA weights in `net`, `report` as
    its fit report. The training weights are put back exactly (in place: the optimiser keeps them)."""
    if not isinstance(owner, WorldModel):
        raise TypeError("snapshots need the world model as `owner`")
    training, fit_report = {k: v.clone() for k, v in net.state_dict().items()}, owner.fit_report
    with torch.no_grad():
        if ema is not None:
            net.load_state_dict(ema.model.state_dict())
        owner.fit_report = report
        owner.save(path)
        net.load_state_dict(training)
    owner.fit_report = fit_report


class _StateWriter:
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


def _training_state(step: int, seconds: float, owner: nn.Module, ema: EMA | None, optimiser, generator) -> dict:
    return {"format": STATE_FORMAT, "step": step, "seconds": seconds, "owner": owner.state_dict(),
            "ema": None if ema is None else ema.model.state_dict(), "optimiser": optimiser.state_dict(),
            "rng": _rng_state(generator)}


def _load_state(path: Path, owner: nn.Module, ema: EMA | None, optimiser, generator) -> tuple[int, float]:
    """Restore a saved training state; `(step, seconds trained)`."""
    from wmbench.errors import CheckpointError

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"training-state format {state.get('format')!r}")
        owner.load_state_dict(state["owner"])
        if ema is not None:
            ema.model.load_state_dict(state["ema"])
        optimiser.load_state_dict(state["optimiser"])
        _set_rng_state(generator, state["rng"])
    except Exception as err:
        raise CheckpointError(f"training state {path} is corrupt or unreadable ({type(err).__name__}); "
                              "delete it to train from the start") from err
    return int(state["step"]), float(state["seconds"])
