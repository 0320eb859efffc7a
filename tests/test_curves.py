"""Learning curves: `--eval-every` evaluates snapshots exactly like the final model."""

import numpy as np
import pytest

from wmbench.evaluate import EvalRequest, cell_of, checkpoint_path, evaluate
from wmbench.models.base import get_model_class
from wmbench.models.states import snapshot_path, training_state_path
from wmbench.results import ResultsStore

CURVE = dict(env="hopper", horizon=4, profile="smoke", eval_every=10, overrides=("polygrad.train_steps=30",))


def curve_of(table, metric="curve_mse"):
    rows = table[table["metric"] == metric]
    return rows.pivot_table(index="train_step", columns="step", values="value")


def test_eval_every_stores_a_point_per_snapshot_and_ends_at_the_final_evaluation(hopper_dataset, tmp_path):
    table = evaluate(EvalRequest(model="polygrad", **CURVE), store=ResultsStore(tmp_path), progress=False,
                     say=lambda m: None)
    curve = curve_of(table)
    assert list(curve.index) == [10, 20, 30] and list(curve.columns) == [1, 2, 3, 4]
    final = table[table["metric"] == "mse"].set_index("step")["value"]
    np.testing.assert_array_equal(curve.loc[30].to_numpy(), final.loc[[1, 2, 3, 4]].to_numpy())
    assert not np.allclose(curve.loc[10], curve.loc[30]), "snapshots are other weights than the final ones"
    for metric in ("curve_mse_alive", "curve_alive_fraction", "curve_mse_norm"):
        assert list(curve_of(table, metric).index) == [10, 20, 30]
    flops = table[table["metric"] == "curve_mse"].groupby("train_step")["train_flops"].first()
    assert flops.loc[10] > 0 and flops.loc[30] == pytest.approx(3 * flops.loc[10])
    assert not table.loc[table["metric"] == "mse", "train_step"].notna().any(), "the final rows are as before"


def test_a_snapshot_is_evaluated_like_the_final_model_of_that_budget(hopper_dataset, tmp_path):
    """The curve's point at 20 updates equals the final evaluation of a 20-update training."""
    curve = curve_of(evaluate(EvalRequest(model="polygrad", **CURVE), store=ResultsStore(tmp_path / "a"),
                              progress=False, say=lambda m: None))
    short = evaluate(EvalRequest(model="polygrad", **{**CURVE, "eval_every": 0,
                                                        "overrides": ("polygrad.train_steps=20",)}),
                     store=ResultsStore(tmp_path / "b"), progress=False, say=lambda m: None)
    final = short[short["metric"] == "mse"].set_index("step")["value"]
    np.testing.assert_allclose(curve.loc[20].to_numpy(), final.loc[[1, 2, 3, 4]].to_numpy(), rtol=1e-6)


def test_a_cached_model_without_snapshots_is_trained_again_and_then_reused(hopper_dataset, tmp_path):
    plain = EvalRequest(model="ar-diffusion", env="hopper", horizon=3, profile="smoke")
    evaluate(plain, store=ResultsStore(tmp_path), progress=False, say=lambda m: None)
    path = checkpoint_path(get_model_class("ar-diffusion"), cell_of(plain))
    said = []
    curve = EvalRequest(**{**plain.__dict__, "eval_every": 10})
    table = evaluate(curve, store=ResultsStore(tmp_path), progress=False, say=said.append)
    assert any("training ar-diffusion again" in m for m in said)
    assert snapshot_path(training_state_path(path), 20).is_file()
    assert list(curve_of(table).index) == [10, 20, 30]
    said.clear()
    longer = EvalRequest(**{**plain.__dict__, "eval_every": 10, "horizon": 5})  # shares the checkpoint
    evaluate(longer, store=ResultsStore(tmp_path), progress=False, say=said.append)
    assert not any("training" in m for m in said) and any("loading" in m for m in said)


def test_models_outside_the_training_loop_get_the_final_point_only(hopper_dataset, tmp_path):
    for model, steps in (("mlp-ensemble", None), ("linear", 0)):
        table = evaluate(EvalRequest(model=model, env="hopper", horizon=3, profile="smoke", eval_every=10),
                         store=ResultsStore(tmp_path), progress=False, say=lambda m: None)
        curve = curve_of(table)
        assert len(curve) == 1
        if steps is not None:
            assert curve.index[0] == steps
