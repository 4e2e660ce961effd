"""Checkpoints and run files: what a resumable checkpoint holds, how it is restored, and one
clear error for every way a checkpoint or run file can be bad."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from pathlib import Path
from typing import Any

import torch

from sftlib.data.datasets import DatasetInfo
from sftlib.layout import AGENT, SUMMARY
from sftlib.utils import atomic_write_text

AGENT_FORMAT = 2
"""Version of the agent and checkpoint files: 2 = stacked networks (``sftlib.agents.networks``)."""


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable or does not fit; the message says what to do."""


def load_checkpoint(path: str | Path, what: str = "checkpoint") -> dict[str, Any]:
    """``torch.load`` with clear errors for a missing, truncated or corrupt file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{what} {path} does not exist; run the step that writes it first")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise CheckpointError(
            f"{what} {path} cannot be read ({type(e).__name__}: {e}); it is truncated or "
            "corrupt. Delete it and run the step that writes it again."
        ) from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{what} {path} does not hold a checkpoint dict")
    return state


def load_pretrained(pretrain_dir: str | Path) -> dict[str, Any]:
    """The final checkpoint of a pretraining run (``<dir>/agent.pt``), checked for its keys."""
    state = load_checkpoint(Path(pretrain_dir) / AGENT, "pretraining checkpoint")
    missing = {"agent", "dataset_id", "algo"} - set(state)
    if missing:
        raise CheckpointError(
            f"pretraining checkpoint in {pretrain_dir} lacks {sorted(missing)}; "
            "it was not written by sftlib.training.pretrain"
        )
    check_format(state, Path(pretrain_dir) / AGENT)
    return state


def check_format(state: dict[str, Any], path: Path) -> None:
    """A checkpoint written by an earlier sftlib, whose networks had another layout, is
    refused with what to do, before anything tries to load it."""
    if state.get("format") != AGENT_FORMAT:
        raise CheckpointError(
            f"{path} was written by an earlier version of sftlib (file format "
            f"{state.get('format', 1)}, this version reads {AGENT_FORMAT}); delete it and run "
            "the step that writes it again"
        )


def check_compatible(pretrained: dict[str, Any], info: DatasetInfo, where: Path) -> None:
    """A checkpoint trained for another environment is refused before any compute."""
    agent_state = pretrained["agent"]
    sizes = (agent_state["obs_dim"], agent_state["act_dim"])
    if sizes != (info.obs_dim, info.act_dim):
        raise CheckpointError(
            f"pretraining checkpoint in {where} is for observation size {sizes[0]} and "
            f"action size {sizes[1]}, but {info.env_id} (dataset {info.dataset_id!r}) has "
            f"{info.obs_dim} and {info.act_dim}; pretrain on this dataset first"
        )


def write_csv(
    path: str | Path, rows: list[dict[str, Any]], columns: list[str] | None = None
) -> None:
    """Rows of dicts to CSV, atomically; ``columns`` fixes the header (also for no rows).

    ``None`` is written as an empty field; floats with ``repr`` (exact round trip).
    """
    columns = columns or sorted({k for r in rows for k in r}, key=lambda k: (k != "step", k))
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for r in rows:
        writer.writerow(["" if r.get(c) is None else _fmt(r[c]) for c in columns])
    atomic_write_text(path, buf.getvalue())


def _fmt(x: Any) -> str:
    return repr(x) if isinstance(x, float) else str(x)


def read_csv(path: str | Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def read_summary(run_dir: str | Path) -> dict[str, Any] | None:
    """The run's ``summary.json`` (``None`` while the run is incomplete)."""
    p = Path(run_dir) / SUMMARY
    return json.loads(p.read_text()) if p.is_file() else None


# Fields that change how a run executes, not what it computes.
EXECUTION_FIELDS = ("device", "threads", "logger")


def comparable_config(config: Any) -> dict[str, Any]:
    """A config as plain JSON values, without execution-only fields."""
    d = json.loads(json.dumps(dataclasses.asdict(config)))
    return {k: v for k, v in d.items() if k not in EXECUTION_FIELDS}


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as dotted keys (``sft.reset_every``), for naming differing fields."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def check_checkpoint_config(state: dict[str, Any], config: Any, path: Path) -> None:
    """A resumable checkpoint continues only the configuration that wrote it (and only one
    written by this version of the loop)."""
    check_format(state, path)
    if "state" in state and "learner" in state and "control" not in state:
        raise CheckpointError(
            f"{path} was written by an earlier version of sftlib's fine-tuning loop; delete it "
            "to start this run afresh"
        )
    if state.get("config") != comparable_config(config):
        raise CheckpointError(
            f"{path} was written with other parameters; delete it (or the run directory) to "
            "start this configuration afresh"
        )


def completed_summary(run_dir: str | Path, config: Any) -> dict[str, Any] | None:
    """The summary of a complete run made with ``config``; ``None`` if the run is incomplete.

    A complete run made with other parameters is refused rather than overwritten.
    """
    summary = read_summary(run_dir)
    if summary is None:
        return None
    if summary.get("config") != comparable_config(config):
        old, new = _flat(summary.get("config") or {}), _flat(comparable_config(config))
        diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        raise CheckpointError(
            f"{run_dir} holds a finished run made with other parameters (differing: {diff}). "
            "Choose another out_dir, or delete that directory to recompute."
        )
    return summary
