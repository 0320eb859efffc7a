"""The shared training loop: an interrupted training (an exception, a killed process) resumes to
exactly the weights of an uninterrupted one on a CPU; FLOP counts of a training step."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from wmbench.bench import bench_training, run_train_bench
from wmbench.models.base import WorldModel
from wmbench.models.flops import count_flops
from wmbench.models.polygrad import PolyGRAD, PolyGRADConfig
from wmbench.models.states import snapshot_path
from wmbench.models.training import EMA, Update
from wmbench.results import ResultsStore
from wmbench.testing import LinearSystem, simple_policy

CONFIG = dict(diffusion_steps=8, width=64, blocks=2, train_steps=60, batch_size=32, ema_start=10, ema_every=5,
              checkpoint_every=20, horizon=4, tune_every=25, tune_batch_size=8)
DATA = LinearSystem.random(obs_dim=3, act_dim=2, noise_std=0.01).dataset(episodes=20, length=30)


def train(state_path=None) -> PolyGRAD:
    """A small PolyGRAD with delta tuned during training (so the tuning history is state too)."""
    torch.manual_seed(0)
    model = PolyGRAD(3, 2, PolyGRADConfig(**CONFIG))
    model.fit(DATA, generator=torch.Generator().manual_seed(0), progress=False, state_path=state_path,
              policy=simple_policy(3, 2))
    return model


def assert_same_state(a: PolyGRAD, b: PolyGRAD) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        if isinstance(sa[key], torch.Tensor):
            assert torch.equal(sa[key], sb[key]), key
    assert a.delta_history == b.delta_history and len(a.delta_history) == 2


class Interrupt(Exception):
    pass


def test_training_interrupted_by_an_exception_resumes_to_identical_weights(tmp_path, monkeypatch):
    reference = train()
    state = tmp_path / "model.train-state.pt"
    update = EMA.update

    def failing_update(self, model, step, last=False):
        update(self, model, step, last)
        if step == 47:
            raise Interrupt

    monkeypatch.setattr(EMA, "update", failing_update)
    with pytest.raises(Interrupt):
        train(state)
    assert torch.load(state, weights_only=True)["step"] == 40
    monkeypatch.setattr(EMA, "update", update)
    resumed = train(state)
    assert resumed.fit_report.extra["resumed_from"] == 40
    assert_same_state(resumed, reference)
    assert not state.exists(), "a finished training removes its state"


def test_a_killed_training_process_resumes_to_identical_weights(tmp_path):
    state = tmp_path / "model.train-state.pt"
    script = textwrap.dedent(f"""
        import os, signal, sys, time
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from wmbench.models.training import EMA
        from test_training import train
        update = EMA.update
        def killing_update(self, model, step, last=False):
            update(self, model, step, last)
            if step == 33:
                while not os.path.exists({str(state)!r}):  # written in the background since update 20
                    time.sleep(0.01)
                os.kill(os.getpid(), signal.SIGKILL)
        EMA.update = killing_update
        from pathlib import Path
        train(Path({str(state)!r}))
    """)
    killed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr
    assert torch.load(state, weights_only=True)["step"] == 20
    assert_same_state(train(state), train())


def test_a_failed_state_write_stops_the_training(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(OSError):  # the write runs in the background; its error is raised all the same
        train(blocker / "model.train-state.pt")


def test_snapshots_are_the_model_at_that_step_and_leave_training_unchanged(tmp_path, monkeypatch):
    monkeypatch.setitem(CONFIG, "snapshot_every", 20)
    state = tmp_path / "model.train-state.pt"
    with_snapshots = train(state)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.step-20.pt", "model.step-40.pt"]
    monkeypatch.setitem(CONFIG, "snapshot_every", 0)
    assert_same_state(with_snapshots, train())
    monkeypatch.setitem(CONFIG, "train_steps", 40)  # a training that ends at 40 saves what the snapshot holds
    shorter, snapshot = train(), WorldModel.load(snapshot_path(state, 40))
    for key, value in shorter.state_dict().items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, snapshot.state_dict()[key]), key
    assert snapshot.fit_report.steps == 40 and snapshot.delta_history == shorter.delta_history


def test_flops_of_a_linear_training_step_are_6_batch_in_out():
    layer = torch.nn.Linear(64, 32, bias=False)
    x = torch.randn(8, 64, requires_grad=True)  # a hidden layer: gradients flow to its input too
    assert count_flops(lambda: layer(x).square().sum().backward()) == 6 * 8 * 64 * 32


def test_train_bench_rows_are_consistent(tmp_path):
    table = run_train_bench(["polygrad", "transformer"], [3], env="hopper", profile="smoke", updates=4,
                            store=ResultsStore(tmp_path), say=lambda m: None)
    for model in ("polygrad", "transformer"):
        value = table[table["model"] == model].set_index("metric")["value"]
        assert value["train_updates_per_s"] == pytest.approx(1 / value["train_update_s"])
        assert value["train_gflops_achieved"] == pytest.approx(value["train_gflop"] / value["train_update_s"])
        assert value["train_peak_fraction"] == pytest.approx(value["train_gflops_achieved"] / value["peak_gflops"])
    assert set(ResultsStore(tmp_path).read()["policy"]) == {"training"}


def test_train_bench_flops_scale_with_the_batch():
    update, _ = bench_training("polygrad", "hopper", 3, profile="smoke", updates=2, warmup=1)
    double, _ = bench_training("polygrad", "hopper", 3, profile="smoke", updates=2, warmup=1,
                               overrides=("polygrad.batch_size=128",))
    assert update.flop > 0 and double.flop == pytest.approx(2 * update.flop, rel=0.01)


def test_bf16_on_a_cpu_without_bf16_units_is_called_out(monkeypatch):
    import warnings

    from wmbench.models.precision import warn_if_bf16_is_emulated

    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    with pytest.warns(UserWarning, match="emulated"):
        warn_if_bf16_is_emulated("cpu", "bf16")
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_if_bf16_is_emulated("cpu", "bf16")
        warn_if_bf16_is_emulated("cpu", "fp32")


class _MatmulMode(torch.autograd.Function):
    """The identity, noting whether TF32 matmuls are on when its forward and its backward run."""

    seen: dict[str, bool] = {}

    @staticmethod
    def forward(ctx, x):
        _MatmulMode.seen["forward"] = torch.backends.cuda.matmul.allow_tf32
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        _MatmulMode.seen["backward"] = torch.backends.cuda.matmul.allow_tf32
        return grad


@pytest.mark.parametrize("precision", ["fp32", "tf32"])
def test_tf32_covers_the_backward_of_an_update_and_is_restored_after(precision):
    # the backward holds two thirds of an update's matmul work: TF32 must be on there too
    weight = torch.nn.Parameter(torch.ones(3))
    update = Update(lambda index: _MatmulMode.apply(weight * index).sum(), torch.optim.SGD([weight], lr=0.1),
                    torch.arange(3.0), precision, graphed=False, desc="test")
    before = torch.backends.cuda.matmul.allow_tf32
    _MatmulMode.seen.clear()
    update()
    assert _MatmulMode.seen == {"forward": precision == "tf32", "backward": precision == "tf32"}
    assert torch.backends.cuda.matmul.allow_tf32 == before
    assert weight.grad is not None and torch.equal(weight.grad, torch.arange(3.0))
