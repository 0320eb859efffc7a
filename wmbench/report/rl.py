"""The report's section on RL in imagination (`wmbench rl`): the return against real steps, and
where each run's time went."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from wmbench.report.figures.common import legend, panel_axes, save
from wmbench.report.select import Selection, ordered_models
from wmbench.report.stats import INTERVAL, interval_text, mean_interval, seeds_label, summarise
from wmbench.report.tables import write_table
from wmbench.results import markdown_table

RL_STAGES = ("real_steps", "world_model", "imagination", "actor_critic", "ppo", "evaluation")


def rl_returns(sel: Selection) -> pd.DataFrame:
    """The real return of each model's policy at every evaluation: mean and interval over seeds."""
    return summarise(sel.metric("return"), ["panel", "model", "step"])


def rl_table(sel: Selection) -> pd.DataFrame:
    """Per panel and model: the return at the last evaluation, the real steps, and where the time went."""
    rows = []
    for (panel, model), runs in sel.rows.groupby(["panel", "model"], sort=False):
        last = runs.groupby("seed")["step"].transform("max") == runs["step"]
        final = runs[last]
        mean, low, high = mean_interval(final.loc[final["metric"] == "return", "value"].to_numpy())
        seconds = final[final["metric"].str.startswith("wall_")].groupby("metric")["value"].mean()
        total = seconds.sum()
        split = ", ".join(f"{stage.replace('_', ' ')} {seconds[f'wall_{stage}_s'] / total:.0%}" for stage in RL_STAGES
                          if f"wall_{stage}_s" in seconds and total > 0)
        rows.append({"env": panel, "model": model, "real steps": int(final["step"].max()),
                     "return": interval_text(mean, low, high, ".0f"), "seeds": final["seed"].nunique(),
                     "wall time (min)": f"{total / 60:.1f}", "where the time went": split})
    order = {m: k for k, m in enumerate(ordered_models(sel.rows["model"].unique()))}
    return pd.DataFrame(rows).sort_values(["env", "model"], key=lambda c: c.map(order) if c.name == "model" else c)


def plot_rl_returns(returns: pd.DataFrame, colours: dict, path: Path) -> Path:
    panels = sorted(returns["panel"].unique())
    fig, axes = panel_axes(len(panels))
    for ax, panel in zip(axes[0], panels):
        part = returns[returns["panel"] == panel]
        for model in ordered_models(part["model"]):
            c = part[part["model"] == model].sort_values("step")
            ax.plot(c["step"], c["mean"], "-", color=colours[model], marker="o", ms=3, lw=1.6, label=model)
            ax.fill_between(c["step"], c["ci_low"], c["ci_high"], color=colours[model], alpha=0.15, lw=0)
        ax.set(title=panel, xlabel="real environment steps", ylabel="return (mean action)")
    fig.suptitle("RL in imagination: real return of a policy trained only on a model's imagined trajectories\n"
                 f"(PPO: model-free on the real steps); mean over seeds, {INTERVAL} "
                 f"({seeds_label(returns['n_seeds'])})")
    legend(fig, axes)
    return save(fig, path)


def write_rl_report(sel: Selection, out: Path, colours: dict) -> tuple[list[Path], pd.DataFrame]:
    """The RL figure and table; `(files, wide table)`."""
    returns = rl_returns(sel)
    wide = rl_table(sel)
    files = [plot_rl_returns(returns, colours, out / "rl_return.png"), *write_table(returns, wide, out / "rl_return")]
    return files, wide


def rl_section(wide: pd.DataFrame) -> list[str]:
    return ["## RL in imagination (`wmbench rl`)", "![return against real steps](rl_return.png)", "",
            "The paper's Algorithm 3 as a downstream score: an actor-critic trained only on a world model's imagined "
            "trajectories (the model trained online on the real steps so far), PPO trained on the real steps "
            "themselves. The return of each policy's mean action over real episodes at the last evaluation, "
            f"mean over seeds with a {INTERVAL} (`rl_return.csv` has every evaluation):", "",
            markdown_table(wide), ""]
