"""Live curves: a run's scalars and events written as they happen, for TensorBoard or W&B.

``make_logger(kind, run_dir, tags)`` returns a :class:`RunLogger`:

- ``none``: does nothing and imports nothing (the default of every config);
- ``tensorboard``: event files in ``<run_dir>/tensorboard/`` (``pip install
  'sftlib[tensorboard]'``); ``tensorboard --logdir results/<study>`` shows every run of a
  study live, each named by its path (dataset / algo / variant / seed);
- ``wandb``: a W&B run in ``<run_dir>/wandb/`` (``pip install 'sftlib[wandb]'``), offline
  unless ``WANDB_MODE`` says otherwise, so it works with no network (``wandb sync`` uploads
  it later); project = study, group = dataset/algo/variant, the tags as config and W&B tags.

Scalars are namespaced as the rest of the project names metrics (``eval/executed_score``,
``train/critic_loss``); an event (``switch``, ``reset``, ``anchor_update``) is a text entry
``events/<name>`` with its detail and a scalar ``events/<name>`` of 1 at its step, so it
shows on the step axis beside the curves.

A logger only watches: it draws no random number and changes no computation, so a run's
numbers are the same with any logger (``logger`` is an execution field, never part of a
saved config).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from sftlib.config import LOGGERS
from sftlib.layout import SEED_DIR, TENSORBOARD_DIR, dataset_slug

TAG_KEYS = ("study", "dataset", "algo", "variant", "seed")
"""What every run's curves are tagged with (:func:`run_tags`)."""


class RunLogger(Protocol):
    """Where a run writes its curves while it trains."""

    def scalars(self, step: int, values: Mapping[str, float]) -> None:
        """Write ``values`` (name -> number) at ``step`` (gradient or environment step)."""

    def event(self, step: int, name: str, detail: str) -> None:
        """Write one event (``switch``, ``reset``, ...) at ``step`` with a one-line detail."""

    def close(self) -> None:
        """Flush and release the files; the logger is unusable after."""


class NullLogger:
    """``logger: none``: every call does nothing."""

    def scalars(self, step: int, values: Mapping[str, float]) -> None:
        pass

    def event(self, step: int, name: str, detail: str) -> None:
        pass

    def close(self) -> None:
        pass


class TensorBoardLogger:
    """Event files in ``<run_dir>/tensorboard/`` (``torch.utils.tensorboard``)."""

    def __init__(self, run_dir: str | Path, tags: Mapping[str, str]) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as error:  # torch's writer needs the tensorboard package
            raise ImportError(
                f"logger 'tensorboard' needs the tensorboard package ({error}); "
                "pip install 'sftlib[tensorboard]'"
            ) from None
        self.writer = SummaryWriter(str(Path(run_dir) / TENSORBOARD_DIR), flush_secs=10)
        table = "\n".join(f"| {key} | {value} |" for key, value in tags.items())
        self.writer.add_text("run/tags", f"| tag | value |\n| --- | --- |\n{table}", 0)

    def scalars(self, step: int, values: Mapping[str, float]) -> None:
        for name, value in values.items():
            if value is not None:
                self.writer.add_scalar(name, float(value), step)

    def event(self, step: int, name: str, detail: str) -> None:
        self.writer.add_scalar(f"events/{name}", 1.0, step)
        self.writer.add_text(f"events/{name}", f"step {step}: {detail}", step)
        self.writer.flush()  # rare, and what a watcher wants to see at once

    def close(self) -> None:
        self.writer.close()


class WandbLogger:
    """A W&B run in ``<run_dir>/wandb/``, offline unless ``WANDB_MODE`` is set."""

    def __init__(self, run_dir: str | Path, tags: Mapping[str, str]) -> None:
        try:
            import wandb
        except ImportError as error:
            raise ImportError(
                f"logger 'wandb' needs the wandb package ({error}); pip install 'sftlib[wandb]'"
            ) from None
        self.wandb = wandb
        group = "/".join(tags[k] for k in ("dataset", "algo", "variant") if tags.get(k))
        self.run = wandb.init(
            mode=os.environ.get("WANDB_MODE", "offline"),
            dir=str(run_dir),
            project=os.environ.get("WANDB_PROJECT") or f"sftlib-{tags.get('study') or 'runs'}",
            group=group or None,
            name=f"{group}/seed={tags.get('seed', '')}" if group else None,
            tags=[f"{key}={value}" for key, value in tags.items()],
            config=dict(tags),
            # Several seeds train in one process: each keeps its own run.
            reinit="create_new",
            settings=wandb.Settings(silent=True, console="off"),
        )
        # Steps of scalars and events may interleave in any order: one x axis of our own.
        self.run.define_metric("global_step")
        self.run.define_metric("*", step_metric="global_step")
        self.events: list[list[Any]] = []

    def scalars(self, step: int, values: Mapping[str, float]) -> None:
        row = {name: float(value) for name, value in values.items() if value is not None}
        self.run.log({"global_step": step, **row})

    def event(self, step: int, name: str, detail: str) -> None:
        self.events.append([step, name, detail])
        self.run.log({"global_step": step, f"events/{name}": 1.0})

    def close(self) -> None:
        if self.events:
            table = self.wandb.Table(columns=["step", "event", "detail"], data=self.events)
            self.run.log({"events/table": table})
        self.run.finish()


def make_logger(kind: str, run_dir: str | Path, tags: Mapping[str, str]) -> RunLogger:
    """The logger ``kind`` (one of :data:`LOGGERS`) for the run in ``run_dir``; ``tags``
    (:func:`run_tags`) name the run in the viewer. ``none`` imports nothing."""
    if kind == "none":
        return NullLogger()
    if kind == "tensorboard":
        return TensorBoardLogger(run_dir, tags)
    if kind == "wandb":
        return WandbLogger(run_dir, tags)
    raise ValueError(f"logger must be one of {list(LOGGERS)}, got {kind!r}")


def run_tags(
    run_dir: str | Path, dataset_id: str, algo: str, variant: str, seed: int
) -> dict[str, str]:
    """The tags of one run (:data:`TAG_KEYS`). ``variant`` is ``pretrain`` for a pretraining
    run. The study is read from ``run_dir`` when it follows the results layout
    (``<study>/<dataset_slug>/<algo>/<variant>/seed=<n>``), else it is ``""``."""
    parts = Path(run_dir).resolve().parts
    follows_layout = (
        len(parts) >= 5
        and SEED_DIR.match(parts[-1]) is not None
        and parts[-3] == algo
        and parts[-4] == dataset_slug(dataset_id)
    )
    return {
        "study": parts[-5] if follows_layout else "",
        "dataset": dataset_id,
        "algo": algo,
        "variant": variant,
        "seed": str(seed),
    }


__all__ = [
    "LOGGERS",
    "NullLogger",
    "RunLogger",
    "TensorBoardLogger",
    "WandbLogger",
    "make_logger",
    "run_tags",
]
