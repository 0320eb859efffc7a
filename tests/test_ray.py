"""`wmbench sweep --backend ray` on a local Ray instance (2 CPUs): the local backend's numbers and
semantics, with no shared filesystem between the driver and its tasks."""

import dataclasses
import functools
import os
import signal
import sys

import pandas as pd
import pytest

from wmbench.evaluate import cell_of, evaluate
from wmbench.results import ResultsStore
from wmbench.sweep import RayOptions, failure_path, grid, run_sweep

ray = pytest.importorskip("ray")
TIMINGS = ("gen_time_s", "fit_time_s")


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the test's evaluators travel by value
    yield
    ray.shutdown()


def numbers(store: ResultsStore) -> pd.DataFrame:
    rows = store.read()
    rows = rows[~rows["metric"].isin(TIMINGS) & ~rows["metric"].str.startswith("wall_")]
    return rows.set_index(["model", "seed", "metric", "step"])["value"].sort_index()


def test_ray_stores_the_local_backends_numbers_and_a_rerun_skips_everything(hopper_dataset, tmp_path,
                                                                            monkeypatch):
    requests = grid(["mlp-ensemble", "polygrad"], ["hopper"], [3], [0, 1], profile="smoke")
    local = ResultsStore(tmp_path / "local")
    assert not run_sweep(requests, workers=2, store=local, progress=False, say=lambda m: None).failed
    monkeypatch.setenv("WMBENCH_CACHE", str(tmp_path / "ray-cache"))  # the Ray run trains its own models
    monkeypatch.setenv("WMBENCH_RUNS", str(tmp_path / "runs"))
    remote = ResultsStore(tmp_path / "ray")
    logged = [dataclasses.replace(request, log="tensorboard") for request in requests]  # the same cells
    outcome = run_sweep(logged, store=remote, ray=RayOptions(), progress=False, say=lambda m: None)
    assert len(outcome.done) == 4 and not outcome.failed
    pd.testing.assert_series_equal(numbers(remote), numbers(local))  # CPU, one thread each: identical
    assert len(list((tmp_path / "ray-cache").rglob("*.pt"))) == 4, "the trained checkpoints come back"
    for cell in outcome.done:  # and so do the logs
        assert list((tmp_path / "runs" / cell.relative_path().with_suffix("") / "eval").glob("events.out.*"))
    again = run_sweep(requests, store=remote, ray=RayOptions(), progress=False, say=lambda m: None)
    assert len(again.skipped) == 4 and not again.done


def broken_for_seed_1(request, **kwargs):
    if request.seed == 1:
        raise RuntimeError("this cell is broken")
    return evaluate(request, **kwargs)


def test_a_failing_cell_is_reported_with_its_traceback_and_the_others_complete(hopper_dataset, tmp_path):
    requests = grid(["mlp-ensemble"], ["hopper"], [3], [0, 1], profile="smoke")
    store = ResultsStore(tmp_path)
    outcome = run_sweep(requests, store=store, evaluator=broken_for_seed_1, ray=RayOptions(), progress=False,
                        say=lambda m: None)
    failed = cell_of(requests[1])
    assert list(outcome.failed) == [failed] and "this cell is broken" in outcome.failed[failed]
    assert "Traceback" in failure_path(store, failed).read_text()  # written by the driver
    assert outcome.done == [cell_of(requests[0])] and store.has(cell_of(requests[0]))


def killed_once(request, *, marker, **kwargs):
    if not os.path.exists(marker):
        open(marker, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)  # the worker dies mid-task
    return evaluate(request, **kwargs)


def killed_always(request, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)


def test_a_task_whose_worker_dies_is_retried_once_then_reported(hopper_dataset, tmp_path):
    requests = grid(["mlp-ensemble"], ["hopper"], [3], [0], profile="smoke")
    marker = tmp_path / "killed"
    store = ResultsStore(tmp_path / "once")
    outcome = run_sweep(requests, store=store, evaluator=functools.partial(killed_once, marker=str(marker)),
                        ray=RayOptions(), progress=False, say=lambda m: None)
    assert marker.exists() and not outcome.failed and store.has(cell_of(requests[0]))

    store = ResultsStore(tmp_path / "always")
    outcome = run_sweep(requests, store=store, evaluator=killed_always, ray=RayOptions(), progress=False,
                        say=lambda m: None)
    assert "WorkerCrashedError" in outcome.failed[cell_of(requests[0])]
    assert failure_path(store, cell_of(requests[0])).is_file()
