"""The minibatch training loop shared by the gradient-trained world models."""

from __future__ import annotations

import time
from typing import Callable, Iterable

import torch
from tqdm.auto import trange


def train_steps(
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    parameters: Iterable[torch.nn.Parameter],
    n_items: int,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    generator: torch.Generator,
    device: torch.device,
    desc: str,
    progress: bool = True,
    after_step: Callable[[int], None] | None = None,
) -> tuple[float, float]:
    """Adam on `loss_fn(indices)` for uniformly drawn minibatches of item indices.

    `after_step(step)` runs after each update (step counts from 1: EMA, tuning). Returns
    `(last loss, seconds)`.
    """
    optimiser = torch.optim.Adam(parameters, lr=lr)
    start, loss = time.perf_counter(), torch.tensor(float("nan"))
    bar = trange(steps, desc=desc, disable=not progress, leave=False)
    for step in bar:
        idx = torch.randint(0, n_items, (batch_size,), generator=generator).to(device)
        loss = loss_fn(idx)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        if after_step is not None:
            after_step(step + 1)
        if step % 100 == 0:
            bar.set_postfix(loss=f"{loss.item():.4f}")
    return loss.item(), time.perf_counter() - start
