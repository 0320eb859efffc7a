"""`wmbench sweep`: resumes where it stopped, reports failing cells and completes the others."""

import os
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
from test_cli import WMBENCH

from wmbench.errors import UsageError
from wmbench.evaluate import cell_of
from wmbench.results import ResultsStore
from wmbench.sweep import failure_path, grid, run_sweep
from wmbench.sweep import run as sweep_run
from wmbench.sweep.status import SweepStatus


class FakeEvaluator:
    """Stores one row per cell and remembers what it ran; `fail_model` raises, `stop_after` interrupts."""

    def __init__(self, fail_model=None, stop_after=None):
        self.ran, self.fail_model, self.stop_after = [], fail_model, stop_after

    def __call__(self, request, *, store, progress, say):
        if self.stop_after is not None and len(self.ran) == self.stop_after:
            raise KeyboardInterrupt
        self.ran.append(request)
        if request.model == self.fail_model:
            raise ValueError("this model is broken")
        store.write(cell_of(request), pd.DataFrame({"metric": ["mse"], "step": [1], "value": [float(request.seed)]}))


def small_grid():
    return grid(["mlp-ensemble", "transformer"], ["hopper"], [5, 10], [0, 1], profile="smoke")


def test_grid_checks_names_before_running():
    assert len(small_grid()) == 8
    with pytest.raises(UsageError, match="unknown model 'nope'"):
        grid(["mlp-ensemble", "nope"], ["hopper"], [10], [0])
    with pytest.raises(UsageError, match="unknown env"):
        grid(["mlp-ensemble"], ["ant"], [10], [0])


def test_interrupted_sweep_resumes_with_only_the_missing_cells(tmp_path):
    store, requests = ResultsStore(tmp_path), small_grid()
    with pytest.raises(KeyboardInterrupt):
        run_sweep(requests, store=store, evaluator=FakeEvaluator(stop_after=3), progress=False, say=lambda m: None)
    assert len(store.read()) == 3

    resumed = FakeEvaluator()
    outcome = run_sweep(requests, store=store, evaluator=resumed, progress=False, say=lambda m: None)
    assert len(resumed.ran) == 5 and len(outcome.skipped) == 3 and len(outcome.done) == 5
    assert {cell_of(r) for r in resumed.ran}.isdisjoint(outcome.skipped)
    assert len(store.read()) == 8

    again = FakeEvaluator()
    outcome = run_sweep(requests, store=store, evaluator=again, progress=False, say=lambda m: None)
    assert again.ran == [] and len(outcome.skipped) == 8


def test_a_failing_cell_is_reported_and_the_rest_complete(tmp_path):
    store, requests = ResultsStore(tmp_path), small_grid()
    outcome = run_sweep(requests, store=store, evaluator=FakeEvaluator(fail_model="transformer"),
                        progress=False, say=lambda m: None)
    failed = [cell_of(r) for r in requests if r.model == "transformer"]
    assert set(outcome.failed) == set(failed) and len(outcome.done) == 4
    assert all(error == "ValueError: this model is broken" for error in outcome.failed.values())
    assert "Traceback" in failure_path(store, failed[0]).read_text()
    assert set(store.read()["model"]) == {"mlp-ensemble"}

    outcome = run_sweep(requests, store=store, evaluator=FakeEvaluator(), progress=False, say=lambda m: None)
    assert len(outcome.done) == 4 and not outcome.failed
    assert not failure_path(store, failed[0]).exists(), "a cell that succeeds later drops its failure note"


@pytest.fixture
def statuses(monkeypatch):
    """Every SweepStatus a sweep makes, each with the stages its cells reported."""
    made = []

    class Recording(SweepStatus):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.stages = {}
            made.append(self)

        def progress(self, cell, stage, done, total):
            self.stages.setdefault(cell, set()).add(stage)
            super().progress(cell, stage, done, total)

    monkeypatch.setattr(sweep_run, "SweepStatus", Recording)
    return made


def test_the_sweep_table_counts_each_cells_state(tmp_path, statuses):
    store, requests = ResultsStore(tmp_path), small_grid()
    with pytest.raises(KeyboardInterrupt):
        run_sweep(requests, store=store, evaluator=FakeEvaluator(stop_after=3), progress=False, say=lambda m: None)
    # where it stopped: three stored, the fourth started (its group's outcomes never came back)
    assert statuses[0].counts() == {"stored": 0, "queued": 4, "running": 1, "done": 3, "failed": 0}
    outcome = run_sweep(requests, store=store, evaluator=FakeEvaluator(fail_model="transformer"), progress=False,
                        say=lambda m: None)
    status = statuses[1]
    assert status.counts() == {"stored": 3, "queued": 0, "running": 0, "done": len(outcome.done),
                               "failed": len(outcome.failed)} and len(outcome.failed) == 4
    for cell, error in outcome.failed.items():
        assert status.cells[cell].state == "failed" and status.cells[cell].error == error
    assert status.headline() == "sweep: 3 stored, 0 queued, 0 running, 1 done, 4 failed"
    assert all(set(stages) <= {"", "done", "failed"} for stages in status.stages.values())  # a fake has no stages


def test_time_left_is_the_mean_of_done_cells_of_the_model(monkeypatch):
    requests = grid(["mlp-ensemble", "transformer", "linear"], ["hopper"], [10], [0, 1], profile="smoke")
    (e0, e1), (t0, t1), (l0, l1) = [[cell_of(r) for r in requests if r.model == m]
                                    for m in ("mlp-ensemble", "transformer", "linear")]
    clock = [100.0]
    monkeypatch.setattr("wmbench.sweep.status.time.monotonic", lambda: clock[0])
    status = SweepStatus([e0, e1, t0, t1, l0, l1], [], workers=2)
    assert status.seconds_left() is None
    status.finished(e0, None, 60.0)
    status.finished(t0, None, 300.0)
    status.started(e1)
    clock[0] = 120.0  # e1 has run 20 s of its expected 60
    # e1: 40 left; t1: 300; l0, l1: the mean of all done (180) each; over 2 workers
    assert status.seconds_left() == pytest.approx((40 + 300 + 180 + 180) / 2)
    assert "about 5 min 50 s left" in status.headline()


def test_parallel_workers_train_each_checkpoint_once(hopper_dataset, tmp_path, statuses, monkeypatch):
    monkeypatch.setenv("WMBENCH_CACHE", str(tmp_path / "cache"))  # trained here, not loaded from earlier tests
    store = ResultsStore(tmp_path / "results")
    requests = grid(["mlp-ensemble"], ["hopper"], [3, 5], [0, 1], profile="smoke")
    outcome = run_sweep(requests, workers=2, store=store, progress=False, say=lambda m: None)
    assert not outcome.failed, outcome.failed
    assert statuses[0].counts()["done"] == 4
    trained = [cell for cell, stages in statuses[0].stages.items() if "train" in stages]
    assert len(trained) == 2, "each trained model's progress came back from its worker"
    table = store.read()
    cells = sorted(table[["horizon", "seed"]].drop_duplicates().itertuples(index=False))
    assert cells == [(3, 0), (3, 1), (5, 0), (5, 1)]
    fit_times = table[table["metric"] == "fit_time_s"].set_index(["seed", "horizon"])["value"]
    for seed in (0, 1):
        assert fit_times[(seed, 3)] == fit_times[(seed, 5)], "both horizons of a seed use one trained model"
    assert fit_times[(0, 3)] != fit_times[(1, 3)]


def _children(pid: int) -> list[int]:
    """Processes whose parent is `pid` (from /proc: Linux)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has ended; only its parent's wait is missing


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
@pytest.mark.parametrize("how", ["SIGKILL to the driver", "SIGTERM to the driver", "Ctrl-C (SIGINT to the group)"])
def test_no_worker_outlives_a_killed_driver(hopper_dataset, tmp_path, how):
    args = [WMBENCH, "sweep", "--models", "polygrad", "--envs", "hopper", "--seeds", "0,1,2,3", "--profile",
            "smoke", "--workers", "2"]
    driver = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                              env={**os.environ, "WMBENCH_RESULTS": str(tmp_path / "results"),
                                   "WMBENCH_CACHE": str(tmp_path / "cache")})
    deadline, workers = time.monotonic() + 120, []
    while time.monotonic() < deadline and len(workers) < 2 and driver.poll() is None:
        workers = [p for p in _children(driver.pid) if "spawn_main" in Path(f"/proc/{p}/cmdline").read_text()]
        time.sleep(0.2)
    assert len(workers) == 2, "the sweep started its two workers"
    helpers = _children(driver.pid)  # the workers and multiprocessing's resource tracker
    if how.startswith("Ctrl-C"):
        os.killpg(driver.pid, signal.SIGINT)  # a terminal's Ctrl-C reaches every process of the group
    else:
        driver.send_signal(signal.SIGKILL if how.startswith("SIGKILL") else signal.SIGTERM)
    driver.wait(timeout=60)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(map(_running, helpers)):
        time.sleep(0.2)
    assert not [p for p in helpers if _running(p)], "every worker ended with its driver"
