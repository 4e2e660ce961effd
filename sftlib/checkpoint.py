"""Reading checkpoints and run files, with one clear error for every way they can be bad."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import torch

from sftlib.utils import atomic_write_text

SUMMARY = "summary.json"
AGENT = "agent.pt"
STATE = "checkpoint.pt"


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
            "it was not written by sftlib.pretrain"
        )
    return state


def write_csv(path: str | Path, rows: list[dict[str, Any]], columns: list[str] | None = None) -> None:
    """Rows of dicts to CSV, atomically; ``columns`` fixes the header (also for no rows)."""
    columns = columns or sorted({k for r in rows for k in r}, key=lambda k: (k != "step", k))
    lines = [",".join(columns)]
    for r in rows:
        lines.append(",".join("" if r.get(c) is None else _fmt(r[c]) for c in columns))
    atomic_write_text(path, "\n".join(lines) + "\n")


def _fmt(x: Any) -> str:
    if isinstance(x, float):
        return repr(x)
    s = str(x)
    return f'"{s}"' if "," in s else s


def read_csv(path: str | Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def read_summary(run_dir: str | Path) -> dict[str, Any] | None:
    """The run's ``summary.json`` (``None`` while the run is incomplete)."""
    p = Path(run_dir) / SUMMARY
    return json.loads(p.read_text()) if p.is_file() else None
