"""Small studies shared by the tests of sftlib.analysis.stats, sftlib.analysis.report and sftlib.analysis.figures.

``write_hand_study``: 2 tasks (datasets a, b with IQL) x 2 variants x 3 seeds, every number
chosen by hand so that aggregates can be checked against arithmetic done in the tests.
``write_small_synthetic_study``: a synthetic study with resets and switches, for figures.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from sftlib.analysis.synthetic import write_synthetic_study

REPS = 200  # bootstrap resamples: enough to test intervals, fast on a busy CPU

ONLINE_STEPS = 5000

# Per (dataset, variant): one value per seed 0, 1, 2.
HAND = {
    ("d/a-v0", "sft"): dict(
        dip=[1.0, 2.0, 6.0],
        steps_to_recover=[1000, None, 3000],
        regret=[20.0, 22.0, 24.0],
        auc=[80.0, 78.0, 76.0],
        score_final=[90.0, 95.0, 110.0],
    ),
    ("d/b-v0", "sft"): dict(
        dip=[0.0, 0.0, 3.0],
        steps_to_recover=[0, 0, 2000],
        regret=[30.0, 30.0, 30.0],
        auc=[70.0, 70.0, 70.0],
        score_final=[70.0, 75.0, 80.0],
    ),
    ("d/a-v0", "direct"): dict(
        dip=[10.0, 12.0, 14.0],
        steps_to_recover=[None, None, 4000],
        regret=[40.0, 41.0, 42.0],
        auc=[60.0, 59.0, 58.0],
        score_final=[60.0, 100.0, 70.0],
    ),
    ("d/b-v0", "direct"): dict(
        dip=[8.0, 9.0, 10.0],
        steps_to_recover=[3000, 3000, 3000],
        regret=[45.0, 45.0, 45.0],
        auc=[55.0, 55.0, 55.0],
        score_final=[50.0, 55.0, 60.0],
    ),
}


def write_hand_study(study_dir: Path, learner_score_final: dict | None = None) -> Path:
    """Write :data:`HAND` in the sweep runner's layout under ``study_dir``; return it.

    Args:
        learner_score_final: ``(dataset_id, variant) -> [per seed value or None]``; a run with
            no entry (or None) has no ``learner_score_final`` key in its summary, as older runs.
    """
    learner_score_final = learner_score_final or {}
    for (dataset_id, variant), values in HAND.items():
        for seed in range(3):
            run_dir = study_dir / dataset_id.replace("/", "-") / "iql" / variant / f"seed={seed}"
            run_dir.mkdir(parents=True)
            pd.DataFrame(
                {
                    "step": [0, 2500, 5000],
                    "executed_score": [50.0, 40.0 + seed, 60.0],
                    "learner_score": [50.0, 30.0, 55.0],
                }
            ).to_csv(run_dir / "eval.csv", index=False)
            events = [(1000 + 100 * seed, "switch", "")] if variant == "sft" else []
            pd.DataFrame(events, columns=["step", "event", "detail"]).to_csv(
                run_dir / "events.csv", index=False
            )
            summary = {metric: per_seed[seed] for metric, per_seed in values.items()}
            summary.update(
                score_offline=50.0,
                score_max=max(summary["score_final"], 60.0),
                switch_step=None,
                n_resets=0,
                wall_time_s=1.0,
                online_steps=ONLINE_STEPS,
                variant=variant,
                algo="iql",
                dataset_id=dataset_id,
                seed=seed,
            )
            learner = learner_score_final.get((dataset_id, variant), [None] * 3)[seed]
            if learner is not None:
                summary["learner_score_final"] = learner
            (run_dir / "summary.json").write_text(json.dumps(summary))
    return study_dir


def write_small_synthetic_study(root: Path) -> Path:
    """Synthetic study: 2 datasets x IQL x (direct, sft, sft-noswitch) x 4 seeds, with
    switches and resets."""
    return write_synthetic_study(
        root,
        study="syn",
        algos=("iql",),
        variants=("direct", "sft", "sft-noswitch"),
        seeds=(0, 1, 2, 3),
        online_steps=40_000,
        eval_every=5_000,
        reset_every=20_000,
    )
