"""The real phase notebooks through the real sweep runner: every config field the params
files may set reaches the notebooks' ``parameters`` cells, and a run writes its outputs."""

from __future__ import annotations

import json

import pytest
import yaml

from sftlib.analysis.results import load_summaries
from sftlib.sweeps.params import load_study_params
from sftlib.sweeps.plan import plan
from sftlib.sweeps.sweep import run_sweep

from conftest import PENDULUM_ID

STUDY = {
    "study": "tiny",
    "datasets": [PENDULUM_ID],
    "algos": ["td3bc"],
    "variants": ["sft", "direct"],
    "seeds": [0, 1],
    "pretrain": {
        "offline_steps": 60,
        "eval_every": 60,
        "eval_episodes": 1,
        "hidden": [16, 16],
        "batch_size": 32,
    },
    "finetune": {
        "online_steps": 220,
        "eval_every": 110,
        "eval_episodes": 1,
        "check_every": 50,
        "patience": 1,
        "reset_every": 100,
        "reset_start": 100,
        "probe_size": 16,
    },
}


@pytest.mark.slow
def test_sweep_runs_the_phase_notebooks_end_to_end(pendulum_dataset, tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(STUDY))
    study = load_study_params([path])
    report = run_sweep(
        study,
        tmp_path / "results",
        scheduler="inprocess",
        ensure_datasets=False,
        progress=False,
        show=False,
    )
    # One pretraining execution trains both seeds in one process; each variant fine-tunes
    # both seeds in one.
    assert [r.status for r in report.results] == ["done"] * 3, report.table()
    pre, ft, direct = plan(study, tmp_path / "results")
    assert sorted(pre.batch) == [1]
    for directory in pre.dirs:
        assert (directory / "agent.pt").exists() and (directory / "summary.json").exists()
    seed1 = yaml.safe_load((pre.batch[1] / "params.yaml").read_text())
    assert seed1["seed"] == 1 and seed1["trained_in_process_of"] == str(pre.out_dir)
    assert ft.executed_notebook.exists()
    summary = json.loads((ft.out_dir / "summary.json").read_text())
    # Parameters from the study file reached the notebook and the config it built.
    assert summary["online_steps"] == 220 and summary["config"]["sft"]["reset_every"] == 100
    assert summary["n_resets"] == 2 and summary["variant"] == "sft"
    assert summary["seeds_in_process"] == 2 and sorted(ft.batch) == [1]
    other = json.loads((ft.batch[1] / "summary.json").read_text())
    assert other["n_resets"] == 2 and other["seed"] == 1
    assert sorted(direct.batch) == [1]
    seed1 = yaml.safe_load((direct.batch[1] / "params.yaml").read_text())
    assert seed1["pretrain_dir"] == str(pre.batch[1]) and seed1["seed"] == 1
    for directory in direct.dirs:
        summary = json.loads((directory / "summary.json").read_text())
        assert summary["seeds_in_process"] == 2 and summary["variant"] == "direct"
    table = load_summaries(tmp_path / "results" / "tiny")
    assert sorted(table["variant"]) == ["direct", "direct", "sft", "sft"]
    assert table["algo"].tolist() == ["td3bc"] * 4
