"""Several seeds of one diffusion model trained as one batched network (`fit_seeds`).

A GPU runs one PolyGRAD update at width 1024 far below its capacity: each matmul is too small to
fill it. Stacked, K seeds' weights make every matmul a batched one of K times the work (measured on
an H200 at the paper's sizes: 2.2 ms per update of 3 seeds against 0.99 ms for one, 1.34x the
throughput; `wmbench bench --train --seeds 3`). Each seed keeps what makes it that seed: its own
generator for minibatch indices, its own stream for the loss's draws (diffusion steps and noise: the
state torch's global generator had when its own training would have started), its own EMA, its own
snapshots and training states in the single-seed format, so a later single-seed run finds and
continues them. The draws are made eagerly, seed by seed, in the order a single training makes them,
and copied into fixed buffers; the deterministic rest (forward, backward, one Adam over the stacked
weights) is what a CUDA graph replays. Adam and the EMA are elementwise, so stacking changes nothing
there; the batched matmuls round differently, so a seed's weights equal its own training's to float
tolerance, not bitwise.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch.func import functional_call, stack_module_state, vmap

from wmbench.errors import UsageError
from wmbench.models.base import FitReport
from wmbench.models.diffusion.fit import DenoiserTraining
from wmbench.models.precision import check_training_precision
from wmbench.models.states import (
    StateWriter,
    read_training_state,
    rng_state,
    save_snapshot,
    snapshot_path,
    training_state,
)
from wmbench.models.training import EMA, TrainResult, Update, draw_index, run_updates


def fit_seeds(trainings: list[DenoiserTraining], generators: list[torch.Generator], noise: list[torch.Generator],
              state_paths: list[Path | None], *, progress: bool = True) -> list[FitReport]:
    """Train each seed's `DenoiserTraining` (one model class and config; `generators[k]` draws seed
    k's minibatches and `noise[k]` its loss's draws, on the training device), all as one network;
    each seed's fit report. Seeds whose saved training states stand at different steps train in
    groups, one per step."""
    first = trainings[0]
    if any(type(t.model) is not type(first.model) or t.config != first.config for t in trainings):
        raise ValueError("seeds train together only with one model class and one config")
    states = [None if p is None or not p.is_file() else read_training_state(p) for p in state_paths]
    steps = [0 if state is None else int(state["step"]) for state in states]
    reports: list[FitReport | None] = [None] * len(trainings)
    for step in sorted(set(steps)):
        group = [k for k, s in enumerate(steps) if s == step]
        pick = lambda items: [items[k] for k in group]  # noqa: E731
        for k, report in zip(group, _fit_group(pick(trainings), pick(generators), pick(noise), pick(state_paths),
                                                pick(states), progress)):
            reports[k] = report
    return reports


def _fit_group(trainings, generators, noise, state_paths, states, progress) -> list[FitReport]:
    """Seeds whose saved states (None: none) stand at one step, trained together from there."""
    config, device = trainings[0].config, next(trainings[0].denoiser.parameters()).device
    check_training_precision(config.precision, device)
    if config.precision == "bf16":
        raise UsageError("seeds train together in fp32 or tf32; train bf16 seeds one at a time (no --batch-seeds)")
    emas = [EMA(t.denoiser, config.ema_decay, config.ema_every, config.ema_start) for t in trainings]
    start_step, seconds_before = 0, 0.0
    for training, ema, state in zip(trainings, emas, states):
        if state is not None:
            training.model.load_state_dict(state["owner"])
            ema.model.load_state_dict(state["ema"])
            start_step, seconds_before = int(state["step"]), float(state["seconds"])
    batch = _Batched(trainings, emas, generators, noise, state_paths, config, device)
    if states[0] is not None:
        batch.restore([s["optimiser"] for s in states], [s["rng"] for s in states])
    desc = f"{trainings[0].desc} x {len(trainings)} seeds"
    losses, seconds = run_updates(batch, config, start_step, seconds_before, desc, progress)
    reports = []
    for k, (training, ema, path) in enumerate(zip(trainings, emas, state_paths)):
        training.denoiser.load_state_dict(ema.model.state_dict())
        training.denoiser.eval()
        if path is not None:
            path.unlink(missing_ok=True)  # finished: the caller saves the model itself
        loss = float("nan") if losses is None else float(losses[k])
        reports.append(training.finish(TrainResult(loss, seconds, start_step)))
    return reports


class _Batched:
    """K seeds' updates as `run_updates` drives them (the counterpart of `training._OneSeed`)."""

    def __init__(self, trainings: list[DenoiserTraining], emas: list[EMA], generators, noise, state_paths,
                 config, device: torch.device):
        self.trainings, self.emas, self.generators, self.noise = trainings, emas, generators, noise
        self.state_paths, self.device = state_paths, device
        self.state_path = state_paths[0]  # run_updates saves states when the seeds have paths
        for training in trainings:
            training.denoiser.train()
        self.params, self.buffers = stack_module_state([t.denoiser for t in trainings])
        # each seed's slices of the stacked tensors (views: they follow the in-place updates), for its EMA
        self.seed_params = [[p[k] for p in self.params.values()] for k in range(len(trainings))]
        self.seed_buffers = [[b[k] for b in self.buffers.values()] for k in range(len(trainings))]
        template = copy.deepcopy(trainings[0].denoiser).to("meta")
        compute = trainings[0].loss.compute  # the same settings: any seed's model computes any seed's loss

        def one_seed(params, buffers, inputs, draws):
            return compute(lambda *args: functional_call(template, (params, buffers), args), inputs, draws)

        self.losses_of = vmap(one_seed)
        graphed = config.cuda_graph and device.type == "cuda" and not config.compile
        fused = {"fused": True, "capturable": graphed} if device.type == "cuda" else {"foreach": True}
        self.optimiser = torch.optim.Adam(list(self.params.values()), lr=config.lr, **fused)
        self.inputs: list[torch.Tensor] | None = None  # the stacked minibatches and draws, fixed buffers
        self.draws: list[torch.Tensor] | None = None
        self.member_losses: torch.Tensor | None = None
        index = torch.empty(len(trainings), config.batch_size, dtype=torch.long, device=device)
        self.index, self.update = index, Update(self._loss, self.optimiser, index, config.precision, graphed, "seeds")
        self.writers = [StateWriter() for _ in trainings]

    def _loss(self, _index: torch.Tensor) -> torch.Tensor:
        losses = self.losses_of(self.params, self.buffers, tuple(self.inputs), tuple(self.draws))
        self.member_losses = losses.detach()  # in a CUDA graph: its output, rewritten at each replay
        return losses.sum()  # each seed's gradient is that of its own loss

    @torch.no_grad()
    def _draw(self) -> None:
        """Each seed's minibatch and loss draws, in its own training's order, into the fixed buffers."""
        inputs, draws = [], []
        for k, training in enumerate(self.trainings):
            draw_index(training.loss.n_items, self.generators[k], out=self.index[k])
            inputs.append(training.loss.inputs(self.index[k]))
            draws.append(training.loss.draws(inputs[-1], self.noise[k]))
        if self.inputs is None:
            self.inputs, self.draws = [torch.stack(x) for x in zip(*inputs)], [torch.stack(x) for x in zip(*draws)]
            return
        for buffer, parts in zip([*self.inputs, *self.draws], [*zip(*inputs), *zip(*draws)]):
            torch.stack(parts, out=buffer)

    def step(self, step: int, last: bool) -> torch.Tensor:
        self._draw()
        self.update(last=last)
        for ema, parameters, buffers in zip(self.emas, self.seed_params, self.seed_buffers):
            ema.update_from(parameters, buffers, step, last)
        return self.member_losses

    def scalars(self, losses: torch.Tensor, updates_per_s: float) -> dict[str, float]:
        values = {"loss": losses.mean().item(), "updates_per_s": updates_per_s,
                  "lr": float(self.optimiser.param_groups[0]["lr"])}
        return values | {f"loss_seed{k}": float(v) for k, v in enumerate(losses.tolist())}

    @torch.no_grad()
    def _unstack(self) -> None:
        """Each seed's network given its slice of the stacked weights."""
        for training, parameters in zip(self.trainings, self.seed_params):
            for value, stacked in zip(training.denoiser.parameters(), parameters, strict=True):
                value.copy_(stacked)

    def snapshot(self, step: int, seconds: float, losses: torch.Tensor) -> None:
        self._unstack()
        for k, (training, ema) in enumerate(zip(self.trainings, self.emas)):
            report = FitReport(steps=step, seconds=seconds, loss=float(losses[k]))
            path = snapshot_path(self.state_paths[k], step)
            save_snapshot(path, training.model, training.denoiser, ema.model, report)

    def checkpoint(self, step: int, seconds: float) -> None:
        self._unstack()
        optimiser = self.optimiser.state_dict()
        for k, (training, ema, writer) in enumerate(zip(self.trainings, self.emas, self.writers)):
            state = {i: {key: v if key == "step" else v[k] for key, v in s.items()}
                     for i, s in optimiser["state"].items()}
            writer.submit(self.state_paths[k], training_state(step, seconds, training.model, ema.model,
                                                              {**optimiser, "state": state}, self._rng(k)))

    def _rng(self, k: int) -> dict:
        """Seed k's random state as its own training would save it: its loss draws come from torch's
        global generator of the training device."""
        state = rng_state(self.generators[k])
        if self.device.type == "cuda":
            state["cuda"][self.device.index or 0] = self.noise[k].get_state()
        else:
            state["cpu"] = self.noise[k].get_state()
        return state

    def restore(self, optimisers: list[dict], rngs: list[dict]) -> None:
        """Continue from the seeds' saved training states (their models, hence the stacked weights, and
        their EMAs are loaded already)."""
        first = optimisers[0]
        state = {i: {key: v if key == "step" else torch.stack([o["state"][i][key] for o in optimisers])
                     for key, v in s.items()} for i, s in first["state"].items()}
        self.optimiser.load_state_dict({**first, "state": state})
        for k, rng in enumerate(rngs):
            self.generators[k].set_state(rng["generator"])
            own = rng["cuda"][self.device.index or 0] if self.device.type == "cuda" else rng["cpu"]
            self.noise[k].set_state(own)

    def wait(self) -> None:
        for writer in self.writers:
            writer.wait()

