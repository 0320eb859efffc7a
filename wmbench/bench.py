"""`wmbench bench`: generation cost per model, held against this machine's own matmul peak.

Weights do not change a model's cost, so the models are built untrained at the profile's sizes
(no data, no fitting) under an untrained policy of the profile's width. For each model and horizon:
the median wall-clock time of `rollout` over repeats (after a warm-up), transitions per second, the
FLOPs of one rollout counted by `torch.utils.flop_counter.FlopCounterMode` (matmuls, convolutions
and attention: the work that can run at the peak), the GFLOP/s that achieves and its fraction of a
dense square matmul's GFLOP/s measured in the same run. Diffusion models also get the same numbers
for one denoiser pass at the rollout's batch, captured from the rollout itself. Rows go to the
results store under the dataset `bench`, outside the evaluation figures.
"""

from __future__ import annotations

import contextlib
import dataclasses
import statistics
from dataclasses import dataclass

import pandas as pd
import torch

from wmbench.cells import PRECISIONS, model_config, resolve_device
from wmbench.config import build_config, canonical_overrides, config_hash, profile_label
from wmbench.envs import get_env
from wmbench.errors import UsageError
from wmbench.models.base import WorldModel, get_model_class
from wmbench.models.diffusion import TrainsAsDenoiser
from wmbench.models.flops import count_flops, synthetic_fitter, synthetic_seeds_fitter, training_flop_per_update
from wmbench.models.precision import TF32, TRAIN_PRECISIONS, check_training_precision
from wmbench.policy import GaussianPolicy, PolicyConfig
from wmbench.provenance import provenance
from wmbench.results import BENCH_DATASET, Cell, ResultsStore
from wmbench.timing import timed


def matmul_peak_gflops(device: str = "cpu", precision: str = "fp32", n: int = 2048, repeats: int = 5) -> float:
    """The best GFLOP/s of an n x n matmul: the ceiling a model's generation (or training) is held against."""
    dtype = torch.float32 if precision == "tf32" else PRECISIONS[precision]
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    with TF32() if precision == "tf32" else contextlib.nullcontext():
        torch.mm(a, b)
        best = min(timed(lambda: torch.mm(a, b), device)[1] for _ in range(repeats))
    return 2 * n ** 3 / best / 1e9


@dataclass
class Measurement:
    seconds: float
    flop: int
    transitions: int

    @property
    def gflops(self) -> float:
        return self.flop / self.seconds / 1e9

    def rows(self, prefix: str, horizon: int, peak: float) -> list[tuple[str, int, float]]:
        rows = [(f"{prefix}gflop", horizon, self.flop / 1e9), (f"{prefix}gflops_achieved", horizon, self.gflops),
                (f"{prefix}peak_fraction", horizon, self.gflops / peak)]
        if prefix:
            rows.append((f"{prefix}time_s", horizon, self.seconds))
        if self.transitions:
            rows.append((f"{prefix}transitions_per_s", horizon, self.transitions / self.seconds))
        return rows


def _measure(fn, device: str, repeats: int, transitions: int, autocast) -> Measurement:
    with autocast():
        fn()  # warm-up
        seconds = statistics.median(timed(fn, device)[1] for _ in range(repeats))
        flop = count_flops(fn)
    return Measurement(seconds, flop, transitions)


def _start(models: list[str], env: str, device: str, precision: str, say,
           precisions: tuple[str, ...] = tuple(PRECISIONS)) -> tuple[str, str, float]:
    """Check the inputs (a typo fails before anything is measured), then measure the matmul peak:
    `(device, env, peak GFLOP/s)`."""
    if precision not in precisions:
        raise UsageError(f"unknown precision {precision!r}; choose one of: {', '.join(precisions)}")
    for name in models:
        get_model_class(name)
    device, env = resolve_device(device), get_env(env).name
    check_training_precision(precision, device)
    peak = matmul_peak_gflops(device, precision)
    say(f"dense {precision} matmul peak on {provenance(device)['device']}: {peak:.1f} GFLOP/s")
    return device, env, peak


def _store(store: ResultsStore, rows: list, *, name: str, env: str, kind: str, profile: str,
           overrides: tuple[str, ...], horizon: int, precision: str, device: str, batch: int) -> pd.DataFrame:
    """Write one model's bench rows as a cell of dataset `bench` (policy `kind`); returns them."""
    config = model_config(get_model_class(name), profile, horizon, overrides, env)
    cell = Cell(name, env, BENCH_DATASET, kind, profile_label(profile), horizon, seed=0, precision=precision,
                config_hash=config_hash(config))
    table = pd.DataFrame(rows, columns=["metric", "step", "value"]).assign(
        n_trajectories=batch, overrides=canonical_overrides(overrides, {name}), **provenance(device))
    store.write(cell, table)
    return table.assign(model=name, horizon=horizon)


def build_untrained(name: str, env: str, horizon: int, *, batch: int = 256, profile: str = "quick",
                    overrides: tuple[str, ...] = (),
                    device: str = "cpu") -> tuple[WorldModel, GaussianPolicy, torch.Tensor]:
    """A model and a policy at the profile's sizes with seeded random weights, and `batch` start states."""
    spec, cls = get_env(env), get_model_class(name)
    torch.manual_seed(0)
    model = cls(spec.obs_dim, spec.act_dim, model_config(cls, profile, horizon, overrides, spec.name)).to(device).eval()
    model.check_horizon(horizon)
    policy_config = build_config(PolicyConfig, profile, "policy", overrides)
    policy = GaussianPolicy(spec.obs_dim, spec.act_dim, policy_config.hidden, policy_config.min_std)
    return model, policy.to(device).eval(), torch.randn(batch, spec.obs_dim, device=device)


def bench_model(name: str, env: str, horizon: int, *, batch: int = 256, profile: str = "quick",
                overrides: tuple[str, ...] = (), device: str = "cpu", precision: str = "fp32",
                repeats: int = 3) -> dict[str, Measurement]:
    """`{"rollout": ..., "denoiser": ... (diffusion models)}` for one model at one horizon."""
    model, policy, init = build_untrained(name, env, horizon, batch=batch, profile=profile, overrides=overrides,
                                          device=device)
    autocast = lambda: torch.autocast(torch.device(device).type, dtype=torch.bfloat16,  # noqa: E731
                                      enabled=precision == "bf16")

    def rollout():
        return model.rollout(init, policy, horizon, generator=torch.Generator(device).manual_seed(0))

    out = {"rollout": _measure(rollout, device, repeats, batch * horizon, autocast)}
    denoiser = getattr(model, "denoiser", None)
    if isinstance(denoiser, torch.nn.Module):
        captured = {}
        hook = denoiser.register_forward_pre_hook(lambda _module, args: captured.setdefault("args", args))
        with autocast(), torch.inference_mode():
            rollout()
        hook.remove()
        args = captured["args"]

        @torch.inference_mode()
        def one_pass():
            return denoiser(*args)

        out["denoiser"] = _measure(one_pass, device, max(repeats, 10), 0, autocast)
    return out


def run_bench(models: list[str], horizons: list[int], *, env: str = "halfcheetah", batch: int = 256,
              profile: str = "quick", overrides: tuple[str, ...] = (), device: str = "cpu", precision: str = "fp32",
              repeats: int = 3, store: ResultsStore | None = None, say=print) -> pd.DataFrame:
    """Measure every (model, horizon), store the rows and return them (one row per measurement)."""
    device, env, peak = _start(models, env, device, precision, say)
    store = store or ResultsStore()
    tables = []
    for name in models:
        for horizon in horizons:
            measured = bench_model(name, env, horizon, batch=batch, profile=profile, overrides=overrides,
                                   device=device, precision=precision, repeats=repeats)
            rows = [("gen_time_s", horizon, measured["rollout"].seconds), ("peak_gflops", horizon, peak)]
            for kind, m in measured.items():
                rows += m.rows("" if kind == "rollout" else f"{kind}_", horizon, peak)
            tables.append(_store(store, rows, name=name, env=env, kind="untrained", profile=profile,
                                 overrides=overrides, horizon=horizon, precision=precision, device=device, batch=batch))
            line = f"{name:>22} h={horizon:<4} rollout {measured['rollout'].seconds:8.4f} s " \
                   f"{measured['rollout'].gflops:7.1f} GFLOP/s ({measured['rollout'].gflops / peak:.0%} of peak)"
            if "denoiser" in measured:
                denoiser = measured["denoiser"].gflops
                line += f" | denoiser pass {denoiser:.1f} GFLOP/s ({denoiser / peak:.0%})"
            say(line)
    return pd.concat(tables, ignore_index=True)


def bench_training(name: str, env: str, horizon: int, *, profile: str = "quick", overrides: tuple[str, ...] = (),
                   device: str = "cpu", precision: str = "fp32", updates: int = 50, warmup: int = 10,
                   seeds: int = 1) -> tuple[Measurement, float]:
    """`(one update, final loss)`: training at the profile's sizes (batch, width) on a synthetic dataset
    of the env's dimensions; with `seeds` > 1, that many seeds trained as one network (an update then
    updates every seed; the loss is the first seed's). Time and FLOPs are the difference between a
    training of `warmup` and one of `warmup + updates` updates, so that setup, compilation and warm-up
    cancel out."""
    spec, cls = get_env(env), get_model_class(name)
    config = model_config(cls, profile, horizon, overrides, spec.name)
    if precision != "fp32":
        if not hasattr(config, "precision"):
            raise UsageError(f"{name} trains in fp32 only (its config has no precision field)")
        config = dataclasses.replace(config, precision=precision)
    fit = synthetic_fitter(cls, config, spec, device) if seeds == 1 else \
        synthetic_seeds_fitter(cls, config, spec, device, seeds)
    fit(warmup)  # caches, kernels, allocator
    trained, seconds = timed(lambda: fit(warmup + updates), device)
    seconds -= timed(lambda: fit(warmup), device)[1]
    flop = training_flop_per_update(cls, config, spec, device, warmup, counted=min(updates, 5)) * seeds
    model = trained if seeds == 1 else trained[0]
    return Measurement(seconds / updates, flop, 0), model.fit_report.loss


def run_train_bench(models: list[str], horizons: list[int], *, env: str = "halfcheetah", profile: str = "quick",
                    overrides: tuple[str, ...] = (), device: str = "cpu", precision: str = "fp32",
                    updates: int = 50, seeds: int = 1, store: ResultsStore | None = None, say=print) -> pd.DataFrame:
    """Time per training update of every (model, horizon), stored as `train_*` rows; with `seeds` > 1
    also `seeds` seeds of each diffusion model as one network (`train_seeds_*` rows) and its
    throughput against one seed at a time (`train_seeds_speedup`), measured in the same run."""
    device, env, peak = _start(models, env, device, precision, say, TRAIN_PRECISIONS)
    store = store or ResultsStore()
    tables = []
    for name in models:
        if precision != "fp32" and not hasattr(model_config(get_model_class(name), profile, 10, overrides),
                                               "precision"):
            say(f"{name:>22} skipped: it trains in fp32 only")
            continue
        for horizon in horizons:
            timing = dict(profile=profile, overrides=overrides, device=device, precision=precision, updates=updates)
            update, loss = bench_training(name, env, horizon, **timing)
            rows = [("train_update_s", horizon, update.seconds), ("train_updates_per_s", horizon, 1 / update.seconds),
                    ("train_gflop", horizon, update.flop / 1e9), ("train_gflops_achieved", horizon, update.gflops),
                    ("train_peak_fraction", horizon, update.gflops / peak), ("peak_gflops", horizon, peak),
                    ("train_loss", horizon, loss)]
            say(f"{name:>22} h={horizon:<4} {precision} training: {update.seconds * 1e3:8.2f} ms/update "
                f"({1 / update.seconds:7.1f} updates/s), {update.gflops:8.1f} GFLOP/s "
                f"({update.gflops / peak:.0%} of peak), loss after {updates + 10} updates {loss:.4g}")
            if seeds > 1 and issubclass(get_model_class(name), TrainsAsDenoiser):
                batched, _ = bench_training(name, env, horizon, seeds=seeds, **timing)
                speedup = seeds * update.seconds / batched.seconds
                rows += [("train_seeds", horizon, seeds), ("train_seeds_update_s", horizon, batched.seconds),
                         ("train_seeds_speedup", horizon, speedup)]
                say(f"{name:>22} h={horizon:<4} {precision} training of {seeds} seeds as one: "
                    f"{batched.seconds * 1e3:8.2f} ms/update, {batched.gflops:8.1f} GFLOP/s "
                    f"({batched.gflops / peak:.0%} of peak), {speedup:.2f}x the throughput of one seed at a time")
            tables.append(_store(store, rows, name=name, env=env, kind="training", profile=profile,
                                 overrides=overrides, horizon=horizon, precision=precision, device=device, batch=0))
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()


def ratio_rows(table: pd.DataFrame, slow: str = "ar-diffusion", fast: str = "polygrad") -> dict[int, float]:
    """Generation time of `slow` over `fast` per horizon measured for both."""
    times = table[table["metric"] == "gen_time_s"].pivot_table(index="horizon", columns="model", values="value")
    if slow not in times or fast not in times:
        return {}
    return {int(h): float(r) for h, r in (times[slow] / times[fast]).dropna().items()}


def matched(profile: str, a: str = "ar-diffusion", b: str = "polygrad") -> bool:
    """Whether two diffusion models share denoiser width and diffusion steps in a profile."""
    ca = model_config(get_model_class(a), profile, 10)
    cb = model_config(get_model_class(b), profile, 10)
    return (ca.width, ca.diffusion_steps, ca.blocks) == (cb.width, cb.diffusion_steps, cb.blocks)

