"""Every figure and table of a study at once: :func:`write_paper_figures`, the one pipeline of
``sft figures`` and notebook 06."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from sftlib.analysis import report, results, stats, tables
from sftlib.analysis.curves import plot_learning_curves
from sftlib.analysis.figures import (
    plot_aggregates,
    plot_performance_profiles,
    plot_probability_of_improvement,
    save_figure,
)
from sftlib.analysis.report import metric_name
from sftlib.analysis.stats import BASELINES, is_synthetic_table, ordered_variants
from sftlib.layout import FIGURES_DIRNAME


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
    headline_table: pd.DataFrame
    """Across tasks: IQM and ``P(x better)`` of the promise's metrics
    (:func:`sftlib.analysis.tables.headline_table`)."""
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
    present = ordered_variants(summaries["variant"])
    aggregates = stats.aggregate(summaries, metric, reps=reps, seed=seed)
    profiles = stats.performance_profiles(summaries, metric, reps=reps, seed=seed)
    improvement = None
    if x in present and len(present) > 1:
        ys = [variant for variant in present if variant in BASELINES]
        ys = ys or [variant for variant in present if variant != x]
        improvement = stats.probability_of_improvement(summaries, x, ys, metric, reps, seed)
    main = [variant for variant in present if variant == x or variant in BASELINES]
    figures = _figures(
        study_dir.name, metric, aggregates, profiles, improvement, curves, events, main, seed,
        synthetic,
    )  # fmt: skip
    files: dict[str, list[Path]] = {}
    for product, fig in figures.items():
        files[product] = save_figure(fig, out, product)
        plt.close(fig)  # the caller may still display it; pyplot no longer holds it
    table, promise, headline = _write_tables(summaries, x, out, files, reps, seed)
    conclusion = _conclusion(aggregates, improvement, promise, headline, x, synthetic)
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
        headline_table=headline,
        conclusion=conclusion,
    )


def _write_tables(
    summaries: pd.DataFrame, x: str, out: Path, files: dict[str, list[Path]], reps: int, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame | None, pd.DataFrame]:
    """The stability, promise (when ``x`` and ``direct`` both ran) and headline tables of a
    study, written to ``out``; their paths go into ``files``."""
    synthetic = is_synthetic_table(summaries)
    table = tables.stability_table(summaries)
    files[report.STABILITY_TABLE] = list(
        report.write_stability_table(table, out, report.STABILITY_TABLE, synthetic)
    )
    promise = None
    if {x, "direct"} <= set(summaries["variant"]):
        promise = tables.promise_table(summaries, x, "direct")
        files[report.PROMISE_TABLE] = [report.write_promise_table(promise, out)]
    headline = tables.headline_table(summaries, x, reps=reps, seed=seed)
    files[report.HEADLINE_TABLE] = [report.write_headline_table(headline, out)]
    return table, promise, headline


def _figures(
    name: str,
    metric: str,
    aggregates: pd.DataFrame,
    profiles: pd.DataFrame,
    improvement: pd.DataFrame | None,
    curves: pd.DataFrame,
    events: pd.DataFrame,
    main: list[str],
    seed: int,
    synthetic: bool,
) -> dict[str, Figure]:
    """The figures of :func:`write_paper_figures`, by product name."""
    title = f"{name}: {metric_name(metric)}, 95% stratified-bootstrap CIs"
    figures = {"aggregates": plot_aggregates(aggregates, synthetic, title)}
    title = f"{name}: performance profiles"
    figures["performance_profiles"] = plot_performance_profiles(profiles, synthetic, title)
    if improvement is not None:
        title = f"{name}: probability of improvement"
        figures["probability_of_improvement"] = plot_probability_of_improvement(
            improvement, synthetic, title
        )
    figures["learning_curves"] = plot_learning_curves(
        curves, events, seed=seed, synthetic=synthetic, title=name
    )
    figures["learning_curves_learner"] = plot_learning_curves(
        curves, events, main, show_learner=True, seed=seed, synthetic=synthetic, title=name
    )
    return figures


def _conclusion(
    aggregates: pd.DataFrame,
    improvement: pd.DataFrame | None,
    promise: pd.DataFrame | None,
    headline: pd.DataFrame,
    x: str,
    synthetic: bool,
) -> str:
    """The plain-text verdicts of :mod:`sftlib.analysis.report` on a study's tables."""
    conclusion = report.describe_aggregates(aggregates, synthetic=synthetic)
    if improvement is not None:
        conclusion += "\n\n" + report.describe_probability(improvement, synthetic=synthetic)
    if promise is not None:
        conclusion += "\n\n" + report.describe_promise(promise, x, "direct")
    if not headline.empty:
        conclusion += "\n\n" + report.describe_headline(headline)
    return conclusion
