"""Wall-clock timing done right: warm up first, and wait for the GPU before reading the clock."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Callable, Iterator, TypeVar

import torch

T = TypeVar("T")


def synchronise(device: torch.device | str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], T], device: torch.device | str = "cpu") -> tuple[T, float]:
    """`(fn(), seconds)`, with the device's queued work finished before and after."""
    synchronise(device)
    start = time.perf_counter()
    result = fn()
    synchronise(device)
    return result, time.perf_counter() - start


class Stopwatch:
    """Wall-clock seconds per named stage: `with watch("oracle"): ...` (repeated stages add up)."""

    def __init__(self, device: torch.device | str = "cpu"):
        self.device, self.seconds = device, {}

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        synchronise(self.device)
        start = time.perf_counter()
        try:
            yield
        finally:
            synchronise(self.device)
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start
