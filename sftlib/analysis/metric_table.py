"""Every summary metric of a fine-tuning run, in one table (:data:`METRICS`): its names, units,
direction and where it is shown. The lists the statistics, the report and the figures use are
derived from it. Imports nothing heavy."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    """How one field of ``summary.json`` is named, read and shown."""

    name: str
    """Short name, for titles and sentences."""
    label: str
    """Axis label, with units."""
    higher_is_better: bool
    score: bool = False
    """A normalised score (0-100): the optimality gap to 100 exists for it."""
    latex: str | None = None
    """Its column header in the stability table (``None``: not in the table)."""
    latex_scale: float = 1.0
    """The stability table divides its values by this (steps in thousands)."""


METRICS: dict[str, Metric] = {
    "score_offline": Metric(
        "offline score", "offline score (normalised, 0-100)", True, score=True
    ),
    "dip": Metric("dip", "dip (normalised score points)", False, latex=r"Dip $\downarrow$"),
    "steps_to_recover": Metric(
        "steps to recover", "steps to recover (environment steps)", False,
        latex=r"Recover (k steps) $\downarrow$", latex_scale=1000.0,
    ),
    "regret": Metric(
        "regret", "regret (100 - score, mean over online evals)", False,
        latex=r"Regret $\downarrow$",
    ),
    "online_regret": Metric(
        "online regret", "online regret (100 - training-episode score, step-weighted)", False,
        latex=r"Online regret $\downarrow$",
    ),
    "worst_training_episode": Metric(
        "worst training episode", "worst training episode (normalised, 0-100)", True,
        score=True, latex=r"Worst episode $\uparrow$",
    ),
    "right_call_share": Metric(
        "right calls", "share of decisions judged right by the evaluations after them", True,
        latex=r"Right calls $\uparrow$",
    ),
    "auc": Metric(
        "mean online score", "mean online score (normalised, 0-100)", True, score=True,
        latex=r"AUC $\uparrow$",
    ),
    "score_final": Metric(
        "final score", "final score (normalised, 0-100)", True, score=True,
        latex=r"Final $\uparrow$",
    ),
    "score_max": Metric("max score", "max score (normalised, 0-100)", True, score=True),
    "learner_score_final": Metric(
        "learner's final score", "learner's final score (normalised, 0-100)", True, score=True,
        latex=r"Learner final $\uparrow$",
    ),
}  # fmt: skip
"""Every summary metric the analysis reads, in the stability table's column order."""

SCORE_METRICS = tuple(key for key, m in METRICS.items() if m.score)
LOWER_IS_BETTER = tuple(key for key, m in METRICS.items() if not m.higher_is_better)
STABILITY_METRICS = tuple(key for key, m in METRICS.items() if m.latex is not None)
"""Columns of the stability table: the executed policy's stability, the online cost, the
final scores of the executed policy and of the learner, and the decisions judged right."""
