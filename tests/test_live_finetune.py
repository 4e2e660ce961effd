"""Live curves of a fine-tuning run: evaluations, training means and the control's events
reach TensorBoard as they happen, and watching changes no number."""

from __future__ import annotations

import pandas as pd
import pytest

from sftlib.config import finetune_config
from sftlib.layout import TENSORBOARD_DIR
from sftlib.training.finetune import finetune


def tiny_sft(pretrained_dirs, out, logger: str):
    config = finetune_config(
        dict(
            pretrain_dir=str(pretrained_dirs["iql"]), variant="sft", online_steps=200,
            eval_every=100, eval_episodes=1, check_every=50, patience=1, reset_every=100,
            reset_start=100, probe_size=32, mc_episodes=3, device="cpu", logger=logger,
        )
    )  # fmt: skip
    return finetune(config, out, progress=False)


def test_a_finetuning_run_writes_scores_dips_and_events_for_tensorboard(pretrained_dirs, tmp_path):
    accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    result = tiny_sft(pretrained_dirs, tmp_path / "live", "tensorboard")
    events = accumulator.EventAccumulator(str(tmp_path / "live" / TENSORBOARD_DIR))
    events.Reload()
    evals = pd.read_csv(tmp_path / "live" / "eval.csv")
    executed = events.Scalars("eval/executed_score")
    assert [s.step for s in executed] == evals["step"].tolist() == [0, 100, 200]
    assert [s.value for s in executed] == pytest.approx(evals["executed_score"], rel=1e-6)
    learner = [s.value for s in events.Scalars("eval/learner_score")]
    assert learner == pytest.approx(evals["learner_score"], rel=1e-6)
    dips = [s.value for s in events.Scalars("eval/dip")]
    assert dips[-1] == pytest.approx(result.summary["dip"], rel=1e-6, abs=1e-6)
    resets = result.events[result.events["event"] == "reset"]["step"].tolist()
    assert resets and [s.step for s in events.Scalars("events/reset")] == resets


def test_watching_a_finetuning_run_changes_none_of_its_numbers(pretrained_dirs, tmp_path):
    pytest.importorskip("tensorboard")
    plain = tiny_sft(pretrained_dirs, tmp_path / "plain", "none")
    watched = tiny_sft(pretrained_dirs, tmp_path / "watched", "tensorboard")
    for name in ("eval.csv", "events.csv", "checks.csv", "train.csv"):
        same = (tmp_path / "plain" / name).read_bytes() == (
            tmp_path / "watched" / name
        ).read_bytes()
        assert same, name
    assert plain.summary["config"] == watched.summary["config"]
