"""Seeds trained together: before a sweep evaluates its cells, the cells that differ only in their
seed train their models as one batched network (`wmbench.models.seeds.fit_seeds`), each saved where
that seed's own evaluation looks for it, which then loads it as if it had trained it alone.

On by default with `--device cuda` (`--no-batch-seeds` turns it off), off on a CPU (`--batch-seeds`
turns it on). Measured at the paper's sizes on an H200 (`bench --train --seeds 3`): 3 PolyGRAD
seeds as one network gave 1.34x the throughput of one seed at a time, while 3 trainings in separate
processes sharing the card gave 0.99x (`benchmarks/share_gpu.py`, 10,000 updates each); on this
2-core CPU stacking gave 1.18x for PolyGRAD and 0.75x for the two-row model. Only diffusion models
train this way; the others train in their cells as before. The batched training logs to no cell's run.
"""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path
from typing import Callable, NamedTuple

import torch

from wmbench.cells import (
    EvalRequest,
    cell_of,
    checkpoint_path,
    eval_config,
    model_config,
    resolve_device,
    snapshot_steps,
)
from wmbench.evaluate import prepare_inputs
from wmbench.models.base import get_model_class
from wmbench.models.diffusion import TrainsAsDenoiser
from wmbench.models.seeds import fit_seeds
from wmbench.models.states import snapshot_path, training_state_path
from wmbench.paths import file_lock


def batch_by_default(requests: list[EvalRequest]) -> bool:
    """Seeds train together where that is faster: on a GPU."""
    return any(r.device.startswith("cuda") for r in requests)


def train_seed_batches(requests: list[EvalRequest], progress: bool, say: Callable[[str], None]) -> int:
    """Train the untrained models of every group of requests that differ only in their seed, each
    group as one network; the number of models trained."""
    groups: dict[EvalRequest, dict[Path, _Plan]] = {}
    for request in requests:
        if not issubclass(get_model_class(request.model), TrainsAsDenoiser):
            continue
        plan = _Plan.of(request)
        if plan.config.precision != "bf16":  # bf16 seeds train in their cells, one at a time
            # what the model does not depend on (the seed aside) joins groups; one request per checkpoint
            trains = dataclasses.replace(request, seed=0, log=None, n_trajectories=None, policy="", policy_std=0.0)
            groups.setdefault(trains, {}).setdefault(plan.path, plan)
    trained = 0
    for group in groups.values():
        todo = [plan for plan in group.values() if plan.untrained()]
        if len(todo) > 1:
            trained += _train_together(todo, progress, say)
    return trained


class _Plan(NamedTuple):
    """What a cell's evaluation would train: its model's config and checkpoint, and the snapshot steps."""

    request: EvalRequest
    config: object
    path: Path
    steps: list[int]

    @classmethod
    def of(cls, request: EvalRequest) -> _Plan:
        cell, model_cls = cell_of(request), get_model_class(request.model)
        config = model_config(model_cls, request.profile, cell.horizon, request.overrides, cell.env)
        eval_every = eval_config(request).eval_every
        steps = snapshot_steps(config, eval_every)
        if steps:
            config = dataclasses.replace(config, snapshot_every=eval_every)
        return cls(request, config, checkpoint_path(model_cls, cell, request.overrides, request.profile), steps)

    def untrained(self) -> bool:
        """Whether the cell's evaluation would train its model (no checkpoint, or a snapshot missing)."""
        state_path = training_state_path(self.path)
        return not self.path.is_file() or any(not snapshot_path(state_path, step).is_file() for step in self.steps)


def _train_together(plans: list[_Plan], progress: bool, say: Callable[[str], None]) -> int:
    device = resolve_device(plans[0].request.device)
    with contextlib.ExitStack() as locks:
        members = []
        for plan in plans:
            request, cell = plan.request, cell_of(plan.request)
            locks.enter_context(file_lock(plan.path.with_name(f".{plan.path.name}.lock")))
            if not plan.untrained():  # trained meanwhile by another process
                continue
            train, _, _ = prepare_inputs(cell.env, cell.dataset, request.profile, request.overrides, cell.policy,
                                         make_missing=True, progress=progress, say=say, seed=request.seed)
            torch.manual_seed(request.seed)  # as its own training would: the weights, then the loss's draws
            model = get_model_class(request.model)(train.obs_dim, train.act_dim, plan.config).to(device)
            members.append((plan.path, model, model.denoiser_training(train), request.seed, _global_stream(device)))
        if not members:
            return 0
        first = plans[0].request
        say(f"training {first.model} on {first.env} (h={first.horizon}) for seeds "
            f"{', '.join(str(m[3]) for m in members)} as one network")
        fit_seeds([m[2] for m in members], [torch.Generator(device).manual_seed(m[3]) for m in members],
                  [m[4] for m in members], [training_state_path(m[0]) for m in members], progress=progress)
        for path, model, *_ in members:
            model.save(path)
    return len(members)


def _global_stream(device: str) -> torch.Generator:
    """A generator standing where torch's global one of `device` stands now."""
    generator = torch.Generator(device)
    if torch.device(device).type == "cuda":
        generator.set_state(torch.cuda.get_rng_state(device))
    else:
        generator.set_state(torch.get_rng_state())
    return generator
