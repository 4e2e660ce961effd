"""``sft status``: where every run of a study stands, read from its results folder alone, while
a sweep runs: complete, running at step N of M, stopped by a kill, failed and why, not started."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from sftlib.cli import main
from sftlib.config import pretrain_config
from sftlib.sweeps import cost
from sftlib.sweeps.plan import plan
from sftlib.sweeps.rates import ANY, Rates
from sftlib.sweeps.status import (
    log_line,
    read_log,
    study_status,
    write_sweep_file,
)
from sftlib.sweeps.study import StudyParams
from sftlib.sweeps.sweep import execute_run
from sftlib.training.pretrain import pretrain

from conftest import PENDULUM_ID, kill_after_checkpoints

RATES = Rates(update_s={ANY: 1e-3}, act_s={ANY: 1e-4}, env_step_s={ANY: 1e-4})
STEPS = 3_000
"""Pretraining steps: seconds for the run that completes, and ample time to watch the other
one run and kill it after two of its 30 checkpoints."""
PRETRAIN = {
    "offline_steps": STEPS,
    "eval_every": 100,
    "checkpoint_every": 100,
    "eval_episodes": 1,
    "hidden": [16, 16],
    "batch_size": 32,
}

# Runs like the sweep's execute_run, in files: the lock, the log's lines, the progress bar in
# the log (where papermill puts the kernel's stderr), the checkpoints of the training code.
SWEEP_LIKE_RUN = """
import json, sys
from pathlib import Path
from sftlib.config import pretrain_config
from sftlib.sweeps.runlock import run_lock
from sftlib.sweeps.status import log_line
from sftlib.training.pretrain import pretrain

out = Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
with open(out / "run.log", "a", buffering=1) as log, run_lock(out):
    log.write(log_line("executing 01_offline_pretrain.ipynb"))
    sys.stderr = log
    pretrain(pretrain_config(json.loads(sys.argv[2])), out, progress=True)
"""


def failing_notebook(path: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    parameters = nbformat.v4.new_code_cell('out_dir = ""\nseed = 0')
    parameters.metadata["tags"] = ["parameters"]
    nb.cells = [parameters, nbformat.v4.new_code_cell('raise ValueError("stand-in failure")')]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, path)
    return path


def config_values(run) -> dict:
    """A pretraining run's config fields, as its notebook builds them."""
    extras = ("out_dir", "other_seeds", "other_out_dirs")
    return {k: v for k, v in run.parameters.items() if k not in extras}


@pytest.mark.slow
def test_status_reports_a_running_sweep(pendulum_dataset, tmp_path, capsys):
    study = StudyParams(
        study="watch",
        datasets=[PENDULUM_ID],
        algos=["iql", "td3bc"],
        variants=["direct"],
        seeds=[0],
        pretrain=PRETRAIN,
        finetune={"online_steps": 100, "eval_every": 50, "eval_episodes": 1},
    )
    notebook = failing_notebook(tmp_path / "02_sft_finetune.ipynb")
    runs = plan(study, tmp_path / "results", finetune_notebook=notebook)
    pre_iql, pre_td3bc, ft_iql, ft_td3bc = runs
    estimate = cost.estimate(runs, RATES, workers=2)
    write_sweep_file(study, runs, tmp_path / "results", 2, estimate)
    study_dir = (tmp_path / "results" / "watch").resolve()

    # Complete: IQL's pretraining. Failed: its fine-tuning (the notebook raises).
    pretrain(pretrain_config(config_values(pre_iql)), pre_iql.out_dir, progress=False)
    assert execute_run(ft_iql).status == "failed"
    # Running: TD3+BC's pretraining, in a process that holds the run's lock.
    env = {**os.environ, "TQDM_MININTERVAL": "0"}
    arguments = [str(pre_td3bc.out_dir), json.dumps(config_values(pre_td3bc))]
    proc = subprocess.Popen([sys.executable, "-c", SWEEP_LIKE_RUN, *arguments], env=env)
    try:
        checkpoint = pre_td3bc.out_dir / "checkpoint.pt"
        deadline = time.time() + 120
        while not checkpoint.exists() and time.time() < deadline:
            time.sleep(0.05)
        running = {r.name: r for r in study_status(study_dir).runs}
    finally:
        kill_after_checkpoints(proc, pre_td3bc.out_dir / "checkpoint.pt", 2)
    name = {run.name: run.out_dir.relative_to(study_dir).as_posix() for run in runs}

    assert running[name[pre_iql.name]].state == "complete"
    final = json.loads((pre_iql.out_dir / "summary.json").read_text())["score_final"]
    assert running[name[pre_iql.name]].score == final
    live = running[name[pre_td3bc.name]]
    assert live.state == "running" and live.steps == STEPS and 100 <= live.step < STEPS
    assert live.eval_step is not None and live.eval_step <= live.step and live.score is not None
    assert running[name[ft_iql.name]].state == "failed"
    assert running[name[ft_iql.name]].detail.endswith("ValueError: stand-in failure")
    assert running[name[ft_td3bc.name]].state == "not started"
    assert running[name[ft_td3bc.name]].detail == "after its pretraining run"

    # After the kill: stopped at its last checkpoint, to be resumed.
    status = study_status(study_dir)
    stopped = {r.name: r for r in status.runs}[name[pre_td3bc.name]]
    assert stopped.state == "stopped" and stopped.step >= 200 and stopped.step % 100 == 0
    assert status.counts() == {
        "complete": 1,
        "running": 0,
        "stopped": 1,
        "failed": 1,
        "blocked": 0,
        "not started": 1,
    }
    # Time to finish: the estimate of the two processes left, for the steps they have left,
    # on the sweep's two workers.
    seconds = {run.name: run.seconds for run in estimate.runs}
    left = seconds[pre_td3bc.name] * (1 - stopped.step / STEPS) + seconds[ft_td3bc.name]
    assert status.seconds_left == pytest.approx(left / 2)

    capsys.readouterr()
    assert main(["status", str(study_dir)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert f"complete    pretrain {name[pre_iql.name]}  final {final:.1f}" in lines
    (line,) = [line for line in lines if name[pre_td3bc.name] in line]
    assert line.startswith("stopped") and f"step {stopped.step:,} of {STEPS:,}" in line
    (line,) = [line for line in lines if name[ft_iql.name] in line]
    assert line.startswith("failed") and line.endswith("ValueError: stand-in failure)")
    assert "4 runs: 1 complete, 1 stopped, 1 failed, 1 not started" in lines
    assert any(line.startswith("time to finish: about ") for line in lines)
    assert main(["status", str(study_dir), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["counts"]["stopped"] == 1 and len(data["runs"]) == 4
    assert data["seconds_left"] == pytest.approx(status.seconds_left)


def test_the_log_tells_the_latest_attempt_and_its_progress(tmp_path):
    log = tmp_path / "run.log"
    log.write_text(
        log_line("executing a -> b on host pid 1")
        + "pretrain iql seed 0:  10%|#         | 100/1000 [00:01<00:09]\n"
        + log_line("failed: cell 4: RuntimeError: out of memory\nTraceback ...")
        + log_line("executing a -> b on host pid 2")
        + "pretrain iql seed 0:  20%|##        | 200/1000 [00:02]\r"
        + "pretrain iql seed 0:  30%|###       | 300/1000 [00:03]\r"
        + "eval 3/5 [00:01]\n"  # another bar: not the run's steps
    )
    attempt = read_log(log, 1000)
    assert attempt.outcome == "executing" and attempt.step == 300 and attempt.error == ""
    first = tmp_path / "first.log"
    first.write_text(
        log_line("executing") + log_line("failed: cell 4: RuntimeError: out of memory")
    )
    failed = read_log(first, 1000)
    assert failed.outcome == "failed" and failed.error == "cell 4: RuntimeError: out of memory"
    assert read_log(tmp_path / "missing.log", 10).outcome is None


def test_a_bare_failure_reports_the_exception_of_its_traceback(tmp_path):
    log = tmp_path / "run.log"
    log.write_text(
        log_line("executing x")
        + log_line("failed:")
        + "Traceback (most recent call last):\n  File 'x', line 1\nDeadKernelError: Kernel died\n"
    )
    assert read_log(log, None).error == "DeadKernelError: Kernel died"


def test_without_sweep_file_the_runs_on_disk_are_reported(tmp_path):
    study_dir = tmp_path / "old"
    done = study_dir / "d-v0" / "iql" / "pretrain" / "seed=0"
    other = study_dir / "d-v0" / "iql" / "pretrain" / "seed=1"
    tuned = study_dir / "d-v0" / "iql" / "sft" / "seed=0"
    for directory in (done, other, tuned):
        directory.mkdir(parents=True)
    (done / "params.yaml").write_text("offline_steps: 10\n")
    (other / "params.yaml").write_text(f"offline_steps: 10\ntrained_in_process_of: {done}\n")
    (tuned / "params.yaml").write_text(f"online_steps: 20\npretrain_dir: {done}\n")
    for directory in (done, other):
        (directory / "summary.json").write_text(json.dumps({"score_final": 42.0}))
    (done / "run.log").write_text(log_line("executing x") + log_line("done in 10s"))
    status = study_status(study_dir)
    assert [(r.name, r.state) for r in status.runs] == [
        ("d-v0/iql/pretrain/seed=0", "complete"),
        ("d-v0/iql/pretrain/seed=1", "complete"),
        ("d-v0/iql/sft/seed=0", "not started"),
    ]
    assert status.runs[0].seconds == 10.0 and status.runs[2].steps == 20
    # Without an estimate the time left needs a complete run of each kind.
    assert status.seconds_left is None
    with pytest.raises(FileNotFoundError):
        study_status(tmp_path / "nowhere")
    assert main(["status", str(tmp_path / "nowhere")]) == 2
