"""Where a study stands, read from its results folder alone: ``sft status results/<study>``.

No scheduler is asked: every answer comes from files the runs and the sweep write, so it
works while a sweep runs, after it, and from any machine that sees the folder.

- ``sweep.json`` (study root): the runs the latest sweep was asked to run, its workers and
  its cost estimate (:func:`write_sweep_file`); without it, the run folders on disk;
- ``summary.json``: the run is complete (final score);
- ``.lock``: a process runs it (its pid alive on this host, or a lock taken on another host,
  which cannot be checked from here);
- ``checkpoint.pt``: the step and the evaluations it was saved at;
- ``run.log`` of the process (the first seed's folder): the sweep's own lines (``executing``,
  ``failed: <error>``, ``done in <n>s``) and the progress bar, for a step fresher than the
  last checkpoint.

A run is ``complete``, ``running`` (step N of M), ``stopped`` (killed mid-run: no live
process; the next sweep resumes it from its checkpoint), ``failed`` (the first line of its
error), ``blocked`` (its pretraining run failed) or ``not started``.
"""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sftlib.layout import (
    LOCK_FILE,
    LOG_FILE,
    PARAMS_FILE,
    PRETRAIN_DIRNAME,
    SEED_DIR,
    STATE,
    SUMMARY,
    SWEEP_FILE,
)
from sftlib.utils import atomic_write_text

if TYPE_CHECKING:
    from sftlib.sweeps.cost import CostEstimate
    from sftlib.sweeps.plan import Run
    from sftlib.sweeps.study import StudyParams

STATES = ("complete", "running", "stopped", "failed", "blocked", "not started")
_SWEEP_LINE = re.compile(r"^\[sweep [^\]]*\] (?P<what>executing|failed|refused|done in)")
_PROGRESS = re.compile(r"(?P<step>\d+)/(?P<total>\d+) \[")
_DONE_IN = re.compile(r"^\[sweep [^\]]*\] done in (?P<seconds>\d+)s")
LOG_TAIL = 1 << 20
"""Bytes of a run log read from its end (the current attempt's lines and progress)."""


def log_line(message: str) -> str:
    """A line the sweep writes into a process's ``run.log`` (``executing ...``, ``failed:
    <error>``, ``done in <n>s``), as :func:`read_log` reads it back."""
    return f"[sweep {time.strftime('%Y-%m-%d %H:%M:%S')}] {message}\n"


# --------------------------------------------------------------------------- sweep.json


def write_sweep_file(
    study_params: StudyParams,
    runs: list[Run],
    results_root: str | Path,
    workers: int | None,
    estimate: CostEstimate | None,
) -> Path:
    """Write ``<results>/<study>/sweep.json``: the runs of a sweep (folders relative to the
    study folder, so it reads the same from any machine that mounts it), its workers and its
    cost estimate. Returns its path."""
    study_dir = Path(results_root).resolve() / study_params.study

    def relative(directory: Path | None) -> str | None:
        return None if directory is None else directory.relative_to(study_dir).as_posix()

    entries = [
        {
            "kind": run.kind,
            "name": run.name,
            "dirs": [relative(d) for d in run.dirs],
            "steps": run.parameters["offline_steps" if run.kind == "pretrain" else "online_steps"],
            "pretrain_dir": relative(run.pretrain_dir),
        }
        for run in runs
    ]
    data = {
        "study": study_params.study,
        "files": list(study_params.files),
        "started": time.time(),
        "host": socket.gethostname(),
        "workers": workers,
        "runs": entries,
        "estimate": None if estimate is None else estimate.to_json(),
        "actual": None,
    }
    path = study_dir / SWEEP_FILE
    atomic_write_text(path, json.dumps(data, indent=1))
    return path


def record_actual(path: Path, wall_seconds: float, seconds: Mapping[str, float]) -> None:
    """Add to ``sweep.json`` what the sweep took: its wall time and each executed run's."""
    data = json.loads(path.read_text())
    data["actual"] = {"wall_seconds": wall_seconds, "process_seconds": dict(seconds)}
    atomic_write_text(path, json.dumps(data, indent=1))


# --------------------------------------------------------------------------- one run


@dataclass
class RunStatus:
    """Where one seed's run stands."""

    name: str
    """The run folder relative to the study folder."""
    kind: str
    state: str
    """One of :data:`STATES`."""
    steps: int | None = None
    """Steps the run makes (offline gradient steps, or online environment steps)."""
    step: int | None = None
    """Steps made (running or stopped runs)."""
    score: float | None = None
    """The final score (complete), else the last evaluation's (executed) score."""
    learner_score: float | None = None
    """Fine-tuning: the learner's score at the last evaluation."""
    eval_step: int | None = None
    """Step of the last evaluation."""
    detail: str = ""
    """The error (failed), the lock holder (running on another host), what it waits for."""
    seconds: float | None = None
    """Wall time of a complete run's process, as the sweep logged it."""

    def line(self) -> str:
        """One line for the console."""
        text = f"{self.state:<11} {self.kind:<8} {self.name}"
        if self.state == "complete" and self.score is not None:
            text += f"  final {self.score:.1f}"
        elif self.step is not None and self.steps:
            text += f"  step {self.step:,} of {self.steps:,}"
            if self.score is not None:
                text += f"; last eval {self.score:.1f}"
                if self.learner_score is not None:
                    text += f" (learner {self.learner_score:.1f})"
                text += f" at step {self.eval_step:,}"
        return f"{text}  ({self.detail})" if self.detail else text


def _read_lock(directory: Path) -> dict[str, Any] | None:
    try:
        holder = json.loads((directory / LOCK_FILE).read_text())
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) and {"host", "pid"} <= set(holder) else None


def _alive(holder: Mapping[str, Any]) -> bool:
    """Whether the lock's process may be alive: alive on this host, or on another host."""
    from sftlib.sweeps.runlock import _pid_alive

    return holder["host"] != socket.gethostname() or _pid_alive(int(holder["pid"]))


@dataclass
class _Attempt:
    """What the process log says of the latest attempt."""

    outcome: str | None = None
    """``executing`` (no outcome yet), ``failed``, ``refused``, ``done in``; None: no log."""
    error: str = ""
    step: int | None = None
    """The progress bar's last step of this attempt (None: no bar in the log)."""
    seconds: float | None = None


def read_log(path: Path, steps: int | None) -> _Attempt:
    """The latest attempt in a process's ``run.log``: its outcome, its error's first line
    and the last step its progress bar showed (a bar counting to ``steps``)."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, 2) - LOG_TAIL))
            text = f.read().decode(errors="replace")
    except OSError:
        return _Attempt()
    lines = re.split(r"[\r\n]", text)
    starts = [i for i, line in enumerate(lines) if _SWEEP_LINE.match(line)]
    attempt = _Attempt()
    first = 0
    for index in starts:
        what = _SWEEP_LINE.match(lines[index])["what"]
        if what == "executing":
            attempt, first = _Attempt("executing"), index
        else:
            attempt.outcome = what
            if what in ("failed", "refused"):
                attempt.error = _first_error_line(lines, index)
            elif (done := _DONE_IN.match(lines[index])) is not None:
                attempt.seconds = float(done["seconds"])
    for line in lines[first:]:
        for match in _PROGRESS.finditer(line):
            if steps is None or int(match["total"]) == steps:
                attempt.step = int(match["step"])
    return attempt


def _first_error_line(lines: list[str], index: int) -> str:
    """``failed: cell 4: ValueError: boom`` -> ``cell 4: ValueError: boom``; a bare
    ``failed:`` followed by a traceback -> the traceback's last line (the exception)."""
    rest = lines[index].split("] ", 1)[1].split(":", 1)[1].strip()
    if rest:
        return rest
    for line in lines[index + 1 :]:
        if _SWEEP_LINE.match(line):
            break
        if line.strip() and not line.startswith((" ", "Traceback")):
            rest = line.strip()
    return rest or "see run.log"


def read_checkpoint(path: Path) -> tuple[int | None, dict[str, Any] | None]:
    """The step a resumable checkpoint was saved at and its last evaluation row."""
    if not path.is_file():
        return None, None
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    except Exception:  # being replaced, or truncated by a kill: no progress known
        return None, None
    inner = state.get("state") if isinstance(state.get("state"), dict) else state
    evals = inner.get("evals") or []
    return inner.get("step"), (evals[-1] if evals else None)


# --------------------------------------------------------------------------- the study


@dataclass
class StudyStatus:
    """Every run of a study and the totals."""

    study_dir: str
    runs: list[RunStatus]
    workers: int | None
    seconds_left: float | None
    """Estimated wall time to finish (None: unknown until a run completes)."""
    method: str
    """How ``seconds_left`` was estimated."""

    def counts(self) -> dict[str, int]:
        return {state: sum(r.state == state for r in self.runs) for state in STATES}

    def to_json(self) -> dict[str, Any]:
        return {
            "study_dir": self.study_dir,
            "runs": [asdict(run) for run in self.runs],
            "counts": self.counts(),
            "workers": self.workers,
            "seconds_left": self.seconds_left,
            "method": self.method,
        }

    def text(self) -> str:
        from sftlib.sweeps.cost import format_duration

        lines = [run.line() for run in self.runs]
        counts = ", ".join(f"{n} {state}" for state, n in self.counts().items() if n)
        lines.append(f"{len(self.runs)} runs: {counts}")
        if self.seconds_left is not None:
            left = format_duration(self.seconds_left)
            lines.append(f"time to finish: about {left} ({self.method})")
        elif any(r.state in ("running", "not started", "stopped") for r in self.runs):
            lines.append(f"time to finish: unknown ({self.method})")
        return "\n".join(lines)


def study_status(study_dir: str | Path) -> StudyStatus:
    """Where every run of the study in ``study_dir`` stands (``results/<study>``)."""
    study_dir = Path(study_dir)
    if not study_dir.is_dir():
        raise FileNotFoundError(f"{study_dir} is not a folder (expected results/<study>)")
    sweep = _read_sweep(study_dir)
    processes = sweep["runs"] if sweep else _processes_on_disk(study_dir)
    statuses: list[RunStatus] = []
    by_dir: dict[str, RunStatus] = {}
    attempts: dict[str, _Attempt] = {}
    for process in processes:  # pretraining runs first, as planned and as found
        attempt = read_log(study_dir / process["dirs"][0] / LOG_FILE, process["steps"])
        attempts[process["dirs"][0]] = attempt
        upstream = by_dir.get(process.get("pretrain_dir") or "")
        for name in process["dirs"]:
            status = run_status(study_dir, name, process, attempt, upstream)
            statuses.append(status)
            by_dir[name] = status
    workers = (sweep or {}).get("workers")
    seconds_left, method = _time_left(processes, by_dir, attempts, sweep, workers)
    return StudyStatus(str(study_dir), statuses, workers, seconds_left, method)


def run_status(
    study_dir: Path,
    name: str,
    process: Mapping[str, Any],
    attempt: _Attempt,
    upstream: RunStatus | None = None,
) -> RunStatus:
    """Where the run in ``study_dir / name`` stands; ``process``: its entry in
    ``sweep.json``, ``attempt``: what its process's log says, ``upstream``: its pretraining
    run's status (fine-tuning)."""
    directory = study_dir / name
    status = RunStatus(name, process["kind"], "not started", steps=process["steps"])
    if (directory / SUMMARY).is_file():
        summary = json.loads((directory / SUMMARY).read_text())
        status.state, status.score = "complete", summary.get("score_final")
        status.seconds = attempt.seconds
        return status
    checkpoint_step, row = read_checkpoint(directory / STATE)
    if row is not None:
        status.eval_step = row.get("step")
        status.score = row.get("score", row.get("executed_score"))
        status.learner_score = row.get("learner_score")
    holder = _read_lock(directory)
    if holder is not None and _alive(holder):
        status.state = "running"
        live = attempt.step if attempt.outcome == "executing" else None
        status.step = max((s for s in (checkpoint_step, live) if s is not None), default=0)
        if holder["host"] != socket.gethostname():
            status.detail = f"pid {holder['pid']} on {holder['host']}, per its lock"
    elif attempt.outcome in ("failed", "refused"):
        status.state, status.detail, status.step = "failed", attempt.error, checkpoint_step
    elif checkpoint_step is not None or attempt.outcome == "executing":
        status.state, status.step = "stopped", checkpoint_step or 0
        status.detail = "no live process; the next sweep resumes it from its checkpoint"
    elif upstream is not None and upstream.state in ("failed", "blocked"):
        status.state, status.detail = "blocked", f"pretraining failed: {process['pretrain_dir']}"
    elif upstream is not None and upstream.state != "complete":
        status.detail = "after its pretraining run"
    return status


def _read_sweep(study_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((study_dir / SWEEP_FILE).read_text())
    except (OSError, ValueError):
        return None


def _processes_on_disk(study_dir: Path) -> list[dict[str, Any]]:
    """Process entries for the run folders found on disk (no ``sweep.json``): a seed trained
    in another seed's process (``trained_in_process_of`` in its ``params.yaml``) joins it."""
    import yaml

    found: dict[str, dict[str, Any]] = {}
    members: list[tuple[str, str]] = []
    for directory in sorted(study_dir.glob("*/*/*/seed=*")):
        if not (directory.is_dir() and SEED_DIR.match(directory.name)):
            continue
        name = directory.relative_to(study_dir).as_posix()
        kind = "pretrain" if directory.parent.name == PRETRAIN_DIRNAME else "finetune"
        params: dict[str, Any] = {}
        if (directory / PARAMS_FILE).is_file():
            params = yaml.safe_load((directory / PARAMS_FILE).read_text()) or {}
        lead = params.get("trained_in_process_of")
        if lead:
            members.append((name, Path(lead).relative_to(Path(lead).parents[3]).as_posix()))
            continue
        pretrain_dir = params.get("pretrain_dir")
        found[name] = {
            "kind": kind,
            "name": name,
            "dirs": [name],
            "steps": params.get("offline_steps" if kind == "pretrain" else "online_steps"),
            "pretrain_dir": (
                Path(pretrain_dir).relative_to(Path(pretrain_dir).parents[3]).as_posix()
                if pretrain_dir
                else None
            ),
        }
    for name, lead in members:
        (found[lead]["dirs"] if lead in found else []).append(name)
    return sorted(found.values(), key=lambda p: (p["kind"] != "pretrain", p["name"]))


def _time_left(
    processes: list[Mapping[str, Any]],
    by_dir: Mapping[str, RunStatus],
    attempts: Mapping[str, _Attempt],
    sweep: Mapping[str, Any] | None,
    workers: int | None,
) -> tuple[float | None, str]:
    """Wall time until every process still to run has run, and how that was estimated:
    each process's estimated seconds (``sweep.json``), scaled by actual / estimated over the
    complete processes, times the share of its steps still to make; summed, divided by the
    workers, and at least the longest of them."""
    estimated = {
        run["name"]: run["seconds"] for run in ((sweep or {}).get("estimate") or {}).get("runs", [])
    }
    done_actual = done_estimated = 0.0
    per_step: dict[str, list[float]] = {}
    left: list[tuple[float | None, bool]] = []  # (seconds, running) per process
    for process in processes:
        lead = process["dirs"][0]
        statuses = [by_dir[name] for name in process["dirs"]]
        attempt = attempts[lead]
        if all(s.state == "complete" for s in statuses):
            if attempt.seconds is not None:
                if process.get("name") in estimated:
                    done_actual += attempt.seconds
                    done_estimated += estimated[process["name"]]
                if process["steps"]:
                    per_step.setdefault(process["kind"], []).append(
                        attempt.seconds / process["steps"]
                    )
            continue
        if any(s.state in ("failed", "blocked") for s in statuses):
            continue  # not run again by this sweep
        made = min((s.step or 0) for s in statuses)
        share = 1.0 - made / process["steps"] if process["steps"] else 1.0
        if process.get("name") in estimated:
            left.append((estimated[process["name"]] * share, statuses[0].state == "running"))
        elif per_step.get(process["kind"]) and process["steps"]:
            rate = sum(per_step[process["kind"]]) / len(per_step[process["kind"]])
            left.append((rate * (process["steps"] - made), statuses[0].state == "running"))
        else:
            left.append((None, statuses[0].state == "running"))
    if not left:
        return 0.0, "nothing left to run"
    if any(seconds is None for seconds, _ in left):
        return None, "no estimate in sweep.json and no complete run of each kind yet"
    factor, how = 1.0, "the sweep's estimate"
    if done_estimated > 0:
        factor = done_actual / done_estimated
        how = f"the sweep's estimate x {factor:.2f}, as the complete runs took"
    elif not estimated:
        how = "the time per step of the complete runs"
    seconds = [s * factor for s, _ in left]
    n_workers = workers or max(1, sum(running for _, running in left))
    longest_running = max(
        (s for s, (_, running) in zip(seconds, left, strict=True) if running), default=0.0
    )
    total = max(sum(seconds) / n_workers, longest_running)
    return total, f"{how}; {len(left)} process(es) left on {n_workers} worker(s)"
