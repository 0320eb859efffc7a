"""How a training's arithmetic is done: fp32, bf16 autocast or TF32 matmuls, and what each device can do."""

from __future__ import annotations

import contextlib
import warnings

import torch

from wmbench.errors import UsageError

TRAIN_PRECISIONS = ("fp32", "bf16", "tf32")


def warn_if_bf16_is_emulated(device: torch.device | str, precision: str) -> None:
    """bf16 on a CPU without AVX512-BF16 or AMX is emulated: measured on an AVX2 EPYC, a bf16 matmul
    ran at 0.8 GFLOP/s against 50 in fp32. Say so rather than let a run crawl."""
    if precision != "bf16" or torch.device(device).type != "cpu":
        return
    cpu = torch.cpu
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    if not any(getattr(cpu, check, lambda: False)() for check in checks):
        warnings.warn("this CPU has no bf16 matrix units (AVX512-BF16 or AMX): bf16 is emulated and far slower "
                      "than fp32 here; use fp32 on this machine", stacklevel=2)


def check_training_precision(precision: str, device: torch.device | str) -> None:
    """One clear line, before any work, for a training precision this device does not have."""
    if precision == "tf32" and torch.device(device).type != "cuda":
        raise UsageError("precision = tf32 is a CUDA feature (TensorFloat-32 matmuls); on a CPU train in fp32 "
                         "(or bf16 where the CPU has bf16 units)")


def update_modes(precision: str, device: torch.device, graphed: bool):
    """The contexts of one training update: (around its forward, around all of it). bf16 autocast
    wraps the forward alone (autograd runs each operation's backward in the dtype its forward used;
    its weight cache cannot live across CUDA graph replays). TF32 is a global switch read as each
    matmul launches, so it wraps the backward as well, which holds two thirds of the matmul work."""
    if precision == "tf32":
        return contextlib.nullcontext(), TF32()
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16", cache_enabled=not graphed)
    return autocast, contextlib.nullcontext()


class TF32:
    """TF32 matmuls and convolutions on CUDA inside the block, the settings restored after (reusable,
    like an autocast: entered for every update)."""

    def __enter__(self) -> None:
        self.saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True

    def __exit__(self, *exc) -> None:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = self.saved
