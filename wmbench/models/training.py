"""The minibatch training loop shared by the gradient-trained world models.

What every such model needs lives here once: minibatch indices drawn on the device of the
generator (no host round trip), a fused (CUDA) or foreach (CPU) Adam, the loss read back only every
`LOG_EVERY` updates, bf16 autocast, `torch.compile`, on CUDA the whole update (forward, backward,
Adam) captured once as a CUDA graph and replayed, and a resumable training state (`states.py`):
every `checkpoint_every` updates, and a later `fit` with the same `state_path` continues from there.
On a CPU an interrupted and resumed training ends with exactly the weights of an uninterrupted one.
Every `snapshot_every` updates the model as it would be saved then (EMA weights) is written beside
the training state, for learning curves; saving one draws no random number and leaves training
unchanged. `run_updates` is the loop; `seeds.py` drives it for several seeds as one network.

Seeding contract: the same seed on the same device gives the same numbers. Minibatches and
sampling noise come from the generator passed to `fit` (on the training device); the loss's own
draws (diffusion step, noise) from torch's global generator of that device, seeded by the caller.
CPU and CUDA draw different streams, so their numbers differ. A CUDA graph replays the eager
update's draws: it advances the default CUDA generator by what the eager kernels would take.
"""

from __future__ import annotations

import copy
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
from wmbench.models.base import FitReport
from wmbench.models.precision import TRAIN_PRECISIONS, check_training_precision, update_modes, warn_if_bf16_is_emulated
from wmbench.models.states import (
    StateWriter,
    load_state,
    rng_state,
    save_snapshot,
    snapshot_path,
    training_state,
)

LOG_EVERY = 100  # updates between loss read-backs (each one waits for the device)
GRAPH_WARMUP = 3  # eager updates before a CUDA graph is captured (the optimiser's state and cuBLAS set up)


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


class EMA:
    """Every `every` steps from step `start` on, `ema = decay * ema + (1 - decay) * weights`
    (before `start`, the average is a plain copy), as in the PolyGRAD code; also at the last step, so
    that no update is lost when a training ends between two averaging steps (a short online fit)."""

    def __init__(self, model: nn.Module, decay: float = 0.99, every: int = 10, start: int = 2000):
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay, self.every, self.start = decay, every, start

    def update(self, model: nn.Module, step: int, last: bool = False) -> None:
        self.update_from(list(model.parameters()), list(model.buffers()), step, last)

    @torch.no_grad()
    def update_from(self, parameters: list[torch.Tensor], buffers: list[torch.Tensor], step: int,
                    last: bool = False) -> None:
        """`update` from the model's parameters and buffers, in `parameters()` and `buffers()` order."""
        if step % self.every and not last:
            return
        weight = 1.0 if step < self.start else 1.0 - self.decay
        torch._foreach_lerp_(list(self.model.parameters()), parameters, weight)
        for ema_b, b in zip(self.model.buffers(), buffers):
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
        start_step, seconds_before = load_state(state_path, owner, ema and ema.model, optimiser, generator)
    if config.compile:
        net.compile()
    index = torch.empty(config.batch_size, dtype=torch.long, device=device)
    update = Update(loss_fn, optimiser, index, config.precision, graphed, desc)

    trainee = _OneSeed(update, index, n_items, generator, net, owner, ema, optimiser, after_step, state_path)
    loss, seconds = run_updates(trainee, config, start_step, seconds_before, desc, progress)
    if state_path is not None:
        state_path.unlink(missing_ok=True)  # finished: the caller saves the model itself
    return TrainResult(float("nan") if loss is None else loss.item(), seconds, start_step)


def run_updates(trainee, config: TrainingConfig, start_step: int, seconds_before: float, desc: str,
                progress: bool) -> tuple[torch.Tensor | None, float]:
    """The training loop from `start_step` to `config.train_steps`, with its progress bar, logs,
    snapshots and training states; `trainee` does the updates (one network: `_OneSeed`; several seeds
    as one: `wmbench.models.seeds`). Returns the last loss tensor and the seconds trained in all."""
    start, loss, save_states = time.perf_counter(), None, trainee.state_path is not None
    bar = tqdm(total=config.train_steps, initial=start_step, desc=desc, disable=not progress, leave=False)
    rate = _Rate(start_step)
    if start_step:
        tracking.restart("train", start_step + 1)  # the interrupted run may have logged past its saved state
    try:
        for step in range(start_step + 1, config.train_steps + 1):
            loss = trainee.step(step, last=step == config.train_steps)
            if step % LOG_EVERY == 0 or step == config.train_steps:  # a short training is logged too
                last = loss.mean().item()
                bar.set_postfix(loss=f"{last:.4f}")
                if tracking.logging("train"):
                    tracking.log("train", trainee.scalars(loss, rate(step)), step)
            tracking.progress("train", step, config.train_steps)
            seconds = seconds_before + time.perf_counter() - start
            if save_states and config.snapshot_every and step % config.snapshot_every == 0 \
                    and step < config.train_steps:  # the last one is the model itself
                trainee.snapshot(step, seconds, loss)
            if save_states and config.checkpoint_every and step % config.checkpoint_every == 0 \
                    and step < config.train_steps:
                trainee.checkpoint(step, seconds)
            bar.update()
    finally:
        trainee.wait()  # a state being written lands before an error goes up
        bar.close()
    return loss, seconds_before + time.perf_counter() - start


class _OneSeed:
    """One network's updates, as `run_updates` drives them: minibatch indices drawn, the update, the
    EMA and `after_step`; its snapshots and training states."""

    def __init__(self, update: Update, index: torch.Tensor, n_items: int, generator: torch.Generator,
                 net: nn.Module, owner: nn.Module, ema: EMA | None, optimiser: torch.optim.Optimizer,
                 after_step: Callable[[int], None] | None, state_path: Path | None):
        self.update, self.index, self.n_items, self.generator = update, index, n_items, generator
        self.net, self.owner, self.ema, self.optimiser = net, owner, ema, optimiser
        self.after_step, self.state_path, self.writer = after_step, state_path, StateWriter()

    def step(self, step: int, last: bool) -> torch.Tensor:
        draw_index(self.n_items, self.generator, out=self.index)
        loss = self.update(last=last)
        if self.ema is not None:
            self.ema.update(self.net, step, last=last)
        if self.after_step is not None:
            self.after_step(step)
        return loss

    def scalars(self, loss: torch.Tensor, updates_per_s: float) -> dict[str, float]:
        return _training_scalars(loss.item(), self.net, self.ema, self.optimiser, updates_per_s)

    def snapshot(self, step: int, seconds: float, loss: torch.Tensor) -> None:
        report = FitReport(steps=step, seconds=seconds, loss=loss.item())
        save_snapshot(snapshot_path(self.state_path, step), self.owner, self.net, self.ema and self.ema.model, report)

    def checkpoint(self, step: int, seconds: float) -> None:
        self.writer.submit(self.state_path, training_state(step, seconds, self.owner, self.ema and self.ema.model,
                                                           self.optimiser.state_dict(), rng_state(self.generator)))

    def wait(self) -> None:
        self.writer.wait()


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


class Update:
    """One update (forward, backward, Adam) on the minibatch of item indices in `index`. With
    `graphed`, the first `GRAPH_WARMUP` updates run eagerly on a side stream (as capture requires),
    the next is captured once as a CUDA graph, and every later one replays it: the same kernels on
    the same buffers, without a launch from Python per operation. The gradients are None at capture,
    so each replay writes them afresh; the loss is the graph's output tensor, rewritten each replay.
    `precision`: fp32, bf16 or tf32 (`precision.update_modes`)."""

    def __init__(self, loss_fn: Callable[[torch.Tensor], torch.Tensor], optimiser: torch.optim.Optimizer,
                 index: torch.Tensor, precision: str, graphed: bool, desc: str):
        self.loss_fn, self.optimiser, self.index = loss_fn, optimiser, index
        self.forward_mode, self.update_mode = update_modes(precision, index.device, graphed)
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
        with self.update_mode:
            with self.forward_mode:
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


