"""Write a small FAKE study in the exact on-disk layout of the sweep runner.

For tests and for the analysis notebooks when no real study exists. The curves are drawn
from a hand-written generative model (baselines dip after the switch to online data and
recover; ``sft`` variants dip less; the learner of reset variants drops after every reset,
and the executed policy mostly does not). They encode *our expectation*, not a result:
the study root gets a ``SYNTHETIC`` marker file, :mod:`sftlib.analysis.results` exposes it as
``df.attrs["synthetic"]`` and every figure and table made from it is labelled.

This module imports no algorithm code.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from sftlib.analysis.metrics import stability_metrics
from sftlib.analysis.results import HOW_TO_PRODUCE, VARIANT_ORDER, check_study_dir
from sftlib.layout import (
    EVAL_CSV,
    EVENTS_CSV,
    PARAMS_FILE,
    PRETRAIN_DIRNAME,
    SUMMARY,
    SYNTHETIC_MARKER,
    run_dir,
)
from sftlib.utils import atomic_write_text

DEFAULT_DATASETS = ("local/hopper-medium-v0", "local/walker2d-medium-v0")
DEFAULT_ALGOS = ("iql", "td3bc")
DEFAULT_VARIANTS = VARIANT_ORDER

# Per variant: (dip factor, gain factor, fraction of the learner's reset drop that reaches the
# executed policy, has switch events, has resets, switch delay as a fraction of the run).
_PROFILES: dict[str, tuple[float, float, float, bool, bool, float]] = {
    "direct": (1.0, 1.0, 1.0, False, False, 0.0),
    "pex": (0.6, 0.95, 1.0, False, False, 0.0),
    "warmup": (0.7, 1.0, 1.0, False, False, 0.0),
    "sft": (0.15, 1.1, 0.05, True, True, 0.15),
    "sft-noswitch": (0.5, 1.0, 0.35, False, True, 0.0),
    "sft-q": (0.35, 1.0, 0.1, True, True, 0.12),
    "sft-mc": (0.25, 0.9, 0.05, True, True, 0.25),
    "sft-fqe": (0.2, 1.05, 0.05, True, True, 0.15),
    "sft-noreset": (0.15, 0.9, 0.0, True, False, 0.15),
    "sft-episode": (0.1, 1.05, 0.0, True, True, 0.2),
}
_UNKNOWN_PROFILE = (0.5, 1.0, 0.2, True, True, 0.15)


def _bump(x: np.ndarray, peak: float = 0.08) -> np.ndarray:
    """Dip shape: 0 at x=0, maximum 1 at x=peak, decaying after (gamma-like)."""
    return (x / peak) * np.exp(1.0 - x / peak)


def _run(
    rng: np.random.Generator,
    variant: str,
    steps: np.ndarray,
    online_steps: int,
    reset_every: int,
    task_draw: dict[str, float],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Eval curve [num_evals x 5] and events of one synthetic run."""
    dip_f, gain_f, visible, has_switch, has_resets, switch_delay = _PROFILES.get(
        variant, _UNKNOWN_PROFILE
    )
    x = steps / online_steps
    s0, dip, gain, reset_drop = (task_draw[k] for k in ("s0", "dip", "gain", "reset_drop"))
    trend = gain * gain_f * (1.0 - np.exp(-x / 0.35))
    executed = s0 - dip * dip_f * _bump(x) + trend
    learner = s0 - dip * max(dip_f, 0.9) * _bump(x) + trend
    if variant in ("direct",):
        learner = executed.copy()

    events: list[tuple[int, str, str]] = []
    if has_switch:
        first = int(round(online_steps * (switch_delay + rng.uniform(0.0, 0.05)), -2))
        events.append((first, "switch", "selector critic: Q_A -> Q_L"))
    if has_resets:
        tau = 0.1 * online_steps
        for r in range(reset_every, online_steps, reset_every):
            penalty = reset_drop * np.where(steps > r, np.exp(-(steps - r) / tau), 0.0)
            learner = learner - penalty
            executed = executed - visible * penalty
            kept = rng.random() < 0.3
            events.append((r, "anchor_update", "anchor kept" if kept else "anchor <- learner"))
            events.append((r, "reset", "scope=last"))
            if has_switch:
                back = r + int(round(online_steps * rng.uniform(0.04, 0.08), -2))
                if back < online_steps:
                    events.append((back, "switch", "selector critic: Q_A -> Q_L"))

    noise = rng.normal(0.0, 2.0, size=(2, len(steps)))
    noise[:, 0] = task_draw["eval_noise0"]  # step 0 is the same offline policy for all variants
    executed = executed + noise[0]
    learner = learner + (noise[1] if variant != "direct" else noise[0])
    return_scale = task_draw["return_scale"]
    curve = pd.DataFrame(
        {
            "step": steps,
            "executed_score": executed.round(3),
            "learner_score": learner.round(3),
            "executed_return": (executed * return_scale).round(2),
            "learner_return": (learner * return_scale).round(2),
        }
    )
    events_df = pd.DataFrame(sorted(events), columns=["step", "event", "detail"])
    return curve, events_df


def write_synthetic_study(
    root: str | Path,
    study: str = "synthetic",
    datasets: Sequence[str] = DEFAULT_DATASETS,
    algos: Sequence[str] = DEFAULT_ALGOS,
    variants: Sequence[str] = DEFAULT_VARIANTS,
    seeds: Sequence[int] = (0, 1, 2, 3, 4),
    rng_seed: int = 0,
    online_steps: int = 100_000,
    eval_every: int = 5_000,
    reset_every: int = 25_000,
    with_pretrain: bool = True,
) -> Path:
    """Write a fake study to ``<root>/<study>/`` in the sweep runner's layout; return its path.

    Args:
        root: results root; created if missing.
        study: study name (directory under ``root``).
        datasets: Minari dataset ids (``"/"`` becomes ``"-"`` in directory names).
        algos: base algorithms, e.g. ``("iql", "td3bc")``.
        variants: variant names of the SFT spec; unknown names get a generic SFT-like profile.
        seeds: run seeds; each (dataset, algo, seed) shares its offline score across variants.
        rng_seed: seed of the generator, so the same arguments write the same files.
        online_steps: fine-tuning budget in environment steps.
        eval_every: environment steps between evaluations (step 0 is the offline policy).
        reset_every: environment steps between resets of the reset variants.
        with_pretrain: also write ``<algo>/pretrain/seed=<n>/`` folders.

    Writes per run ``eval.csv``, ``events.csv`` (possibly header-only), ``params.yaml`` and,
    last and atomically, ``summary.json`` whose metrics are computed from ``eval.csv`` by
    :func:`sftlib.analysis.metrics.stability_metrics`; and a ``SYNTHETIC`` marker at the study root.
    """
    rng = np.random.default_rng(rng_seed)
    study_dir = Path(root) / study
    study_dir.mkdir(parents=True, exist_ok=True)
    (study_dir / SYNTHETIC_MARKER).write_text(
        "This study was written by sftlib.analysis.synthetic.write_synthetic_study: FAKE data for tests "
        "and demos, not experimental results.\n"
    )
    steps = np.arange(0, online_steps + 1, eval_every)
    for dataset_id in datasets:
        for algo in algos:
            task_s0 = rng.uniform(40.0, 75.0)
            for seed in seeds:
                task_draw = {
                    "s0": task_s0 + rng.normal(0.0, 3.0),
                    "dip": rng.uniform(15.0, 30.0),
                    "gain": rng.uniform(15.0, 30.0),
                    "reset_drop": rng.uniform(20.0, 35.0),
                    "eval_noise0": rng.normal(0.0, 1.0),
                    "return_scale": 32.0,
                }
                if with_pretrain:
                    _write_pretrain(study_dir, dataset_id, algo, seed, task_draw["s0"], rng)
                for variant in variants:
                    out = run_dir(root, study, dataset_id, algo, variant, seed)
                    run = _run(rng, variant, steps, online_steps, reset_every, task_draw)
                    names = (study, dataset_id, algo, variant, seed)
                    _write_run(out, rng, run, steps, online_steps, names)
    return study_dir


def _write_run(
    out: Path,
    rng: np.random.Generator,
    run: tuple[pd.DataFrame, pd.DataFrame],
    steps: np.ndarray,
    online_steps: int,
    names: tuple[str, str, str, str, int],
) -> None:
    """One synthetic run's files, ``summary.json`` last (its wall time drawn from ``rng``);
    ``names``: study, dataset id, algorithm, variant and seed."""
    curve, events = run
    study, dataset_id, algo, variant, seed = names
    out.mkdir(parents=True, exist_ok=True)
    curve.to_csv(out / EVAL_CSV, index=False)
    events.to_csv(out / EVENTS_CSV, index=False)
    (out / PARAMS_FILE).write_text(
        f"# synthetic run\nstudy: {study}\ndataset_id: {dataset_id}\n"
        f"algo: {algo}\nvariant: {variant}\nseed: {seed}\n"
        f"online_steps: {online_steps}\n"
    )
    switches = events.loc[events["event"] == "switch", "step"]
    summary = stability_metrics(steps, curve["executed_score"].to_numpy())
    summary.update(
        switch_step=int(switches.min()) if len(switches) else None,
        n_resets=int((events["event"] == "reset").sum()),
        wall_time_s=round(float(rng.uniform(300.0, 600.0)), 1),
        online_steps=online_steps,
        variant=variant,
        algo=algo,
        dataset_id=dataset_id,
        seed=seed,
    )
    atomic_write_text(out / SUMMARY, json.dumps(summary, indent=2))


def _write_pretrain(
    study_dir: Path, dataset_id: str, algo: str, seed: int, s0: float, rng: np.random.Generator
) -> None:
    """Pretraining run folder: eval curve rising to ``s0`` and its summary."""
    out = run_dir(study_dir.parent, study_dir.name, dataset_id, algo, PRETRAIN_DIRNAME, seed)
    out.mkdir(parents=True, exist_ok=True)
    offline_steps = 100_000
    steps = np.arange(0, offline_steps + 1, 10_000)
    score = s0 * (1.0 - np.exp(-steps / 20_000)) + rng.normal(0.0, 1.5, len(steps))
    pd.DataFrame({"step": steps, "score": score.round(3), "return": (score * 32).round(2)}).to_csv(
        out / EVAL_CSV, index=False
    )
    summary = {
        "score_final": float(score[-1].round(3)),
        "wall_time_s": round(float(rng.uniform(600.0, 900.0)), 1),
        "offline_steps": offline_steps,
    }
    atomic_write_text(out / SUMMARY, json.dumps(summary, indent=2))


def resolve_study(
    results_root: str | Path,
    study: str,
    synthetic_fallback: bool = True,
    synthetic_variants: Sequence[str] | None = None,
) -> Path:
    """Directory of ``<results_root>/<study>``; if it is missing, a synthetic stand-in.

    With ``synthetic_fallback`` a missing study is replaced by a fake one written with
    :func:`write_synthetic_study` into a fresh temporary directory, and a loud banner is
    printed; the returned study carries the ``SYNTHETIC`` marker so every table and figure
    made from it is labelled. Without the fallback a missing study raises
    ``FileNotFoundError`` naming the path and how to produce it.
    """
    study_dir = Path(results_root) / study
    if study_dir.is_dir():
        return study_dir
    if not synthetic_fallback:
        check_study_dir(study_dir)
    kwargs = {} if synthetic_variants is None else {"variants": tuple(synthetic_variants)}
    root = Path(tempfile.mkdtemp(prefix="sftlib-synthetic-"))
    fake_dir = write_synthetic_study(root, study=study, **kwargs)
    banner = "!" * 88
    print(
        f"{banner}\n!!! SYNTHETIC DATA: study {str(study_dir.resolve())!r} does not exist.\n"
        f"!!! Using a FAKE study written to {str(fake_dir)!r}; nothing below is an "
        f"experimental result.\n!!! {HOW_TO_PRODUCE}\n{banner}"
    )
    return fake_dir
