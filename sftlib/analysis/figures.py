"""Publication figures of a study, and :func:`write_paper_figures`, the one pipeline that
writes every figure and table of a study (used by ``sft figures`` and notebook 06 alike).

Reads only result tables (:mod:`sftlib.analysis.results`) and the tables of :mod:`sftlib.analysis.stats`;
imports no algorithm code. Every figure made from a synthetic study
(``df.attrs["synthetic"]`` or ``synthetic=True``) gets a red "SYNTHETIC DATA" title and a
watermark. Figures of a single run (notebooks 01, 02) are in :mod:`sftlib.analysis.run_figures`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter

from sftlib.analysis import report, results, stats
from sftlib.analysis.report import ALGO_NAMES, SYNTHETIC_TITLE, metric_label, metric_name
from sftlib.analysis.stats import BASELINES, higher_is_better, is_synthetic_table, ordered_variants
from sftlib.layout import FIGURES_DIRNAME

_PALETTE = sns.color_palette("colorblind", 10)
VARIANT_COLORS: dict[str, tuple[float, float, float]] = {
    "sft": _PALETTE[0],
    "sft-noswitch": _PALETTE[1],
    "sft-q": _PALETTE[2],
    "sft-mc": _PALETTE[4],
    "sft-fqe": _PALETTE[6],
    "sft-noreset": _PALETTE[3],
    "pex": _PALETTE[5],
    "direct": _PALETTE[7],
    "warmup": _PALETTE[8],
    "sft-episode": _PALETTE[9],
}
"""Colour-blind-safe colour of each variant, the same in every figure."""

SCORE_LABEL = "normalised score (0-100)"
STEP_LABEL = "environment steps (online)"

STYLE = {
    "font.size": 11,
    "axes.titlesize": 12,
    "axes.labelsize": 11,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "legend.fontsize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.25,
    "pdf.fonttype": 42,  # embed TrueType: editable text, accepted by publishers
    "ps.fonttype": 42,
}
"""Matplotlib rc used by every figure of this module."""


# ---------------------------------------------------------------- style and saving


def variant_color(variant: str) -> tuple[float, float, float]:
    """Colour of ``variant``: fixed for known variants, a stable palette slot otherwise."""
    if variant in VARIANT_COLORS:
        return VARIANT_COLORS[variant]
    return _PALETTE[8 + (sum(map(ord, variant)) % 2)]


@contextlib.contextmanager
def style() -> Iterator[None]:
    """Apply :data:`STYLE`, then restore exactly those keys.

    Not ``plt.rc_context``: that restores *every* rcParam, including ``interactive``, which
    Jupyter's inline backend switches on when the first figure is made; restoring it to off
    silently stops every later figure of the notebook from being displayed.
    """
    saved = {key: matplotlib.rcParams[key] for key in STYLE}
    matplotlib.rcParams.update(STYLE)
    try:
        yield
    finally:
        matplotlib.rcParams.update(saved)


def finish_figure(fig: Figure, synthetic: bool, title: str | None) -> Figure:
    """Suptitle (red SYNTHETIC banner first when synthetic) and watermark."""
    lines = ([SYNTHETIC_TITLE] if synthetic else []) + ([title] if title else [])
    if lines:
        fig.suptitle(
            "\n".join(lines),
            color="crimson" if synthetic else "black",
            fontweight="bold" if synthetic else "normal",
        )
    if synthetic:
        width, height = fig.get_size_inches()
        mark = fig.text(
            0.5,
            0.5,
            "SYNTHETIC",
            fontsize=min(64.0, 16.0 * min(width, height)),
            color="crimson",
            alpha=0.07,
            rotation=25,
            ha="center",
            va="center",
            zorder=0,
        )
        mark.set_in_layout(False)  # never grows the saved (tight) bounding box
    return fig


def steps_formatter(value: float, _position: int) -> str:
    """Tick label of an environment-step axis: 0, 250, 20k, 1.5M."""
    if abs(value) >= 1e6:
        return f"{value / 1e6:g}M"
    if abs(value) >= 1e3:
        return f"{value / 1e3:g}k"
    return f"{value:g}"


def save_figure(fig: Figure, out_dir: str | Path, name: str) -> list[Path]:
    """Write ``fig`` to ``<out_dir>/<name>.png`` (200 dpi) and ``.pdf``; return both paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.png", out / f"{name}.pdf"]
    with style():
        fig.savefig(paths[0], dpi=200, bbox_inches="tight")
        fig.savefig(paths[1], bbox_inches="tight")
    return paths


def _interval_bar(
    ax: plt.Axes, position: int, interval: tuple[float, float, float], color: tuple
) -> None:
    """Horizontal bar at ``position`` spanning ``(ci_low, estimate, ci_high)``'s interval,
    with a black tick at the estimate."""
    ci_low, estimate, ci_high = interval
    ax.barh(position, ci_high - ci_low, left=ci_low, height=0.6, color=color, alpha=0.8)
    ax.vlines(estimate, position - 0.3, position + 0.3, color="black", linewidth=1.5)


# ---------------------------------------------------------------- study figures


def plot_aggregates(
    aggregates: pd.DataFrame, synthetic: bool | None = None, title: str | None = None
) -> Figure:
    """One panel per aggregate of :func:`sftlib.analysis.stats.aggregate`: a bar spanning the CI per
    variant and a black tick at the point estimate, in the metric's units."""
    synthetic = is_synthetic_table(aggregates, synthetic)
    metric = aggregates.attrs.get("metric", "score_final")
    names = list(dict.fromkeys(aggregates["aggregate"]))
    variants = ordered_variants(aggregates["variant"])
    with style():
        fig, axes = plt.subplots(
            1,
            len(names),
            figsize=(3.0 * len(names) + 0.8, 0.45 * len(variants) + 1.6),
            sharey=True,
            layout="constrained",
            squeeze=False,
        )
        for ax, name in zip(axes[0], names, strict=True):
            for position, variant in enumerate(variants):
                row = aggregates[
                    (aggregates["variant"] == variant) & (aggregates["aggregate"] == name)
                ].iloc[0]
                interval = (row["ci_low"], row["estimate"], row["ci_high"])
                _interval_bar(ax, position, interval, variant_color(variant))
            ax.set_title(name)
            ax.set_yticks(range(len(variants)), variants)
            ax.grid(True, axis="x")
            ax.grid(False, axis="y")
            ax.xaxis.set_major_locator(plt.MaxNLocator(4))
        axes[0][0].invert_yaxis()  # shared y: first variant on top in every panel
        fig.supxlabel(metric_label(metric))
    return finish_figure(fig, synthetic, title)


def plot_performance_profiles(
    profiles: pd.DataFrame, synthetic: bool | None = None, title: str | None = None
) -> Figure:
    """Score distributions of :func:`sftlib.analysis.stats.performance_profiles` with their 95% bands."""
    synthetic = is_synthetic_table(profiles, synthetic)
    metric = profiles.attrs.get("metric", "score_final")
    with style():
        fig, ax = plt.subplots(figsize=(6.0, 4.0), layout="constrained")
        for variant in ordered_variants(profiles["variant"]):
            profile = profiles[profiles["variant"] == variant]
            color = variant_color(variant)
            ax.plot(profile["tau"], profile["fraction"], color=color, linewidth=2, label=variant)
            ax.fill_between(
                profile["tau"],
                profile["ci_low"],
                profile["ci_high"],
                color=color,
                alpha=0.15,
                linewidth=0,
            )
        ax.set_xlabel(rf"threshold $\tau$: {metric_label(metric)}")
        ax.set_ylabel(r"fraction of runs with value $> \tau$")
        ax.set_ylim(-0.02, 1.02)
        ax.legend(frameon=False)
    return finish_figure(fig, synthetic, title)


def plot_probability_of_improvement(
    improvement: pd.DataFrame, synthetic: bool | None = None, title: str | None = None
) -> Figure:
    """One row per pair of :func:`sftlib.analysis.stats.probability_of_improvement` (several metrics may
    be concatenated): CI bar coloured by the comparator, tick at the estimate, dashed line at
    0.5 (no difference). "Better" is ``<`` for lower-is-better metrics such as the dip."""
    synthetic = is_synthetic_table(improvement, synthetic)
    metrics = list(dict.fromkeys(improvement["metric"]))
    labels = [
        f"{row.x} {'>' if higher_is_better(row.metric) else '<'} {row.y}"
        + (f" ({metric_name(row.metric)})" if len(metrics) > 1 else "")
        for row in improvement.itertuples()
    ]
    with style():
        fig, ax = plt.subplots(figsize=(6.0, 0.5 * len(improvement) + 1.6), layout="constrained")
        for position, row in enumerate(improvement.itertuples()):
            interval = (row.ci_low, row.probability, row.ci_high)
            _interval_bar(ax, position, interval, variant_color(row.y))
        ax.axvline(0.5, color="grey", linestyle="--", linewidth=1)
        ax.set_yticks(range(len(improvement)), labels)
        ax.invert_yaxis()
        ax.set_xlim(0.0, 1.0)
        ax.grid(False, axis="y")
        if len(metrics) == 1:
            operator = ">" if higher_is_better(metrics[0]) else "<"
            ax.set_xlabel(
                f"probability of improvement P(X {operator} Y), {metric_name(metrics[0])}"
            )
        else:
            ax.set_xlabel("probability of improvement (X better than Y)")
    return finish_figure(fig, synthetic, title)


def plot_metric_by_task(
    summaries: pd.DataFrame,
    metric: str,
    variants: Sequence[str] | None = None,
    synthetic: bool | None = None,
    title: str | None = None,
) -> Figure:
    """Per task, every seed's ``metric`` (dots) and the mean across seeds (bar) per variant."""
    synthetic = is_synthetic_table(summaries, synthetic)
    variants = ordered_variants(summaries["variant"]) if variants is None else list(variants)
    data = summaries[summaries["variant"].isin(variants)].copy()
    data["task"] = [
        f"{dataset}\n{ALGO_NAMES.get(algo, algo)}"
        for dataset, algo in zip(data["dataset"], data["algo"], strict=True)
    ]
    data["value"] = stats.metric_values(data, metric)
    palette = {variant: variant_color(variant) for variant in variants}
    order = sorted(data["task"].unique())
    with style():
        fig, ax = plt.subplots(
            figsize=(max(6.0, (0.45 * len(variants) + 0.6) * len(order) + 1.5), 4.2),
            layout="constrained",
        )
        common = dict(
            data=data,
            x="task",
            y="value",
            hue="variant",
            order=order,
            hue_order=variants,
            palette=palette,
            ax=ax,
        )
        sns.barplot(**common, errorbar=None, alpha=0.45)
        sns.stripplot(**common, dodge=True, size=4, legend=False, edgecolor="black", linewidth=0.4)
        ax.set_xlabel("task (dataset / base algorithm)")
        ax.set_ylabel(metric_label(metric))
        ax.legend(title="variant (bar: mean; dots: seeds)", frameon=False)
        ax.grid(False, axis="x")
    return finish_figure(fig, synthetic, title)


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
            common = dict(
                data=task,
                x="step",
                hue="variant",
                hue_order=hue_order,
                palette=palette,
                errorbar=("ci", 95),
                seed=seed,
                legend=False,
                ax=ax,
            )
            sns.lineplot(**common, y="executed_score", linewidth=2)
            if show_learner:
                sns.lineplot(
                    **common,
                    y="learner_score",
                    linewidth=1.4,
                    linestyle="--",
                    err_kws={"alpha": 0.08},
                )
            if has_events:
                _mark_events(ax, events, dataset, algo, hue_order, event_types)
            ax.set_title(report.task_label(dataset, algo))
            ax.set_xlabel(STEP_LABEL)
            ax.set_ylabel(SCORE_LABEL)
            ax.xaxis.set_major_formatter(FuncFormatter(steps_formatter))
        for ax in list(axes.flat)[len(tasks) :]:
            ax.set_visible(False)
        handles = [
            Line2D([], [], color=palette[variant], linewidth=2, label=variant)
            for variant in variants
        ]
        handles.append(Line2D([], [], color="black", linewidth=2, label="executed policy"))
        if show_learner:
            handles.append(
                Line2D([], [], color="black", linewidth=1.4, linestyle="--", label="learner")
            )
        if has_events and "switch" in event_types:
            handles.append(
                Line2D(
                    [], [], color="black", marker="v", linestyle="none", label="switch (per run)"
                )
            )
        if has_events and "reset" in event_types:
            handles.append(Line2D([], [], color="black", linestyle=":", label="reset"))
        fig.legend(
            handles=handles, loc="outside lower center", ncols=min(len(handles), 6), frameon=False
        )
    return finish_figure(fig, synthetic, title)


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


# ---------------------------------------------------------------- everything at once


@dataclass
class PaperFigures:
    """What :func:`write_paper_figures` computed and wrote for one study.

    ``files`` maps each product (``aggregates``, ..., ``stability_table``) to its written paths
    (PNG and PDF; CSV and LaTeX for the table), ``figures`` each figure product to its figure
    (closed in pyplot, so shown only where displayed). The tables are those of
    :mod:`sftlib.analysis.stats` (``probability_of_improvement`` is None when ``x`` has no comparator);
    ``conclusion`` is the plain-text verdicts of :mod:`sftlib.analysis.report` on them.
    """

    study_dir: Path
    out_dir: Path
    synthetic: bool
    files: dict[str, list[Path]]
    figures: dict[str, Figure]
    runs_per_task: pd.DataFrame
    aggregates: pd.DataFrame
    performance_profiles: pd.DataFrame
    probability_of_improvement: pd.DataFrame | None
    stability_table: pd.DataFrame
    promise_table: pd.DataFrame | None
    """Per task: does ``x`` keep the stability promise against ``direct`` (when both ran)."""
    conclusion: str


def write_paper_figures(
    study_dir: str | Path,
    out_dir: str | Path | None = None,
    metric: str = "score_final",
    x: str = "sft",
    reps: int = 2000,
    seed: int = 0,
) -> PaperFigures:
    """Every figure and table of a study: the one pipeline of ``sft figures`` and notebook 06.

    Writes to ``out_dir`` (default ``<study_dir>/figures``): ``aggregates`` (IQM, median, mean,
    optimality gap of ``metric``), ``performance_profiles``, ``probability_of_improvement``
    (``x`` over each baseline present, else over every other variant; only when ``x`` and
    another variant are present), ``learning_curves`` (all variants),
    ``learning_curves_learner`` (``x`` and the baselines, learner dashed), each as PNG and
    PDF, ``stability_table`` as CSV and LaTeX, and the numbers behind them
    (:func:`sftlib.analysis.report.write_numbers`: ``aggregates.csv``,
    ``probability_of_improvement.csv``, ``conclusion.txt``).

    Args:
        reps: bootstrap resamples of every interval.
        seed: seed of every bootstrap.
    """
    study_dir = Path(study_dir)
    out = study_dir / FIGURES_DIRNAME if out_dir is None else Path(out_dir)
    summaries = results.load_summaries(study_dir)
    curves, events = results.load_study(study_dir), results.load_events(study_dir)
    synthetic = is_synthetic_table(summaries)
    name = study_dir.name
    present = ordered_variants(summaries["variant"])
    figures: dict[str, Figure] = {}

    aggregates = stats.aggregate(summaries, metric, reps=reps, seed=seed)
    title = f"{name}: {metric_name(metric)}, 95% stratified-bootstrap CIs"
    figures["aggregates"] = plot_aggregates(aggregates, synthetic, title)
    profiles = stats.performance_profiles(summaries, metric, reps=reps, seed=seed)
    title = f"{name}: performance profiles"
    figures["performance_profiles"] = plot_performance_profiles(profiles, synthetic, title)
    improvement = None
    if x in present and len(present) > 1:
        ys = [variant for variant in present if variant in BASELINES]
        ys = ys or [variant for variant in present if variant != x]
        improvement = stats.probability_of_improvement(summaries, x, ys, metric, reps, seed)
        title = f"{name}: probability of improvement"
        figures["probability_of_improvement"] = plot_probability_of_improvement(
            improvement, synthetic, title
        )
    figures["learning_curves"] = plot_learning_curves(
        curves, events, seed=seed, synthetic=synthetic, title=name
    )
    main = [variant for variant in present if variant == x or variant in BASELINES]
    figures["learning_curves_learner"] = plot_learning_curves(
        curves, events, main, show_learner=True, seed=seed, synthetic=synthetic, title=name
    )
    files: dict[str, list[Path]] = {}
    for product, fig in figures.items():
        files[product] = save_figure(fig, out, product)
        plt.close(fig)  # the caller may still display it; pyplot no longer holds it
    table = stats.stability_table(summaries)
    files[report.STABILITY_TABLE] = list(
        report.write_stability_table(table, out, synthetic=synthetic)
    )

    conclusion = report.describe_aggregates(aggregates, synthetic=synthetic)
    if improvement is not None:
        conclusion += "\n\n" + report.describe_probability(improvement, synthetic=synthetic)
    promise = None
    if x in present and "direct" in present:
        promise = stats.promise_table(summaries, x, "direct")
        files[report.PROMISE_TABLE] = [report.write_promise_table(promise, out)]
        conclusion += "\n\n" + report.describe_promise(promise, x, "direct")
    files[report.NUMBERS] = report.write_numbers(aggregates, improvement, conclusion, out)
    return PaperFigures(
        study_dir=study_dir,
        out_dir=out,
        synthetic=synthetic,
        files=files,
        figures=figures,
        runs_per_task=stats.runs_per_task(summaries),
        aggregates=aggregates,
        performance_profiles=profiles,
        probability_of_improvement=improvement,
        stability_table=table,
        promise_table=promise,
        conclusion=conclusion,
    )
