"""Seeds trained as one batched network: each seed ends at the weights of its own training (to float
rounding), an interrupted batch resumes, a batch's training state continues alone, and a sweep's
batch-trained models are what each seed's evaluation loads."""

import numpy as np
import pytest
import torch

from wmbench.evaluate import EvalRequest, evaluate
from wmbench.models.base import get_model_class
from wmbench.models.seeds import _Batched, fit_seeds
from wmbench.models.states import snapshot_path
from wmbench.results import ResultsStore
from wmbench.sweep import grid, run_sweep
from wmbench.sweep.seeds import train_seed_batches
from wmbench.testing import LinearSystem

DATA = LinearSystem.random(obs_dim=3, act_dim=2, noise_std=0.01).dataset(episodes=20, length=30)
SEEDS = (0, 1, 2)
TOLERANCE = 1e-5  # float32 rounding of batched against plain matmuls, after 60 updates (seen: 1e-7)


def make(name: str, seed: int, **settings):
    """A seed's model as its own training starts it, and the global stream its loss would draw from."""
    cls = get_model_class(name)
    config = dict(width=32, blocks=2, train_steps=60, batch_size=16, diffusion_steps=8, ema_start=10, ema_every=5)
    torch.manual_seed(seed)
    model = cls(3, 2, cls.Config(**config, **({"horizon": 3} if name == "polygrad" else {}), **settings))
    noise = torch.Generator()
    noise.set_state(torch.get_rng_state())
    return model, noise


def together(name: str, state_paths=None, **settings):
    models, noise = zip(*(make(name, seed, **settings) for seed in SEEDS))
    reports = fit_seeds([m.denoiser_training(DATA) for m in models], [torch.Generator().manual_seed(s) for s in SEEDS],
                        list(noise), state_paths or [None] * len(SEEDS), progress=False)
    return models, reports


def alone(name: str, seed: int, state_path=None, **settings):
    model, _ = make(name, seed, **settings)
    model.fit(DATA, generator=torch.Generator().manual_seed(seed), progress=False, state_path=state_path)
    return model


def max_difference(a, b) -> float:
    return max(float((x - y).abs().max()) for x, y in zip(a.state_dict().values(), b.state_dict().values())
               if torch.is_tensor(x) and x.is_floating_point())


@pytest.mark.parametrize("name", ["polygrad", "ar-diffusion", "ar-diffusion-2row"])
def test_each_seed_of_a_batch_ends_at_its_own_trainings_weights(name):
    models, reports = together(name)
    for seed, model, report in zip(SEEDS, models, reports):
        own = alone(name, seed)
        assert max_difference(own, model) < TOLERANCE
        assert report.loss == pytest.approx(own.fit_report.loss, rel=1e-4)
        assert report.extra == own.fit_report.extra and report.steps == 60
    assert max_difference(models[0], models[1]) > 1e-2, "the seeds are different models"


class Interrupt(Exception):
    pass


def test_an_interrupted_batch_resumes_to_the_same_weights(tmp_path, monkeypatch):
    reference, _ = together("polygrad")
    paths = [tmp_path / f"s{seed}.train-state.pt" for seed in SEEDS]
    step = _Batched.step

    def failing_step(self, number, last):
        if number == 33:
            raise Interrupt
        return step(self, number, last)

    monkeypatch.setattr(_Batched, "step", failing_step)
    with pytest.raises(Interrupt):
        together("polygrad", paths, checkpoint_every=20, snapshot_every=30)
    assert all(p.is_file() for p in paths) and snapshot_path(paths[2], 30).is_file()
    monkeypatch.setattr(_Batched, "step", step)
    resumed, reports = together("polygrad", paths, checkpoint_every=20, snapshot_every=30)
    assert [r.extra["resumed_from"] for r in reports] == [20, 20, 20]
    for a, b in zip(reference, resumed):
        assert max_difference(a, b) == 0  # the same batched computation from the saved state
    assert not any(p.is_file() for p in paths), "finished: the states are gone"


def test_a_batchs_training_state_is_continued_by_a_single_seed_training(tmp_path, monkeypatch):
    paths = [tmp_path / f"s{seed}.train-state.pt" for seed in SEEDS]
    step = _Batched.step
    monkeypatch.setattr(_Batched, "step", lambda self, n, last: (_ for _ in ()).throw(Interrupt) if n == 25
                        else step(self, n, last))
    with pytest.raises(Interrupt):
        together("ar-diffusion-2row", paths, checkpoint_every=20)
    continued = alone("ar-diffusion-2row", 1, paths[1], checkpoint_every=20)
    assert continued.fit_report.extra["resumed_from"] == 20
    assert max_difference(continued, alone("ar-diffusion-2row", 1)) < TOLERANCE


SMOKE = dict(env="hopper", horizon=3, profile="smoke", overrides=("ar-diffusion-2row.train_steps=40",))


def test_a_sweeps_batch_trained_models_are_what_each_seeds_evaluation_loads(hopper_dataset, tmp_path, monkeypatch):
    requests = grid(["ar-diffusion-2row"], ["hopper"], [3], [0, 1], profile="smoke", overrides=SMOKE["overrides"])
    said = []
    assert train_seed_batches(requests, progress=False, say=said.append) == 2
    assert any("for seeds 0, 1 as one network" in m for m in said)
    assert train_seed_batches(requests, progress=False, say=said.append) == 0, "trained models are not retrained"
    said.clear()
    batched = evaluate(EvalRequest(model="ar-diffusion-2row", seed=1, **SMOKE), store=ResultsStore(tmp_path / "a"),
                       progress=False, say=said.append)
    assert any(m.startswith("loading") for m in said) and not any(m.startswith("training") for m in said)
    said.clear()
    monkeypatch.setenv("WMBENCH_CACHE", str(tmp_path / "cache"))  # the same cell trained alone
    own = evaluate(EvalRequest(model="ar-diffusion-2row", seed=1, **SMOKE), store=ResultsStore(tmp_path / "b"),
                   progress=False, say=said.append)
    assert any(m.startswith("training") for m in said)
    mse = [table[table["metric"] == "mse"].set_index("step")["value"] for table in (batched, own)]
    assert len(mse[0]) == 3
    np.testing.assert_allclose(mse[0].to_numpy(), mse[1].to_numpy(), rtol=1e-3)


def test_a_sweep_with_batch_seeds_trains_each_group_once(hopper_dataset, tmp_path, monkeypatch):
    calls = []
    import wmbench.sweep.seeds as seeds

    fit = seeds.fit_seeds
    monkeypatch.setattr(seeds, "fit_seeds", lambda trainings, *a, **k: calls.append(len(trainings)) or
                        fit(trainings, *a, **k))
    requests = grid(["ar-diffusion-2row", "linear"], ["hopper"], [3], [3, 4], profile="smoke",
                    overrides=SMOKE["overrides"])
    outcome = run_sweep(requests, store=ResultsStore(tmp_path), progress=False, say=lambda m: None,
                        batch_seeds=True)
    assert len(outcome.done) == 4 and not outcome.failed
    assert calls == [2], "the two seeds of the diffusion model, together; linear in its cells"


def test_seeds_train_together_by_default_on_a_gpu_only():
    from wmbench.sweep.seeds import batch_by_default

    cpu = EvalRequest(model="polygrad", env="hopper")
    assert not batch_by_default([cpu]) and batch_by_default([cpu, EvalRequest(model="polygrad", env="hopper",
                                                                               device="cuda")])


def test_cells_sharing_a_model_train_it_once_and_bf16_seeds_alone(hopper_dataset, monkeypatch):
    import wmbench.sweep.seeds as seeds

    calls = []
    monkeypatch.setattr(seeds, "_train_together", lambda todo, *a: calls.append(todo) or len(todo))
    shared = [EvalRequest(model="ar-diffusion-2row", seed=seed, n_trajectories=n, **SMOKE) for seed in (5, 6)
              for n in (8, 16)]  # two evaluations of each seed's one model
    assert seeds.train_seed_batches(shared, progress=False, say=print) == 2
    bf16 = [EvalRequest(model="ar-diffusion-2row", seed=seed, env="hopper", horizon=3, profile="smoke",
                        overrides=("ar-diffusion-2row.precision=bf16",)) for seed in (5, 6)]
    assert seeds.train_seed_batches(bf16, progress=False, say=print) == 0 and len(calls) == 1
