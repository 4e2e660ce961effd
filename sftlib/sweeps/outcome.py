"""What a sweep did: one :class:`RunResult` per run and the :class:`SweepReport` of them all
(counts, failures, and the cost estimated before against what the runs took)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

from sftlib.sweeps.cost import CostEstimate, format_duration, hours_label
from sftlib.sweeps.plan import Run, RunKind

Status = Literal["done", "skipped", "failed"]


# --------------------------------------------------------------------------- results


@dataclass
class RunResult:
    """What happened to one run."""

    name: str
    kind: RunKind
    out_dir: str
    status: Status
    """``done`` (executed now), ``skipped`` (already complete) or ``failed``."""
    error: str | None = None
    """One line: the failing cell's ``ename: evalue``, a refusal, or the upstream failure."""
    notebook: str | None = None
    """The executed notebook (holds the failing cell's traceback), when one was written."""
    seconds: float = 0.0
    label: str = ""
    """The name with the other seeds a batched run trained (:attr:`Run.label`)."""

    def line(self) -> str:
        """One line for the console: status, wall time, run name (and the error, if any)."""
        text = f"{self.status:<7} {self.seconds:6.0f}s  {self.label or self.name}"
        return f"{text}  ({self.error})" if self.error else text


@dataclass
class SweepReport:
    """Outcome of :func:`run_sweep`, one :class:`RunResult` per planned run."""

    study: str
    results: list[RunResult] = field(default_factory=list)
    estimate: CostEstimate | None = None
    """The cost estimated before the sweep started (``None``: not estimated)."""
    wall_seconds: float = 0.0
    """Wall time of the sweep, dataset phase included."""

    def by_status(self, status: Status) -> list[RunResult]:
        return [r for r in self.results if r.status == status]

    @property
    def done(self) -> list[RunResult]:
        return self.by_status("done")

    @property
    def skipped(self) -> list[RunResult]:
        return self.by_status("skipped")

    @property
    def failed(self) -> list[RunResult]:
        return self.by_status("failed")

    @property
    def exit_code(self) -> int:
        """0 if nothing failed, else 1."""
        return 1 if self.failed else 0

    def table(self) -> str:
        """Counts per kind and status, then every failure with notebook and error."""
        rows = [("", "done", "skipped", "failed")]
        for kind in ("pretrain", "finetune"):
            rs = [r for r in self.results if r.kind == kind]
            rows.append(
                (
                    kind,
                    *(str(sum(r.status == s for r in rs)) for s in ("done", "skipped", "failed")),
                )
            )
        rows.append(("total", str(len(self.done)), str(len(self.skipped)), str(len(self.failed))))
        lines = [f"sweep {self.study}: {len(self.results)} runs"]
        lines += [f"  {a:<10}{b:>8}{c:>9}{d:>8}" for a, b, c, d in rows]
        if self.failed:
            lines.append("failed runs:")
            for r in self.failed:
                lines.append(f"  {r.name}")
                if r.notebook:
                    lines.append(f"    notebook: {r.notebook}")
                lines.append(f"    error:    {r.error}")
        if self.estimate is not None and self.done:
            lines.append(self.estimate_against_actual())
        return "\n".join(lines)

    def estimate_against_actual(self) -> str:
        """The estimated cost of the runs executed now against what they took."""
        estimate = self.estimate
        assert estimate is not None
        seconds = {run.name: run.seconds for run in estimate.runs}
        estimated = sum(seconds.get(r.name, 0.0) for r in self.done)
        actual = sum(r.seconds for r in self.done)
        hours = hours_label(estimate.device)
        return (
            f"cost of the {len(self.done)} runs executed: estimated {estimated / 3600:.2f} "
            f"{hours}, actual {actual / 3600:.2f} ({actual / max(estimated, 1e-9):.2f}x); wall "
            f"time estimated {format_duration(estimate.wall_seconds)} with "
            f"{estimate.workers} worker(s), actual {format_duration(self.wall_seconds)}"
        )


def result_of(
    run: Run,
    status: Status,
    error: str | None = None,
    t0: float | None = None,
    notebook: bool = False,
) -> RunResult:
    """The result of ``run`` with ``status`` (timed from ``t0``; with its executed notebook
    when ``notebook`` and one was written)."""
    nb = run.executed_notebook if notebook and run.executed_notebook.exists() else None
    return RunResult(
        run.name,
        run.kind,
        str(run.out_dir),
        status,
        error,
        str(nb) if nb else None,
        time.time() - t0 if t0 else 0.0,
        run.label,
    )
