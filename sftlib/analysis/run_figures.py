"""Figures of a single run, drawn while it is inspected (notebooks 01 and 02).

Same style and colours as the study figures of :mod:`sftlib.analysis.figures`; reads one run's
``eval.csv`` / ``events.csv`` tables only.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter

from sftlib.analysis.figures import (
    SCORE_LABEL,
    STEP_LABEL,
    finish_figure,
    steps_formatter,
    style,
    variant_color,
)


def plot_pretrain_curve(curve: pd.DataFrame, title: str | None = None) -> Figure:
    """Normalised score of one pretraining run against gradient steps.

    Args:
        curve: the run's ``eval.csv``: columns ``step, score`` (0-100).
    """
    with style():
        fig, ax = plt.subplots(figsize=(5.0, 3.2))
        ax.plot(curve["step"], curve["score"], marker="o", color=variant_color("direct"))
        ax.set(xlabel="gradient steps (offline)", ylabel=SCORE_LABEL)
        ax.xaxis.set_major_formatter(FuncFormatter(steps_formatter))
        ax.grid(alpha=0.3)
        finish_figure(fig, False, title)
        fig.tight_layout()
    return fig


def plot_finetune_run(
    curve: pd.DataFrame,
    events: pd.DataFrame,
    title: str | None = None,
    episodes: pd.DataFrame | None = None,
) -> Figure:
    """Executed (composite) policy and learner alone of one fine-tuning run, with the
    switch or promotion (triangles) and reset (dotted lines) events; with ``episodes``, the
    training episodes' own normalised returns beside them (dots at each episode's end, dark
    where the learner drove most of it), what the agent earned while it learned.

    Args:
        curve: the run's ``eval.csv``: ``step, executed_score, learner_score`` (0-100).
        events: the run's ``events.csv``: ``step, event, detail``.
        episodes: the run's ``episodes.csv`` (``start_step, length, normalized_return,
            share_learner``).
    """
    with style():
        fig, ax = plt.subplots(figsize=(6.0, 3.6))
        color = variant_color("sft")
        steps = curve["step"]
        ax.plot(
            steps, curve["executed_score"], color=color, marker="o", ms=3, label="executed policy"
        )
        ax.plot(
            curve["step"],
            curve["learner_score"],
            color=color,
            linestyle="--",
            alpha=0.7,
            label="learner alone",
        )
        ax.axhline(
            curve["executed_score"].iloc[0], color="0.5", linewidth=0.8, label="offline policy"
        )
        if episodes is not None and len(episodes):
            ends = episodes["start_step"] + episodes["length"] - 1
            shades = np.where(episodes["share_learner"] > 0.5, "0.15", "0.65")
            ax.scatter(ends, episodes["normalized_return"], s=6, c=shades, alpha=0.5, zorder=1)
            ax.scatter([], [], s=6, c="0.4", label="training episodes (dark: learner drove)")
        for step in events.loc[events["event"] == "reset", "step"]:
            ax.axvline(step, color="0.3", linestyle=":", linewidth=1.2)
        switches = events.loc[events["event"].isin(["switch", "promote"]), "step"].to_numpy()
        ax.scatter(
            switches,
            np.full(len(switches), 0.97),
            transform=ax.get_xaxis_transform(),  # x in data units, y in axes fraction
            marker="v",
            s=40,
            color=color,
            edgecolor="black",
            linewidth=0.4,
            clip_on=False,
            zorder=3,
        )
        handles, labels = ax.get_legend_handles_labels()
        handles += [
            Line2D([], [], color="0.3", linestyle=":"),
            Line2D([], [], marker="v", linestyle="", color=color, markeredgecolor="black"),
        ]
        labels += ["reset", "switch or promotion of the learner"]
        ax.legend(handles, labels, fontsize=8, loc="lower left")
        ax.set(xlabel=STEP_LABEL, ylabel=SCORE_LABEL)
        ax.xaxis.set_major_formatter(FuncFormatter(steps_formatter))
        ax.grid(alpha=0.3)
        finish_figure(fig, False, title)
        fig.tight_layout()
    return fig
