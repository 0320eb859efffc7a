"""Where a batched update's time goes (device diagnostics): per update, the eager draws (minibatches,
noise; seed by seed) against the update itself (the CUDA graph), each timed with a synchronisation,
for K = 1, 3, 6 seeds of PolyGRAD at the paper's sizes; and the plain batched rate without timing."""

import sys
import time

import torch

import wmbench.sections  # noqa: F401
from wmbench.cells import model_config
from wmbench.envs import get_env
from wmbench.models import seeds, training
from wmbench.models.base import get_model_class
from wmbench.models.flops import synthetic_seeds_fitter

times = {}


def timed(name, fn):
    def wrapper(*args, **kwargs):
        torch.cuda.synchronize()
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        torch.cuda.synchronize()
        times[name] = times.get(name, 0.0) + time.perf_counter() - start
        return out
    return wrapper


def main() -> None:
    name = sys.argv[1] if len(sys.argv) > 1 else "polygrad"
    cls, spec = get_model_class(name), get_env("hopper")
    config = model_config(cls, "paper", 10, (), spec.name)
    plain_draw, plain_update = seeds._Batched._draw, training.Update.__call__
    for k in (1, 3, 6):
        fit = synthetic_seeds_fitter(cls, config, spec, "cuda", k)
        fit(20)
        torch.cuda.synchronize()
        start = time.perf_counter()
        fit(520)
        torch.cuda.synchronize()
        whole = time.perf_counter() - start
        seeds._Batched._draw, training.Update.__call__ = timed("draw", plain_draw), timed("update", plain_update)
        times.clear()
        fit(520)
        seeds._Batched._draw, training.Update.__call__ = plain_draw, plain_update
        print(f"{name} K={k}: {whole / 520 * 1e3:.2f} ms per update untimed (setup included); synchronised: draws "
              f"{times['draw'] / 520 * 1e3:.3f} ms, update {times['update'] / 520 * 1e3:.3f} ms", flush=True)


if __name__ == "__main__":
    main()
