"""Publication figures of a study's aggregates: the shared style, colours and saving, and the
plots of aggregates with intervals, performance profiles, probabilities of improvement and
per-task metrics. Learning curves are in :mod:`sftlib.analysis.curves`; every figure and
table of a study at once in :mod:`sftlib.analysis.paper`.

Reads only result tables (:mod:`sftlib.analysis.results`) and the tables of :mod:`sftlib.analysis.stats`;
imports no algorithm code. Every figure made from a synthetic study
(``df.attrs["synthetic"]`` or ``synthetic=True``) gets a red "SYNTHETIC DATA" title and a
watermark. Figures of a single run (notebooks 01, 02) are in :mod:`sftlib.analysis.run_figures`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from sftlib.analysis import stats
from sftlib.analysis.report import ALGO_NAMES, SYNTHETIC_TITLE, metric_label, metric_name
from sftlib.analysis.stats import higher_is_better, is_synthetic_table, ordered_variants

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
