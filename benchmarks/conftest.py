"""Benchmark modes: `WMBENCH_BENCH_MODE=short` (CI: h = 10, one timed round) or `full` (h = 10 and
50, three rounds; `WMBENCH_BENCH_HORIZONS=10,50,200` for the long ones, minutes for ar-diffusion).
Compare rows of one run as ratios; never assert wall-clock limits."""

import os

from wmbench.models.base import available_models

MODE = os.environ.get("WMBENCH_BENCH_MODE", "full")
if MODE not in ("short", "full"):
    raise ValueError(f"WMBENCH_BENCH_MODE must be short or full, got {MODE!r}")
HORIZONS = [int(h) for h in os.environ.get("WMBENCH_BENCH_HORIZONS", "10" if MODE == "short" else "10,50").split(",")]
ROUNDS = 1 if MODE == "short" else 3
MODELS = sorted(available_models())
