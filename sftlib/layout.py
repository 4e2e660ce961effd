"""The on-disk contract: every directory, file and column name a run writes or a reader reads.

Writers (:mod:`sftlib.training.pretrain`, :mod:`sftlib.training.finetune`, :mod:`sftlib.sweeps.sweep`,
:mod:`sftlib.analysis.synthetic`) and readers (:mod:`sftlib.analysis.results`, the figures) import their names
from here, so the two sides cannot drift apart. This module imports neither torch nor pandas.

A study is one directory ``<results_root>/<study>/`` laid out as::

    <dataset_slug>/<algo>/pretrain/seed=<n>/     agent.pt, eval.csv, train.csv, summary.json
    <dataset_slug>/<algo>/<variant>/seed=<n>/    eval.csv, events.csv, checks.csv, train.csv,
                                                 summary.json
    figures/                                     what ``sft figures`` writes
    sweep.json                                   the plan and cost estimate of ``sft sweep``
    SYNTHETIC                                    marker: the study is fake (tests, demos)

``dataset_slug`` is the Minari id with ``/`` replaced by ``-``; with a ``grid:`` in the study,
``<variant>`` is ``<variant>+<key>=<value>...`` (``sft+reset_scope=full``). A run is complete
exactly when its ``summary.json`` exists: the training code writes it last, atomically.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

# --- files of one run --------------------------------------------------------------------
SUMMARY = "summary.json"
"""Written last, atomically: its existence marks a run complete."""
AGENT = "agent.pt"
"""Final agent of a pretraining run (networks, optimisers, normaliser, dataset id, config)."""
STATE = "checkpoint.pt"
"""The resumable state while a run trains (removed when it ends)."""
EVAL_CSV = "eval.csv"
EVENTS_CSV = "events.csv"
CHECKS_CSV = "checks.csv"
TRAIN_CSV = "train.csv"
EPISODES_CSV = "episodes.csv"
PARAMS_FILE = "params.yaml"
"""What the sweep injected into the run's notebook (every config field, plus ``out_dir``)."""
LOG_FILE = "run.log"
LOCK_FILE = ".lock"
TENSORBOARD_DIR = "tensorboard"
"""Event files of a run trained with ``logger: tensorboard`` (:mod:`sftlib.training.live`)."""

# --- directories -----------------------------------------------------------------------------
PRETRAIN_DIRNAME = "pretrain"
"""The per-(dataset, algo) folder of pretraining runs (in place of a variant)."""
FIGURES_DIRNAME = "figures"
"""Folder of a study's figures and tables (never a dataset)."""
SWEEP_FILE = "sweep.json"
"""At a study root: the runs ``sft sweep`` planned and their cost estimate, written when the
sweep starts, with the actual cost added when it ends (what ``sft status`` reads)."""
SYNTHETIC_MARKER = "SYNTHETIC"
"""Marker file at a study root: the study is fake (see :mod:`sftlib.analysis.synthetic`)."""
INTERACTIVE_STUDY = "interactive"
"""Study name of runs started by hand from the notebooks."""
RESULTS_ENV = "SFTLIB_RESULTS"
"""Environment variable overriding the results root of notebook runs (the tests set it)."""
SEED_DIR = re.compile(r"^seed=(-?\d+)$")
GRID_SEPARATOR = "+"
"""Separates a variant from its grid point in a run folder name (``sft+reset_scope=full``)."""

# --- columns -------------------------------------------------------------------------------------
PRETRAIN_EVAL_COLUMNS = ["step", "score", "return"]
"""Pretraining ``eval.csv``: offline gradient step, normalised score (0-100), mean return."""
EVAL_COLUMNS = ["step", "executed_score", "learner_score", "executed_return", "learner_return"]
"""Fine-tuning ``eval.csv``: online step (0 = offline policy), scores of the executed
(composite) policy and of the learner alone, and their mean undiscounted returns."""
SUCCESS_COLUMNS = ["executed_success", "learner_success"]
"""Further fine-tuning ``eval.csv`` columns of tasks that define success: success rates in
percent of the executed policy and of the learner."""
EVENT_COLUMNS = ["step", "event", "detail"]
ANCHOR_COLUMNS = ["anchor_score", "anchor_return"]
"""Columns of ``eval.csv`` for variants with an anchor: the frozen anchor alone."""
EPISODE_COLUMNS = [
    "start_step", "length", "return", "normalized_return", "share_anchor", "share_learner",
]  # fmt: skip
"""Columns of ``episodes.csv``: one row per finished training episode (raw return)."""
EVENT_TYPES = ("switch", "reset", "anchor_update", "mc_veto")
CHECK_COLUMNS = ["step", "drift", "calm", "j_anchor", "j_learner", "verdict"]
"""Fine-tuning ``checks.csv``: one row per stability check."""
SUMMARY_KEYS = (
    "score_offline",
    "score_final",
    "score_max",
    "auc",
    "dip",
    "steps_to_recover",
    "regret",
    "switch_step",
    "n_resets",
    "wall_time_s",
    "online_steps",
    "variant",
    "algo",
    "dataset_id",
    "seed",
)
"""Keys every fine-tuning ``summary.json`` holds (the contract with every reader)."""


def dataset_slug(dataset_id: str) -> str:
    """``local/hopper/medium-v0`` -> ``local-hopper-medium-v0`` (one path component)."""
    return dataset_id.replace("/", "-")


def seed_dirname(seed: int) -> str:
    return f"seed={seed}"


def base_variant(dirname: str) -> str:
    """The variant of a run folder name: ``sft+reset_scope=full`` -> ``sft``."""
    return dirname.split(GRID_SEPARATOR, 1)[0]


def run_dir(
    results_root: str | Path, study: str, dataset_id: str, algo: str, variant: str, seed: int
) -> Path:
    """Directory of one run; ``variant`` is :data:`PRETRAIN_DIRNAME` for a pretraining run."""
    return (
        Path(results_root) / study / dataset_slug(dataset_id) / algo / variant / seed_dirname(seed)
    )


def interactive_run_dir(dataset_id: str, algo: str, variant: str, seed: int) -> Path:
    """Default directory of a run started by hand from a notebook:
    ``<results>/interactive/<dataset_slug>/<algo>/<variant>/seed=<n>``, where ``<results>``
    is ``$SFTLIB_RESULTS`` if set, else ``../results`` (relative to ``notebooks/``, where the
    notebooks run)."""
    root = os.environ.get(RESULTS_ENV, "../results")
    return run_dir(root, INTERACTIVE_STUDY, dataset_id, algo, variant, seed)


def is_synthetic(study_dir: str | Path) -> bool:
    """True when ``study_dir`` holds the :data:`SYNTHETIC` marker."""
    return (Path(study_dir) / SYNTHETIC_MARKER).exists()
