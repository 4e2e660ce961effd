"""Load a study written by the sweep runner into tidy pandas DataFrames.

The layout read here is defined in :mod:`sftlib.layout`. A fine-tuning run is *complete* iff
its ``summary.json`` exists (the runner writes it last, atomically); incomplete runs are
skipped with a warning so that a half-finished sweep can still be inspected.

Every table carries ``df.attrs["synthetic"]`` (True when the study root holds a ``SYNTHETIC``
marker file, see :mod:`sftlib.analysis.synthetic`) and ``df.attrs["study_dir"]``. ``attrs`` do not survive
every pandas operation, so plotting functions also accept an explicit ``synthetic=`` flag.

This module reads files only; it imports no algorithm code.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from sftlib.layout import (
    EVAL_COLUMNS,
    EVAL_CSV,
    EVENT_COLUMNS,
    EVENTS_CSV,
    FIGURES_DIRNAME,
    PRETRAIN_DIRNAME,
    SEED_DIR,
    SUCCESS_COLUMNS,
    SUMMARY,
    SUMMARY_KEYS,
    base_variant,
    dataset_slug,
    is_synthetic,
)

HOW_TO_PRODUCE = (
    "Produce it with `make demo` (a small demo study), or run the sweep for this study "
    "(`sft sweep params/<study>.yaml`), or pass the right results_root."
)
"""Hint appended to every 'study not found' error."""

VARIANT_ORDER = (
    "sft",
    "sft-noswitch",
    "sft-q",
    "sft-mc",
    "sft-fqe",
    "sft-noreset",
    "sft-episode",
    "pex",
    "warmup",
    "direct",
)
"""Display order of the variants of the SFT spec (full method first, baselines last)."""

RUN_KEYS = ["study", "dataset", "algo", "variant", "seed"]
"""Columns identifying one fine-tuning run in every table of this module."""


def check_study_dir(study_dir: str | Path) -> Path:
    path = Path(study_dir)
    if not path.is_dir():
        raise FileNotFoundError(
            f"Study directory {str(path.resolve())!r} does not exist. {HOW_TO_PRODUCE}"
        )
    return path


def _iter_run_dirs(study_dir: Path, pretrain: bool) -> Iterator[tuple[str, str, str, int, Path]]:
    """Yield ``(dataset_slug, algo, variant, seed, run_dir)`` for every ``seed=<n>`` folder.

    With ``pretrain=True`` only the ``pretrain`` folders are visited (variant ``"pretrain"``),
    otherwise only the fine-tuning ones. Sorted, so tables come out in a stable order.
    """
    for dataset_dir in sorted(p for p in study_dir.iterdir() if p.is_dir()):
        if dataset_dir.name.startswith((".", "_")) or dataset_dir.name == FIGURES_DIRNAME:
            continue
        for algo_dir in sorted(p for p in dataset_dir.iterdir() if p.is_dir()):
            for variant_dir in sorted(p for p in algo_dir.iterdir() if p.is_dir()):
                if (variant_dir.name == PRETRAIN_DIRNAME) != pretrain:
                    continue
                seed_dirs = []
                for seed_dir in variant_dir.iterdir():
                    match = SEED_DIR.match(seed_dir.name)
                    if seed_dir.is_dir() and match:
                        seed_dirs.append((int(match.group(1)), seed_dir))
                for seed, seed_dir in sorted(seed_dirs):
                    yield dataset_dir.name, algo_dir.name, variant_dir.name, seed, seed_dir


def _complete_runs(study_dir: str | Path, pretrain: bool = False) -> list[tuple]:
    """Complete runs of a study as ``(dataset_slug, algo, variant, seed, run_dir)`` tuples.

    Raises ``FileNotFoundError`` when the directory or every complete run is missing.
    """
    path = check_study_dir(study_dir)
    runs, incomplete = [], []
    for run in _iter_run_dirs(path, pretrain=pretrain):
        (runs if (run[-1] / SUMMARY).exists() else incomplete).append(run)
    if incomplete:
        names = ", ".join(str(r[-1].relative_to(path)) for r in incomplete[:5])
        more = f" and {len(incomplete) - 5} more" if len(incomplete) > 5 else ""
        warnings.warn(
            f"Skipping {len(incomplete)} incomplete run(s) without summary.json in {path}: "
            f"{names}{more}",
            stacklevel=3,
        )
    if not runs:
        kind = "pretraining" if pretrain else "fine-tuning"
        raise FileNotFoundError(
            f"No complete {kind} run (a seed=<n>/ folder with summary.json) under "
            f"{str(path.resolve())!r}. {HOW_TO_PRODUCE}"
        )
    return runs


def _tag(df: pd.DataFrame, study_dir: Path) -> pd.DataFrame:
    df.attrs["synthetic"] = is_synthetic(study_dir)
    df.attrs["study_dir"] = str(study_dir)
    df.attrs["study"] = study_dir.name
    return df


def load_summaries(study_dir: str | Path) -> pd.DataFrame:
    """One row per complete fine-tuning run with the fields of its ``summary.json``.

    Columns: ``study, dataset, algo, variant, seed`` (``dataset`` is the directory slug,
    ``variant`` the directory name, so a grid point such as ``sft+reset_scope=full`` is its own
    variant while the summary's own ``variant`` key, ``sft``, is checked against it) followed
    by every key of :data:`sftlib.layout.SUMMARY_KEYS` (``dataset_id`` is the Minari id as the run wrote it)
    and any extra key the runner added. Scores are normalised (0-100, may leave that range);
    ``steps_to_recover`` and ``switch_step`` are environment steps, NaN when null (never
    recovered / never switched); ``wall_time_s`` is seconds.

    Raises:
        FileNotFoundError: ``study_dir`` or every complete run is missing.
        ValueError: a ``summary.json`` lacks a contract key or disagrees with its path.
    """
    path = check_study_dir(study_dir)
    rows = []
    for dataset, algo, variant, seed, run_dir in _complete_runs(path):
        summary = json.loads((run_dir / SUMMARY).read_text())
        missing = [k for k in SUMMARY_KEYS if k not in summary]
        if missing:
            raise ValueError(f"{run_dir / SUMMARY} lacks keys {missing}")
        # A mismatch means the runner wrote a run into the wrong folder: every table keyed
        # by path would silently mix runs, so stop here.
        # A grid point's folder is "<variant>+<key>=<value>..." (e.g. sft+reset_scope=full).
        found = (dataset_slug(str(summary["dataset_id"])), summary["algo"], summary["variant"])
        expected = (dataset, algo, base_variant(variant))
        if found != expected or int(summary["seed"]) != seed:
            raise ValueError(
                f"{run_dir / SUMMARY} says dataset_id={summary['dataset_id']!r}, "
                f"algo={summary['algo']!r}, variant={summary['variant']!r}, "
                f"seed={summary['seed']!r}, which disagrees with its path"
            )
        summary.update(study=path.name, dataset=dataset, algo=algo, variant=variant, seed=seed)
        rows.append(summary)
    df = pd.DataFrame(rows)
    extra = [c for c in df.columns if c not in RUN_KEYS and c not in SUMMARY_KEYS]
    df = df[RUN_KEYS + [k for k in SUMMARY_KEYS if k not in RUN_KEYS] + extra]
    for col in ("steps_to_recover", "switch_step"):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)  # null -> NaN
    return _tag(df.reset_index(drop=True), path)


def load_study(study_dir: str | Path) -> pd.DataFrame:
    """Evaluation curves of every complete fine-tuning run, tidy.

    One row per ``(dataset, algo, variant, seed, step)``; columns ``study, dataset, algo,
    variant, seed, step, executed_score, learner_score`` plus ``executed_return,
    learner_return`` when ``eval.csv`` has them. ``step`` is online environment steps
    (0 = the offline policy); scores are normalised (0-100), returns undiscounted episode
    returns. ``attrs["synthetic"]`` tells whether the study is synthetic.

    Raises:
        FileNotFoundError: ``study_dir``, every complete run, or a complete run's ``eval.csv``
            is missing.
    """
    path = check_study_dir(study_dir)
    frames = []
    for dataset, algo, variant, seed, run_dir in _complete_runs(path):
        eval_path = run_dir / EVAL_CSV
        if not eval_path.exists():
            raise FileNotFoundError(f"Complete run {run_dir} has no eval.csv")
        curve = pd.read_csv(eval_path)
        curve = curve[[c for c in EVAL_COLUMNS + SUCCESS_COLUMNS if c in curve.columns]]
        frames.append(
            curve.assign(study=path.name, dataset=dataset, algo=algo, variant=variant, seed=seed)
        )
    df = pd.concat(frames, ignore_index=True)
    df = df[RUN_KEYS + [c for c in EVAL_COLUMNS + SUCCESS_COLUMNS if c in df.columns]]
    return _tag(df.sort_values(RUN_KEYS + ["step"], kind="stable").reset_index(drop=True), path)


def load_events(study_dir: str | Path) -> pd.DataFrame:
    """Switch / reset / anchor-update events of every complete fine-tuning run.

    One row per event; columns ``study, dataset, algo, variant, seed, step, event, detail``
    with ``event`` in :data:`sftlib.layout.EVENT_TYPES` and ``step`` in online environment steps. A run
    without ``events.csv`` or with a header-only file contributes no rows; the result may be
    empty (but always has these columns).
    """
    path = check_study_dir(study_dir)
    frames = []
    for dataset, algo, variant, seed, run_dir in _complete_runs(path):
        events_path = run_dir / EVENTS_CSV
        if not events_path.exists():
            continue
        events = pd.read_csv(events_path, dtype={"detail": str}, keep_default_na=False)
        if events.empty:
            continue
        frames.append(
            events[EVENT_COLUMNS].assign(
                study=path.name, dataset=dataset, algo=algo, variant=variant, seed=seed
            )
        )
    columns = RUN_KEYS + EVENT_COLUMNS
    if frames:
        df = pd.concat(frames, ignore_index=True)[columns]
    else:
        int_columns = ("seed", "step")
        df = pd.DataFrame(
            {c: pd.Series(dtype="int64" if c in int_columns else object) for c in columns}
        )
    return _tag(df.reset_index(drop=True), path)


def load_pretrain_summaries(study_dir: str | Path) -> pd.DataFrame:
    """One row per complete pretraining run: ``study, dataset, algo, seed`` and the fields of its
    ``summary.json`` (``score_final`` normalised 0-100, ``wall_time_s`` seconds,
    ``offline_steps`` gradient steps)."""
    path = check_study_dir(study_dir)
    rows = []
    for dataset, algo, _, seed, run_dir in _complete_runs(path, pretrain=True):
        summary = json.loads((run_dir / SUMMARY).read_text())
        summary.update(study=path.name, dataset=dataset, algo=algo, seed=seed)
        rows.append(summary)
    df = pd.DataFrame(rows)
    keys = ["study", "dataset", "algo", "seed"]
    return _tag(df[keys + [c for c in df.columns if c not in keys]], path)


def load_pretrain(study_dir: str | Path) -> pd.DataFrame:
    """Evaluation curves of every complete pretraining run, tidy: one row per
    ``(dataset, algo, seed, step)``; columns ``study, dataset, algo, seed, step, score, return``
    (``step`` in offline gradient steps, ``score`` normalised 0-100)."""
    path = check_study_dir(study_dir)
    frames = []
    for dataset, algo, _, seed, run_dir in _complete_runs(path, pretrain=True):
        curve = pd.read_csv(run_dir / EVAL_CSV)
        frames.append(curve.assign(study=path.name, dataset=dataset, algo=algo, seed=seed))
    df = pd.concat(frames, ignore_index=True)
    keys = ["study", "dataset", "algo", "seed"]
    return _tag(df[keys + [c for c in df.columns if c not in keys]], path)


def select_variants(
    df: pd.DataFrame, variants: Sequence[str], required: Sequence[str] = ()
) -> pd.DataFrame:
    """Rows of ``df`` whose ``variant`` is in ``variants`` (attrs kept).

    Raises:
        ValueError: a variant of ``required`` has no row, naming the variants present.
    """
    present = set(df["variant"])
    missing = [v for v in required if v not in present]
    if missing:
        where = df.attrs.get("study_dir", "this study")
        raise ValueError(
            f"Variant(s) {missing} have no complete run in {where}; present: {sorted(present)}"
        )
    out = df[df["variant"].isin(list(variants))].reset_index(drop=True)
    out.attrs.update(df.attrs)
    return out


def reset_drops(curves: pd.DataFrame, events: pd.DataFrame) -> pd.DataFrame:
    """How far the learner and the executed policy fall after each reset.

    For a reset at step ``r`` of one run, ``pre`` is the score at the last evaluation at or
    before ``r`` and the window is every evaluation after ``r`` up to the next reset (or the
    end of the run); the drop is ``max(0, pre - min(score in window))``, in normalised score
    points, computed for ``learner_score`` and ``executed_score``. SFT's claim is that the
    learner's drop is large while the executed policy's stays small.

    Args:
        curves: output of :func:`load_study`.
        events: output of :func:`load_events`.

    Returns:
        One row per reset: ``dataset, algo, variant, seed, reset_step, learner_drop,
        executed_drop``. Empty (with these columns) when there is no reset.
    """
    keys = ["dataset", "algo", "variant", "seed"]
    resets = events[events["event"] == "reset"]
    rows = []
    for run, run_resets in resets.groupby(keys, sort=True):
        mask = np.ones(len(curves), dtype=bool)
        for key, value in zip(keys, run, strict=True):
            mask &= (curves[key] == value).to_numpy()
        curve = curves[mask].sort_values("step")
        steps = curve["step"].to_numpy()
        reset_steps = np.sort(run_resets["step"].to_numpy())
        for i, r in enumerate(reset_steps):
            end = reset_steps[i + 1] if i + 1 < len(reset_steps) else np.inf
            before = curve[steps <= r]
            window = curve[(steps > r) & (steps <= end)]
            if before.empty or window.empty:
                continue
            row = dict(zip(keys, run, strict=True), reset_step=int(r))
            for col in ("learner", "executed"):
                pre = before[f"{col}_score"].iloc[-1]
                row[f"{col}_drop"] = max(0.0, float(pre - window[f"{col}_score"].min()))
            rows.append(row)
    columns = keys + ["reset_step", "learner_drop", "executed_drop"]
    df = pd.DataFrame(rows, columns=columns)
    df.attrs.update(curves.attrs)
    return df
