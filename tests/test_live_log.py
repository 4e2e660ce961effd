"""Live curves (sftlib.training.live): a real pretraining run's TensorBoard event files read
back, W&B offline with no network, and a logger that changes no number."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from sftlib.config import FinetuneConfig, PretrainConfig
from sftlib.layout import TENSORBOARD_DIR, run_dir
from sftlib.training.checkpoint import comparable_config
from sftlib.training.live import make_logger, run_tags
from sftlib.training.pretrain import pretrain

from conftest import PENDULUM_ID

TAGS = {"study": "s", "dataset": "d/x-v0", "algo": "iql", "variant": "sft", "seed": "0"}


def tiny_pretrain(logger: str, out: Path, seed: int = 0) -> None:
    config = PretrainConfig(
        dataset_id=PENDULUM_ID,
        algo="iql",
        offline_steps=120,
        eval_every=40,
        eval_episodes=1,
        hidden=(16, 16),
        batch_size=32,
        seed=seed,
        logger=logger,
    )
    pretrain(config, out, progress=False)


def read_events(directory: Path):
    accumulator = pytest.importorskip(
        "tensorboard.backend.event_processing.event_accumulator"
    ).EventAccumulator(str(directory))
    accumulator.Reload()
    return accumulator


def test_a_pretraining_run_writes_its_curves_for_tensorboard(pendulum_dataset, tmp_path):
    pytest.importorskip("tensorboard")
    out = run_dir(tmp_path, "live", PENDULUM_ID, "iql", "pretrain", 0)
    tiny_pretrain("tensorboard", out)
    events = read_events(out / TENSORBOARD_DIR)
    evals = pd.read_csv(out / "eval.csv")
    scores = events.Scalars("eval/score")
    # Every evaluation as it happened, at its step, with the number eval.csv holds.
    assert [s.step for s in scores] == evals["step"].tolist() == [0, 40, 80, 120]
    assert [s.value for s in scores] == pytest.approx(evals["score"].tolist(), rel=1e-6)
    assert [s.step for s in events.Scalars("eval/return")] == [0, 40, 80, 120]
    losses = [tag for tag in events.Tags()["scalars"] if tag.startswith("train/")]
    assert losses and [s.step for s in events.Scalars(losses[0])] == [40, 80, 120]
    (tags,) = events.Tensors("run/tags/text_summary")
    text = tags.tensor_proto.string_val[0].decode()
    for key, value in run_tags(out, PENDULUM_ID, "iql", "pretrain", 0).items():
        assert f"| {key} | {value} |" in text
    assert "| study | live |" in text


def test_a_logger_changes_no_number_of_the_run(pendulum_dataset, tmp_path):
    pytest.importorskip("tensorboard")
    plain, watched = tmp_path / "plain", tmp_path / "watched"
    tiny_pretrain("none", plain, seed=3)
    tiny_pretrain("tensorboard", watched, seed=3)
    for name in ("eval.csv", "train.csv"):
        assert (plain / name).read_bytes() == (watched / name).read_bytes()
    summaries = [json.loads((d / "summary.json").read_text()) for d in (plain, watched)]
    for summary in summaries:
        summary.pop("wall_time_s")
    assert summaries[0] == summaries[1]  # the logger is not part of the saved config
    assert "logger" not in summaries[0]["config"] and not (plain / TENSORBOARD_DIR).exists()


def test_the_logger_is_an_execution_field_of_both_phases():
    for cls in (PretrainConfig, FinetuneConfig):
        assert "logger" not in comparable_config(cls(logger="tensorboard"))
        with pytest.raises(ValueError, match=r"logger must be one of \['none', 'tensorboard'"):
            cls(logger="tensorbaord")


def test_events_are_markers_on_the_step_axis_and_text(tmp_path):
    pytest.importorskip("tensorboard")
    logger = make_logger("tensorboard", tmp_path, TAGS)
    logger.scalars(0, {"eval/executed_score": 10.0, "eval/learner_score": 9.0})
    logger.event(250, "switch", "learner stable for 3 checks")
    logger.event(500, "reset", "last")
    logger.scalars(500, {"eval/executed_score": 12.5})
    logger.close()
    events = read_events(tmp_path / TENSORBOARD_DIR)
    assert [(s.step, s.value) for s in events.Scalars("events/switch")] == [(250, 1.0)]
    assert [(s.step, s.value) for s in events.Scalars("events/reset")] == [(500, 1.0)]
    assert [s.value for s in events.Scalars("eval/executed_score")] == [10.0, 12.5]
    (switch,) = events.Tensors("events/switch/text_summary")
    assert switch.step == 250
    assert switch.tensor_proto.string_val[0].decode() == "step 250: learner stable for 3 checks"


def written(path: Path, expected: bytes) -> bytes:
    """The bytes of W&B's run file once they hold ``expected``: its service process may still
    be writing them for a moment after ``finish()`` returns (10 s at most)."""
    deadline = time.time() + 10
    while expected not in (data := path.read_bytes()) and time.time() < deadline:
        time.sleep(0.05)
    return data


def test_wandb_logs_offline_with_no_network(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    first = make_logger("wandb", tmp_path / "a", TAGS)
    second = make_logger("wandb", tmp_path / "b", {**TAGS, "seed": "1"})  # two seeds, one process
    first.scalars(0, {"eval/executed_score": 1.5})
    first.event(300, "switch", "learner stable")
    first.scalars(200, {"eval/executed_score": 2.75})  # steps may come in any order
    second.scalars(0, {"eval/executed_score": 8.25})
    first.close()
    second.close()
    (run,) = (tmp_path / "a" / "wandb").glob("offline-run-*")
    (records,) = run.glob("run-*.wandb")
    data = written(records, b"events/table")  # the SDK ships no reader: the keys are in it
    for expected in (b"eval/executed_score", b"global_step", b"2.75", b"events/switch"):
        assert expected in data
    assert b"seed=0" in data and b"seed=1" not in data
    (table,) = run.glob("files/media/table/events/*.table.json")
    assert json.loads(table.read_text())["data"] == [[300, "switch", "learner stable"]]
    (other,) = (tmp_path / "b" / "wandb").glob("offline-run-*/run-*.wandb")
    assert b"seed=1" in written(other, b"8.25")


def test_no_logger_imports_nothing_heavy(tmp_path):
    code = (
        "import sys; from sftlib.training.live import make_logger\n"
        f"logger = make_logger('none', {str(tmp_path)!r}, {{}})\n"
        "logger.scalars(1, {'a': 1.0}); logger.event(1, 'switch', ''); logger.close()\n"
        "print([m for m in ('tensorboard', 'wandb', 'torch.utils.tensorboard') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="logger must be one of"):
        make_logger("csv", tmp_path, TAGS)


def test_run_tags_read_the_study_from_the_results_layout(tmp_path):
    directory = run_dir(tmp_path, "quick", "local/hopper/medium-v0", "td3bc", "sft", 2)
    assert run_tags(directory, "local/hopper/medium-v0", "td3bc", "sft", 2) == {
        "study": "quick",
        "dataset": "local/hopper/medium-v0",
        "algo": "td3bc",
        "variant": "sft",
        "seed": "2",
    }
    assert run_tags(tmp_path / "mine", "local/hopper/medium-v0", "iql", "sft", 0)["study"] == ""
