"""The sweep runner: a study's grid of notebooks, executed with papermill on Dask.

A study (:class:`sftlib.sweeps.params.StudyParams`) expands into two kinds of runs, each one
directory, one executed notebook::

    <results>/<study>/<dataset_slug>/<algo>/pretrain/seed=<n>/      01_offline_pretrain.ipynb
    <results>/<study>/<dataset_slug>/<algo>/<variant>/seed=<n>/     02_sft_finetune.ipynb

``dataset_slug`` is the Minari id with ``/`` -> ``-`` (``local-hopper-medium-v0``). With a
``grid:`` in the study, ``<variant>`` becomes ``<variant>+<key>=<value>...`` in the grid's
key order (``sft+reset_scope=full``). A fine-tuning run starts from the pretraining run
of its dataset, algo and seed (parameter ``pretrain_dir``), which must complete first.

Pretraining trains the seeds of one (dataset, algo) in one process as one stacked model
(``seeds_per_process``, default all): one notebook execution, in the first seed's run
directory, writes every seed's run directory exactly as a one-seed run would. Fine-tuning
runs the same groups of seeds together, each seed's decisions its own.

Every run directory holds ``params.yaml`` (every config field, defaults resolved, plus
``out_dir``: exactly what papermill injects), the executed notebook, ``run.log`` (the
kernel's stdout/stderr and the runner's own lines, appended on every attempt), whatever
the training code writes, and last ``summary.json``.

Rules the runner keeps:

- **Complete = ``summary.json`` exists.** The training code writes it last, atomically.
  Complete runs are skipped; an incomplete one is executed again into the same dir, and
  the training code resumes from its own checkpoint there.
- **Datasets first, serially, in the driver**: ``sftlib.factory.ensure_dataset`` for each
  dataset that an incomplete run needs (local ids are built; remote ones checked). A
  dataset that fails fails its runs only.
- **One lock per run dir** (``.lock``, created with ``O_CREAT|O_EXCL``, holding host and
  pid; a batched pretraining run holds the lock of every seed it trains). A lock whose pid is alive on this host (or that was taken on another host, which
  cannot be checked from here) makes that run refused; a lock of a dead pid on this host is
  stale and taken over. Two sweeps can therefore share a results tree safely.
- **One failure never stops the others.** Fine-tuning runs whose pretraining failed are
  reported as failed (``pretraining failed: <dir>``) without running. The report lists,
  per failure, the executed notebook and the failing cell's error.

Where runs execute (``scheduler``):

- ``None`` / ``"local"``: a ``distributed.LocalCluster`` of one single-threaded worker
  process per core (``n_workers`` to change), ``OMP_NUM_THREADS=1`` in every worker;
- ``"tcp://host:port"``: an existing Dask cluster (results root, notebooks and the Minari
  data dir must then be on a filesystem every worker sees);
- ``"inprocess"``: serially in this process, for debugging.

SLURM through dask-jobqueue (``pip install sftlib[slurm]``): start the cluster in one
long-lived process (a login-node ``tmux`` or a small job), then point the sweep at it::

    from dask_jobqueue import SLURMCluster
    cluster = SLURMCluster(cores=1, processes=1, memory="4GB", walltime="24:00:00",
                           job_extra_directives=["--gres=gpu:1"])  # GPU runs; drop for CPU
    cluster.scale(jobs=16)                 # 16 SLURM jobs = 16 single-run workers
    print(cluster.scheduler_address)       # tcp://10.0.0.5:8786
    input("sweep running; press enter to stop the cluster")

    $ sft sweep params/paper.yaml --scheduler tcp://10.0.0.5:8786

Each SLURM job is one worker running one notebook at a time. A job that hits its walltime
kills its run mid-way; rerunning the same command resumes it (the lock of the dead job is
on another host, so delete that run's ``.lock`` if the sweep refuses it).
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

from sftlib.layout import (
    LOG_FILE,
    PARAMS_FILE,
    SUMMARY,
)
from sftlib.sweeps.cost import CostEstimate
from sftlib.sweeps.outcome import RunResult, SweepReport, result_of
from sftlib.sweeps.plan import Run, plan
from sftlib.sweeps.runlock import RunLocked, run_lock
from sftlib.sweeps.status import log_line, record_actual, write_sweep_file
from sftlib.sweeps.study import StudyParams
from sftlib.utils import atomic_write_text

THREAD_ENV = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "TQDM_MININTERVAL": "30",
}
"""One BLAS thread per run: several small-network runs per machine beat one wide one.
Progress bars inside run notebooks refresh rarely: their output lands in logs."""
SCHEDULERS = ("local", "inprocess", "tcp://host:port")

_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # colour codes in IPython tracebacks

# --------------------------------------------------------------------------- one run


def execute_run(run: Run, upstream: RunResult | None = None) -> RunResult:
    """Execute one run's notebook (on a Dask worker or in-process); never raises.

    ``upstream``: the result of the pretraining run a fine-tuning run depends on
    (``None`` when that run was already complete before the sweep).
    """
    t0 = time.time()
    if upstream is not None and upstream.status == "failed":
        return result_of(run, "failed", f"pretraining failed: {upstream.out_dir}")
    if run.complete:
        return result_of(run, "skipped")
    for k, v in THREAD_ENV.items():
        os.environ.setdefault(k, v)  # the kernel inherits this process's environment
    for directory in run.dirs:
        directory.mkdir(parents=True, exist_ok=True)
    with open(run.out_dir / LOG_FILE, "a", buffering=1) as logf:

        def log(msg: str) -> None:
            logf.write(log_line(msg))

        try:
            with contextlib.ExitStack() as locks:
                for directory in run.dirs:  # every seed of a batch is locked
                    locks.enter_context(run_lock(directory, log))
                if run.complete:  # finished by another sweep between our checks
                    return result_of(run, "skipped")
                return _execute_locked(run, logf, log, t0)
        except RunLocked as e:
            log(f"refused: {e}")
            return result_of(run, "failed", str(e), t0)


def _local_kernel_manager() -> type:
    """A kernel manager whose kernels talk over local IPC sockets, not TCP.

    The kernel always runs on the machine of the process that executes the notebook, so TCP
    buys nothing; over TCP without CurveZMQ keys every ipykernel >= 7 prints a warning about
    unencrypted transport, once per notebook of a sweep. Each kernel gets its own socket
    path prefix (jupyter_client's default, ``kernel-ipc`` in the working directory, is shared
    by every kernel started there, and concurrent kernels would talk to each other).
    """
    import tempfile

    from jupyter_client import AsyncKernelManager
    from traitlets import CaselessStrEnum

    class LocalKernelManager(AsyncKernelManager):
        transport = CaselessStrEnum(["tcp", "ipc"], default_value="ipc", config=True)

        def _ip_default(self) -> str:
            return os.path.join(tempfile.gettempdir(), f"sftlib-kernel-{uuid.uuid4().hex}")

        async def _async_interrupt_kernel(self) -> None:
            # jupyter_client interrupts every kernel it shuts down; papermill shuts kernels
            # down when the notebook has finished, so there is nothing to interrupt, and a
            # kernel still answering a message then logs a spurious "KeyboardInterrupt".
            if not self.shutting_down:
                await super()._async_interrupt_kernel()

    return LocalKernelManager


def _execute_locked(run: Run, logf: Any, log: Callable[[str], None], t0: float) -> RunResult:
    import papermill
    from papermill.exceptions import PapermillExecutionError

    atomic_write_text(run.out_dir / PARAMS_FILE, yaml.safe_dump(run.parameters, sort_keys=False))
    batch_keys = ("other_seeds", "other_out_dirs", "other_pretrain_dirs")
    pretrain_dirs = run.parameters.get("other_pretrain_dirs", [])
    for index, (seed, directory) in enumerate(run.batch.items()):
        # each seed's own parameters, and who ran it
        own = {k: v for k, v in run.parameters.items() if k not in batch_keys}
        own.update(seed=seed, out_dir=str(directory), trained_in_process_of=str(run.out_dir))
        if pretrain_dirs:
            own["pretrain_dir"] = pretrain_dirs[index]
        atomic_write_text(directory / PARAMS_FILE, yaml.safe_dump(own, sort_keys=False))
    log(
        f"executing {run.notebook} -> {run.executed_notebook} on {socket.gethostname()} "
        f"pid {os.getpid()}"
    )
    try:
        papermill.execute_notebook(
            str(run.notebook),
            str(run.executed_notebook),
            parameters=run.parameters,
            cwd=str(run.notebook.parent),
            kernel_name="python3",
            kernel_manager_class=_local_kernel_manager(),
            progress_bar=False,
            stdout_file=logf,
            stderr_file=logf,
        )
    except PapermillExecutionError as e:
        error = f"cell {e.exec_count}: {e.ename}: {e.evalue}"
        tb = _ANSI.sub("", "\n".join(e.traceback or []))
        log(f"failed: {error}\n{tb}")
        return result_of(run, "failed", error, t0, notebook=True)
    except Exception as e:  # kernel died, notebook missing, ...: still only this run fails
        log(f"failed:\n{traceback.format_exc()}")
        return result_of(run, "failed", f"{type(e).__name__}: {e}", t0, notebook=True)
    if not run.complete:
        error = f"the notebook finished without writing {SUMMARY}"
        log(f"failed: {error}")
        return result_of(run, "failed", error, t0, notebook=True)
    log(f"done in {time.time() - t0:.0f}s")
    return result_of(run, "done", None, t0, notebook=True)


# --------------------------------------------------------------------------- the sweep


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def default_workers(scheduler: str | None, n_workers: int | None) -> int | None:
    """The workers a sweep runs on: ``n_workers`` when given, one for ``inprocess``, one per
    core for a ``LocalCluster``; ``None`` for an existing cluster (not asked)."""
    if n_workers:
        return n_workers
    if scheduler == "inprocess":
        return 1
    return _cores() if scheduler in (None, "local") else None


@contextlib.contextmanager
def _dask_client(
    scheduler: str | None, n_workers: int | None, cluster_kwargs: dict[str, Any] | None
) -> Iterator[Any]:
    from distributed import Client, LocalCluster

    if scheduler in (None, "local"):
        kw = {
            "n_workers": n_workers or _cores(),
            "threads_per_worker": 1,
            "processes": True,
            "env": dict(THREAD_ENV),
            **(cluster_kwargs or {}),
        }
        with LocalCluster(**kw) as cluster, Client(cluster) as client:
            yield client
    else:
        with Client(scheduler) as client:
            yield client


def _check_scheduler(scheduler: str | None) -> None:
    if scheduler not in (None, "local", "inprocess") and "://" not in str(scheduler):
        raise ValueError(f"scheduler must be one of {list(SCHEDULERS)}, got {scheduler!r}")


def run_sweep(
    study_params: StudyParams,
    results_root: str | Path = "results",
    scheduler: str | None = None,
    n_workers: int | None = None,
    *,
    pretrain_notebook: str | Path | None = None,
    finetune_notebook: str | Path | None = None,
    ensure_datasets: bool | Callable[[str], Any] = True,
    progress: bool = True,
    show: bool = True,
    cluster_kwargs: dict[str, Any] | None = None,
    seeds_per_process: int = 0,
    pretrain_only: bool = False,
    estimate: CostEstimate | None = None,
) -> SweepReport:
    """Run every incomplete run of the study; see the module docstring for the rules.

    ``seeds_per_process``: seeds of one (dataset, algo) pretrained together in one process,
    and fine-tuned together (0: all of them; 1: one process per seed); see :func:`plan`.
    ``pretrain_only`` runs the pretraining runs alone (fine-tune later with the same study
    file).

    ``ensure_datasets``: ``True`` calls ``sftlib.factory.ensure_dataset``, a callable is
    called instead (``dataset_id -> anything``), ``False`` skips the dataset phase.
    ``cluster_kwargs`` override the ``LocalCluster`` arguments. ``show`` prints one line per
    finished run and the summary table at the end.

    When the runs start, ``<results>/<study>/sweep.json`` records them, the workers and
    ``estimate`` (:mod:`sftlib.sweeps.cost`), for ``sft status``; when they end it gains
    what they took, and the summary compares that with the estimate.
    """
    _check_scheduler(scheduler)
    runs = plan(study_params, results_root, pretrain_notebook, finetune_notebook, seeds_per_process)
    if pretrain_only:
        runs = [r for r in runs if r.kind == "pretrain"]
    for nb in {r.notebook for r in runs if not r.complete}:
        if not nb.exists():
            raise FileNotFoundError(f"notebook {nb} does not exist (pass its path explicitly)")
    started = time.time()
    workers = default_workers(scheduler, n_workers)
    sweep_file = write_sweep_file(study_params, runs, results_root, workers, estimate)
    results, runnable = _triage(runs, ensure_datasets)
    bar = _progress_bar(study_params.study, len(runs), len(results), progress)

    def record(res: RunResult) -> None:
        results[res.name] = res
        if show and res.status != "skipped":
            bar.write(res.line())
        bar.update(1)
        n_failed = sum(x.status == "failed" for x in results.values())
        if n_failed:
            bar.set_postfix(failed=n_failed)

    try:
        if scheduler == "inprocess":
            _run_inprocess(runnable, record)
        else:
            with _dask_client(scheduler, n_workers, cluster_kwargs) as client:
                _run_dask(client, runnable, record)
    finally:
        bar.close()
    report = SweepReport(
        study_params.study, [results[r.name] for r in runs], estimate, time.time() - started
    )
    record_actual(sweep_file, report.wall_seconds, {r.name: r.seconds for r in report.done})
    if show:
        print(report.table())
    return report


def _triage(
    runs: list[Run], ensure_datasets: bool | Callable[[str], Any]
) -> tuple[dict[str, RunResult], list[Run]]:
    """The results known before anything runs (complete runs skipped, runs whose dataset is
    unavailable failed) and the runs to execute, after the dataset phase."""
    results: dict[str, RunResult] = {}
    todo: list[Run] = []
    for r in runs:
        if r.complete:
            results[r.name] = result_of(r, "skipped")
        else:
            todo.append(r)
    dataset_errors = _dataset_phase(todo, ensure_datasets)
    runnable = []
    for r in todo:
        if r.dataset_id in dataset_errors:
            error = f"dataset {r.dataset_id} unavailable: {dataset_errors[r.dataset_id]}"
            results[r.name] = result_of(r, "failed", error)
        else:
            runnable.append(r)
    return results, runnable


def _progress_bar(study: str, total: int, initial: int, progress: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(
        total=total, initial=initial, desc=f"sweep {study}", unit="run", disable=not progress
    )


def _dataset_phase(todo: list[Run], ensure: bool | Callable[[str], Any]) -> dict[str, str]:
    """Ensure every dataset an incomplete run needs, serially; ``{id: error}`` of failures."""
    if ensure is False:
        return {}
    if ensure is True:
        from sftlib.factory import ensure_dataset as ensure
    errors = {}
    for dataset_id in dict.fromkeys(r.dataset_id for r in todo):
        try:
            ensure(dataset_id)
        except Exception as e:
            errors[dataset_id] = f"{type(e).__name__}: {e}"
    return errors


def _run_inprocess(runs: list[Run], record: Callable[[RunResult], None]) -> None:
    upstream: dict[Path, RunResult] = {}
    for r in runs:  # plan order: every pretraining run before any fine-tuning run
        res = execute_run(r, upstream.get(r.pretrain_dir) if r.pretrain_dir else None)
        if r.kind == "pretrain":
            for directory in r.dirs:
                upstream[directory] = res
        record(res)


def _run_dask(client: Any, runs: list[Run], record: Callable[[RunResult], None]) -> None:
    from distributed import as_completed

    futures: dict[Any, Run] = {}
    pre_futures: dict[Path, Any] = {}
    tag = uuid.uuid4().hex[:8]  # task keys only (never paths): two sweeps may share a cluster
    for r in runs:
        if r.kind == "pretrain":
            f = client.submit(execute_run, r, key=f"sft-{tag}-{r.name}", pure=False)
            for directory in r.dirs:
                pre_futures[directory] = f
        else:
            # Dask starts the task once the pretraining future is finished and passes its
            # RunResult in; a complete pretraining run has no future (None: go ahead).
            f = client.submit(
                execute_run,
                r,
                pre_futures.get(r.pretrain_dir),
                key=f"sft-{tag}-{r.name}",
                pure=False,
            )
        futures[f] = r
    for f in as_completed(list(futures)):
        r = futures[f]
        try:
            res = f.result()
        except Exception as e:  # the worker died (KilledWorker), cancelled, ...
            up = pre_futures.get(r.pretrain_dir) if r.pretrain_dir else None
            if up is not None and up.status == "error":
                res = result_of(r, "failed", f"pretraining failed: {r.pretrain_dir}")
            else:
                res = result_of(r, "failed", f"{type(e).__name__}: {e}", notebook=True)
        record(res)


__all__ = ["RunResult", "SweepReport", "execute_run", "run_sweep"]
