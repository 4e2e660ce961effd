"""The ablation studies of notebooks 03-05, one pipeline each: ``ablation_report(study_dir,
"switch" | "ope" | "reset")`` computes and writes their figures, tables and conclusion
(``sft ablation RESULTS/STUDY --ablation NAME`` is the same call)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from sftlib.analysis import report, results, stats
from sftlib.analysis.curves import plot_learning_curves, plot_reset_drops
from sftlib.analysis.figures import (
    plot_aggregates,
    plot_metric_by_task,
    plot_performance_profiles,
    plot_probability_of_improvement,
    save_figure,
)
from sftlib.analysis.stats import is_synthetic_table
from sftlib.analysis.tables import stability_table
from sftlib.layout import FIGURES_DIRNAME


@dataclass(frozen=True)
class Ablation:
    """What one ablation compares and shows."""

    study: str
    """The study it reads by default (``params/ablation_<name>.yaml``)."""
    variants: tuple[str, ...]
    """Variants shown (``sft`` first), when present."""
    required: tuple[str, ...]
    """Variants without which the ablation says nothing (a clear error if missing)."""
    aggregates: tuple[str, ...]
    """Metrics aggregated with intervals, one figure each."""
    improvement: tuple[str, ...]
    """Metrics of ``P(sft better than each other variant)``."""
    by_task: bool = True
    """The dip per task."""
    profiles: bool = False
    """Performance profiles of the final score."""
    learner: bool = False
    """Executed and learner curves, and the drops after resets."""
    stability_table: bool = False


ABLATIONS = {
    "switch": Ablation(
        "ablation_switch", ("sft", "sft-noswitch", "direct"), ("sft", "sft-noswitch"),
        ("dip", "steps_to_recover", "score_final"), ("dip", "steps_to_recover", "score_final"),
    ),
    "ope": Ablation(
        "ablation_ope", ("sft", "sft-q", "sft-mc", "sft-fqe"), ("sft",),
        ("score_final", "dip"), ("score_final", "dip"), profiles=True, stability_table=True,
    ),
    "reset": Ablation(
        "ablation_reset", ("sft", "sft-noreset"), ("sft", "sft-noreset"),
        ("score_final", "score_max"), ("score_final", "score_max", "dip"), by_task=False,
        learner=True,
    ),
}  # fmt: skip
"""The ablations of the SFT spec: the switch (notebook 03), the policy-evaluation estimator
(04) and periodic reset (05)."""


@dataclass
class AblationReport:
    """What :func:`ablation_report` computed and wrote."""

    figures: dict[str, Figure]
    """By file stem (``<name>_<product>``), closed in pyplot."""
    tables: dict[str, pd.DataFrame]
    """``runs_per_task``, every aggregate by metric, ``probability_of_improvement``, and
    ``reset_drops`` / ``stability_table`` where the ablation has them."""
    conclusion: str
    files: list[Path]


def ablation_report(
    study_dir: str | Path, name: str, out_dir: str | Path | None = None, reps: int = 2000
) -> AblationReport:
    """The figures, tables and conclusion of ablation ``name`` (:data:`ABLATIONS`) on the
    study in ``study_dir``, written to ``out_dir`` (default ``<study_dir>/figures``)."""
    if name not in ABLATIONS:
        raise ValueError(f"unknown ablation {name!r}; known: {sorted(ABLATIONS)}")
    ablation, study_dir = ABLATIONS[name], Path(study_dir)
    out = study_dir / FIGURES_DIRNAME if out_dir is None else Path(out_dir)
    summaries = results.select_variants(
        results.load_summaries(study_dir), ablation.variants, ablation.required
    )
    curves = results.select_variants(
        results.load_study(study_dir), ablation.variants, ablation.required
    )
    events = results.select_variants(results.load_events(study_dir), ablation.variants)
    synthetic = is_synthetic_table(summaries)
    variants = stats.ordered_variants(summaries["variant"])
    tables = {"runs_per_task": stats.runs_per_task(summaries)}
    figures = _curve_figures(name, ablation, curves, events, variants, synthetic, tables)
    texts = []
    for metric in ablation.aggregates:
        table = tables[metric] = stats.aggregate(summaries, metric, variants, reps=reps)
        title = f"{study_dir.name}: {report.metric_name(metric)}"
        figures[f"{name}_{_stem(metric)}"] = plot_aggregates(table, synthetic, title)
        texts.append(report.describe_aggregates(table, synthetic=synthetic))
    if ablation.by_task:
        title = f"{study_dir.name}: dip per task"
        figures[f"{name}_dip_by_task"] = plot_metric_by_task(
            summaries, "dip", variants, synthetic, title
        )
    if ablation.profiles:
        profiles = stats.performance_profiles(summaries, "score_final", variants, reps=reps)
        title = f"{study_dir.name}: performance profiles"
        figures[f"{name}_performance_profiles"] = plot_performance_profiles(
            profiles, synthetic, title
        )
    others = [variant for variant in variants if variant != "sft"]
    improvement = stats.improvement_by_metric(
        summaries, "sft", others, ablation.improvement, reps=reps
    )
    tables["probability_of_improvement"] = improvement
    title = f"{study_dir.name}: sft vs the others"
    figures[f"{name}_probability_of_improvement"] = plot_probability_of_improvement(
        improvement, synthetic, title
    )
    texts.append(report.describe_probability(improvement, synthetic=synthetic))
    files = _write(figures, out)
    if ablation.stability_table:
        table = tables["stability_table"] = stability_table(summaries)
        files += report.write_stability_table(table, out, f"{name}_stability_table", synthetic)
    if "reset_drops" in tables:
        texts.insert(0, report.describe_reset_drops(tables["reset_drops"], synthetic=synthetic))
    return AblationReport(figures, tables, "\n\n".join(texts), files)


def _curve_figures(
    name: str,
    ablation: Ablation,
    curves: pd.DataFrame,
    events: pd.DataFrame,
    variants: list[str],
    synthetic: bool,
    tables: dict[str, pd.DataFrame],
) -> dict[str, Figure]:
    """The learning curves of an ablation (with the learner and the reset drops for
    ``reset``); the drops join ``tables``."""
    if not ablation.learner:
        fig = plot_learning_curves(
            curves, events, variants, synthetic=synthetic, title="executed policy"
        )
        return {f"{name}_learning_curves": fig}
    figures = {
        f"{name}_executed_vs_learner": plot_learning_curves(
            curves, events, variants, show_learner=True, synthetic=synthetic,
            title="executed (solid) vs learner (dashed)",
        )
    }  # fmt: skip
    drops = tables["reset_drops"] = results.reset_drops(curves, events)
    figures[f"{name}_drops"] = plot_reset_drops(drops, synthetic, "drop after a reset")
    return figures


def _stem(metric: str) -> str:
    """File stem of a metric's figure: ``score_final`` -> ``final_score``."""
    return {"score_final": "final_score", "score_max": "max_score"}.get(metric, metric)


def _write(figures: dict[str, Figure], out: Path) -> list[Path]:
    files = []
    for stem, fig in figures.items():
        files += save_figure(fig, out, stem)
        plt.close(fig)
    return files
