"""Per-task tables of a study: the stability table (mean and std across seeds of every
stability metric) and the promise table (does SFT keep its promise against a baseline); and
the headline table across tasks (IQM and probability of improvement of the promise's
metrics)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from sftlib.analysis import stats
from sftlib.analysis.metric_table import STABILITY_METRICS
from sftlib.analysis.stats import is_synthetic_table, ordered_variants, tasks_of


def stability_table(summaries: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation across seeds of the stability metrics, per task and variant.

    One row per ``(dataset, algo, variant)`` with ``n_seeds``, ``<m>_mean`` and ``<m>_std``
    for every ``m`` of :data:`STABILITY_METRICS` (std is the sample std, ``ddof=1``; NaN with
    one seed). ``steps_to_recover`` is averaged over the runs that recovered only, and
    ``n_recovered`` says how many did (a run that never recovered has no step to average);
    ``learner_score_final`` over the runs whose summary has it (NaN if none has).
    Units: normalised score points, environment steps for ``steps_to_recover``.
    """
    keys = ["dataset", "algo", "variant"]
    rows = []
    for (dataset, algo, variant), group in summaries.groupby(keys, sort=False):
        row = {"dataset": dataset, "algo": algo, "variant": variant, "n_seeds": len(group)}
        for metric in STABILITY_METRICS:
            column = group[metric] if metric in group else pd.Series(np.nan, index=group.index)
            values = pd.to_numeric(column, errors="coerce").astype(float).dropna()
            row[f"{metric}_mean"] = values.mean() if len(values) else np.nan
            row[f"{metric}_std"] = values.std(ddof=1) if len(values) > 1 else np.nan
            if metric == "steps_to_recover":
                row["n_recovered"] = len(values)
        rows.append(row)
    table = pd.DataFrame(rows)
    rank = {variant: index for index, variant in enumerate(ordered_variants(table["variant"]))}
    table = (
        table.assign(_rank=table["variant"].map(rank))
        .sort_values(["dataset", "algo", "_rank"])
        .drop(columns="_rank")
        .reset_index(drop=True)
    )
    table.attrs["synthetic"] = is_synthetic_table(summaries)
    return table


# ---------------------------------------------------------------- the promise of SFT

DIP_SHARE = 1.0 / 3.0
"""Where the baseline dips by :data:`DIP_MATTERS` points or more, SFT's mean dip must be at
most this share of it."""
DIP_MATTERS = 10.0
"""A baseline dip (normalised points) that SFT must cut."""
DIP_ALLOWANCE = 5.0
"""Where the baseline barely dips, the most SFT may dip more than it (normalised points)."""


def promise_table(
    summaries: pd.DataFrame, x: str = "sft", baseline: str = "direct"
) -> pd.DataFrame:
    """Per task, whether ``x`` keeps the stability promise against ``baseline``.

    One row per ``(dataset, algo)`` both ran: mean dips (normalised points), the dip target
    (``x``'s mean dip <= :data:`DIP_SHARE` of the baseline's where the baseline dips by
    :data:`DIP_MATTERS` or more, else at most :data:`DIP_ALLOWANCE` more than the baseline),
    the mean final scores of the executed policy and of ``x``'s learner, the offline score,
    whether ``x``'s learner ends above the offline score (mean over seeds), both variants'
    online regret over their training episodes and the share of ``x``'s decisions judged
    right (NaN for runs whose summaries lack them).
    """
    rows = []
    for dataset, algo in tasks_of(summaries, [x, baseline]):
        task = summaries[(summaries["dataset"] == dataset) & (summaries["algo"] == algo)]
        ours, theirs = task[task["variant"] == x], task[task["variant"] == baseline]
        dip_ours, dip_theirs = ours["dip"].mean(), theirs["dip"].mean()
        if dip_theirs >= DIP_MATTERS:
            rule, met = f"<= {DIP_SHARE:.2f} x baseline", dip_ours <= DIP_SHARE * dip_theirs
        else:
            rule, met = f"<= baseline + {DIP_ALLOWANCE:g}", dip_ours <= dip_theirs + DIP_ALLOWANCE
        learner_final = pd.to_numeric(ours.get("learner_score_final"), errors="coerce").mean()
        rows.append(
            {
                "dataset": dataset,
                "algo": algo,
                "n_seeds": len(ours),
                "score_offline": ours["score_offline"].mean(),
                f"dip_{baseline}": dip_theirs,
                f"dip_{x}": dip_ours,
                "dip_rule": rule,
                "dip_met": bool(met),
                f"final_{baseline}": theirs["score_final"].mean(),
                f"final_{x}": ours["score_final"].mean(),
                f"learner_final_{x}": learner_final,
                "learner_above_offline": bool(learner_final > ours["score_offline"].mean()),
                f"online_regret_{baseline}": _mean(theirs, "online_regret"),
                f"online_regret_{x}": _mean(ours, "online_regret"),
                f"right_calls_{x}": _mean(ours, "right_call_share"),
            }
        )
    table = pd.DataFrame(rows)
    table.attrs["synthetic"] = is_synthetic_table(summaries)
    return table


def _mean(runs: pd.DataFrame, metric: str) -> float:
    """Mean of a summary field over ``runs`` (NaN where absent)."""
    if metric not in runs:
        return float("nan")
    return float(pd.to_numeric(runs[metric], errors="coerce").mean())


HEADLINE_METRICS = ("dip", "score_final", "auc", "online_regret", "learner_score_final")
"""The metrics of SFT's promise: the executed policy's dip, final score and mean online score,
what the training episodes cost, and where the learner ends."""


def headline_table(
    summaries: pd.DataFrame,
    x: str = "sft",
    metrics: tuple[str, ...] = HEADLINE_METRICS,
    reps: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """Across tasks, per metric and variant: the IQM with its stratified-bootstrap interval and
    the probability that a run of ``x`` is better than a run of the variant on the same task
    (smaller is better for lower-is-better metrics; NaN for ``x`` itself).

    One row per ``(metric, variant)``: ``metric, variant, runs_per_task, iqm, iqm_low, iqm_high,
    p_x_better, p_low, p_high``. Metrics absent from the summaries, or missing for some run
    (e.g. ``online_regret`` in runs older than it), are left out.
    """
    present = ordered_variants(summaries["variant"])
    rows = []
    for metric in metrics:
        if metric not in summaries or summaries[metric].isna().any():
            continue
        iqm = stats.aggregate(summaries, metric, present, ["IQM"], reps, seed)
        improvement = {}
        if x in present and len(present) > 1:
            table = stats.probability_of_improvement(summaries, x, None, metric, reps, seed)
            improvement = {row.y: row for row in table.itertuples()}
        for row in iqm.itertuples():
            better = improvement.get(row.variant)
            rows.append(
                {
                    "metric": metric,
                    "variant": row.variant,
                    "runs_per_task": iqm.attrs["n_runs"][row.variant],
                    "iqm": row.estimate,
                    "iqm_low": row.ci_low,
                    "iqm_high": row.ci_high,
                    "p_x_better": np.nan if better is None else better.probability,
                    "p_low": np.nan if better is None else better.ci_low,
                    "p_high": np.nan if better is None else better.ci_high,
                }
            )
    table = pd.DataFrame(rows)
    table.attrs.update(x=x, synthetic=is_synthetic_table(summaries))
    return table
