"""Text of a study: names and units of the metrics, number formatting, the computed verdicts
(``describe_*``) and the stability table as CSV and booktabs LaTeX.

Reads the tables of :mod:`sftlib.analysis.stats`; no figures, so no matplotlib. Everything made from a
synthetic study (``attrs["synthetic"]`` or ``synthetic=True``) says so: verdicts start with
:data:`SYNTHETIC_TITLE`, the CSV has a ``synthetic`` column and the LaTeX caption a warning.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from sftlib.analysis.metric_table import METRICS, STABILITY_METRICS
from sftlib.analysis.stats import (
    higher_is_better,
    is_synthetic_table,
    ordered_variants,
)

SYNTHETIC_TITLE = "SYNTHETIC DATA - not experimental results"
"""Banner of every figure, verdict and table made from a synthetic study."""

ALGO_NAMES = {"iql": "IQL", "td3bc": "TD3+BC", "calql": "Cal-QL"}
"""Display name of each base algorithm."""


STABILITY_TABLE = "stability_table"
"""File stem of the stability table (``.csv`` and ``.tex``)."""


def metric_label(metric: str) -> str:
    """Axis label, with units, of the summary field ``metric`` (the field itself if unknown)."""
    return METRICS[metric].label if metric in METRICS else metric


def metric_name(metric: str) -> str:
    """Short name of the summary field ``metric`` (the field itself if unknown)."""
    return METRICS[metric].name if metric in METRICS else metric


def task_label(dataset: str, algo: str) -> str:
    """``"<dataset> / <algorithm display name>"``."""
    return f"{dataset} / {ALGO_NAMES.get(algo, algo)}"


def format_value(value: float, metric: str) -> str:
    """``value`` of ``metric`` for text: whole environment steps with thousands separators
    for ``steps_to_recover``, one decimal (score points) otherwise."""
    return f"{value:,.0f}" if metric == "steps_to_recover" else f"{value:.1f}"


def latex_escape(text: str) -> str:
    """``text`` with LaTeX's special characters ``\\ _ & %`` escaped."""
    for char, replacement in (
        ("\\", r"\textbackslash{}"),
        ("_", r"\_"),
        ("&", r"\&"),
        ("%", r"\%"),
    ):
        text = text.replace(char, replacement)
    return text


def format_mean_std(mean: float, std: float, scale: float = 1.0, digits: int = 1) -> str:
    """LaTeX cell ``$mean \\pm std$`` of values divided by ``scale``; ``$mean$`` without a
    std (one seed), ``--`` without a mean."""
    if pd.isna(mean):
        return "--"
    if pd.isna(std):
        return f"${mean / scale:.{digits}f}$"
    return f"${mean / scale:.{digits}f} \\pm {std / scale:.{digits}f}$"


# ---------------------------------------------------------------- stability table


def stability_latex(
    table: pd.DataFrame, name: str = STABILITY_TABLE, synthetic: bool = False
) -> str:
    """Booktabs LaTeX ``table`` of :func:`sftlib.analysis.tables.stability_table`: ``mean \\pm std``
    cells, steps to recover in thousands with recovered/total runs in brackets.

    Written by hand rather than with ``DataFrame.to_latex``: pandas' Styler, which that uses,
    imports matplotlib.
    """
    columns = {
        "Dataset": table["dataset"].map(latex_escape).tolist(),
        "Algo": [latex_escape(ALGO_NAMES.get(algo, algo)) for algo in table["algo"]],
        "Variant": table["variant"].map(latex_escape).tolist(),
    }
    for metric in STABILITY_METRICS:
        header, scale = METRICS[metric].latex, METRICS[metric].latex_scale
        cells = [
            format_mean_std(mean, std, scale)
            for mean, std in zip(table[f"{metric}_mean"], table[f"{metric}_std"], strict=True)
        ]
        if metric == "steps_to_recover":
            counts = zip(table["n_recovered"], table["n_seeds"], strict=True)
            cells = [
                f"{cell} ({recovered}/{seeds})"
                for cell, (recovered, seeds) in zip(cells, counts, strict=True)
            ]
        columns[header] = cells
    caption = (
        "Stability during fine-tuning: mean $\\pm$ std across seeds of the executed policy's "
        "dip, steps to recover the offline score (over recovered runs; recovered/total in "
        "brackets), regret, the online regret and worst normalised return of the training "
        "episodes, the share of decisions judged right, AUC and final normalised score, and the "
        "learner's own final normalised score."
    )
    if synthetic:
        caption = r"\textbf{SYNTHETIC DATA, not experimental results.} " + caption
    rows = [" & ".join(cells) + r" \\" for cells in zip(*columns.values(), strict=True)]
    column_format = "lll" + "r" * len(STABILITY_METRICS)
    lines = [
        *([f"% {SYNTHETIC_TITLE}"] if synthetic else []),
        r"\begin{table}",
        f"\\caption{{{caption}}}",
        f"\\label{{tab:{name}}}",
        f"\\begin{{tabular}}{{{column_format}}}",
        r"\toprule",
        " & ".join(columns) + r" \\",
        r"\midrule",
        *rows,
        r"\bottomrule",
        r"\end{tabular}",
        r"\end{table}",
    ]
    return "\n".join(lines) + "\n"


def write_stability_table(
    table: pd.DataFrame,
    out_dir: str | Path,
    name: str = STABILITY_TABLE,
    synthetic: bool | None = None,
) -> tuple[Path, Path]:
    """Write :func:`sftlib.analysis.tables.stability_table` to ``<out_dir>/<name>.csv`` and ``.tex``.

    The CSV holds the raw numbers plus a ``synthetic`` column; the LaTeX file is
    :func:`stability_latex`, captioned "SYNTHETIC DATA" when the study is synthetic.

    Returns:
        The CSV and the LaTeX path.
    """
    synthetic = is_synthetic_table(table, synthetic)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv_path, tex_path = out / f"{name}.csv", out / f"{name}.tex"
    table.assign(synthetic=synthetic).to_csv(csv_path, index=False)
    tex_path.write_text(stability_latex(table, name, synthetic))
    return csv_path, tex_path


# ---------------------------------------------------------------- computed conclusions


def describe_aggregates(
    aggregates: pd.DataFrame, aggregate_name: str = "IQM", synthetic: bool | None = None
) -> str:
    """Plain-text verdict from :func:`sftlib.analysis.stats.aggregate`: which variant is best on
    ``aggregate_name``, with the numbers and intervals, and whether its interval separates it
    from each other variant (non-overlapping intervals) or not (overlap: not resolved by these
    runs)."""
    metric = aggregates.attrs.get("metric", "metric")
    higher = aggregates.attrs.get("higher_is_better", True)
    rows = aggregates[aggregates["aggregate"] == aggregate_name].set_index("variant")
    if rows.empty:
        raise ValueError(f"No {aggregate_name!r} rows in the aggregate table")
    if aggregate_name == "Optimality Gap":
        higher = False  # a smaller gap to 100 is better
    best = rows["estimate"].idxmax() if higher else rows["estimate"].idxmin()
    n_runs, tasks = aggregates.attrs.get("n_runs", {}), aggregates.attrs.get("tasks", [])
    level = int(round(100 * aggregates.attrs.get("confidence", 0.95)))
    lines = [
        f"{aggregate_name} of {metric} ({'higher' if higher else 'lower'} is better; "
        f"{level}% stratified-bootstrap CI over {len(tasks)} task(s)):"
    ]
    for variant, row in rows.iterrows():
        lines.append(
            f"  {variant:<14} {format_value(row.estimate, metric)} "
            f"[{format_value(row.ci_low, metric)}, {format_value(row.ci_high, metric)}]"
            f"  ({n_runs.get(variant, '?')} runs per task)"
        )
    best_row = rows.loc[best]
    word = "highest" if higher else "lowest"
    lines.append(f"-> {best} has the {word} {aggregate_name} of {metric}.")
    for variant, row in rows.drop(index=best).iterrows():
        overlap = row.ci_low <= best_row.ci_high and best_row.ci_low <= row.ci_high
        verdict = (
            "the intervals overlap, so this difference is NOT resolved by these runs"
            if overlap
            else "the intervals do not overlap"
        )
        lines.append(f"   vs {variant}: {verdict}.")
    if is_synthetic_table(aggregates, synthetic):
        lines.insert(0, f"[{SYNTHETIC_TITLE}]")
    return "\n".join(lines)


def describe_probability(improvement: pd.DataFrame, synthetic: bool | None = None) -> str:
    """Plain-text verdict from :func:`sftlib.analysis.stats.probability_of_improvement`: for each pair,
    whether the interval lies above 0.5 (X better), below it (Y better) or contains it
    (unresolved)."""
    lines = []
    for row in improvement.itertuples():
        operator = ">" if higher_is_better(row.metric) else "<"
        if row.ci_low > 0.5:
            verdict = f"{row.x} tends to be better than {row.y}"
        elif row.ci_high < 0.5:
            verdict = f"{row.y} tends to be better than {row.x}"
        else:
            verdict = "the interval contains 0.5: no resolved difference"
        lines.append(
            f"P({row.x} {operator} {row.y} on {row.metric}) = {row.probability:.2f} "
            f"[{row.ci_low:.2f}, {row.ci_high:.2f}] -> {verdict}."
        )
    if is_synthetic_table(improvement, synthetic):
        lines.insert(0, f"[{SYNTHETIC_TITLE}]")
    return "\n".join(lines)


def describe_reset_drops(drops: pd.DataFrame, synthetic: bool | None = None) -> str:
    """Plain-text summary of :func:`sftlib.analysis.results.reset_drops`: mean (and max) drop of the
    learner and of the executed policy after a reset, per variant, in score points."""
    prefix = f"[{SYNTHETIC_TITLE}]\n" if is_synthetic_table(drops, synthetic) else ""
    if drops.empty:
        return prefix + "No reset events in these runs."
    lines = ["Drop after a reset (normalised score points; mean, max over resets):"]
    for variant in ordered_variants(drops["variant"]):
        variant_drops = drops[drops["variant"] == variant]
        learner, executed = variant_drops["learner_drop"], variant_drops["executed_drop"]
        lines.append(
            f"  {variant:<14} learner {learner.mean():.1f} (max {learner.max():.1f})"
            f", executed {executed.mean():.1f} (max {executed.max():.1f})"
            f" over {len(variant_drops)} resets -> the executed policy shows "
            f"{100 * executed.mean() / max(learner.mean(), 1e-9):.0f}% "
            "of the learner's mean drop"
        )
    return prefix + "\n".join(lines)


PROMISE_TABLE = "promise_table"
HEADLINE_TABLE = "headline_table"
NUMBERS = "numbers"
CONCLUSION_FILE = "conclusion.txt"


def _write_csv(table: pd.DataFrame, out_dir: str | Path, name: str, float_format: str) -> Path:
    """``table`` as ``<out_dir>/<name>.csv`` (the folder made if missing)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.csv"
    table.to_csv(path, index=False, float_format=float_format)
    return path


def write_promise_table(table: pd.DataFrame, out_dir: str | Path) -> Path:
    """The per-task promise table (:func:`sftlib.analysis.tables.promise_table`) as CSV."""
    return _write_csv(table, out_dir, PROMISE_TABLE, "%.2f")


def write_headline_table(table: pd.DataFrame, out_dir: str | Path) -> Path:
    """The headline table (:func:`sftlib.analysis.tables.headline_table`) as CSV."""
    return _write_csv(table, out_dir, HEADLINE_TABLE, "%.4f")


def describe_headline(table: pd.DataFrame) -> str:
    """One line per metric: each variant's IQM [interval] and, for the others, the
    probability that a run of ``x`` (``table.attrs["x"]``) is better than theirs."""
    x = table.attrs.get("x", "sft")
    lines = [f"IQM across tasks [95% CI]; P({x} better than the variant) [95% CI]:"]
    for metric, rows in table.groupby("metric", sort=False):
        cells = []
        for row in rows.itertuples():
            cell = f"{row.variant} {row.iqm:.1f} [{row.iqm_low:.1f}, {row.iqm_high:.1f}]"
            if not pd.isna(row.p_x_better):
                cell += f" P={row.p_x_better:.2f} [{row.p_low:.2f}, {row.p_high:.2f}]"
            cells.append(cell)
        lines.append(f"  {metric_name(metric)}: " + "; ".join(cells))
    if table.attrs.get("synthetic"):
        lines.insert(0, SYNTHETIC_TITLE)
    return "\n".join(lines)


def describe_promise(table: pd.DataFrame, x: str = "sft", baseline: str = "direct") -> str:
    """One line per task: the dips, whether the dip target is met, and the learner's end.
    Each pair of numbers names its sides, baseline first: ``final direct 28.9 → sft 39.2``."""
    lines = [f"{x} against {baseline} (mean over seeds, normalised points):"]
    for row in table.to_dict("records"):
        verdict = "met" if row["dip_met"] else "MISSED"
        lines.append(
            f"  {task_label(row['dataset'], row['algo'])}: dip {baseline} "
            f"{row[f'dip_{baseline}']:.1f} → {x} {row[f'dip_{x}']:.1f} ({row['dip_rule']}: "
            f"{verdict}); final {baseline} {row[f'final_{baseline}']:.1f} → {x} "
            f"{row[f'final_{x}']:.1f}; {x}'s learner ends at {row[f'learner_final_{x}']:.1f} "
            f"(offline {row['score_offline']:.1f})"
        )
    if table.attrs.get("synthetic"):
        lines.insert(0, SYNTHETIC_TITLE)
    return "\n".join(lines)


def write_numbers(
    aggregates: pd.DataFrame,
    improvement: pd.DataFrame | None,
    conclusion: str,
    out_dir: str | Path,
) -> list[Path]:
    """The numbers behind the figures, for a paper's text: ``aggregates.csv`` (estimate and
    interval per variant and aggregate), ``probability_of_improvement.csv`` (when computed)
    and the plain-text verdicts as ``conclusion.txt``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tables = {
        "aggregates": aggregates.assign(metric=aggregates.attrs.get("metric", "")),
        "probability_of_improvement": improvement,
    }
    paths = []
    for name, table in tables.items():
        if table is not None:
            paths.append(out / f"{name}.csv")
            table.to_csv(paths[-1], index=False, float_format="%.4f")
    path = out / CONCLUSION_FILE
    path.write_text(conclusion + "\n", encoding="utf-8")
    return [*paths, path]
