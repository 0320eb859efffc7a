"""The report's README.md: every figure and table in reading order, with what each shows, and the
provenance of the rows they were drawn from."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from wmbench.metrics import CLIP_Z, NORMAL_CLIP_FRACTION
from wmbench.report.comparisons import FAMILY_ALPHA, comparison_wide, findings
from wmbench.report.grid import GRID_COLUMN, TRAIN_SIZE, trains_alike, value_text
from wmbench.report.recordings import MIN_UNITS
from wmbench.report.rl import rl_section
from wmbench.report.select import Selection
from wmbench.report.stats import FLOOR, INTERVAL, LEVEL
from wmbench.report.tables import ALIVE_WARNING
from wmbench.results import markdown_table

POOLING = ("Where a policy, dataset or precision splits an env into panels, envs pool per setting (`all envs · bc`): "
           "an env's panels share its start states, and often its trained model, so no run counts twice.")
IMPROVEMENT = ("P(A < B) is the probability of improvement (a seed of A has the lower error than a seed of B; Agarwal "
               "et al. 2021) with Newcombe's (2006) score-type interval (his Method 5; the mean over envs where envs "
               "pool), which stays inside [0, 1] and short of certainty where every run of A lies below, or above, "
               "every run of B; it treats the runs of A and B as independent, so if anything it is wide for paired "
               "seeds")


def holm_text(family: str) -> str:
    """What `Holm p` is, for a family of comparisons (`this report's comparisons`)."""
    return (f"Each interval holds its {LEVEL:.0%} on its own, and there are many: among comparisons of two models "
            f"that are in fact equal, about 1 in {1 / FAMILY_ALPHA:.0f} would show a verdict by chance. `Holm p` is "
            f"each comparison's paired t-test p-value adjusted over all of {family} (Holm 1979): the chance that any "
            f"verdict with Holm p below {FAMILY_ALPHA:.2g} is wrong is at most {FAMILY_ALPHA:.0%}, and a finding "
            "marks the other verdicts *not after Holm*.")


def provenance_table(sel: Selection) -> pd.DataFrame:
    r = sel.rows
    facts = {
        "profile": sel.profile,
        "cells": len(r.drop_duplicates(["model", "env", "dataset", "policy", "horizon", "seed"])),
        "models": ", ".join(sel.models),
        "datasets": ", ".join(sorted(r["dataset"].unique())),
        "policies": ", ".join(sorted(r["policy"].unique())),
        "horizons": ", ".join(map(str, sorted(r["horizon"].unique()))),
        "seeds": ", ".join(map(str, sorted(r["seed"].unique()))),
        "trajectories per cell": ", ".join(map(str, sorted(r["n_trajectories"].dropna().astype(int).unique())))
        if "n_trajectories" in r else "",
    }
    for column in ("git_commit", "device", "versions"):
        if column in r:
            facts[column.replace("_", " ")] = "; ".join(sorted(r[column].dropna().astype(str).unique()))
    if "created" in r and r["created"].notna().any():
        created = r["created"].dropna().astype(str)
        facts["created"] = f"{created.min()} to {created.max()}"
    return pd.DataFrame(list(facts.items()), columns=["", "value"])


def one_video_per_env(folder: Path, envs) -> list[Path]:
    """A GIF per env from `wmbench render` (named ENV-MODEL-hH-sS.gif), PolyGRAD's first."""
    videos = []
    for env in sorted(envs):
        gifs = sorted(folder.glob(f"{env}-*.gif"), key=lambda p: (not p.name.startswith(f"{env}-polygrad-"), p.name))
        videos += gifs[:1]
    return videos


PAIRED_RATIOS = "Each paired ratio A/B of the comparisons above is taken on every recording that has both models."


GROWTHS = ("Each growth of the robustness tables above (`A (own)`: a model's own; `A vs B`: PolyGRAD's over B's) is "
           "taken on every recording that has it, against that recording's own largest value (its full data); each "
           "kind of growth is its own family for `Holm p` below, as in the robustness tables.")


def recording_part(others: list[str], wide: dict[str, pd.DataFrame], ratios: str = PAIRED_RATIOS) -> list[str]:
    """The section on other recordings of the datasets (`recordings`); `ratios` says which ratios are taken on each."""
    where = ", ".join(f"`{o}`" for o in others)
    has_units = "ratio over recordings" in wide["across"]
    return [
        "## Other recordings of the datasets" if len(others) > 1 else "## Another recording of the datasets",
        "",
        f"The same cells (model, env, dataset id, policy, profile, horizon and config) made on other recordings of "
        f"the datasets, in {where}: a seed's interval covers a model's training and the evaluation's draws, not "
        f"the data, of which one recording is one draw (with its own policy and held-out starts). {ratios} tau, the "
        "spread a recording adds to a log ratio, is estimated per panel by moments (each comparison's variance of its "
        "recordings' mean log ratios less their seeds' variance, averaged over the panel's comparisons by degrees "
        "of freedom: the same for every comparison of a panel, and rough where few recordings and comparisons "
        "that share models give it):",
        "",
        markdown_table(wide["spread"]),
        "",
        "Each ratio here with an interval that counts the recording too (the seeds' Student-t quantile on their "
        "variance plus tau^2, tau taken as known: never narrower than the paired interval above, if anything too "
        "narrow where tau dominates): where it holds 1 and the paired interval above does not, the verdict is about "
        "this recording rather than the kind of data"
        + (f". Where {MIN_UNITS} or more recordings have a comparison, the recording is the unit of replication: "
           f"the geometric mean of the recordings' ratios (each over its own seeds) with a {LEVEL:.0%} Student-t "
           "interval over the recordings, which covers the seeds' and the recording's spread together, its verdict, "
           "`Holm p` over those rows, and that comparison's own tau (`recording_comparisons.csv`):"
           if has_units else " (`recording_comparisons.csv`):"),
        "",
        markdown_table(wide["across"]),
        "",
        f"How each ratio moves from here to each other recording: the shift there / here with a {LEVEL:.0%} Welch t "
        "interval on the two recordings' per-seed log ratios, `Holm p` over this table (`recording_shifts.csv`, "
        "`recording_spread.csv`).",
        "",
        markdown_table(wide["shifts"]),
        "",
    ]


def readme_text(sel: Selection, sections: dict[str, pd.DataFrame], gen_wide, calib_wide, bench: pd.DataFrame,
            has_delta: bool) -> str:
    parts = [
        "# wmbench report",
        "",
        f"Profile `{sel.profile}`. Every number is a mean over seeds with a {INTERVAL} "
        "(`mean [low, high]`; a mean over one seed has no interval, and a column's header says over how many "
        "seeds it is taken, `n=1-3` where that differs, with `(n=1)` beside a cell over fewer). The best per "
        "column is bold, chosen only among the models with the most seeds there; a bold number is the "
        "lowest mean, not a verdict: the comparisons below say which differences the seeds support. "
        "Regenerate with `make report`.",
        "",
    ]
    if "aggregate" in sections:
        parts += [
            "## Aggregate score",
            "![aggregate score](aggregate.png)",
            "",
            f"Each run's state error at its last step divided by that of the `{FLOOR}` floor (every future state "
            "is the start state) on the same env, horizon and seed: 1 is no better than predicting that nothing "
            "moves, 0 is exact. Runs are aggregated over envs and seeds as the interquartile mean with a 95% "
            "stratified-bootstrap interval (seeds resampled within each env; Agarwal et al. 2021; none where the "
            "runs are too few for one, as with three seeds of one env, whose bootstrap interval is only their "
            "range), over all trajectories (the paper's error); `envs` says over how many envs a score is taken "
            "(compare rows with the same count; tidy numbers: `aggregate_table.csv`). The alive error is not "
            "aggregated: each model's is taken over the trajectories its own actions keep alive, a different set "
            "per model (the floor's included), so its ratio to the floor's would not compare like with like. "
            + POOLING,
            "",
            markdown_table(sections["aggregate"]),
            "",
        ]
    if "comparisons" in sections:
        parts += [
            "## Paired comparisons",
            "",
            "Two models evaluated with the same seed share its start states and policy, so their errors are "
            "paired: the error ratio A/B is the geometric mean of the per-seed ratios with a paired "
            f"{INTERVAL.replace('over seeds', 'on the log ratios')}, and {IMPROVEMENT}. Both at each horizon's "
            "last step, over all trajectories; *all envs* pools every env's seeds (the probability averaged over "
            "envs; per policy, dataset or precision where those split an env into panels, so that no run counts "
            "twice). The verdict says *better* or *worse* only where the ratio's interval excludes 1. "
            + holm_text("this report's comparisons")
            + " `wmbench compare A B` gives the same for any pair, step or metric (`comparisons.csv`).",
            "",
            "### Findings",
            "",
            "Written from the comparisons below, and nothing else:",
            "",
            *findings(sections["comparisons"]),
            "",
            markdown_table(comparison_wide(sections["comparisons"])),
            "",
        ]
    if "recording" in sections:
        parts += recording_part(*sections["recording"])
    parts += [
        "## State error versus step",
        "![state MSE versus step](mse_vs_step.png)",
        "",
        "Each line is a model's open-loop state error against the simulator replay of its own actions; lower is "
        "better, and a line that rises faster compounds its errors faster. The paper's error (top) goes on "
        "past a termination in the simulator, where the replay is in states no model was trained on; the "
        "alive error (middle) averages only trajectories whose replay has not terminated before that step "
        "(the terminal state itself counts), and the bottom row says how many those are.",
        "",
        "## State MSE at the paper's horizons",
        "The error at step 10, 50 and 200 of each model's longest trajectories, over all trajectories as the "
        f"paper reports it (tidy numbers: `mse_table.csv`). † marks an error where fewer than "
        f"{ALIVE_WARNING:.0%} of the trajectories are still alive in the simulator.",
        "",
        markdown_table(sections["mse"]),
        "",
    ]
    if "mse_alive" in sections:
        parts += ["### Over the trajectories alive in the simulator",
                  "The same, averaged over the trajectories that have not terminated (`mse_alive_table.csv`).", "",
                  markdown_table(sections["mse_alive"]), ""]
    if "curves" in sections:
        parts += ["## Learning curves",
                  "![learning curves](learning_curves.png)", "",
                  "The error at the last step of models evaluated during training (`--eval-every`; the same starts "
                  "and policy as the final evaluation, PolyGRAD's δ retuned at each point), against training "
                  "updates and against training FLOPs. One budget is one point of these curves. Mean over seeds "
                  "at each number of updates (`learning_curves.csv` has the intervals and the alive error):", "",
                  markdown_table(sections["curves"]), ""]
    if sections.get("dims"):
        parts += ["## Error per observation dimension", "",
                  "Each model's squared error in every observation dimension at the last step of its longest "
                  "trajectories (mean over seeds, `dim_error.csv` with intervals): which part of the body a model "
                  "gets wrong.", ""]
        parts += [f"![error per dimension]({path.name})" for path in sections["dims"]] + [""]
    if sections.get("videos"):
        parts += ["## Trajectories", "",
                  "The simulator replaying a model's generated actions (left) and the model's generated states "
                  "(right), one trajectory per row (`wmbench render`; the MP4s lie beside the GIFs).", ""]
        parts += [f"![{path.stem}](videos/{path.name})" for path in sections["videos"]] + [""]
    parts += [
        "## Generation cost",
        "![generation time versus horizon](generation_time.png)",
        "",
        "Top: wall-clock time to generate the batch at each horizon; bottom: the same per generated transition. "
        "Autoregressive models pay per step; PolyGRAD pays per diffusion step over the whole trajectory. "
        "These times come from the evaluation cells and share the machine with whatever ran beside them (a "
        "sweep's other workers: the provenance's `device` gives each cell's threads); `wmbench bench` times "
        "models alone.",
        "",
        markdown_table(gen_wide),
        "",
        "## Accuracy against compute",
        "![accuracy against compute](accuracy_vs_compute.png)",
        "",
        "One point per model and env at each horizon: the further to the lower left, the more accurate for its cost.",
        "",
        "## Action calibration",
        "![action calibration histograms](calibration.png)",
        "",
        "Generated actions standardised by the evaluation policy should be N(0, 1): a narrow histogram "
        "(std(z) < 1) means the trajectories are less random than the policy, a wide one more. The spread "
        "alone cannot show a shape: KS (the largest gap between the CDFs) and W1 (the mean distance moved "
        "to turn one distribution into the other) are 0 for N(0, 1), and the fraction at PolyGRAD's clip "
        f"(|z| >= {CLIP_Z:g}) is {NORMAL_CLIP_FRACTION:.2g} for N(0, 1) (W1 and the clip fraction: cells evaluated "
        "since they were added). "
        "PolyGRAD clips its actions at 3 policy stds (`action_clip_std`): every action it would draw beyond "
        "lands at +-3, which the clip fraction counts and std(z) does not show.",
        "",
        markdown_table(calib_wide),
        "",
    ]
    if "rl" in sections:
        parts += rl_section(sections["rl"])
    if has_delta:
        parts += ["## PolyGRAD's guidance scale", "![delta over tuning](delta.png)", "",
                  "δ while it is tuned towards std(z) = 1 after training; a curve that has flattened has "
                  "converged.", ""]
    if not bench.empty:
        parts += ["## Generation throughput against this machine's peak (`wmbench bench`)", "",
                  "Untrained models at the profile's sizes: time of one batch, FLOPs counted by PyTorch's "
                  "FlopCounterMode, and the fraction of a dense matmul's GFLOP/s measured in the same run.", "",
                  markdown_table(bench.astype(object).where(bench.notna(), "–")), ""]
    parts += ["## Provenance", "", markdown_table(provenance_table(sel)), ""]
    return "\n".join(parts)


def grid_readme_text(sel: Selection, key: str, sections: dict[str, pd.DataFrame]) -> str:
    """The README of a report against a grid key: the error figure and tables, the aggregate, the
    paired comparisons and their findings at each value, and the objective on training and held-out data."""
    size = key == TRAIN_SIZE
    parts = [
        f"# wmbench report: error against `{key}`",
        "",
        f"Profile `{sel.profile}`. Every value of `{key}` is its own experiment: every number is a mean over "
        f"the seeds of one value with a {INTERVAL} (`mean [low, high] (n)`; one seed gives no interval), and "
        "models are compared only within a value. Regenerate with "
        f"`wmbench report --against {key} --results STORE --out FOLDER`.",
        "",
    ]
    if size:
        parts += ["The x axis is the number of transitions each model learnt from: whole training episodes in an "
                  "order drawn with the cell's seed (a smaller subset lies inside a larger one of the same seed), so "
                  "a size is about the one asked for. The held-out episodes, the start states, the evaluation policy "
                  "and the normalisers are those of the full data at every size.", ""]
    parts += ["## State error", "![state error against the key](grid_errors.png)", "",
              "The error at step 1 (one step from a true state), at the horizon, and over the trajectories still alive "
              "in the simulator at the horizon (envs that terminate); tidy numbers with intervals: "
              "`grid_errors.csv`.", ""]
    for measure, wide in sections["errors"].items():
        parts += [f"### {measure}", "", markdown_table(wide), ""]
    if "robustness" in sections:
        growth, versus = sections["robustness"]
        pairing = ("a seed's smaller subsets lie inside its larger ones" if size else
                   "one seed: the same trained model and start states at every value" if trains_alike(key) else
                   "one seed: the same start states at every value")
        parts += ["## Robustness: the accuracy each model loses away from the largest value", "",
                  f"A model's error at the horizon at a value of `{key}` over its own error at the env's largest value "
                  f"(`largest`; pooled over envs, each env's own), paired by seed ({pairing}), as the geometric mean "
                  "over seeds with a paired t interval; then PolyGRAD's growth over another model's: below 1, PolyGRAD "
                  "loses less accuracy than that model (more robust), and the verdict says so only where the "
                  "interval excludes 1 (`grid_robustness.csv`). `Holm p`: each row's paired t-test p-value adjusted "
                  f"over every row of its table (Holm 1979; a verdict with Holm p below {FAMILY_ALPHA:.2g} holds for "
                  "the whole table).", "", markdown_table(growth), ""]
        parts += [markdown_table(versus), ""] if len(versus) else []
    if "recording" in sections:
        parts += recording_part(*sections["recording"], ratios=GROWTHS)
    if "aggregate" in sections:
        parts += ["## Aggregate score", "![aggregate score against the key](grid_aggregate.png)", "",
                  f"Each run's error at the horizon over the `{FLOOR}` floor's on the same env, seed and value, as the "
                  "interquartile mean over envs and seeds with a stratified-bootstrap interval (`grid_aggregate.csv`). "
                  f"{POOLING}",
                  ""]
    if "comparisons" in sections:
        comparisons = sections["comparisons"]
        parts += ["## Paired comparisons at each value", "",
                  "PolyGRAD against every other model and every learned model against `linear`, at each value: the "
                  f"error ratio A/B with a paired Student-t interval on the log ratios; {IMPROVEMENT}; "
                  "and a verdict that says *better* or *worse* only where the ratio's interval excludes 1 "
                  f"(`grid_comparisons.csv`). {holm_text('the comparisons at that value')}",
                  ""]
        for value, part in comparisons.groupby(GRID_COLUMN):
            parts += [f"### {key} = {value_text(value, key)}", "", "Findings (from the table below alone):", "",
                      *findings(part), "", markdown_table(comparison_wide(part)), ""]
    if "calibration" in sections:
        parts += ["## Action calibration", "![action calibration against the key](grid_calibration.png)", "",
                  "How the actions in the generated trajectories sit under the policy that was to produce them, as "
                  "z = (a - μ(s)) / σ(s): calibrated actions are N(0, 1) (std(z) 1, KS and W1 0, "
                  f"{NORMAL_CLIP_FRACTION:.2g} of them at |z| >= {CLIP_Z:g}). PolyGRAD clips its actions at 3 policy "
                  "stds, so mass at the clip above N(0, 1)'s is actions it would have drawn further out "
                  "(`grid_calibration.csv`).", "",
                  markdown_table(sections["calibration"]), ""]
    if "objective" in sections:
        parts += ["## Overfitting: the training objective on training and held-out data",
                  "![objective on training and held-out data](grid_objective.png)", "",
                  "Each model's own training objective (the data term: a diffusion model's denoising loss, the "
                  "ensemble's Gaussian NLL per member, the linear model's squared error) averaged over 2,048 items of "
                  "the data it learnt from and of the held-out episodes; the gap (held-out minus train, paired per "
                  "seed) above 0 is what the model fits in its data and not beyond it. Units differ between models: "
                  "compare a model with itself across values (`grid_objective.csv`).", "",
                  markdown_table(sections["objective"]), ""]
    parts += ["## Provenance", "", markdown_table(provenance_table(sel)), ""]
    return "\n".join(parts)
