"""Every command against generated bad values: each numeric option gets a word, a negative number and one
too large for any machine (floats also NaN and infinity), and every command an unknown option. Each must
end with exit code 2, one line on stderr, no traceback, and nothing written to the results store."""

import pytest
from test_cli import run_main

# a command line that is valid up to the option under test, and its numeric options
COMMANDS = {
    "evaluate": (["evaluate", "--model", "linear", "--env", "hopper", "--profile", "smoke"],
                 {"--horizon": int, "--seed": int, "--n-trajectories": int, "--eval-every": int,
                  "--policy-std": float}),
    "sweep": (["sweep", "--models", "linear", "--envs", "hopper", "--profile", "smoke"],
              {"--workers": int, "--n-trajectories": int, "--eval-every": int, "--policy-std": float,
               "--cpus-per-task": float, "--gpus-per-task": float}),
    "rl": (["rl", "--model", "linear", "--env", "hopper", "--profile", "smoke"], {"--env-steps": int, "--seed": int}),
    "render": (["render", "--model", "linear", "--env", "hopper", "--profile", "smoke"],
               {"--horizon": int, "--n": int, "--seed": int, "--n-trajectories": int, "--policy-std": float}),
    "bench": (["bench", "--models", "linear", "--profile", "smoke"],
              {"--batch": int, "--repeats": int, "--updates": int}),
    "compare": (["compare", "linear", "persistence"], {"--horizon": int, "--step": int}),
    "reproduce": (["reproduce", "no-such-cell.csv"], {"--show": int}),
    "data make": (["data", "make", "walker2d", "--policy", "sac"],
                  {"--steps": int, "--final-episodes": int, "--seed": int}),
    "report": (["report"], {}),
    "results": (["results"], {}),
    "data show": (["data", "show", "wmbench/hopper/random-v0"], {}),
}
BAD = {int: ["ten", "-1", "99999999999999999999"], float: ["ten", "-1", "nan", "inf"]}
CASES = [(name, [*base, option, value]) for name, (base, options) in COMMANDS.items()
         for option, kind in options.items() for value in BAD[kind]]
CASES += [(name, [*base, "--no-such-option", "1"]) for name, (base, _) in COMMANDS.items()]


@pytest.mark.parametrize("name, args", CASES, ids=[" ".join(args[len(COMMANDS[name][0]):]) + f" ({name})"
                                                   for name, args in CASES])
def test_a_bad_value_gets_one_line_and_exit_2(monkeypatch, capsys, hopper_dataset, workspace, name, args):
    before = sorted(workspace["WMBENCH_RESULTS"].rglob("*"))
    code, _, err = run_main(monkeypatch, capsys, *args)
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("wmbench: error: ") and "Traceback" not in err, err
    assert sorted(workspace["WMBENCH_RESULTS"].rglob("*")) == before, "nothing written to the store"


def test_every_command_is_fuzzed():
    from typer.main import get_command

    from wmbench.cli import app

    root = get_command(app)
    commands = {name for name, command in root.commands.items() if not hasattr(command, "commands")}
    commands |= {f"data {name}" for name in root.commands["data"].commands}
    untested = commands - set(COMMANDS) - {"models", "profiles", "data list"}  # these take no value
    assert not untested, f"add {sorted(untested)} to COMMANDS"
