"""Exponential moving average of a module's weights, the copy used for generation."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """Every `every` steps from step `start` on, `ema = decay * ema + (1 - decay) * weights`
    (before `start`, the average is a plain copy), as in the PolyGRAD code."""

    def __init__(self, model: nn.Module, decay: float = 0.99, every: int = 10, start: int = 2000):
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay, self.every, self.start = decay, every, start

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        if step % self.every:
            return
        decay = 0.0 if step < self.start else self.decay
        for ema_p, p in zip(self.model.parameters(), model.parameters()):
            ema_p.lerp_(p, 1.0 - decay)
        for ema_b, b in zip(self.model.buffers(), model.buffers()):
            ema_b.copy_(b)
