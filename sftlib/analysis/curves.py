"""Learning curves of a study: the executed policy (and the learner) against environment
steps, with switches and resets marked, and the drops after resets."""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter

from sftlib.analysis import report
from sftlib.analysis.figures import (
    SCORE_LABEL,
    STEP_LABEL,
    finish_figure,
    steps_formatter,
    style,
    variant_color,
)
from sftlib.analysis.stats import is_synthetic_table, ordered_variants


def plot_learning_curves(
    curves: pd.DataFrame,
    events: pd.DataFrame | None = None,
    variants: Sequence[str] | None = None,
    show_learner: bool = False,
    event_types: Sequence[str] = ("switch", "reset"),
    ncols: int = 2,
    seed: int = 0,
    synthetic: bool | None = None,
    title: str | None = None,
) -> Figure:
    """Evaluation curves, one panel per (dataset, algo): mean over seeds with 95% CI band.

    Args:
        curves: output of :func:`sftlib.analysis.results.load_study` (scores 0-100 against
            environment steps).
        events: output of :func:`sftlib.analysis.results.load_events`; ``switch`` events are drawn as
            triangles along the top of the panel (one per run and switch), ``reset`` events as
            dotted vertical lines (one per distinct step), in the variant's colour.
        variants: variants to draw (default all present).
        show_learner: also draw the learner's own score dashed (SFT's hidden reset dips).
        event_types: which event types to mark.
        ncols: panels per row.
        seed: seed of seaborn's bootstrap for the bands.
    """
    synthetic = is_synthetic_table(curves, synthetic)
    variants = ordered_variants(curves["variant"]) if variants is None else list(variants)
    data = curves[curves["variant"].isin(variants)]
    tasks = sorted(set(map(tuple, data[["dataset", "algo"]].values)))
    ncols = max(1, min(ncols, len(tasks)))
    nrows = math.ceil(len(tasks) / ncols)
    palette = {variant: variant_color(variant) for variant in variants}
    has_events = events is not None and not events.empty
    with style():
        fig, axes = plt.subplots(
            nrows,
            ncols,
            figsize=(5.2 * ncols, 3.6 * nrows + 0.6),
            squeeze=False,
            layout="constrained",
        )
        for ax, (dataset, algo) in zip(axes.flat, tasks, strict=False):
            task = data[(data["dataset"] == dataset) & (data["algo"] == algo)]
            hue_order = [variant for variant in variants if variant in set(task["variant"])]
            _draw_task(ax, task, hue_order, palette, show_learner, seed)
            if has_events:
                _mark_events(ax, events, dataset, algo, hue_order, event_types)
            ax.set_title(report.task_label(dataset, algo))
        for ax in list(axes.flat)[len(tasks) :]:
            ax.set_visible(False)
        handles = _legend_handles(variants, palette, show_learner, has_events, event_types)
        fig.legend(
            handles=handles, loc="outside lower center", ncols=min(len(handles), 6), frameon=False
        )
    return finish_figure(fig, synthetic, title)


def _draw_task(
    ax: plt.Axes,
    task: pd.DataFrame,
    variants: Sequence[str],
    palette: dict[str, tuple[float, float, float]],
    show_learner: bool,
    seed: int,
) -> None:
    """One task's curves on ``ax``: executed (solid) and, with ``show_learner``, learner
    (dashed), mean over seeds with a 95% CI band."""
    common = dict(
        data=task,
        x="step",
        hue="variant",
        hue_order=list(variants),
        palette=palette,
        errorbar=("ci", 95),
        seed=seed,
        legend=False,
        ax=ax,
    )
    sns.lineplot(**common, y="executed_score", linewidth=2)
    if show_learner:
        sns.lineplot(
            **common, y="learner_score", linewidth=1.4, linestyle="--", err_kws={"alpha": 0.08}
        )
    ax.set_xlabel(STEP_LABEL)
    ax.set_ylabel(SCORE_LABEL)
    ax.xaxis.set_major_formatter(FuncFormatter(steps_formatter))


def _legend_handles(
    variants: Sequence[str],
    palette: dict[str, tuple[float, float, float]],
    show_learner: bool,
    has_events: bool,
    event_types: Sequence[str],
) -> list[Line2D]:
    handles = [
        Line2D([], [], color=palette[variant], linewidth=2, label=variant) for variant in variants
    ]
    handles.append(Line2D([], [], color="black", linewidth=2, label="executed policy"))
    if show_learner:
        handles.append(
            Line2D([], [], color="black", linewidth=1.4, linestyle="--", label="learner")
        )
    if has_events and "switch" in event_types:
        handles.append(
            Line2D([], [], color="black", marker="v", linestyle="none", label="switch (per run)")
        )
    if has_events and "reset" in event_types:
        handles.append(Line2D([], [], color="black", linestyle=":", label="reset"))
    return handles


def _mark_events(
    ax: plt.Axes,
    events: pd.DataFrame,
    dataset: str,
    algo: str,
    variants: Sequence[str],
    event_types: Sequence[str],
) -> None:
    """Switch triangles along the top (staggered per variant) and reset lines on ``ax``.

    A reset step shared by several variants (the usual case: a fixed ``reset_every``) is drawn
    once in dark grey, otherwise in the variant's colour.
    """
    task_events = events[
        (events["dataset"] == dataset) & (events["algo"] == algo) & events["variant"].isin(variants)
    ]
    if "reset" in event_types:
        resets = task_events[task_events["event"] == "reset"]
        for step, group in resets.groupby("step"):
            owners = set(group["variant"])
            color = variant_color(owners.pop()) if len(owners) == 1 else "0.3"
            ax.axvline(step, color=color, linestyle=":", linewidth=1.2, alpha=0.8)
    if "switch" not in event_types:
        return
    for position, variant in enumerate(variants):
        variant_events = task_events[task_events["variant"] == variant]
        steps = variant_events.loc[variant_events["event"] == "switch", "step"].to_numpy()
        ax.scatter(
            steps,
            np.full(len(steps), 0.98 - 0.045 * position),
            transform=ax.get_xaxis_transform(),  # x in data units, y in axes fraction
            marker="v",
            s=22,
            color=variant_color(variant),
            edgecolor="black",
            linewidth=0.3,
            alpha=0.8,
            zorder=3,
            clip_on=False,
        )


def plot_reset_drops(
    drops: pd.DataFrame, synthetic: bool | None = None, title: str | None = None
) -> Figure:
    """Per variant, the drop (normalised score points) after each reset of the learner vs the
    executed policy (box + dots), from :func:`sftlib.analysis.results.reset_drops`."""
    synthetic = is_synthetic_table(drops, synthetic)
    long = drops.melt(
        id_vars=["variant"],
        value_vars=["learner_drop", "executed_drop"],
        var_name="policy",
        value_name="drop",
    )
    long["policy"] = long["policy"].str.replace("_drop", "", regex=False)
    order = ordered_variants(long["variant"])
    common = dict(
        data=long,
        x="variant",
        y="drop",
        hue="policy",
        order=order,
        hue_order=["learner", "executed"],
    )
    with style():
        fig, ax = plt.subplots(figsize=(1.6 * len(order) + 2.5, 4.0), layout="constrained")
        sns.boxplot(**common, palette=["0.75", "0.35"], showfliers=False, ax=ax)
        sns.stripplot(
            **common, palette=["0.55", "0.1"], dodge=True, size=3, alpha=0.6, legend=False, ax=ax
        )
        ax.set_xlabel("variant")
        ax.set_ylabel("drop after a reset (normalised score points)")
        ax.legend(title="policy", frameon=False)
        ax.grid(False, axis="x")
    return finish_figure(fig, synthetic, title)
