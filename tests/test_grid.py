"""Grids over any setting, the training-size axis, and the report drawn against a grid key."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from wmbench.cells import EvalRequest, cell_config, cell_of
from wmbench.config import config_hash
from wmbench.data import load_dataset
from wmbench.errors import DatasetError, UsageError
from wmbench.evaluate import HELD_OUT_FRACTION, SPLIT_SEED, evaluate
from wmbench.report import write_grid_report, write_report
from wmbench.report.grid import TRAIN_SIZE
from wmbench.results import Cell, ResultsStore
from wmbench.sweep import grid, run_sweep

REFERENCE = Path(__file__).parent.parent / "reports" / "reference"


def split(dataset):
    return load_dataset(dataset).split(HELD_OUT_FRACTION, seed=SPLIT_SEED)


def episodes(data) -> set[bytes]:
    """Each episode of `data` by its content (its actions), to compare episodes across datasets."""
    return {data.actions[s:e].tobytes() for s, e in zip(data.episode_starts[:-1], data.episode_starts[1:])}


def test_a_subset_is_whole_training_episodes_nested_and_reproducible_from_its_seed(hopper_dataset):
    train, held_out = split(hopper_dataset)
    small, large = train.subset(300, seed=3), train.subset(1200, seed=3)
    assert 300 <= small.n_transitions < 300 + np.diff(train.episode_starts).max()
    assert episodes(small) < episodes(large) < episodes(train), "nested, and inside the training split"
    assert episodes(large).isdisjoint(episodes(held_out)), "never a held-out episode"
    assert episodes(train.subset(300, seed=3)) == episodes(small), "reproducible from its seed"
    assert episodes(train.subset(300, seed=4)) != episodes(small), "another seed, another subset"
    assert small.normalising is train and train.normalising is train
    with pytest.raises(DatasetError, match="training split holds"):
        train.subset(train.n_transitions + 1, seed=0)


def test_the_default_size_keeps_the_config_hash_of_every_stored_reference_cell():
    checked = 0
    for path in sorted(REFERENCE.glob("hopper/*/*__s0__*.csv.gz")):
        row = pd.read_csv(path, nrows=1).iloc[0]
        if row["profile"] != "quick" or not isinstance(row["overrides"], str) and not pd.isna(row["overrides"]):
            continue
        overrides = tuple(str(row["overrides"]).split()) if isinstance(row["overrides"], str) else ()
        request = EvalRequest(model=row["model"], env="hopper", horizon=int(row["horizon"]), seed=0, profile="quick",
                              dataset=row["dataset"], policy="behaviour", policy_std=0.2, overrides=overrides)
        assert cell_of(request).config_hash == row["config_hash"], path.name
        all_data = EvalRequest(**{**request.__dict__, "overrides": request.overrides + ("data.train_transitions=0",)})
        assert cell_of(all_data).config_hash == row["config_hash"], "0 (all episodes) is the default"
        checked += 1
    assert checked >= 6
    request = EvalRequest(model="linear", env="hopper", overrides=("data.train_transitions=5000",))
    assert cell_config(request)["data"]["train_transitions"] == 5000
    assert config_hash(cell_config(request)) != config_hash(cell_config(EvalRequest(model="linear", env="hopper")))


def test_grid_is_the_cartesian_product_each_cell_its_own_hash():
    requests = grid(["linear", "persistence"], ["hopper"], [3], [0, 1], profile="smoke",
                    axes=["data.train_transitions=300,600", "policy.steps=5,6,7"], policy_stds=[0.1, 0.2],
                    policy="behaviour")
    assert len(requests) == 2 * 2 * 3 * 2 * 2
    cells = {cell_of(r) for r in requests}
    assert len(cells) == len(requests)
    assert len({(c.model, c.config_hash, c.policy) for c in cells}) == 2 * 2 * 3 * 2
    for bad, match in ((["data.train_transitions"], "takes SECTION.KEY=V1"), (["data.nope=1,2"], "unknown key"),
                       (["data.train_transitions=1,1"], "given twice"), (["data.train_transitions=-1,2"], ">= 0")):
        with pytest.raises(UsageError, match=match):
            grid(["linear"], ["hopper"], [3], [0], profile="smoke", axes=bad)
    with pytest.raises(UsageError, match="given once"):
        grid(["linear"], ["hopper"], [3], [0], profile="smoke", axes=["data.train_transitions=1,2"],
             overrides=("data.train_transitions=5",))


def test_a_grid_sweep_runs_every_size_once_on_the_same_start_states(hopper_dataset, tmp_path):
    store = ResultsStore(tmp_path)
    requests = grid(["linear", "persistence"], ["hopper"], [4], [0], profile="smoke", dataset=hopper_dataset,
                    axes=["data.train_transitions=0,200,1000"], n_trajectories=16)
    outcome = run_sweep(requests, store=store, progress=False, say=lambda m: None)
    assert len(outcome.done) == 6 and not outcome.failed
    rerun = run_sweep(requests, store=store, progress=False, say=lambda m: None)
    assert len(rerun.skipped) == 6, "a rerun computes none"

    rows = store.read()
    sizes = rows.groupby(["model", "config_hash"])["train_transitions"].first()
    train, _ = split(hopper_dataset)
    assert sorted(sizes["linear"]) == sorted(sizes["persistence"])
    assert max(sizes) == train.n_transitions and 200 <= min(sizes) < 1000 < sorted(sizes)[1] + 1000
    assert (rows["dataset_train_transitions"] == train.n_transitions).all()
    mse = rows[rows["metric"] == "mse"].pivot_table(index=["model", "step"], columns="config_hash", values="value")
    persistence = mse.loc["persistence"].dropna(axis=1).to_numpy()
    # persistence predicts the start state: its error depends only on the start states and the policy's actions
    np.testing.assert_array_equal(persistence, persistence[:, :1].repeat(3, axis=1))
    assert mse.loc["linear"].dropna(axis=1).nunique(axis=1).min() == 3, "linear learns from each size its own model"
    losses = rows[rows["metric"].isin(["train_loss", "held_out_loss"])]
    assert set(losses["model"]) == {"linear"} and len(losses) == 6


def test_a_subset_cell_trains_its_own_checkpoint(hopper_dataset, tmp_path):
    store = ResultsStore(tmp_path)
    small = EvalRequest(model="linear", env="hopper", horizon=3, profile="smoke", dataset=hopper_dataset,
                        n_trajectories=8, overrides=("data.train_transitions=200",))
    full = EvalRequest(**{**small.__dict__, "overrides": ()})
    a = evaluate(small, store=store, progress=False, say=lambda m: None)
    b = evaluate(full, store=store, progress=False, say=lambda m: None)
    assert a["train_transitions"].iloc[0] < b["train_transitions"].iloc[0]
    assert a.loc[a["metric"] == "train_loss", "value"].item() != b.loc[b["metric"] == "train_loss", "value"].item()


# ----------------------------------------------------------------------------- the report against a key

SIZES = (1000, 4000, 0)  # 0: all of the env's training transitions
FULL = {"hopper": 16000, "halfcheetah": 15000}  # the envs' datasets differ in size


def known_error(model, env, size, seed, step):
    """Error falls with the size, for `polygrad` as 1/size, for `mlp-ensemble` as 1/sqrt(size), not at all for the
    `persistence` floor; distinct per cell."""
    size = size or FULL[env]
    scale = {"persistence": 1.0, "polygrad": 8000 / size, "mlp-ensemble": (8000 / size) ** 0.5}[model]
    return scale * step * (1 + 0.1 * seed) * (2.0 if env == "hopper" else 1.0)


def known_ks(model, size, seed):
    """PolyGRAD's actions drift from N(0, 1) as the data shrinks; the ensemble's do not."""
    return (0.05 * 1000 / size if model == "polygrad" and size else 0.01) + 0.001 * seed


def write_grid_store(root) -> ResultsStore:
    """Subset cells record the size they used and the full size; the full-size cells are stored as before
    those columns existed (the reference cells), with no train_transitions in their config."""
    store = ResultsStore(root)
    for model in ("polygrad", "mlp-ensemble", "persistence"):
        for env in ("hopper", "halfcheetah"):
            for size in SIZES:
                for seed in (0, 1, 2):
                    rows = [("mse", k, known_error(model, env, size, seed, k)) for k in range(1, 6)]
                    rows += [("alive_fraction", k, 0.9 if env == "hopper" else 1.0) for k in range(1, 6)]
                    rows += [("mse_alive", k, known_error(model, env, size, seed, k) / 2) for k in range(1, 6)]
                    if model == "polygrad" and size:
                        rows += [("train_loss", 0, 1.0 / size), ("held_out_loss", 0, (1.0 + seed) / size + 0.5)]
                    if model != "persistence":  # the floor's actions are the policy's own: no calibration rows
                        rows += [("action_ks", 0, known_ks(model, size, seed)), ("action_z_std", 0, 1.0)]
                    data = {"steps": 1, **({"train_transitions": size} if size else {})}
                    table = pd.DataFrame(rows, columns=["metric", "step", "value"]).assign(
                        config=json.dumps({"data": data, model: {}}), n_trajectories=8, git_commit="abc")
                    if size:
                        table = table.assign(train_transitions=size + 7 * seed, dataset_train_transitions=FULL[env])
                    store.write(Cell(model, env, f"wmbench/{env}/random-v0", "behaviour-std0.2", "quick", 5, seed,
                                     config_hash=f"{model[:2]}{size}"), table)
    return store


def test_the_grid_report_draws_the_stored_numbers_against_the_key(tmp_path):
    written = write_grid_report(write_grid_store(tmp_path / "store"), tmp_path / "out", TRAIN_SIZE)
    for name in ("grid_errors.png", "grid_aggregate.png", "grid_objective.png", "grid_calibration.png"):
        assert (tmp_path / "out" / name).stat().st_size > 10_000 and tmp_path / "out" / name in written
    errors = pd.read_csv(tmp_path / "out" / "grid_errors.csv")
    hopper = errors[(errors["measure"] == "mse, step h") & (errors["panel"] == "hopper")]
    assert len(hopper) == 3 * 3 and set(hopper["grid"]) == {1000, 4000, FULL["hopper"]}, "all = the full size"
    for size in SIZES:
        point = hopper[(hopper["model"] == "polygrad") & (hopper["grid"] == (size or FULL["hopper"]))].iloc[0]
        expected = [known_error("polygrad", "hopper", size, seed, 5) for seed in (0, 1, 2)]
        assert point["mean"] == pytest.approx(np.mean(expected)) and point["n_seeds"] == 3
        assert point["ci_low"] < np.mean(expected) < point["ci_high"]
    assert set(errors["measure"]) == {"mse, step 1", "mse, step h", "alive mse, step h"}
    assert set(errors.loc[errors["measure"] == "alive mse, step h", "panel"]) == {"hopper"}, "only where envs end"
    comparisons = pd.read_csv(tmp_path / "out" / "grid_comparisons.csv")
    against_floor = comparisons[(comparisons["b"] == "persistence") & (comparisons["panel"] == "hopper")]
    at = against_floor.set_index(["a", "grid"])
    assert at.loc[("polygrad", 1000), "ratio"] == pytest.approx(8.0)
    assert at.loc[("polygrad", 1000), "verdict"] == "worse"
    assert at.loc[("polygrad", FULL["hopper"]), "ratio"] == pytest.approx(0.5), "each value compared within itself"
    scores = pd.read_csv(tmp_path / "out" / "grid_aggregate.csv")  # over both envs: their full data is one value
    assert set(scores["grid"]) == {1000, 4000, max(FULL.values())}
    robust = pd.read_csv(tmp_path / "out" / "grid_robustness.csv", keep_default_na=False)
    growth = robust[robust["b"] == ""].set_index(["panel", "a", "grid"])
    for env, full in FULL.items():  # each env's error over its own at its own full size
        assert growth.loc[(env, "polygrad", 1000), "ratio"] == pytest.approx(full / 1000)
        assert growth.loc[(env, "mlp-ensemble", 4000), "ratio"] == pytest.approx((full / 4000) ** 0.5)
        assert float(growth.loc[(env, "polygrad", 1000), "reference"]) == full
    pooled = growth.xs("all envs")["ratio"].to_dict()  # the geometric mean of the envs' growths
    assert pooled == pytest.approx({("polygrad", 1000): (16 * 15) ** 0.5, ("polygrad", 4000): 15 ** 0.5,
                                    ("mlp-ensemble", 1000): (16 * 15) ** 0.25, ("mlp-ensemble", 4000): 15 ** 0.25})
    versus = robust[(robust["b"] == "mlp-ensemble") & (robust["grid"] == 1000)].set_index("panel")
    expected = {"hopper": 4, "halfcheetah": 15 ** 0.5, "all envs": (16 * 15) ** 0.25}
    assert versus["ratio"].to_dict() == pytest.approx(expected)
    assert (versus["verdict"] == "worse").all()
    assert "persistence" not in set(robust["a"]) | set(robust["b"]), "the floor learns nothing"
    objective = pd.read_csv(tmp_path / "out" / "grid_objective.csv")
    gap = objective[(objective["split"] == "gap") & (objective["panel"] == "hopper")].set_index("grid")["mean"]
    assert gap.to_dict() == pytest.approx({size: 1 / size + 0.5 for size in (1000, 4000)}), "held-out minus train"
    calibration = pd.read_csv(tmp_path / "out" / "grid_calibration.csv").set_index(["metric", "panel", "model", "grid"])
    assert calibration.loc[("action_ks", "hopper", "polygrad", 1000), "mean"] == pytest.approx(0.051)
    full = calibration.loc[("action_ks", "halfcheetah", "polygrad", FULL["halfcheetah"]), "mean"]
    assert full == pytest.approx(0.011)
    assert calibration.loc[("action_z_std", "hopper", "mlp-ensemble", 4000), "n_seeds"] == 3
    readme = (tmp_path / "out" / "README.md").read_text()
    assert "data.train_transitions = 1,000" in readme and "(grid_objective.png)" in readme
    assert "| hopper | polygrad | 1,000 | 3 | 1.000 [1.000, 1.000] | 0.051 [0.049, 0.053] |" in readme
    assert "| polygrad vs mlp-ensemble | hopper | 1,000 | 3 | 4.00 [4.00, 4.00] | PolyGRAD less robust |" in readme
    assert "| polygrad | halfcheetah | 1,000 | 15,000 | 3 | 15.00 [15.00, 15.00] |" in readme


def test_the_grid_report_needs_a_key_with_several_values(tmp_path):
    with pytest.raises(UsageError, match="no cell in the store has a value of polygrad.nope"):
        write_grid_report(write_grid_store(tmp_path / "store"), tmp_path / "out", "polygrad.nope")
    with pytest.raises(UsageError, match="one value of policy_std per env"):
        write_grid_report(write_grid_store(tmp_path / "store"), tmp_path / "out", "policy_std")


def test_a_report_refuses_cells_of_two_recordings_of_one_dataset(tmp_path):
    """A dataset remade by another SAC run keeps its id; its cells are not comparable with the old ones'."""
    store = write_grid_store(tmp_path / "store")
    for seed, episodes in ((0, 823), (1, 836)):
        table = pd.DataFrame([("mse", k, 1.0) for k in range(1, 6)], columns=["metric", "step", "value"]).assign(
            config=json.dumps({"data": {"steps": 1}, "linear": {}}), n_trajectories=8, git_commit="abc",
            dataset_steps=75000, dataset_episodes=episodes, dataset_return_mean=200.0 + episodes)
        store.write(Cell("linear", "hopper", "wmbench/hopper/random-v0", "behaviour-std0.2", "quick", 5, seed,
                         config_hash="li0"), table)
    with pytest.raises(UsageError, match=r"cells of wmbench/hopper/random-v0 made from 2 different recordings "
                                         r"\(823 and 836 episodes\)"):
        write_grid_report(store, tmp_path / "out", TRAIN_SIZE)


def test_a_report_refuses_cells_evaluated_under_two_fits_of_one_policy(tmp_path):
    """A BC policy fitted again on another machine: the cells' actions came from other weights. Another
    policy config (a grid over policy.steps) is another policy, not a conflict."""
    store = ResultsStore(tmp_path / "store")

    def write(model, seed, fingerprint, policy_steps=3000):
        table = pd.DataFrame([("mse", k, 1.0 + seed) for k in range(1, 6)], columns=["metric", "step", "value"])
        table = table.assign(config=json.dumps({"data": {"steps": 1}, "policy": {"steps": policy_steps}, model: {}}),
                             n_trajectories=8, git_commit="abc", policy_fingerprint=fingerprint)
        store.write(Cell(model, "hopper", "wmbench/hopper/random-v0", "bc", "quick", 5, seed,
                         config_hash=f"{model[:2]}{policy_steps}"), table)

    for seed in (0, 1):
        write("linear", seed, "aaaa")
        write("persistence", seed, "cccc", policy_steps=500)
    write_report(store, tmp_path / "out")  # one fit per policy config: drawn
    write("persistence", 0, "bbbb")
    with pytest.raises(UsageError, match=r"cells of wmbench/hopper/random-v0 evaluated under 2 different bc policies "
                                         r"\(policy_fingerprint aaaa and bbbb\)"):
        write_report(store, tmp_path / "out")


def test_the_report_against_the_policy_std_leaves_out_what_the_std_cannot_change(tmp_path):
    """The evaluation policy never enters training: every std evaluates the same models, so their training
    objective is not drawn against it; calibration is, as it moves with the std."""
    store = ResultsStore(tmp_path / "store")
    for std in (0.1, 0.4):
        for seed in (0, 1):
            rows = [("mse", k, k / std * (1 + seed)) for k in range(1, 6)]
            rows += [("train_loss", 0, 0.5), ("held_out_loss", 0, 0.6), ("action_z_std", 0, 0.1 / std + seed)]
            table = pd.DataFrame(rows, columns=["metric", "step", "value"]).assign(
                config=json.dumps({"data": {"steps": 1}, "polygrad": {}}), n_trajectories=8, git_commit="abc")
            store.write(Cell("polygrad", "hopper", "wmbench/hopper/random-v0", f"behaviour-std{std:g}", "quick", 5,
                             seed, config_hash="po"), table)
    written = write_grid_report(store, tmp_path / "out", "policy_std")
    names = {path.name for path in written}
    assert "grid_calibration.png" in names and "grid_objective.png" not in names
    calibration = pd.read_csv(tmp_path / "out" / "grid_calibration.csv").set_index("grid")["mean"]
    assert calibration.to_dict() == pytest.approx({0.1: 1.5, 0.4: 0.75})
    readme = (tmp_path / "out" / "README.md").read_text()
    assert "Overfitting" not in readme and "the same trained model and start states at every value" in readme
