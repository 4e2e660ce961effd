"""Command line: ``sft`` (or ``python -m sftlib``).

    sft sweep params/quick.yaml [more.yaml ...] [--results results] [--scheduler ADDR]
              [--workers N] [--dry-run] [--no-base]
    sft status results/quick [--json]
    sft datasets Hopper-v5 [--levels medium medium-replay]
    sft figures results/quick [--out DIR] [--reps 2000]
    sft ablation results/ablation_switch --ablation switch|ope|reset [--out DIR] [--reps 2000]

``sweep`` layers ``base.yaml`` first: when no file given is named ``base.yaml``, the
``base.yaml`` beside the first file (if there is one) is prepended, so
``sft sweep params/quick.yaml`` means ``params/base.yaml`` + ``params/quick.yaml``
(``--no-base`` turns this off). Invalid parameters are reported (exit status 2) before any
dataset is built or any directory created. Exit status 1 if any run failed.

Before it runs (and with ``--dry-run`` instead of running) a sweep prints what its runs
will cost: gradient updates, environment steps, CPU-hours (GPU-hours when the runs use a
GPU) and the wall time on its workers, from rates measured on this machine in a few
seconds (:mod:`sftlib.sweeps.cost`); its summary compares that estimate with what the runs
took. ``status`` tells, from the results folder alone, which runs are complete, running (at
which step), stopped, failed (and why) or not started, and the time left.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

BASE_FILE = "base.yaml"


def with_base(files: list[str | Path]) -> list[Path]:
    """``files`` with ``base.yaml`` (beside the first file) prepended unless one is given."""
    paths = [Path(f) for f in files]
    if paths and not any(p.name == BASE_FILE for p in paths):
        base = paths[0].parent / BASE_FILE
        if base.exists():
            paths.insert(0, base)
    return paths


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sft", description="Stable Fine-Tuning experiments.")
    sub = p.add_subparsers(dest="command", required=True)
    _add_sweep(sub)
    st = sub.add_parser(
        "status",
        help="which runs of a study are complete, running, stopped, failed or not started",
    )
    st.add_argument("study_dir", help="e.g. results/quick")
    st.add_argument("--json", action="store_true", help="print it as JSON")

    d = sub.add_parser("datasets", help="build the local Minari datasets of an environment")
    d.add_argument("env_id", help="Gymnasium id, e.g. Hopper-v5")
    d.add_argument(
        "--levels",
        nargs="+",
        default=None,
        help="levels to build (default: every level the factory knows)",
    )
    f = sub.add_parser("figures", help="every figure and table of a finished study")
    a = sub.add_parser(
        "ablation", help="the figures and verdicts of one ablation (notebooks 03-05)"
    )
    a.add_argument("--ablation", required=True, choices=["switch", "ope", "reset"])
    for command in (f, a):
        command.add_argument("study_dir", help="e.g. results/quick")
        command.add_argument(
            "--out", default=None, help="output directory (default: <study_dir>/figures)"
        )
        command.add_argument(
            "--reps", type=int, default=2000, help="bootstrap resamples (default: 2000)"
        )
    return p


def _add_sweep(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser(
        "sweep",
        help="run a study's notebooks (papermill on Dask)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    s.add_argument("files", nargs="+", help="study YAML files, merged left to right")
    s.add_argument("--results", default="results", help="results root (default: results)")
    s.add_argument(
        "--scheduler",
        default=None,
        help="'local' (default: a LocalCluster, one worker per core), "
        "'inprocess' (serial, for debugging) or a Dask address tcp://host:port",
    )
    s.add_argument(
        "--workers", type=int, default=None, help="LocalCluster workers (default: number of cores)"
    )
    s.add_argument(
        "--dry-run",
        action="store_true",
        help="print the plan, what is complete and what the rest will cost",
    )
    s.add_argument(
        "--no-estimate",
        action="store_true",
        help="skip the few seconds of measuring this machine's rates for the cost estimate",
    )
    s.add_argument("--pretrain-only", action="store_true", help="run the pretraining runs only")
    s.add_argument("--no-base", action="store_true", help=f"do not prepend {BASE_FILE}")
    s.add_argument(
        "--no-datasets",
        action="store_true",
        help="skip the dataset phase (datasets known to exist)",
    )
    s.add_argument(
        "--notebooks",
        default=None,
        help="directory holding 01_offline_pretrain.ipynb and 02_sft_finetune.ipynb "
        "(default: the repository's notebooks/)",
    )
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.add_argument(
        "--seeds-per-process",
        type=int,
        default=0,
        help="seeds of one (dataset, algo) pretrained, and fine-tuned with each variant, in "
        "one process as one stacked model (default 0: all of them; 1: one process per seed)",
    )


def _sweep(a: argparse.Namespace) -> int:
    from sftlib.sweeps.params import ParamsError, load_study_params

    files = [Path(f) for f in a.files] if a.no_base else with_base(a.files)
    try:
        study = load_study_params(files)
    except ParamsError as e:
        print(f"invalid parameters:\n{e}", file=sys.stderr)
        return 2
    from sftlib.sweeps import plan as planning
    from sftlib.sweeps import sweep

    nb = {}
    if a.notebooks:
        nb = {
            "pretrain_notebook": Path(a.notebooks) / planning.PRETRAIN_NOTEBOOK.name,
            "finetune_notebook": Path(a.notebooks) / planning.FINETUNE_NOTEBOOK.name,
        }
    print(f"study {study.study} from {' + '.join(study.files)}", file=sys.stderr)
    runs = planning.plan(study, a.results, seeds_per_process=a.seeds_per_process, **nb)
    if a.pretrain_only:
        runs = [run for run in runs if run.kind == "pretrain"]
    if a.dry_run:
        print(planning.describe_plan(runs))
    estimate = None
    if not a.no_estimate and any(not run.complete for run in runs):
        estimate = _estimate(runs, a)
    if a.dry_run:
        return 0
    try:
        report = sweep.run_sweep(
            study,
            a.results,
            a.scheduler,
            a.workers,
            ensure_datasets=not a.no_datasets,
            progress=not a.quiet,
            seeds_per_process=a.seeds_per_process,
            pretrain_only=a.pretrain_only,
            estimate=estimate,
            **nb,
        )
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return report.exit_code


def _estimate(runs: list, a: argparse.Namespace):
    """The cost of the incomplete ``runs`` on the sweep's workers, printed."""
    from sftlib.sweeps import cost
    from sftlib.sweeps.sweep import default_workers

    workers = default_workers(a.scheduler, a.workers)
    estimate = cost.estimate(runs, cost.measure_rates(runs), workers or 1)
    text = cost.describe(estimate)
    if workers is None:
        text += f"\n  (the workers of {a.scheduler} are not asked: one assumed; --workers N)"
    print(text, flush=True)
    return estimate


def _status(a: argparse.Namespace) -> int:
    import json

    from sftlib.sweeps.status import study_status

    try:
        status = study_status(a.study_dir)
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(status.to_json(), indent=1) if a.json else status.text())
    return 0


def _datasets(a: argparse.Namespace) -> int:
    from sftlib.factory import make_datasets

    # One line per dataset (made, or there already), printed as each is made.
    make_datasets(a.env_id, a.levels) if a.levels else make_datasets(a.env_id)
    return 0


def _ablation(args: argparse.Namespace) -> int:
    from sftlib.analysis.ablations import ablation_report

    try:
        made = ablation_report(args.study_dir, args.ablation, args.out, reps=args.reps)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for path in made.files:
        print(path)
    print(f"\n{made.conclusion}")
    return 0


def _figures(args: argparse.Namespace) -> int:
    from sftlib.analysis.paper import write_paper_figures

    try:
        paper = write_paper_figures(args.study_dir, args.out, reps=args.reps)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for product, paths in paper.files.items():
        print(f"{product:<28} {' '.join(str(path) for path in paths)}")
    print(f"\n{paper.conclusion}")
    return 0


def main(argv: list[str] | None = None) -> int:
    a = _parser().parse_args(argv)
    commands = {
        "sweep": _sweep,
        "status": _status,
        "datasets": _datasets,
        "figures": _figures,
        "ablation": _ablation,
    }
    return commands[a.command](a)


if __name__ == "__main__":
    sys.exit(main())
