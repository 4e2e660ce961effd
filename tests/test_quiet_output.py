"""Quiet, clear output: a HalfCheetah dataset build prints one line and no MuJoCo noise; the
verdict lines name both sides of every comparison."""

from __future__ import annotations

import minari
import pandas as pd

from sftlib.analysis.report import describe_promise
from sftlib.analysis.tables import promise_table
from sftlib.factory import make_datasets


def test_a_halfcheetah_dataset_build_prints_one_line_and_no_warning(capfd):
    """``medium-replay`` replays every SAC snapshot up to ``medium``: one environment each, and
    MuJoCo warns at every HalfCheetah model compile (``settotalmass``), as does the
    environment Minari makes to record the dataset's spec."""
    dataset_id = "local/halfcheetah/medium-replay-v0"
    if dataset_id in minari.list_local_datasets():
        minari.delete_dataset(dataset_id)
    capfd.readouterr()
    assert make_datasets("HalfCheetah-v5", ["medium-replay"], n_steps=1_500) == {
        "medium-replay": dataset_id
    }
    out, err = capfd.readouterr()
    lines = out.splitlines()
    assert len(lines) == 1, out
    assert lines[0].startswith(f"dataset {dataset_id}: not in the Minari store, making it")
    assert " made in " in lines[0]
    assert err == "", err  # no deprecation notice, no empty line, no progress bar

    make_datasets("HalfCheetah-v5", ["medium-replay"], n_steps=1_500)
    out, err = capfd.readouterr()
    assert out == f"dataset {dataset_id}: in the Minari store already\n" and err == ""


def test_verdict_lines_name_both_sides():
    rows = [
        dict(
            dataset="hopper",
            algo="iql",
            variant=variant,
            seed=0,
            dip=dip,
            score_offline=26.0,
            score_final=final,
            learner_score_final=learner,
        )
        for variant, dip, final, learner in (
            ("direct", 11.5, 28.9, 28.9),
            ("sft", 0.2, 39.2, 37.9),
        )
    ]
    text = describe_promise(promise_table(pd.DataFrame(rows)))
    assert text.splitlines()[1] == (
        "  hopper / IQL: dip direct 11.5 → sft 0.2 (<= 0.33 x baseline: met); "
        "final direct 28.9 → sft 39.2; sft's learner ends at 37.9 (offline 26.0)"
    )
