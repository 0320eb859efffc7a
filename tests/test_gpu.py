"""Every command on CUDA (`gpu` marker: skipped without it; `make gpu-check` runs them), and a check
that runs everywhere: every random draw that takes a generator names a device, so a CUDA generator
is never handed to a CPU draw."""

import ast
import dataclasses
import os
import subprocess
import sys
import warnings

import pytest
import torch

from wmbench.bench import run_bench, run_train_bench
from wmbench.evaluate import model_config
from wmbench.models.base import available_models, get_model_class
from wmbench.models.training import GRAPH_WARMUP
from wmbench.paths import PACKAGE_ROOT
from wmbench.results import ResultsStore
from wmbench.sweep import grid, run_sweep
from wmbench.testing import LinearSystem

RANDOM_CALLS = {"randint", "randn", "rand", "randperm", "multinomial", "normal", "randn_like", "rand_like"}


def test_every_random_draw_with_a_generator_names_its_device():
    offenders = []
    for path in sorted(PACKAGE_ROOT.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in RANDOM_CALLS:
                keywords = {k.arg for k in node.keywords}
                if "generator" in keywords and "device" not in keywords:
                    offenders.append(f"{path.relative_to(PACKAGE_ROOT)}:{node.lineno}")
    assert not offenders, f"random draws with a generator but no device: {offenders}"


def cli(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "wmbench", *args], capture_output=True, text=True, timeout=600,
                          **kwargs)


@pytest.mark.gpu
@pytest.mark.parametrize("model", sorted(available_models()))
def test_evaluate_on_cuda(hopper_dataset, model):
    done = cli("evaluate", "--model", model, "--env", "hopper", "--profile", "smoke", "--horizon", "4",
               "--device", "cuda")
    assert done.returncode == 0, done.stderr
    table = ResultsStore().read(model=model, horizon=4)
    assert torch.cuda.get_device_name() in set(table["device"])
    assert table.loc[table["metric"] == "mse", "value"].notna().all()


@pytest.mark.gpu
def test_bf16_training_and_generation_on_cuda(hopper_dataset):
    done = cli("evaluate", "--model", "polygrad", "--env", "hopper", "--profile", "smoke", "--horizon", "4",
               "--device", "cuda", "--precision", "bf16", "--set", "polygrad.precision=bf16")
    assert done.returncode == 0, done.stderr


@pytest.mark.gpu
def test_tf32_training_on_cuda_lands_near_fp32_and_restores_the_setting():
    data = LinearSystem.random(3, 2, noise_std=0.01).dataset(episodes=20, length=30)
    cls = get_model_class("polygrad")
    before = torch.backends.cuda.matmul.allow_tf32

    def train(precision: str) -> dict:
        torch.manual_seed(0)
        config = dataclasses.replace(model_config(cls, "smoke", 4), train_steps=40, precision=precision)
        model = cls(3, 2, config).to("cuda")
        model.fit(data, generator=torch.Generator("cuda").manual_seed(0), progress=False)
        return {k: v.detach().float() for k, v in model.named_parameters()}

    fp32, tf32 = train("fp32"), train("tf32")
    assert torch.backends.cuda.matmul.allow_tf32 == before
    apart = max((fp32[k] - tf32[k]).abs().max().item() for k in fp32)
    assert 0 < apart < 0.05 * max(v.abs().max().item() for v in fp32.values()), apart


@pytest.mark.gpu
def test_bench_on_cuda(tmp_path):
    names = sorted(available_models())
    table = run_bench(names, [4], env="hopper", batch=16, profile="smoke", device="cuda", repeats=1,
                      store=ResultsStore(tmp_path), say=lambda m: None)
    assert set(table["model"]) == set(names)
    trained = run_train_bench(["polygrad", "ar-diffusion", "transformer"], [4], env="hopper", profile="smoke",
                              device="cuda", precision="bf16", updates=5, store=ResultsStore(tmp_path),
                              say=lambda m: None)
    assert (trained.loc[trained["metric"] == "train_update_s", "value"] > 0).all()
    assert (trained.loc[trained["metric"] == "train_gflop", "value"] > 0).all(), "FLOPs counted without the graph"


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["polygrad", "ar-diffusion", "ar-diffusion-2row", "transformer"])
def test_graphed_training_on_cuda_is_the_eager_training(name, monkeypatch):
    """The CUDA graph replays the eager update (same minibatches, same noise: the graph advances the
    default generator as the eager kernels do), so both trainings end at nearly the same weights."""
    data = LinearSystem.random(3, 2, noise_std=0.01).dataset(episodes=20, length=30)
    cls, updates = get_model_class(name), 40
    replays = []
    replay = torch.cuda.CUDAGraph.replay
    monkeypatch.setattr(torch.cuda.CUDAGraph, "replay", lambda graph: replays.append(1) or replay(graph))

    def train(graph: bool) -> dict:
        torch.manual_seed(0)
        config = dataclasses.replace(model_config(cls, "smoke", 4), train_steps=updates, cuda_graph=graph)
        model = cls(3, 2, config).to("cuda")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model.fit(data, generator=torch.Generator("cuda").manual_seed(0), progress=False)
        assert not [w for w in caught if "CUDA graph" in str(w.message) or "stream does not match" in str(w.message)]
        return {k: v.detach().float() for k, v in model.named_parameters()}

    torch.manual_seed(0)
    initial = {k: v.detach().cuda() for k, v in cls(3, 2, model_config(cls, "smoke", 4)).named_parameters()}
    eager = train(False)
    assert not replays
    graphed = train(True)
    assert len(replays) == updates - GRAPH_WARMUP
    moved = max((eager[k] - initial[k]).abs().max().item() for k in initial)
    apart = max((graphed[k] - eager[k]).abs().max().item() for k in eager)
    assert moved > 0 and apart < 0.05 * moved, (apart, moved)


@pytest.mark.gpu
def test_sweep_with_two_workers_on_cuda(hopper_dataset, tmp_path):
    requests = grid(["mlp-ensemble", "polygrad"], ["hopper"], [3], [0, 1], profile="smoke", device="cuda")
    outcome = run_sweep(requests, workers=2, store=ResultsStore(tmp_path), progress=False, say=lambda m: None)
    assert not outcome.failed and len(outcome.done) == 4


@pytest.mark.gpu
def test_resumed_training_on_cuda_continues_from_the_saved_step(hopper_dataset, tmp_path):
    env = {**os.environ, "WMBENCH_CACHE": str(tmp_path / "cache"), "WMBENCH_RESULTS": str(tmp_path / "results")}
    args = ("evaluate", "--model", "ar-diffusion", "--env", "hopper", "--profile", "smoke", "--device", "cuda",
            "--set", "ar-diffusion.train_steps=400", "--set", "ar-diffusion.checkpoint_every=100")
    probe = subprocess.Popen([sys.executable, "-m", "wmbench", *args], env=env, stderr=subprocess.PIPE, text=True)
    states = tmp_path / "cache"
    for _ in range(600):
        if list(states.glob("**/*.train-state.pt")) or probe.poll() is not None:
            break
        subprocess.run(["sleep", "0.1"])
    interrupted = bool(list(states.glob("**/*.train-state.pt")))
    probe.kill()
    probe.wait()
    done = cli(*args, env=env)
    assert done.returncode == 0, done.stderr
    assert ("resuming from" in done.stderr) == interrupted


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["polygrad", "ar-diffusion-2row"])
def test_seeds_trained_together_on_cuda_end_near_their_own_trainings(name, monkeypatch):
    """`fit_seeds` on CUDA (graphed) against each seed's own graphed training: the same minibatches and
    noise, so the same weights up to the GPU's rounding (the tolerance of the graphed-eager test)."""
    from wmbench.models.seeds import fit_seeds

    data = LinearSystem.random(3, 2, noise_std=0.01).dataset(episodes=20, length=30)
    cls, seeds, updates = get_model_class(name), (0, 1, 2), 40
    config = dataclasses.replace(model_config(cls, "smoke", 4), train_steps=updates)
    replays = []
    replay = torch.cuda.CUDAGraph.replay
    monkeypatch.setattr(torch.cuda.CUDAGraph, "replay", lambda graph: replays.append(1) or replay(graph))

    def make(seed: int):
        torch.manual_seed(seed)
        model = cls(3, 2, config).to("cuda")
        noise = torch.Generator("cuda")
        noise.set_state(torch.cuda.get_rng_state())
        return model, noise, {k: v.detach().clone() for k, v in model.named_parameters()}

    def weights(model) -> dict:
        return {k: v.detach().float() for k, v in model.named_parameters()}

    alone = []
    for seed in seeds:
        model, _, initial = make(seed)
        model.fit(data, generator=torch.Generator("cuda").manual_seed(seed), progress=False)
        alone.append((weights(model), initial))
    replays.clear()
    models, noise, _ = zip(*map(make, seeds))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit_seeds([m.denoiser_training(data) for m in models], [torch.Generator("cuda").manual_seed(s) for s in seeds],
                  list(noise), [None] * len(seeds), progress=False)
    assert not [w for w in caught if "CUDA graph" in str(w.message)]
    assert len(replays) == updates - GRAPH_WARMUP, "one graph replays every seed's update"
    for model, (own, initial) in zip(models, alone):
        moved = max((own[k] - initial[k]).abs().max().item() for k in own)
        apart = max((weights(model)[k] - own[k]).abs().max().item() for k in own)
        assert moved > 0 and apart < 0.05 * moved, (apart, moved)
