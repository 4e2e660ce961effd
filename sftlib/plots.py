"""Aggregates (rliable), stability tables and publication figures of a study.

Reads only the tables of :mod:`sftlib.results`; imports no algorithm code.

Conventions used throughout:

- A *task* is a ``(dataset, algo)`` pair; a *run* is one seed of one variant on one task.
- Score matrices are ``[num_runs x num_tasks]`` as rliable expects. Scores stay on the
  normalised 0-100 scale (not rliable's 0-1), so the optimality gap uses ``gamma = 100``.
- ``steps_to_recover`` is null for a run that never recovered; wherever an aggregate needs a
  number it is censored at the run's ``online_steps`` budget (the best case the data allows
  for a run that did not recover), and tables report how many runs recovered.
- Bootstrap intervals are 95% stratified-bootstrap percentile intervals. rliable draws its
  resamples from NumPy's *global* generator, so every function here takes a ``seed`` and
  restores the global state afterwards.
- Every figure made from a synthetic study (``df.attrs["synthetic"]`` or ``synthetic=True``)
  gets a red "SYNTHETIC DATA" title and a watermark; tables get a column / caption saying so.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter
from rliable import library as rly
from rliable import metrics as rly_metrics

from sftlib import results
from sftlib.results import VARIANT_ORDER

BASELINES = ("direct", "pex")
"""Variants that are baselines rather than SFT ablations."""

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
}
"""Colour-blind-safe colour of each variant, the same in every figure."""

SCORE_METRICS = ("score_offline", "score_final", "score_max", "auc")
"""Summary fields that are normalised scores (0-100, higher is better)."""

LOWER_IS_BETTER = ("dip", "steps_to_recover", "regret")
"""Summary fields where a smaller value is better."""

METRIC_LABELS = {
    "score_offline": "offline score (normalised, 0-100)",
    "score_final": "final score (normalised, 0-100)",
    "score_max": "max score (normalised, 0-100)",
    "auc": "mean online score (normalised, 0-100)",
    "dip": "dip (normalised score points)",
    "steps_to_recover": "steps to recover (environment steps)",
    "regret": "regret (100 - score, mean over online evals)",
}
"""Axis label, with units, of each summary field."""

METRIC_NAMES = {
    "score_offline": "offline score",
    "score_final": "final score",
    "score_max": "max score",
    "auc": "mean online score",
    "dip": "dip",
    "steps_to_recover": "steps to recover",
    "regret": "regret",
}
"""Short name of each summary field, for titles and sentences."""

AGGREGATES = ("IQM", "Median", "Mean", "Optimality Gap")
"""rliable aggregates; the optimality gap only exists for score metrics."""

ALGO_NAMES = {"iql": "IQL", "td3bc": "TD3+BC", "calql": "Cal-QL"}
SCORE_LABEL = "normalised score (0-100)"
STEP_LABEL = "environment steps (online)"
SYNTHETIC_TITLE = "SYNTHETIC DATA - not experimental results"

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


# ---------------------------------------------------------------- helpers


def variant_color(variant: str) -> tuple[float, float, float]:
    """Colour of ``variant``: fixed for known variants, a stable palette slot otherwise."""
    if variant in VARIANT_COLORS:
        return VARIANT_COLORS[variant]
    return _PALETTE[8 + (sum(map(ord, variant)) % 2)]


def ordered_variants(variants: Sequence[str]) -> list[str]:
    """Unique ``variants`` in :data:`VARIANT_ORDER`, unknown names last in sorted order."""
    unique = set(variants)
    known = [v for v in VARIANT_ORDER if v in unique]
    return known + sorted(unique - set(known))


def _is_synthetic(df: pd.DataFrame, synthetic: bool | None) -> bool:
    return bool(df.attrs.get("synthetic", False)) if synthetic is None else synthetic


def _task_label(dataset: str, algo: str) -> str:
    return f"{dataset} / {ALGO_NAMES.get(algo, algo)}"


def _metric_label(metric: str) -> str:
    return METRIC_LABELS.get(metric, metric)


def _metric_name(metric: str) -> str:
    return METRIC_NAMES.get(metric, metric)


def _higher_is_better(metric: str) -> bool:
    return metric not in LOWER_IS_BETTER


@contextlib.contextmanager
def _style() -> Iterator[None]:
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


@contextlib.contextmanager
def _global_seed(seed: int) -> Iterator[None]:
    """Seed NumPy's global generator (which rliable's bootstrap uses), then restore it."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def _finish(fig: Figure, synthetic: bool, title: str | None) -> Figure:
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


def _steps_formatter(value: float, _pos: int) -> str:
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
    with _style():
        fig.savefig(paths[0], dpi=200, bbox_inches="tight")
        fig.savefig(paths[1], bbox_inches="tight")
    return paths


# ---------------------------------------------------------------- score matrices


def tasks_of(summaries: pd.DataFrame, variants: Sequence[str] | None = None) -> list[tuple]:
    """Sorted ``(dataset, algo)`` tasks run by *every* one of ``variants`` (default: all).

    Tasks missing for some variant are dropped with a warning, since aggregates and
    probabilities of improvement only compare variants on the same tasks.
    """
    variants = ordered_variants(summaries["variant"]) if variants is None else list(variants)
    per_variant = {
        v: set(map(tuple, summaries.loc[summaries["variant"] == v, ["dataset", "algo"]].values))
        for v in variants
    }
    missing = [v for v, t in per_variant.items() if not t]
    if missing:
        raise ValueError(
            f"No run of variant(s) {missing} in the summaries; present: "
            f"{ordered_variants(summaries['variant'])}"
        )
    common = set.intersection(*per_variant.values())
    dropped = set.union(*per_variant.values()) - common
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
    with a warning (rliable needs a full matrix).

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
    if any(len(s) != len(seeds) for s in seeds_per_task):
        warnings.warn(
            f"Variant {variant!r}: using seeds {seeds} present on every task; "
            f"seeds per task were {[sorted(s) for s in seeds_per_task]}",
            stacklevel=2,
        )
    if not seeds:
        raise ValueError(f"Variant {variant!r}: no seed is present on every task {tasks}")
    matrix = np.stack([col.loc[seeds].to_numpy() for col in columns], axis=1)
    if np.isnan(matrix).any():
        raise ValueError(f"Variant {variant!r}: metric {metric!r} has null values")
    return matrix


# ---------------------------------------------------------------- rliable aggregates


def _aggregate_funcs(names: Sequence[str]):
    funcs = {
        "IQM": rly_metrics.aggregate_iqm,
        "Median": rly_metrics.aggregate_median,
        "Mean": rly_metrics.aggregate_mean,
        "Optimality Gap": lambda s: rly_metrics.aggregate_optimality_gap(s, gamma=100.0),
    }
    unknown = [n for n in names if n not in funcs]
    if unknown:
        raise ValueError(f"Unknown aggregate(s) {unknown}; allowed: {list(funcs)}")
    return lambda scores: np.array([funcs[n](scores) for n in names])


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
        summaries: output of :func:`sftlib.results.load_summaries`.
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
    score_dict = {v: score_matrix(summaries, metric, v, tasks) for v in variants}
    with _global_seed(seed):
        points, intervals = rly.get_interval_estimates(
            score_dict,
            _aggregate_funcs(aggregates),
            reps=reps,
            confidence_interval_size=confidence,
        )
    rows = [
        {
            "variant": v,
            "aggregate": name,
            "estimate": float(points[v][j]),
            "ci_low": float(intervals[v][0, j]),
            "ci_high": float(intervals[v][1, j]),
        }
        for v in variants
        for j, name in enumerate(aggregates)
    ]
    df = pd.DataFrame(rows)
    df.attrs.update(
        metric=metric,
        n_runs={v: int(m.shape[0]) for v, m in score_dict.items()},
        tasks=tasks,
        higher_is_better=_higher_is_better(metric),
        confidence=confidence,
        synthetic=bool(summaries.attrs.get("synthetic", False)),
    )
    return df


def _score_distribution(scores: np.ndarray, taus: np.ndarray) -> np.ndarray:
    """Fraction of all runs and tasks with a score above each tau: [num_taus].

    rliable's default run-score distribution, vectorised over ``taus``: its ``np.vectorize``
    loop dominates the bootstrap's time.
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
    score_dict = {v: score_matrix(summaries, metric, v, tasks) for v in variants}
    if taus is None:
        all_scores = np.concatenate([m.ravel() for m in score_dict.values()])
        lo, hi = np.floor(all_scores.min()) - 1.0, np.ceil(all_scores.max()) + 1.0
        taus = np.linspace(lo, hi, 61)
    taus = np.asarray(taus, dtype=float)
    with _global_seed(seed):
        profiles, cis = rly.create_performance_profile(
            score_dict, taus, custom_profile_func=_score_distribution, reps=reps
        )
    frames = [
        pd.DataFrame(
            {
                "variant": v,
                "tau": taus,
                "fraction": profiles[v],
                "ci_low": cis[v][0],
                "ci_high": cis[v][1],
            }
        )
        for v in variants
    ]
    df = pd.concat(frames, ignore_index=True)
    df.attrs.update(metric=metric, synthetic=bool(summaries.attrs.get("synthetic", False)))
    return df


def improvement_probability(scores_x: np.ndarray, scores_y: np.ndarray) -> float:
    """``P(X > Y)`` averaged over tasks, ties counting one half.

    Same value as ``rliable.metrics.probability_of_improvement`` (the Mann-Whitney U statistic
    over ``num_runs_x * num_runs_y`` per task), vectorised: rliable's loop of SciPy calls
    dominates the bootstrap's time.

    Args:
        scores_x: ``[num_runs_x x num_tasks]``.
        scores_y: ``[num_runs_y x num_tasks]``.
    """
    x, y = scores_x[:, None, :], scores_y[None, :, :]
    per_task = (x > y).mean(axis=(0, 1)) + 0.5 * (x == y).mean(axis=(0, 1))
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
        ys: comparators (default: every other variant present), each compared on the tasks
            it shares with ``x``.

    Returns:
        One row per ``y``: ``x, y, metric, probability, ci_low, ci_high``.
    """
    present = ordered_variants(summaries["variant"])
    ys = [v for v in present if v != x] if ys is None else list(ys)
    if not ys:
        raise ValueError(f"No comparator for {x!r}; variants present: {present}")
    sign = 1.0 if _higher_is_better(metric) else -1.0
    rows = []
    for y in ys:
        tasks = tasks_of(summaries, [x, y])
        pair = [sign * score_matrix(summaries, metric, v, tasks) for v in (x, y)]
        with _global_seed(seed):
            points, intervals = rly.get_interval_estimates(
                {f"{x},{y}": pair}, improvement_probability, reps=reps
            )
        lo, hi = np.ravel(intervals[f"{x},{y}"])
        rows.append(
            {
                "x": x,
                "y": y,
                "metric": metric,
                "probability": float(points[f"{x},{y}"]),
                "ci_low": float(lo),
                "ci_high": float(hi),
            }
        )
    df = pd.DataFrame(rows)
    # Only the synthetic flag in attrs: pd.concat of tables of several metrics keeps attrs
    # only when they are equal, and the metric is a column here.
    df.attrs["synthetic"] = bool(summaries.attrs.get("synthetic", False))
    return df


# ---------------------------------------------------------------- stability table

STABILITY_METRICS = ("dip", "steps_to_recover", "regret", "auc", "score_final")
"""Fields of the stability table, in column order."""


def stability_table(summaries: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation across seeds of the stability metrics, per task and variant.

    One row per ``(dataset, algo, variant)`` with ``n_seeds``, ``<m>_mean`` and ``<m>_std``
    for every ``m`` of :data:`STABILITY_METRICS` (std is the sample std, ``ddof=1``; NaN with
    one seed). ``steps_to_recover`` is averaged over the runs that recovered only, and
    ``n_recovered`` says how many did (a run that never recovered has no step to average).
    Units: normalised score points, environment steps for ``steps_to_recover``.
    """
    keys = ["dataset", "algo", "variant"]
    rows = []
    for (dataset, algo, variant), group in summaries.groupby(keys, sort=False):
        row = {"dataset": dataset, "algo": algo, "variant": variant, "n_seeds": len(group)}
        for metric in STABILITY_METRICS:
            values = pd.to_numeric(group[metric], errors="coerce").astype(float).dropna()
            row[f"{metric}_mean"] = values.mean() if len(values) else np.nan
            row[f"{metric}_std"] = values.std(ddof=1) if len(values) > 1 else np.nan
            if metric == "steps_to_recover":
                row["n_recovered"] = len(values)
        rows.append(row)
    df = pd.DataFrame(rows)
    rank = {v: i for i, v in enumerate(ordered_variants(df["variant"]))}
    df = (
        df.assign(_rank=df["variant"].map(rank))
        .sort_values(["dataset", "algo", "_rank"])
        .drop(columns="_rank")
        .reset_index(drop=True)
    )
    df.attrs["synthetic"] = bool(summaries.attrs.get("synthetic", False))
    return df


def _latex_escape(text: str) -> str:
    for char, repl in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("&", r"\&"), ("%", r"\%")):
        text = text.replace(char, repl)
    return text


def _pm(mean: float, std: float, scale: float = 1.0, digits: int = 1) -> str:
    if pd.isna(mean):
        return "--"
    if pd.isna(std):
        return f"${mean / scale:.{digits}f}$"
    return f"${mean / scale:.{digits}f} \\pm {std / scale:.{digits}f}$"


def write_stability_table(
    table: pd.DataFrame,
    out_dir: str | Path,
    name: str = "stability_table",
    synthetic: bool | None = None,
) -> tuple[Path, Path]:
    """Write :func:`stability_table` to ``<out_dir>/<name>.csv`` and ``<name>.tex``.

    The CSV holds the raw numbers plus a ``synthetic`` column; the LaTeX file is a booktabs
    ``table`` with ``mean \\pm std`` cells (steps in thousands, recovered runs in brackets),
    captioned "SYNTHETIC DATA" when the study is synthetic.
    """
    synthetic = _is_synthetic(table, synthetic)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv_path, tex_path = out / f"{name}.csv", out / f"{name}.tex"
    table.assign(synthetic=synthetic).to_csv(csv_path, index=False)

    pretty = pd.DataFrame(
        {
            "Dataset": table["dataset"].map(_latex_escape),
            "Algo": table["algo"].map(lambda a: _latex_escape(ALGO_NAMES.get(a, a))),
            "Variant": table["variant"].map(_latex_escape),
            r"Dip $\downarrow$": [
                _pm(m, s) for m, s in zip(table["dip_mean"], table["dip_std"], strict=True)
            ],
            r"Recover (k steps) $\downarrow$": [
                f"{_pm(m, s, 1000.0)} ({r}/{n})"
                for m, s, r, n in zip(
                    table["steps_to_recover_mean"],
                    table["steps_to_recover_std"],
                    table["n_recovered"],
                    table["n_seeds"],
                    strict=True,
                )
            ],
            r"Regret $\downarrow$": [
                _pm(m, s) for m, s in zip(table["regret_mean"], table["regret_std"], strict=True)
            ],
            r"AUC $\uparrow$": [
                _pm(m, s) for m, s in zip(table["auc_mean"], table["auc_std"], strict=True)
            ],
            r"Final $\uparrow$": [
                _pm(m, s)
                for m, s in zip(table["score_final_mean"], table["score_final_std"], strict=True)
            ],
        }
    )
    caption = (
        "Stability during fine-tuning: mean $\\pm$ std across seeds of the executed policy's "
        "dip, steps to recover the offline score (over recovered runs; recovered/total in "
        "brackets), regret, AUC and final normalised score."
    )
    if synthetic:
        caption = r"\textbf{SYNTHETIC DATA, not experimental results.} " + caption
    latex = pretty.to_latex(
        index=False,
        escape=False,
        caption=caption,
        label=f"tab:{name}",
        column_format="lll" + "r" * 5,
    )
    header = "% SYNTHETIC DATA - not experimental results\n" if synthetic else ""
    tex_path.write_text(header + latex)
    return csv_path, tex_path


# ---------------------------------------------------------------- computed conclusions


def _fmt(value: float, metric: str) -> str:
    return f"{value:,.0f}" if metric == "steps_to_recover" else f"{value:.1f}"


def describe_aggregates(
    agg: pd.DataFrame, aggregate_name: str = "IQM", synthetic: bool | None = None
) -> str:
    """Plain-text verdict from :func:`aggregate`: which variant is best on ``aggregate_name``,
    with the numbers and intervals, and whether its interval separates it from each other
    variant (non-overlapping intervals) or not (overlap: not resolved by these runs)."""
    metric = agg.attrs.get("metric", "metric")
    higher = agg.attrs.get("higher_is_better", True)
    rows = agg[agg["aggregate"] == aggregate_name].set_index("variant")
    if rows.empty:
        raise ValueError(f"No {aggregate_name!r} rows in the aggregate table")
    if aggregate_name == "Optimality Gap":
        higher = False  # a smaller gap to 100 is better
    best = rows["estimate"].idxmax() if higher else rows["estimate"].idxmin()
    n_runs, tasks = agg.attrs.get("n_runs", {}), agg.attrs.get("tasks", [])
    level = int(round(100 * agg.attrs.get("confidence", 0.95)))
    lines = [
        f"{aggregate_name} of {metric} ({'higher' if higher else 'lower'} is better; "
        f"{level}% stratified-bootstrap CI over {len(tasks)} task(s)):"
    ]
    for variant, r in rows.iterrows():
        lines.append(
            f"  {variant:<14} {_fmt(r.estimate, metric)} "
            f"[{_fmt(r.ci_low, metric)}, {_fmt(r.ci_high, metric)}]"
            f"  ({n_runs.get(variant, '?')} runs per task)"
        )
    best_row = rows.loc[best]
    word = "highest" if higher else "lowest"
    lines.append(f"-> {best} has the {word} {aggregate_name} of {metric}.")
    for variant, r in rows.drop(index=best).iterrows():
        overlap = r.ci_low <= best_row.ci_high and best_row.ci_low <= r.ci_high
        verdict = (
            "the intervals overlap, so this difference is NOT resolved by these runs"
            if overlap
            else "the intervals do not overlap"
        )
        lines.append(f"   vs {variant}: {verdict}.")
    if _is_synthetic(agg, synthetic):
        lines.insert(0, f"[{SYNTHETIC_TITLE}]")
    return "\n".join(lines)


def describe_probability(poi: pd.DataFrame, synthetic: bool | None = None) -> str:
    """Plain-text verdict from :func:`probability_of_improvement`: for each pair, whether the
    interval lies above 0.5 (X better), below it (Y better) or contains it (unresolved)."""
    lines = []
    for r in poi.itertuples():
        op = ">" if _higher_is_better(r.metric) else "<"
        if r.ci_low > 0.5:
            verdict = f"{r.x} tends to be better than {r.y}"
        elif r.ci_high < 0.5:
            verdict = f"{r.y} tends to be better than {r.x}"
        else:
            verdict = "the interval contains 0.5: no resolved difference"
        lines.append(
            f"P({r.x} {op} {r.y} on {r.metric}) = {r.probability:.2f} "
            f"[{r.ci_low:.2f}, {r.ci_high:.2f}] -> {verdict}."
        )
    if _is_synthetic(poi, synthetic):
        lines.insert(0, f"[{SYNTHETIC_TITLE}]")
    return "\n".join(lines)


def describe_reset_drops(drops: pd.DataFrame, synthetic: bool | None = None) -> str:
    """Plain-text summary of :func:`sftlib.results.reset_drops`: mean (and max) drop of the
    learner and of the executed policy after a reset, per variant, in score points."""
    prefix = f"[{SYNTHETIC_TITLE}]\n" if _is_synthetic(drops, synthetic) else ""
    if drops.empty:
        return prefix + "No reset events in these runs."
    lines = ["Drop after a reset (normalised score points; mean, max over resets):"]
    for variant in ordered_variants(drops["variant"]):
        d = drops[drops["variant"] == variant]
        lines.append(
            f"  {variant:<14} learner {d.learner_drop.mean():.1f} (max {d.learner_drop.max():.1f})"
            f", executed {d.executed_drop.mean():.1f} (max {d.executed_drop.max():.1f})"
            f" over {len(d)} resets -> the executed policy shows "
            f"{100 * d.executed_drop.mean() / max(d.learner_drop.mean(), 1e-9):.0f}% "
            "of the learner's mean drop"
        )
    return prefix + "\n".join(lines)


# ---------------------------------------------------------------- figures


def plot_aggregates(
    agg: pd.DataFrame, synthetic: bool | None = None, title: str | None = None
) -> Figure:
    """One panel per aggregate of :func:`aggregate`: a bar spanning the CI per variant and a
    black tick at the point estimate, in the metric's units."""
    synthetic = _is_synthetic(agg, synthetic)
    metric = agg.attrs.get("metric", "score_final")
    names = list(dict.fromkeys(agg["aggregate"]))
    variants = ordered_variants(agg["variant"])
    with _style():
        fig, axes = plt.subplots(
            1,
            len(names),
            figsize=(3.0 * len(names) + 0.8, 0.45 * len(variants) + 1.6),
            sharey=True,
            layout="constrained",
            squeeze=False,
        )
        for ax, name in zip(axes[0], names, strict=True):
            for i, v in enumerate(variants):
                r = agg[(agg["variant"] == v) & (agg["aggregate"] == name)].iloc[0]
                ax.barh(
                    i,
                    r.ci_high - r.ci_low,
                    left=r.ci_low,
                    height=0.6,
                    color=variant_color(v),
                    alpha=0.8,
                )
                ax.vlines(r.estimate, i - 0.3, i + 0.3, color="black", linewidth=1.5)
            ax.set_title(name)
            ax.set_yticks(range(len(variants)), variants)
            ax.grid(True, axis="x")
            ax.grid(False, axis="y")
            ax.xaxis.set_major_locator(plt.MaxNLocator(4))
        axes[0][0].invert_yaxis()  # shared y: first variant on top in every panel
        fig.supxlabel(_metric_label(metric))
    return _finish(fig, synthetic, title)


def plot_performance_profiles(
    profiles: pd.DataFrame, synthetic: bool | None = None, title: str | None = None
) -> Figure:
    """Score distributions of :func:`performance_profiles` with their 95% bands."""
    synthetic = _is_synthetic(profiles, synthetic)
    metric = profiles.attrs.get("metric", "score_final")
    with _style():
        fig, ax = plt.subplots(figsize=(6.0, 4.0), layout="constrained")
        for v in ordered_variants(profiles["variant"]):
            p = profiles[profiles["variant"] == v]
            ax.plot(p["tau"], p["fraction"], color=variant_color(v), linewidth=2, label=v)
            ax.fill_between(
                p["tau"], p["ci_low"], p["ci_high"], color=variant_color(v), alpha=0.15, linewidth=0
            )
        ax.set_xlabel(rf"threshold $\tau$: {_metric_label(metric)}")
        ax.set_ylabel(r"fraction of runs with value $> \tau$")
        ax.set_ylim(-0.02, 1.02)
        ax.legend(frameon=False)
    return _finish(fig, synthetic, title)


def plot_probability_of_improvement(
    poi: pd.DataFrame, synthetic: bool | None = None, title: str | None = None
) -> Figure:
    """One row per pair of :func:`probability_of_improvement` (several metrics may be
    concatenated): CI bar coloured by the comparator, tick at the estimate, dashed line at 0.5
    (no difference). "Better" is ``<`` for lower-is-better metrics such as the dip."""
    synthetic = _is_synthetic(poi, synthetic)
    metrics = list(dict.fromkeys(poi["metric"]))
    labels = [
        f"{r.x} {'>' if _higher_is_better(r.metric) else '<'} {r.y}"
        + (f" ({_metric_name(r.metric)})" if len(metrics) > 1 else "")
        for r in poi.itertuples()
    ]
    with _style():
        fig, ax = plt.subplots(figsize=(6.0, 0.5 * len(poi) + 1.6), layout="constrained")
        for i, r in enumerate(poi.itertuples()):
            ax.barh(
                i,
                r.ci_high - r.ci_low,
                left=r.ci_low,
                height=0.6,
                color=variant_color(r.y),
                alpha=0.8,
            )
            ax.vlines(r.probability, i - 0.3, i + 0.3, color="black", linewidth=1.5)
        ax.axvline(0.5, color="grey", linestyle="--", linewidth=1)
        ax.set_yticks(range(len(poi)), labels)
        ax.invert_yaxis()
        ax.set_xlim(0.0, 1.0)
        ax.grid(False, axis="y")
        if len(metrics) == 1:
            op = ">" if _higher_is_better(metrics[0]) else "<"
            ax.set_xlabel(f"probability of improvement P(X {op} Y), {_metric_name(metrics[0])}")
        else:
            ax.set_xlabel("probability of improvement (X better than Y)")
    return _finish(fig, synthetic, title)


def plot_metric_by_task(
    summaries: pd.DataFrame,
    metric: str,
    variants: Sequence[str] | None = None,
    synthetic: bool | None = None,
    title: str | None = None,
) -> Figure:
    """Per task, every seed's ``metric`` (dots) and the mean across seeds (bar) per variant."""
    synthetic = _is_synthetic(summaries, synthetic)
    variants = ordered_variants(summaries["variant"]) if variants is None else list(variants)
    data = summaries[summaries["variant"].isin(variants)].copy()
    data["task"] = [
        f"{d}\n{ALGO_NAMES.get(a, a)}" for d, a in zip(data["dataset"], data["algo"], strict=True)
    ]
    data["value"] = metric_values(data, metric)
    palette = {v: variant_color(v) for v in variants}
    order = sorted(data["task"].unique())
    with _style():
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
        sns.stripplot(
            **common,
            dodge=True,
            size=4,
            legend=False,
            edgecolor="black",
            linewidth=0.4,
        )
        ax.set_xlabel("task (dataset / base algorithm)")
        ax.set_ylabel(_metric_label(metric))
        ax.legend(title="variant (bar: mean; dots: seeds)", frameon=False)
        ax.grid(False, axis="x")
    return _finish(fig, synthetic, title)


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
        curves: output of :func:`sftlib.results.load_study`.
        events: output of :func:`sftlib.results.load_events`; ``switch`` events are drawn as
            triangles along the top of the panel (one per run and switch), ``reset`` events as
            dotted vertical lines (one per distinct step), in the variant's colour.
        variants: variants to draw (default all present).
        show_learner: also draw the learner's own score dashed (SFT's hidden reset dips).
        event_types: which event types to mark.
        ncols: panels per row.
        seed: seed of seaborn's bootstrap for the bands.
    """
    synthetic = _is_synthetic(curves, synthetic)
    variants = ordered_variants(curves["variant"]) if variants is None else list(variants)
    data = curves[curves["variant"].isin(variants)]
    tasks = sorted(set(map(tuple, data[["dataset", "algo"]].values)))
    ncols = max(1, min(ncols, len(tasks)))
    nrows = math.ceil(len(tasks) / ncols)
    palette = {v: variant_color(v) for v in variants}
    with _style():
        fig, axes = plt.subplots(
            nrows,
            ncols,
            figsize=(5.2 * ncols, 3.6 * nrows + 0.6),
            squeeze=False,
            layout="constrained",
        )
        for ax, (dataset, algo) in zip(axes.flat, tasks, strict=False):
            task = data[(data["dataset"] == dataset) & (data["algo"] == algo)]
            hue_order = [v for v in variants if v in set(task["variant"])]
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
            if events is not None and not events.empty:
                _mark_events(ax, events, dataset, algo, hue_order, event_types)
            ax.set_title(_task_label(dataset, algo))
            ax.set_xlabel(STEP_LABEL)
            ax.set_ylabel(SCORE_LABEL)
            ax.xaxis.set_major_formatter(FuncFormatter(_steps_formatter))
        for ax in list(axes.flat)[len(tasks) :]:
            ax.set_visible(False)
        handles = [Line2D([], [], color=palette[v], linewidth=2, label=v) for v in variants]
        handles.append(Line2D([], [], color="black", linewidth=2, label="executed policy"))
        if show_learner:
            handles.append(
                Line2D([], [], color="black", linewidth=1.4, linestyle="--", label="learner")
            )
        if events is not None and not events.empty:
            if "switch" in event_types:
                handles.append(
                    Line2D(
                        [],
                        [],
                        color="black",
                        marker="v",
                        linestyle="none",
                        label="switch (per run)",
                    )
                )
            if "reset" in event_types:
                handles.append(Line2D([], [], color="black", linestyle=":", label="reset"))
        fig.legend(
            handles=handles, loc="outside lower center", ncols=min(len(handles), 6), frameon=False
        )
    return _finish(fig, synthetic, title)


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
    transform = ax.get_xaxis_transform()  # x in data units, y in axes fraction
    if "reset" in event_types:
        resets = task_events[task_events["event"] == "reset"]
        for step, group in resets.groupby("step"):
            owners = set(group["variant"])
            color = variant_color(owners.pop()) if len(owners) == 1 else "0.3"
            ax.axvline(step, color=color, linestyle=":", linewidth=1.2, alpha=0.8)
    for i, v in enumerate(variants):
        ev = task_events[task_events["variant"] == v]
        if "switch" in event_types:
            steps = ev.loc[ev["event"] == "switch", "step"].to_numpy()
            ax.scatter(
                steps,
                np.full(len(steps), 0.98 - 0.045 * i),
                transform=transform,
                marker="v",
                s=22,
                color=variant_color(v),
                edgecolor="black",
                linewidth=0.3,
                alpha=0.8,
                zorder=3,
                clip_on=False,
            )


def plot_reset_drops(
    drops: pd.DataFrame, synthetic: bool | None = None, title: str | None = None
) -> Figure:
    """Per variant, the drop after each reset of the learner vs the executed policy (box + dots),
    from :func:`sftlib.results.reset_drops`."""
    synthetic = _is_synthetic(drops, synthetic)
    long = drops.melt(
        id_vars=["variant"],
        value_vars=["learner_drop", "executed_drop"],
        var_name="policy",
        value_name="drop",
    )
    long["policy"] = long["policy"].str.replace("_drop", "", regex=False)
    order = ordered_variants(long["variant"])
    with _style():
        fig, ax = plt.subplots(figsize=(1.6 * len(order) + 2.5, 4.0), layout="constrained")
        sns.boxplot(
            data=long,
            x="variant",
            y="drop",
            hue="policy",
            order=order,
            hue_order=["learner", "executed"],
            palette=["0.75", "0.35"],
            showfliers=False,
            ax=ax,
        )
        sns.stripplot(
            data=long,
            x="variant",
            y="drop",
            hue="policy",
            order=order,
            hue_order=["learner", "executed"],
            palette=["0.55", "0.1"],
            dodge=True,
            size=3,
            alpha=0.6,
            legend=False,
            ax=ax,
        )
        ax.set_xlabel("variant")
        ax.set_ylabel("drop after a reset (normalised score points)")
        ax.legend(title="policy", frameon=False)
        ax.grid(False, axis="x")
    return _finish(fig, synthetic, title)


# ---------------------------------------------------------------- everything at once


def write_paper_figures(
    study_dir: str | Path,
    out_dir: str | Path | None = None,
    metric: str = "score_final",
    x: str = "sft",
    reps: int = 2000,
    seed: int = 0,
) -> dict[str, list[Path]]:
    """Every figure and table of a study, as notebook 06 makes them, for scripts and the CLI.

    Writes to ``out_dir`` (default ``<study_dir>/figures``): ``aggregates`` (IQM, median, mean,
    optimality gap of ``metric``), ``performance_profiles``, ``probability_of_improvement``
    (``x`` over each baseline present, else over every other variant), ``learning_curves``
    (all variants), ``learning_curves_learner`` (``x`` and the baselines, learner dashed), each
    as PNG and PDF, and ``stability_table`` as CSV and LaTeX.

    Returns:
        Name -> written paths.
    """
    study_dir = Path(study_dir)
    out = study_dir / "figures" if out_dir is None else Path(out_dir)
    summaries = results.load_summaries(study_dir)
    curves, events = results.load_study(study_dir), results.load_events(study_dir)
    synthetic = bool(summaries.attrs["synthetic"])
    name = study_dir.name
    present = ordered_variants(summaries["variant"])
    written: dict[str, list[Path]] = {}

    agg = aggregate(summaries, metric, reps=reps, seed=seed)
    title = f"{name}: {_metric_name(metric)}, 95% stratified-bootstrap CIs"
    written["aggregates"] = _save(plot_aggregates(agg, synthetic, title), out, "aggregates")
    profiles = performance_profiles(summaries, metric, reps=reps, seed=seed)
    fig = plot_performance_profiles(profiles, synthetic, f"{name}: performance profiles")
    written["performance_profiles"] = _save(fig, out, "performance_profiles")
    if x in present and len(present) > 1:
        ys = [v for v in present if v in BASELINES] or [v for v in present if v != x]
        poi = probability_of_improvement(summaries, x, ys, metric, reps=reps, seed=seed)
        fig = plot_probability_of_improvement(poi, synthetic, f"{name}: probability of improvement")
        written["probability_of_improvement"] = _save(fig, out, "probability_of_improvement")
    fig = plot_learning_curves(curves, events, seed=seed, synthetic=synthetic, title=name)
    written["learning_curves"] = _save(fig, out, "learning_curves")
    main = [v for v in present if v == x or v in BASELINES]
    fig = plot_learning_curves(
        curves, events, main, show_learner=True, seed=seed, synthetic=synthetic, title=name
    )
    written["learning_curves_learner"] = _save(fig, out, "learning_curves_learner")
    written["stability_table"] = list(
        write_stability_table(stability_table(summaries), out, synthetic=synthetic)
    )
    return written


def _save(fig: Figure, out_dir: Path, name: str) -> list[Path]:
    paths = save_figure(fig, out_dir, name)
    plt.close(fig)
    return paths


# --------------------------------------------------------------------------- single runs
def plot_pretrain_curve(curve: pd.DataFrame, title: str | None = None) -> Figure:
    """Normalised score of one pretraining run against gradient steps.

    Args:
        curve: the run's ``eval.csv``: columns ``step, score`` (0-100).
    """
    with _style():
        fig, ax = plt.subplots(figsize=(5.0, 3.2))
        ax.plot(curve["step"], curve["score"], marker="o", color=variant_color("direct"))
        ax.set(xlabel="gradient steps (offline)", ylabel="normalised score (0-100)")
        ax.xaxis.set_major_formatter(FuncFormatter(_steps_formatter))
        ax.grid(alpha=0.3)
        _finish(fig, False, title)
        fig.tight_layout()
    return fig


def plot_finetune_run(
    curve: pd.DataFrame, events: pd.DataFrame, title: str | None = None
) -> Figure:
    """Executed (composite) policy and learner alone of one fine-tuning run, with the
    switch (triangles) and reset (dotted lines) events.

    Args:
        curve: the run's ``eval.csv``: ``step, executed_score, learner_score`` (0-100).
        events: the run's ``events.csv``: ``step, event, detail``.
    """
    with _style():
        fig, ax = plt.subplots(figsize=(6.0, 3.6))
        color = variant_color("sft")
        ax.plot(
            curve["step"],
            curve["executed_score"],
            color=color,
            marker="o",
            ms=3,
            label="executed policy",
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
        for step in events.loc[events["event"] == "reset", "step"]:
            ax.axvline(step, color="0.3", linestyle=":", linewidth=1.2)
        switches = events.loc[events["event"] == "switch", "step"].to_numpy()
        ax.scatter(
            switches,
            np.full(len(switches), 0.97),
            transform=ax.get_xaxis_transform(),
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
        labels += ["reset", "switch to learner's critic"]
        ax.legend(handles, labels, fontsize=8, loc="lower left")
        ax.set(xlabel="environment steps (online)", ylabel="normalised score (0-100)")
        ax.xaxis.set_major_formatter(FuncFormatter(_steps_formatter))
        ax.grid(alpha=0.3)
        _finish(fig, False, title)
        fig.tight_layout()
    return fig
