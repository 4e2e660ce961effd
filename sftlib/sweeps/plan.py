"""Planning a sweep: the runs a study expands into, each one notebook execution. Touches no
file; see :mod:`sftlib.sweeps.sweep` for how the runs execute."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sftlib.config import resolved_finetune, resolved_pretrain
from sftlib.layout import PRETRAIN_DIRNAME, SUMMARY, run_dir
from sftlib.sweeps.study import StudyParams

NOTEBOOKS_DIR = Path(__file__).resolve().parents[2] / "notebooks"
"""The repository's notebooks (``notebooks/`` beside the ``sftlib`` package)."""
PRETRAIN_NOTEBOOK = NOTEBOOKS_DIR / "01_offline_pretrain.ipynb"
FINETUNE_NOTEBOOK = NOTEBOOKS_DIR / "02_sft_finetune.ipynb"

RunKind = Literal["pretrain", "finetune"]


@dataclass
class Run:
    """One notebook execution of a sweep."""

    kind: RunKind
    """``pretrain`` or ``finetune``."""
    name: str
    """Path of the run dir relative to the results root (``quick/<slug>/iql/sft/seed=0``)."""
    out_dir: Path
    """Absolute run directory."""
    notebook: Path
    """The source notebook to execute."""
    parameters: dict[str, Any]
    """What papermill injects: every config field (defaults resolved) plus ``out_dir``."""
    dataset_id: str
    """The dataset this run trains on (its dataset phase must succeed)."""
    pretrain_dir: Path | None = None
    """Fine-tuning runs: the pretraining run dir that must complete first."""
    batch: dict[int, Path] = field(default_factory=dict)
    """The other seeds trained in the same process, by seed, with their run directories
    (their parameters are this run's but for the seed and, fine-tuning, ``pretrain_dir``:
    parameter ``other_pretrain_dirs``)."""

    def __post_init__(self) -> None:
        if self.kind not in ("pretrain", "finetune"):
            raise ValueError(f"kind must be 'pretrain' or 'finetune', got {self.kind!r}")
        if (self.kind == "finetune") != (self.pretrain_dir is not None):
            raise ValueError("a finetune run needs pretrain_dir; a pretrain run has none")
        self.out_dir = Path(self.out_dir)
        self.notebook = Path(self.notebook)

    @property
    def dirs(self) -> list[Path]:
        """Every run directory this execution writes (its own, then the batch's)."""
        return [self.out_dir, *self.batch.values()]

    @property
    def label(self) -> str:
        """The run's name, and the other seeds it trains (for the console)."""
        if not self.batch:
            return self.name
        return f"{self.name} (+ seeds {', '.join(str(s) for s in self.batch)})"

    @property
    def complete(self) -> bool:
        return all((d / SUMMARY).exists() for d in self.dirs)

    @property
    def executed_notebook(self) -> Path:
        return self.out_dir / self.notebook.name


def plan(
    study_params: StudyParams,
    results_root: str | Path = "results",
    pretrain_notebook: str | Path | None = None,
    finetune_notebook: str | Path | None = None,
    seeds_per_process: int = 0,
) -> list[Run]:
    """Every run of the study: pretraining runs first, then fine-tuning runs (dataset x algo
    x variant x grid point x seed). Touches no file.

    Pretraining trains up to ``seeds_per_process`` seeds of one (dataset, algo) in one
    process, as one stacked model (0: all of them): each seed still writes exactly its own
    one-seed run (:func:`sftlib.training.pretrain.pretrain_seeds`). Fine-tuning does the same, in
    the same groups of seeds, for every variant (:func:`sftlib.training.finetune.finetune_seeds`:
    one stacked learner, each seed's decisions its own).
    """
    if seeds_per_process < 0:
        raise ValueError(f"seeds_per_process must be >= 0, got {seeds_per_process}")
    root = Path(results_root).resolve()
    pre_nb = Path(pretrain_notebook or PRETRAIN_NOTEBOOK).resolve()
    ft_nb = Path(finetune_notebook or FINETUNE_NOTEBOOK).resolve()
    sp = study_params
    per_process = seeds_per_process or len(sp.seeds)
    groups = [sp.seeds[i : i + per_process] for i in range(0, len(sp.seeds), per_process)]
    pretrain: list[Run] = []
    finetune: list[Run] = []
    for dataset in sp.datasets:
        for algo in sp.algos:
            pretrain_dirs = {
                seed: run_dir(root, sp.study, dataset, algo, PRETRAIN_DIRNAME, seed)
                for seed in sp.seeds
            }
            for group in groups:
                pretrain.append(
                    _pretrain_run(sp, root, pre_nb, dataset, algo, group, pretrain_dirs)
                )
            # The seeds of a pretraining process fine-tune together, as one stacked learner.
            for variant in sp.variants:
                for point in sp.grid_points():
                    for group in groups:
                        finetune.append(
                            _finetune_run(
                                sp,
                                root,
                                ft_nb,
                                dataset,
                                algo,
                                variant,
                                point,
                                group,
                                pretrain_dirs,
                            )  # fmt: skip
                        )
    return pretrain + finetune


def _pretrain_run(
    sp: StudyParams,
    root: Path,
    notebook: Path,
    dataset: str,
    algo: str,
    group: list[int],
    pretrain_dirs: dict[int, Path],
) -> Run:
    """The pretraining run of one group of seeds (the first seed's run directory)."""
    lead, *others = group
    out = pretrain_dirs[lead]
    params = resolved_pretrain(sp.pretrain_params(dataset, algo, lead))
    batch = {seed: pretrain_dirs[seed] for seed in others}
    extras = {
        "out_dir": str(out),
        "other_seeds": list(batch),
        "other_out_dirs": [str(d) for d in batch.values()],
    }
    name = out.relative_to(root).as_posix()
    return Run("pretrain", name, out, notebook, {**params, **extras}, dataset, batch=batch)


def _finetune_run(
    sp: StudyParams,
    root: Path,
    notebook: Path,
    dataset: str,
    algo: str,
    variant: str,
    point: dict[str, Any],
    group: list[int],
    pretrain_dirs: dict[int, Path],
) -> Run:
    """The fine-tuning run of one group of seeds for one variant and grid point."""
    label = variant + sp.grid_suffix(point)
    lead, *others = group
    out_dirs = {seed: run_dir(root, sp.study, dataset, algo, label, seed) for seed in group}
    params = resolved_finetune(sp.finetune_params(variant, lead, str(pretrain_dirs[lead]), point))
    extras: dict[str, Any] = {"out_dir": str(out_dirs[lead])}
    if others:
        extras.update(
            other_seeds=others,
            other_out_dirs=[str(out_dirs[s]) for s in others],
            other_pretrain_dirs=[str(pretrain_dirs[s]) for s in others],
        )
    return Run(
        "finetune",
        out_dirs[lead].relative_to(root).as_posix(),
        out_dirs[lead],
        notebook,
        {**params, **extras},
        dataset,
        pretrain_dir=pretrain_dirs[lead],
        batch={seed: out_dirs[seed] for seed in others},
    )


def describe_plan(runs: list[Run]) -> str:
    """The plan as text, one run a line, marking complete runs (for ``--dry-run``)."""
    lines = []
    for r in runs:
        state = "complete" if r.complete else "to run"
        after = ""
        if (
            not r.complete
            and r.pretrain_dir is not None
            and not (r.pretrain_dir / SUMMARY).exists()
        ):
            after = "  (after its pretraining run)"
        lines.append(f"{state:>8}  {r.kind:<8}  {r.label}{after}")
    n_done = sum(r.complete for r in runs)
    datasets = list(dict.fromkeys(r.dataset_id for r in runs))
    lines.append(
        f"{len(runs)} runs ({sum(r.kind == 'pretrain' for r in runs)} pretraining, "
        f"{sum(r.kind == 'finetune' for r in runs)} fine-tuning): {n_done} complete, "
        f"{len(runs) - n_done} to run; datasets: {', '.join(datasets)}"
    )
    return "\n".join(lines)
