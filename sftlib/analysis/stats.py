"""Statistics of a study: score matrices, rliable aggregates with stratified-bootstrap
intervals, performance profiles, probability of improvement and the stability table.

Pure functions on the result tables of :mod:`sftlib.analysis.results` and on ``[num_runs x num_tasks]``
arrays; no figures, so this module imports (and is tested) without matplotlib or seaborn.

Conventions used throughout:

- A *task* is a ``(dataset, algo)`` pair; a *run* is one seed of one variant on one task.
- Score matrices are ``[num_runs x num_tasks]`` as rliable expects. Scores stay on the
  normalised 0-100 scale (not rliable's 0-1), so the optimality gap uses ``gamma = 100``.
- ``steps_to_recover`` is null for a run that never recovered; wherever an aggregate needs a
  number it is censored at the run's ``online_steps`` budget (the best case the data allows
  for a run that did not recover), and tables report how many runs recovered.
- Bootstrap intervals are 95% stratified-bootstrap percentile intervals. The resamples are
  drawn here (:func:`stratified_bootstrap`), not by ``rliable.library``: that module imports
  ``arch``, which imports matplotlib. They are drawn from a private
  ``np.random.RandomState(seed)``, which yields exactly the resamples, hence the intervals,
  of ``rliable.library.get_interval_estimates`` after ``np.random.seed(seed)``, without
  touching NumPy's global generator.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from rliable import metrics as rly_metrics

from sftlib.analysis.metric_table import LOWER_IS_BETTER, SCORE_METRICS
from sftlib.analysis.results import VARIANT_ORDER

BASELINES = ("direct", "pex", "warmup")
"""Variants that are baselines rather than SFT ablations."""


AGGREGATES = ("IQM", "Median", "Mean", "Optimality Gap")
"""rliable aggregates; the optimality gap only exists for score metrics."""


def ordered_variants(variants: Sequence[str]) -> list[str]:
    """Unique ``variants`` in :data:`VARIANT_ORDER`, unknown names last in sorted order."""
    unique = set(variants)
    known = [variant for variant in VARIANT_ORDER if variant in unique]
    return known + sorted(unique - set(known))


def higher_is_better(metric: str) -> bool:
    """Whether a larger value of the summary field ``metric`` is better."""
    return metric not in LOWER_IS_BETTER


def is_synthetic_table(table: pd.DataFrame, synthetic: bool | None = None) -> bool:
    """``synthetic`` when given, else the table's ``attrs["synthetic"]`` flag (default False)."""
    return bool(table.attrs.get("synthetic", False)) if synthetic is None else synthetic


def runs_per_task(summaries: pd.DataFrame) -> pd.DataFrame:
    """Number of complete runs per task (rows: ``dataset, algo``) and variant (columns)."""
    counts = summaries.groupby(["dataset", "algo", "variant"]).size().unstack("variant")
    return counts[ordered_variants(counts.columns)]


# ---------------------------------------------------------------- score matrices


def tasks_of(
    summaries: pd.DataFrame, variants: Sequence[str] | None = None
) -> list[tuple[str, str]]:
    """Sorted ``(dataset, algo)`` tasks run by *every* one of ``variants`` (default: all).

    Tasks missing for some variant are dropped with a warning, since aggregates and
    probabilities of improvement only compare variants on the same tasks.
    """
    variants = ordered_variants(summaries["variant"]) if variants is None else list(variants)
    tasks_per_variant = {
        variant: set(
            map(tuple, summaries.loc[summaries["variant"] == variant, ["dataset", "algo"]].values)
        )
        for variant in variants
    }
    missing = [variant for variant, tasks in tasks_per_variant.items() if not tasks]
    if missing:
        raise ValueError(
            f"No run of variant(s) {missing} in the summaries; present: "
            f"{ordered_variants(summaries['variant'])}"
        )
    common = set.intersection(*tasks_per_variant.values())
    dropped = set.union(*tasks_per_variant.values()) - common
    if dropped:
        warnings.warn(
            f"Tasks {sorted(dropped)} are not run by all of {variants}; comparing on "
            f"{sorted(common)} only",
            stacklevel=2,
        )
    if not common:
        raise ValueError(f"Variants {variants} share no (dataset, algo) task")
    return sorted(common)


def metric_values(summaries: pd.DataFrame, metric: str) -> pd.Series:
    """``summaries[metric]`` as floats; ``steps_to_recover`` never reached -> ``online_steps``."""
    values = pd.to_numeric(summaries[metric], errors="coerce").astype(float)
    if metric == "steps_to_recover":
        values = values.fillna(summaries["online_steps"].astype(float))
    return values


def score_matrix(
    summaries: pd.DataFrame,
    metric: str,
    variant: str,
    tasks: Sequence[tuple[str, str]] | None = None,
) -> np.ndarray:
    """Matrix ``[num_runs x num_tasks]`` of ``metric`` for ``variant``, as rliable expects.

    Column ``j`` is task ``tasks[j]`` (default :func:`tasks_of` the variant); row ``i`` is
    the ``i``-th smallest seed run on every task. Seeds missing on some task are dropped
    with a warning (rliable needs a full matrix). Values are in the metric's units.

    Raises:
        ValueError: a task has no run of ``variant`` or the metric has a null value.
    """
    rows = summaries[summaries["variant"] == variant]
    tasks = tasks_of(summaries, [variant]) if tasks is None else list(tasks)
    values = metric_values(rows, metric)
    columns, seeds_per_task = [], []
    for dataset, algo in tasks:
        mask = (rows["dataset"] == dataset) & (rows["algo"] == algo)
        if not mask.any():
            raise ValueError(f"Variant {variant!r} has no run on task ({dataset!r}, {algo!r})")
        columns.append(pd.Series(values[mask].to_numpy(), index=rows.loc[mask, "seed"]))
        seeds_per_task.append(set(rows.loc[mask, "seed"]))
    seeds = sorted(set.intersection(*seeds_per_task))
    if any(len(task_seeds) != len(seeds) for task_seeds in seeds_per_task):
        warnings.warn(
            f"Variant {variant!r}: using seeds {seeds} present on every task; "
            f"seeds per task were {[sorted(task_seeds) for task_seeds in seeds_per_task]}",
            stacklevel=2,
        )
    if not seeds:
        raise ValueError(f"Variant {variant!r}: no seed is present on every task {tasks}")
    matrix = np.stack([column.loc[seeds].to_numpy() for column in columns], axis=1)
    if np.isnan(matrix).any():
        raise ValueError(f"Variant {variant!r}: metric {metric!r} has null values")
    return matrix


# ---------------------------------------------------------------- stratified bootstrap


def stratified_bootstrap(
    score_matrices: Sequence[np.ndarray],
    statistic: Callable[..., np.ndarray | float],
    reps: int,
    random_state: np.random.RandomState,
    confidence: float = 0.95,
) -> tuple[np.ndarray, np.ndarray]:
    """Point estimate and stratified-bootstrap percentile interval of ``statistic``.

    Every resample draws, for each task (column) separately, ``num_runs`` runs with
    replacement from that task's runs; several matrices are resampled independently of each
    other (rliable's ``StratifiedBootstrap`` for one matrix and
    ``StratifiedIndependentBootstrap`` for several, percentile method), drawing from
    ``random_state`` in the same order as rliable draws from NumPy's global generator.

    Args:
        score_matrices: one or more ``[num_runs_k x num_tasks]`` matrices (runs may differ).
        statistic: maps the matrices (as positional arguments) to ``[num_params]`` or a scalar.
        reps: number of resamples.
        random_state: source of the resamples; advanced by ``reps`` draws per matrix.
        confidence: coverage of the two-sided interval, in (0, 1).

    Returns:
        ``point`` ``[num_params]`` and ``interval`` ``[2 x num_params]`` (lower row, upper row),
        in the statistic's units.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be strictly between 0 and 1, got {confidence}")
    matrices = [np.asarray(matrix) for matrix in score_matrices]
    point = np.atleast_1d(np.asarray(statistic(*matrices), dtype=float))
    task_index = [np.arange(matrix.shape[1])[None, :] for matrix in matrices]
    replicates = np.zeros((reps, point.size))
    for rep in range(reps):
        resampled = [
            matrix[random_state.choice(matrix.shape[0], matrix.shape, replace=True), tasks]
            for matrix, tasks in zip(matrices, task_index, strict=True)
        ]
        replicates[rep] = statistic(*resampled)
    alpha = (1.0 - confidence) / 2
    interval = np.percentile(replicates, [100 * alpha, 100 * (1.0 - alpha)], axis=0)
    return point, interval


# ---------------------------------------------------------------- rliable aggregates


def _aggregate_functions(names: Sequence[str]) -> Callable[[np.ndarray], np.ndarray]:
    functions = {
        "IQM": rly_metrics.aggregate_iqm,
        "Median": rly_metrics.aggregate_median,
        "Mean": rly_metrics.aggregate_mean,
        "Optimality Gap": lambda scores: rly_metrics.aggregate_optimality_gap(scores, gamma=100.0),
    }
    unknown = [name for name in names if name not in functions]
    if unknown:
        raise ValueError(f"Unknown aggregate(s) {unknown}; allowed: {list(functions)}")
    return lambda scores: np.array([functions[name](scores) for name in names])


def aggregate(
    summaries: pd.DataFrame,
    metric: str = "score_final",
    variants: Sequence[str] | None = None,
    aggregates: Sequence[str] | None = None,
    reps: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """rliable aggregates of ``metric`` across runs and tasks, per variant, with CIs.

    Args:
        summaries: output of :func:`sftlib.analysis.results.load_summaries`.
        metric: a summary field, e.g. ``score_final``, ``dip``, ``steps_to_recover``.
        variants: variants to compare (default: all present), on their common tasks.
        aggregates: subset of :data:`AGGREGATES`; default all of them for score metrics and
            all but the optimality gap (``100 - mean(min(score, 100))``) for the others.
        reps: bootstrap resamples (2000 for figures; ~200 is enough for tests).
        seed: seed of the bootstrap.
        confidence: coverage of the stratified-bootstrap percentile interval.

    Returns:
        One row per (variant, aggregate): ``variant, aggregate, estimate, ci_low, ci_high``,
        in the metric's units. ``attrs``: ``metric, n_runs`` (per variant), ``tasks``,
        ``higher_is_better, confidence, synthetic``.
    """
    variants = ordered_variants(summaries["variant"]) if variants is None else list(variants)
    if aggregates is None:
        aggregates = AGGREGATES if metric in SCORE_METRICS else AGGREGATES[:3]
    if "Optimality Gap" in aggregates and metric not in SCORE_METRICS:
        raise ValueError(f"The optimality gap is defined for score metrics {SCORE_METRICS} only")
    tasks = tasks_of(summaries, variants)
    statistic = _aggregate_functions(aggregates)
    matrices = {variant: score_matrix(summaries, metric, variant, tasks) for variant in variants}
    random_state = np.random.RandomState(seed)  # one stream across variants, as rliable
    rows = []
    for variant, matrix in matrices.items():
        point, interval = stratified_bootstrap([matrix], statistic, reps, random_state, confidence)
        rows += [
            {
                "variant": variant,
                "aggregate": name,
                "estimate": float(point[index]),
                "ci_low": float(interval[0, index]),
                "ci_high": float(interval[1, index]),
            }
            for index, name in enumerate(aggregates)
        ]
    table = pd.DataFrame(rows)
    table.attrs.update(
        metric=metric,
        n_runs={variant: int(matrix.shape[0]) for variant, matrix in matrices.items()},
        tasks=tasks,
        higher_is_better=higher_is_better(metric),
        confidence=confidence,
        synthetic=is_synthetic_table(summaries),
    )
    return table


def score_distribution(scores: np.ndarray, taus: np.ndarray) -> np.ndarray:
    """Fraction of all runs and tasks with a score above each tau: ``[num_taus]``.

    rliable's default run-score distribution (``rliable.library.score_distributions``),
    vectorised over ``taus``: its ``np.vectorize`` loop dominates the bootstrap's time.

    Args:
        scores: ``[num_runs x num_tasks]``.
        taus: thresholds ``[num_taus]`` in the scores' units.
    """
    return (scores.reshape(-1, 1) > np.asarray(taus).reshape(1, -1)).mean(axis=0)


def performance_profiles(
    summaries: pd.DataFrame,
    metric: str = "score_final",
    variants: Sequence[str] | None = None,
    taus: Sequence[float] | None = None,
    reps: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """Run-score distributions ``P(metric > tau)`` with 95% stratified-bootstrap bands.

    Args:
        taus: thresholds in the metric's units; default 61 points spanning the data
            (one unit beyond its smallest and largest value).

    Returns:
        One row per (variant, tau): ``variant, tau, fraction, ci_low, ci_high``;
        ``attrs``: ``metric, synthetic``.
    """
    variants = ordered_variants(summaries["variant"]) if variants is None else list(variants)
    tasks = tasks_of(summaries, variants)
    matrices = {variant: score_matrix(summaries, metric, variant, tasks) for variant in variants}
    if taus is None:
        all_scores = np.concatenate([matrix.ravel() for matrix in matrices.values()])
        lowest, highest = np.floor(all_scores.min()) - 1.0, np.ceil(all_scores.max()) + 1.0
        taus = np.linspace(lowest, highest, 61)
    taus = np.asarray(taus, dtype=float)
    random_state = np.random.RandomState(seed)
    frames = []
    for variant, matrix in matrices.items():
        fraction, band = stratified_bootstrap(
            [matrix], lambda scores: score_distribution(scores, taus), reps, random_state
        )
        frames.append(
            pd.DataFrame(
                {
                    "variant": variant,
                    "tau": taus,
                    "fraction": fraction,
                    "ci_low": band[0],
                    "ci_high": band[1],
                }
            )
        )
    table = pd.concat(frames, ignore_index=True)
    table.attrs.update(metric=metric, synthetic=is_synthetic_table(summaries))
    return table


# ---------------------------------------------------------------- probability of improvement


def improvement_probability(scores_x: np.ndarray, scores_y: np.ndarray) -> float:
    """``P(X > Y)`` averaged over tasks, ties counting one half.

    Same value as ``rliable.metrics.probability_of_improvement`` (the Mann-Whitney U statistic
    over ``num_runs_x * num_runs_y`` per task), vectorised: rliable's loop of SciPy calls
    dominates the bootstrap's time.

    Args:
        scores_x: ``[num_runs_x x num_tasks]``.
        scores_y: ``[num_runs_y x num_tasks]``.
    """
    pairs_x, pairs_y = scores_x[:, None, :], scores_y[None, :, :]
    per_task = (pairs_x > pairs_y).mean(axis=(0, 1)) + 0.5 * (pairs_x == pairs_y).mean(axis=(0, 1))
    return float(per_task.mean())


def probability_of_improvement(
    summaries: pd.DataFrame,
    x: str = "sft",
    ys: Sequence[str] | None = None,
    metric: str = "score_final",
    reps: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """Probability that a run of ``x`` is better than a run of each ``y`` on the same task.

    ``P(X > Y)`` averaged over tasks (rliable's Mann-Whitney estimate), with 95% stratified
    independent-bootstrap intervals. For lower-is-better metrics (dip, steps_to_recover,
    regret) "better" means smaller, so it is ``P(X < Y)``. 0.5 means no difference.

    Args:
        x: the variant whose improvement is measured.
        ys: comparators (default: every other variant present), each compared on the tasks
            it shares with ``x``; every comparison is bootstrapped with ``seed``.

    Returns:
        One row per ``y``: ``x, y, metric, probability, ci_low, ci_high``.
    """
    present = ordered_variants(summaries["variant"])
    ys = [variant for variant in present if variant != x] if ys is None else list(ys)
    if not ys:
        raise ValueError(f"No comparator for {x!r}; variants present: {present}")
    sign = 1.0 if higher_is_better(metric) else -1.0
    rows = []
    for y in ys:
        tasks = tasks_of(summaries, [x, y])
        pair = [sign * score_matrix(summaries, metric, variant, tasks) for variant in (x, y)]
        point, interval = stratified_bootstrap(
            pair, improvement_probability, reps, np.random.RandomState(seed)
        )
        rows.append(
            {
                "x": x,
                "y": y,
                "metric": metric,
                "probability": float(point[0]),
                "ci_low": float(interval[0, 0]),
                "ci_high": float(interval[1, 0]),
            }
        )
    table = pd.DataFrame(rows)
    # Only the synthetic flag in attrs: pd.concat of tables of several metrics keeps attrs
    # only when they are equal, and the metric is a column here.
    table.attrs["synthetic"] = is_synthetic_table(summaries)
    return table


def improvement_by_metric(
    summaries: pd.DataFrame,
    x: str,
    ys: Sequence[str] | None,
    metrics: Sequence[str],
    reps: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """:func:`probability_of_improvement` of ``x`` over each ``y`` for each of ``metrics``,
    stacked in that order: one row per (metric, y), ``attrs["synthetic"]`` kept."""
    tables = [
        probability_of_improvement(summaries, x, ys, metric, reps, seed) for metric in metrics
    ]
    table = pd.concat(tables, ignore_index=True)
    table.attrs["synthetic"] = is_synthetic_table(summaries)
    return table
