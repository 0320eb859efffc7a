"""`wmbench bench`: FLOP counts with a known answer, and the rows it stores (no timing limits)."""

import math

import pytest
import torch

from wmbench.bench import bench_model, matmul_peak_gflops, ratio_rows, run_bench
from wmbench.config import build_config
from wmbench.models.ardiffusion import ARDiffusionConfig
from wmbench.models.flops import count_flops
from wmbench.results import ResultsStore


def test_flop_count_of_a_linear_layer_is_2_batch_in_out():
    layer = torch.nn.Linear(64, 32, bias=False)
    x = torch.randn(8, 64)
    assert count_flops(lambda: layer(x)) == 2 * 8 * 64 * 32


def test_matmul_peak_is_a_finite_positive_rate():
    peak = matmul_peak_gflops(n=256, repeats=2)
    assert math.isfinite(peak) and peak > 0


def test_ar_diffusion_rollout_flops_are_horizon_times_steps_denoiser_passes():
    horizon, batch = 3, 16
    measured = bench_model("ar-diffusion", "hopper", horizon, batch=batch, profile="smoke", repeats=1)
    steps = build_config(ARDiffusionConfig, "smoke", "ar-diffusion").diffusion_steps
    denoiser_only = horizon * steps * measured["denoiser"].flop
    # the rest is the policy: one small MLP call per environment step
    assert denoiser_only <= measured["rollout"].flop <= 1.1 * denoiser_only
    assert measured["rollout"].transitions == batch * horizon


def test_run_bench_stores_consistent_rows(tmp_path):
    store = ResultsStore(tmp_path)
    table = run_bench(["mlp-ensemble", "polygrad"], [4], env="hopper", batch=8, profile="smoke", repeats=1,
                      store=store, say=lambda m: None)
    stored = store.read()
    assert set(stored["dataset"]) == {"bench"} and set(stored["policy"]) == {"untrained"}
    assert set(stored["precision"]) == {"fp32"}
    for model in ("mlp-ensemble", "polygrad"):
        value = stored[stored["model"] == model].set_index("metric")["value"]
        assert value["transitions_per_s"] == pytest.approx(8 * 4 / value["gen_time_s"])
        assert value["gflops_achieved"] == pytest.approx(value["gflop"] / value["gen_time_s"])
        assert value["peak_fraction"] == pytest.approx(value["gflops_achieved"] / value["peak_gflops"])
    assert "denoiser_peak_fraction" in set(stored[stored["model"] == "polygrad"]["metric"])
    assert "denoiser_peak_fraction" not in set(stored[stored["model"] == "mlp-ensemble"]["metric"])
    assert ratio_rows(table) == {}, "no ratio without ar-diffusion"


def test_polygrad_rollout_costs_more_than_one_denoiser_pass():
    measured = bench_model("polygrad", "hopper", 2, batch=4, profile="smoke", repeats=1)
    assert measured["rollout"].flop > measured["denoiser"].flop > 0
