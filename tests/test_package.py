"""wmbench as a package: a wheel that works from any directory, one workspace for everything a run
writes, a store that survives bad files and concurrent writers."""

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pandas as pd
import pytest
from test_cli import run_main

from wmbench.evaluate import cell_of
from wmbench.paths import PACKAGE_ROOT, checkpoints_root, datasets_root, results_root
from wmbench.results import ResultsStore
from wmbench.sweep import grid, run_sweep

REPO = PACKAGE_ROOT.parent
WMBENCH = shutil.which("wmbench") or os.path.join(os.path.dirname(sys.executable), "wmbench")
PATH_VARIABLES = ("WMBENCH_HOME", "MINARI_DATASETS_PATH", "WMBENCH_CACHE", "WMBENCH_RESULTS", "WMBENCH_PROFILES")


def clean_env(**extra) -> dict:
    """The environment of a new user: none of wmbench's path variables."""
    env = {k: v for k, v in os.environ.items() if k not in PATH_VARIABLES}
    return {**env, **extra}


def listing(folder: Path) -> set:
    return {(str(p.relative_to(folder)), p.stat().st_size) for p in folder.rglob("*")}


def test_workspace_holds_every_default_location(monkeypatch, tmp_path):
    for name in PATH_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    assert (datasets_root(), checkpoints_root(), results_root()) == (
        tmp_path / "datasets", tmp_path / "models" / "cache", tmp_path / "results")
    monkeypatch.setenv("WMBENCH_HOME", str(tmp_path / "ws"))
    assert results_root() == tmp_path / "ws" / "results"
    monkeypatch.setenv("WMBENCH_RESULTS", str(tmp_path / "mine"))
    assert results_root() == tmp_path / "mine", "the per-path variables still win"


def test_a_fresh_clone_store_holds_no_committed_cell():
    """`make evaluate` writes to the workspace store (results/ in the repository), which git ignores;
    the committed reference run lives in reports/reference/."""
    if not (REPO / ".git").exists() or shutil.which("git") is None:
        pytest.skip("not a git checkout")
    tracked = subprocess.run(["git", "ls-files", "results", "models/cache"], cwd=REPO, capture_output=True,
                             text=True, check=True).stdout
    assert tracked == ""
    ignored = subprocess.run(["git", "check-ignore", "results/x.csv", "models/cache/x.pt", "report/README.md"],
                             cwd=REPO, capture_output=True, text=True)
    assert len(ignored.stdout.split()) == 3
    reference = subprocess.run(["git", "ls-files", "reports/reference"], cwd=REPO, capture_output=True,
                               text=True, check=True).stdout
    assert reference.count(".csv") > 0, "the reference results are committed"


@pytest.mark.slow
def test_wheel_installs_and_runs_from_an_empty_directory(tmp_path):
    source = tmp_path / "source"
    shutil.copytree(REPO / "wmbench", source / "wmbench", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w",
                            str(tmp_path / "dist"), str(source)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    assert "warning" not in (built.stdout + built.stderr).lower(), "the project's metadata draws a warning"
    wheel = next((tmp_path / "dist").glob("wmbench-*.whl"))

    # A fresh environment that reuses this one's packages (not its editable wmbench).
    env_dir = tmp_path / "env"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "reuse_test_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    installed = subprocess.run([python, "-m", "pip", "install", "--no-deps", "--no-index", str(wheel)],
                               capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stderr
    assert "warning" not in installed.stderr.lower(), installed.stderr
    package = site / "wmbench"
    assert (package / "profiles" / "smoke.toml").is_file(), "profiles ship inside the wheel"

    before, work = listing(package), tmp_path / "empty"
    work.mkdir()
    done = subprocess.run([env_dir / "bin" / "wmbench", "evaluate", "--model", "mlp-ensemble", "--env", "hopper",
                           "--profile", "smoke", "--horizon", "3"], cwd=work, capture_output=True, text=True,
                          timeout=600, env=clean_env(HOME=str(tmp_path / "home")))
    assert done.returncode == 0, done.stderr
    assert listing(package) == before, "nothing is written inside the installed package"
    assert {p.name for p in work.iterdir()} == {"datasets", "models", "results"}
    stored = list((work / "results").glob("**/*.csv.gz"))
    assert len(stored) == 1
    assert pd.read_csv(stored[0])["git_commit"].iloc[0] == "wmbench==0.1.0"
    profiles = subprocess.run([env_dir / "bin" / "wmbench", "profiles"], cwd=work, capture_output=True, text=True,
                              env=clean_env())
    assert profiles.returncode == 0 and str(package / "profiles" / "quick.toml") in profiles.stdout


def test_workspace_option_and_bad_override_on_the_command_line(monkeypatch, capsys, hopper_dataset, tmp_path):
    code, _, err = run_main(monkeypatch, capsys, "evaluate", "--env", "hopper", "--profile", "smoke",
                            "--set", "polygrad.nope=1", "--model", "polygrad")
    assert code == 2 and "valid keys of [polygrad]:" in err and "train_steps" in err
    assert len(err.strip().splitlines()) == 1
    code, _, err = run_main(monkeypatch, capsys, "sweep", "--profile", "smoke", "--set", "data.stepz=3")
    assert code == 2 and "valid keys of [data]: steps" in err
    monkeypatch.delenv("WMBENCH_RESULTS")
    monkeypatch.setenv("WMBENCH_HOME", "restored after the test")
    code, _, err = run_main(monkeypatch, capsys, "--workspace", str(tmp_path / "ws"), "report")
    assert code == 2 and "the results store is empty" in err
    assert os.environ["WMBENCH_HOME"] == str(tmp_path / "ws")


def rows(value: float) -> pd.DataFrame:
    return pd.DataFrame({"metric": ["mse"], "step": [1], "value": [value]})


def test_truncated_and_edited_files_are_named_and_skipped(tmp_path):
    store = ResultsStore(tmp_path / "results")
    requests = grid(["mlp-ensemble"], ["hopper"], [5], [0, 1, 2], profile="smoke")
    good, truncated, edited = (store.write(cell_of(r), rows(r.seed)) for r in requests)
    truncated.write_bytes(truncated.read_bytes()[:-9])
    edited.write_text("model,env\nmlp-ensemble,hopper\n")
    shown = subprocess.run([WMBENCH, "results", "--results", str(store.root), "--format", "csv"],
                           capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0 and "Traceback" not in shown.stderr
    assert f"wmbench: warning: skipping unreadable results file {truncated} (truncated" in shown.stderr
    assert f"wmbench: warning: skipping unreadable results file {edited} (no metric, step, value column)" \
        in shown.stderr
    assert len(shown.stdout.strip().splitlines()) == 2  # header and the good row

    ran = []

    def recompute(request, *, store, progress, say):
        ran.append(request.seed)
        store.write(cell_of(request), rows(request.seed))

    with pytest.warns(UserWarning, match="unreadable results file"):
        outcome = run_sweep(requests, store=store, evaluator=recompute, progress=False, say=lambda m: None)
    assert sorted(ran) == [1, 2] and len(outcome.skipped) == 1, "unreadable cells are recomputed"
    assert sorted(store.read()["value"]) == [0.0, 1.0, 2.0]


def test_report_skips_an_unreadable_file_and_draws_the_rest(tmp_path):
    from test_report import write_store

    store = write_store(tmp_path / "results")
    bad = next(store.root.glob("hopper/polygrad/*.csv.gz"))
    bad.write_bytes(bad.read_bytes()[: len(bad.read_bytes()) // 2])
    done = subprocess.run([WMBENCH, "report", "--results", str(store.root), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"wmbench: warning: skipping unreadable results file {bad}" in done.stderr
    assert (tmp_path / "out" / "mse_vs_step.png").is_file()


def test_two_concurrent_evaluations_of_one_cell_leave_one_complete_file(hopper_dataset, tmp_path):
    args = [WMBENCH, "evaluate", "--model", "mlp-ensemble", "--env", "hopper", "--profile", "smoke",
            "--horizon", "4", "--seed", "3"]
    env = {**os.environ, "WMBENCH_RESULTS": str(tmp_path / "results"), "WMBENCH_CACHE": str(tmp_path / "cache")}
    runs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
            for _ in range(2)]
    outputs = [run.communicate(timeout=600) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    errs = [err for _, err in outputs]
    assert sum("training mlp-ensemble" in err for err in errs) == 1, "one process computes"
    assert sum("already in the results store" in err for err in errs) == 1, "the other returns its rows"
    files = list((tmp_path / "results").glob("**/*.csv.gz"))
    assert len(files) == 1 and not list((tmp_path / "results").glob("**/*.tmp"))
    stored = ResultsStore(tmp_path / "results").read()
    assert stored["metric"].eq("mse").sum() == 4
    assert outputs[0][0].splitlines()[-1].startswith("generation:") and "mse_norm" in outputs[1][0]


def test_the_readme_architecture_names_every_module():
    """The README's tree is the map of the package: every module has its line, or its folder's line where no
    file of that folder is listed (`figures/`: one module per family)."""
    text = (REPO / "README.md").read_text()
    tree = text[text.index("## Architecture"):text.index("Design choices, and why")].splitlines()
    named, package = set(), ""
    for line in tree:
        indent, tokens = len(line) - len(line.lstrip()), line.split()
        if indent not in (2, 4) or not tokens:
            continue
        if indent == 2:
            package = tokens[0] if tokens[0].endswith("/") else ""
        for token in tokens:  # the leading names; the description starts at the first word that is none
            if not token.endswith((".py", "/")):
                break
            named.add(token if indent == 2 else package + token)
    modules = {str(p.relative_to(PACKAGE_ROOT)) for p in PACKAGE_ROOT.rglob("*.py")
               if p.name not in ("__init__.py", "__main__.py")}
    folders = [n for n in named if n.endswith("/") and not any(m.startswith(n) and m != n for m in named)]
    unnamed = sorted(m for m in modules if m not in named and not any(m.startswith(f) for f in folders))
    assert not unnamed, f"add {unnamed} to the README's Architecture tree"
