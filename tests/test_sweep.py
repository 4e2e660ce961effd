"""The sweep runner: planning, papermill on Dask, resume, failures, locks.

Runs use tiny stand-in notebooks written into ``tmp_path`` (a ``parameters`` cell and a
cell that appends to a counter file and writes ``summary.json``), so these tests exercise
the runner, not the training code.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

from sftlib.sweeps.params import StudyParams
from sftlib.sweeps.plan import Run, describe_plan, plan
from sftlib.sweeps.runlock import RunLocked, run_lock
from sftlib.sweeps.sweep import execute_run, run_sweep

NO_DASHBOARD = {"dashboard_address": None}

PRETRAIN_SRC = """
import json, os, pathlib
with open({counter!r}, "a") as f:
    f.write(json.dumps({{"kind": "pretrain", "out_dir": out_dir, "seed": seed}}) + "\\n")
if seed in {fail_seeds!r}:
    raise RuntimeError(f"stand-in pretraining failure seed={{seed}}")
pathlib.Path(out_dir, "summary.json").write_text(json.dumps({{"seed": seed, "algo": algo}}))
"""

FINETUNE_SRC = """
import json, os, pathlib
with open({counter!r}, "a") as f:
    f.write(json.dumps({{"kind": "finetune", "out_dir": out_dir, "seed": seed,
                        "pretrain_done": os.path.exists(os.path.join(pretrain_dir,
                                                                     "summary.json"))}}) + "\\n")
if variant in {fail_variants!r}:
    raise ValueError(f"stand-in fine-tuning failure {{variant}}")
pathlib.Path(out_dir, "summary.json").write_text(json.dumps({{"variant": variant}}))
"""


def _notebook(path: Path, params_src: str, body: str) -> Path:
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(params_src)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# stand-in"), cell, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, path)
    return path


@pytest.fixture
def notebooks(tmp_path):
    """Factory of (pretrain, finetune) stand-in notebooks and the counter file they append to."""
    counter = tmp_path / "counter.jsonl"

    def make(fail_seeds=(), fail_variants=()):
        nb_dir = tmp_path / "nb"
        nb_dir.mkdir(exist_ok=True)
        pre = _notebook(
            nb_dir / "01_offline_pretrain.ipynb",
            'out_dir = ""\nseed = 0\nalgo = "iql"',
            PRETRAIN_SRC.format(counter=str(counter), fail_seeds=list(fail_seeds)),
        )
        ft = _notebook(
            nb_dir / "02_sft_finetune.ipynb",
            'out_dir = ""\npretrain_dir = ""\nseed = 0\nvariant = "sft"',
            FINETUNE_SRC.format(counter=str(counter), fail_variants=list(fail_variants)),
        )
        return {"pretrain_notebook": pre, "finetune_notebook": ft}

    make.counter = counter
    return make


def executed(counter: Path) -> list[dict]:
    if not counter.exists():
        return []
    return [json.loads(line) for line in counter.read_text().splitlines()]


def study(**kw) -> StudyParams:
    base = dict(
        study="t",
        datasets=["local/hopper/medium-v0"],
        algos=["iql"],
        variants=["sft"],
        seeds=[0],
        pretrain={"offline_steps": 10},
        finetune={"online_steps": 10},
    )
    return StudyParams(**{**base, **kw})


# --------------------------------------------------------------------------- planning


def test_plan_layout_parameters_and_dependencies(tmp_path):
    sp = study(
        algos=["iql", "td3bc"],
        variants=["direct", "sft"],
        seeds=[0, 3],
        datasets=["local/hopper/medium-v0", "mujoco/hopper/simple-v0"],
        grid={"reset_scope": ["last", "full"]},
    )
    runs = plan(sp, tmp_path / "res", "a/01.ipynb", "b/02.ipynb", seeds_per_process=1)
    pre = [r for r in runs if r.kind == "pretrain"]
    ft = [r for r in runs if r.kind == "finetune"]
    assert len(pre) == 2 * 2 * 2 and len(ft) == 2 * 2 * 2 * 2 * 2
    assert all(not r.batch for r in pre)
    assert runs[: len(pre)] == pre  # every pretraining run is planned first
    root = (tmp_path / "res").resolve()
    r = next(r for r in pre if r.name == "t/mujoco-hopper-simple-v0/td3bc/pretrain/seed=3")
    assert r.out_dir == root / r.name and r.out_dir.is_absolute()
    assert r.notebook == Path("a/01.ipynb").resolve()
    assert r.executed_notebook == r.out_dir / "01.ipynb"
    assert r.parameters["out_dir"] == str(r.out_dir)
    assert (r.parameters["dataset_id"], r.parameters["algo"], r.parameters["seed"]) == (
        "mujoco/hopper/simple-v0",
        "td3bc",
        3,
    )
    assert r.parameters["offline_steps"] == 10
    # Defaults are resolved, so a run never depends on the notebook's smoke defaults.
    assert r.parameters["eval_episodes"] == 5 and r.parameters["hidden"] == [256, 256]
    f = next(r for r in ft if r.name == "t/local-hopper-medium-v0/iql/sft+reset_scope=full/seed=0")
    assert f.parameters["reset_scope"] == "full" and f.parameters["variant"] == "sft"
    assert f.parameters["online_steps"] == 10 and f.parameters["buffer_size"] == 1_000_000
    assert f.pretrain_dir == root / "t/local-hopper-medium-v0/iql/pretrain/seed=0"
    assert f.parameters["pretrain_dir"] == str(f.pretrain_dir)
    assert not (tmp_path / "res").exists()  # planning touches nothing
    assert len({r.out_dir for r in runs}) == len(runs)


def test_plan_pretrains_the_seeds_of_a_dataset_and_algo_in_one_process(tmp_path):
    sp = study(algos=["iql", "td3bc"], seeds=[0, 3, 5])
    runs = plan(sp, tmp_path / "res", "a/01.ipynb", "b/02.ipynb")
    pre = [r for r in runs if r.kind == "pretrain"]
    assert [r.name for r in pre] == [
        "t/local-hopper-medium-v0/iql/pretrain/seed=0",
        "t/local-hopper-medium-v0/td3bc/pretrain/seed=0",
    ]
    root = (tmp_path / "res").resolve()
    batch = {3: root / "t/local-hopper-medium-v0/iql/pretrain/seed=3"}
    batch[5] = batch[3].parent / "seed=5"
    assert pre[0].batch == batch and pre[0].dirs == [pre[0].out_dir, *batch.values()]
    assert pre[0].parameters["other_seeds"] == [3, 5]
    assert pre[0].parameters["other_out_dirs"] == [str(d) for d in batch.values()]
    assert pre[0].label.endswith("(+ seeds 3, 5)")
    ft = [r for r in runs if r.kind == "finetune" and "/iql/" in r.name]
    for run in ft:  # each seed fine-tunes from its own pretraining
        others = [Path(d) for d in run.parameters["other_pretrain_dirs"]]
        assert [run.pretrain_dir, *others] == pre[0].dirs
    two = plan(sp, tmp_path / "res", seeds_per_process=2)
    assert [sorted(r.batch) for r in two if r.kind == "pretrain"] == [[3], [], [3], []]
    with pytest.raises(ValueError, match="seeds_per_process"):
        plan(sp, tmp_path / "res", seeds_per_process=-1)


def test_plan_fine_tunes_the_seeds_of_every_variant_together(tmp_path):
    sp = study(variants=["direct", "sft"], seeds=[0, 3, 5])
    runs = plan(sp, tmp_path / "res", "a/01.ipynb", "b/02.ipynb")
    root = (tmp_path / "res").resolve() / "t/local-hopper-medium-v0/iql"
    (pre,) = [r for r in runs if r.kind == "pretrain"]
    for variant in ("direct", "sft"):
        (run,) = [r for r in runs if r.kind == "finetune" and f"/{variant}/" in r.name]
        assert run.out_dir == root / f"{variant}/seed=0" and sorted(run.batch) == [3, 5]
        assert run.parameters["other_seeds"] == [3, 5]
        assert run.parameters["other_out_dirs"] == [
            str(root / f"{variant}/seed={s}") for s in (3, 5)
        ]
        assert run.parameters["other_pretrain_dirs"] == [
            str(root / f"pretrain/seed={s}") for s in (3, 5)
        ]
        # The pretraining process of the same seeds is the one run it waits for.
        assert run.pretrain_dir == pre.out_dir and set(run.batch) == set(pre.batch)
    two = plan(sp, tmp_path / "res", seeds_per_process=2)
    assert [sorted(r.batch) for r in two if r.kind == "finetune"] == [[3], [], [3], []]


def test_describe_plan_marks_complete_runs(tmp_path):
    runs = plan(study(), tmp_path)
    (runs[0].out_dir).mkdir(parents=True)
    (runs[0].out_dir / "summary.json").write_text("{}")
    text = describe_plan(runs)
    assert f"complete  pretrain  {runs[0].name}" in text
    assert f"to run  finetune  {runs[1].name}" in text
    assert "1 complete, 1 to run" in text


def test_bad_scheduler_is_rejected_before_anything(tmp_path):
    with pytest.raises(ValueError, match="scheduler must be one of"):
        run_sweep(study(), tmp_path / "res", scheduler="slurm", ensure_datasets=False)
    assert not (tmp_path / "res").exists()


def test_missing_notebook_is_reported_before_anything(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.ipynb"):
        run_sweep(
            study(),
            tmp_path / "res",
            scheduler="inprocess",
            ensure_datasets=False,
            pretrain_notebook=tmp_path / "nope.ipynb",
        )
    assert not (tmp_path / "res").exists()


# --------------------------------------------------------------------------- execution


def test_tiny_sweep_on_local_cluster_then_resume(tmp_path, notebooks, capsys):
    nbs = notebooks()
    ensured = []
    sp = study()
    report = run_sweep(
        sp,
        tmp_path / "res",
        n_workers=2,
        cluster_kwargs=NO_DASHBOARD,
        ensure_datasets=ensured.append,
        progress=False,
        **nbs,
    )
    assert [r.status for r in report.results] == ["done", "done"], report.table()
    assert report.exit_code == 0 and ensured == ["local/hopper/medium-v0"]
    pre, ft = plan(sp, tmp_path / "res", **nbs)
    for run in (pre, ft):
        assert (run.out_dir / "summary.json").exists()
        assert run.executed_notebook.exists()
        assert yaml.safe_load((run.out_dir / "params.yaml").read_text()) == run.parameters
        assert (run.out_dir / "run.log").exists()
        assert not (run.out_dir / ".lock").exists()
    # The executed notebook received the injected parameters.
    nb = nbformat.read(ft.executed_notebook, as_version=4)
    injected = next(c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", []))
    assert f"pretrain_dir = {str(pre.out_dir)!r}" in injected.source.replace('"', "'")
    log = executed(notebooks.counter)
    assert [e["kind"] for e in log] == ["pretrain", "finetune"]
    assert log[1]["pretrain_done"] is True  # fine-tuning waited for its pretraining run
    assert "done" in capsys.readouterr().out  # the summary table

    # Resume: only the run whose summary.json is gone executes again.
    (ft.out_dir / "summary.json").unlink()
    ensured.clear()
    report = run_sweep(
        sp,
        tmp_path / "res",
        scheduler="inprocess",
        ensure_datasets=ensured.append,
        progress=False,
        show=False,
        **nbs,
    )
    assert [r.status for r in report.results] == ["skipped", "done"]
    assert [e["out_dir"] for e in executed(notebooks.counter)[2:]] == [str(ft.out_dir)]
    assert ensured == ["local/hopper/medium-v0"]

    # Everything complete: nothing executes, no dataset is even checked.
    ensured.clear()
    report = run_sweep(
        sp,
        tmp_path / "res",
        scheduler="inprocess",
        ensure_datasets=ensured.append,
        progress=False,
        show=False,
        **nbs,
    )
    assert [r.status for r in report.results] == ["skipped", "skipped"]
    assert len(executed(notebooks.counter)) == 3 and ensured == []


def test_failures_are_reported_and_do_not_stop_others(tmp_path, notebooks):
    from distributed import LocalCluster

    nbs = notebooks(fail_seeds=[1], fail_variants=["pex"])
    sp = study(variants=["pex", "sft"], seeds=[0, 1])
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:  # the tcp:// path
        report = run_sweep(
            sp,
            tmp_path / "res",
            scheduler=cluster.scheduler_address,
            ensure_datasets=False,
            progress=False,
            show=False,
            seeds_per_process=1,
            **nbs,
        )
    status = {r.name: r for r in report.results}
    base = "t/local-hopper-medium-v0/iql"
    assert status[f"{base}/pretrain/seed=0"].status == "done"
    assert status[f"{base}/sft/seed=0"].status == "done"
    assert (tmp_path / "res" / base / "sft/seed=0/summary.json").exists()

    bad_pre = status[f"{base}/pretrain/seed=1"]
    assert bad_pre.status == "failed"
    assert "RuntimeError: stand-in pretraining failure seed=1" in bad_pre.error
    assert bad_pre.error.startswith("cell ")
    assert bad_pre.notebook == str(
        tmp_path.resolve() / "res" / base / "pretrain/seed=1/01_offline_pretrain.ipynb"
    )
    assert Path(bad_pre.notebook).exists()
    bad_ft = status[f"{base}/pex/seed=0"]
    assert (
        bad_ft.status == "failed" and "ValueError: stand-in fine-tuning failure pex" in bad_ft.error
    )
    for variant in ("pex", "sft"):  # never ran: their pretraining failed
        r = status[f"{base}/{variant}/seed=1"]
        assert r.status == "failed"
        assert (
            r.error
            == f"pretraining failed: {tmp_path.resolve() / 'res' / base / 'pretrain/seed=1'}"
        )
    ran = {(e["kind"], e["seed"]) for e in executed(notebooks.counter)}
    assert ("finetune", 1) not in ran
    assert report.exit_code == 1 and len(report.failed) == 4 and len(report.done) == 2
    table = report.table()
    assert bad_pre.notebook in table and "stand-in pretraining failure" in table
    assert "pretraining failed" in table


def test_notebook_without_summary_is_a_failure(tmp_path, notebooks):
    nbs = notebooks()
    (run,) = [r for r in plan(study(), tmp_path, **nbs) if r.kind == "pretrain"]
    run.notebook = _notebook(tmp_path / "nb" / "empty.ipynb", 'out_dir = ""', "x = 1")
    res = execute_run(run)
    assert res.status == "failed" and "without writing summary.json" in res.error


def test_dataset_failure_fails_only_its_runs(tmp_path, notebooks):
    nbs = notebooks()

    def ensure(dataset_id):
        if "simple" in dataset_id:
            raise OSError("not downloadable")

    sp = study(datasets=["local/hopper/medium-v0", "mujoco/hopper/simple-v0"])
    report = run_sweep(
        sp,
        tmp_path,
        scheduler="inprocess",
        ensure_datasets=ensure,
        progress=False,
        show=False,
        **nbs,
    )
    for r in report.results:
        if "simple" in r.name:
            assert r.status == "failed"
            assert (
                r.error == "dataset mujoco/hopper/simple-v0 unavailable: OSError: not downloadable"
            )
        else:
            assert r.status == "done"
    assert len(executed(notebooks.counter)) == 2


def test_dataset_phase_uses_the_factory_by_default(tmp_path, notebooks, monkeypatch):
    import types

    calls = []
    fake = types.ModuleType("sftlib.factory")
    fake.ensure_dataset = calls.append
    monkeypatch.setitem(sys.modules, "sftlib.factory", fake)
    sp = study(datasets=["local/hopper/medium-v0", "local/hopper/expert-v0"])
    run_sweep(sp, tmp_path, scheduler="inprocess", progress=False, show=False, **notebooks())
    assert calls == ["local/hopper/medium-v0", "local/hopper/expert-v0"]


# --------------------------------------------------------------------------- locks


@pytest.fixture
def live_pid():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc.pid
    proc.kill()
    proc.wait()


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_held_lock_refuses_that_run_only(tmp_path, notebooks, live_pid):
    nbs = notebooks()
    pre, ft = plan(study(), tmp_path, **nbs)
    ft.out_dir.mkdir(parents=True)
    host = socket.gethostname()
    lock = json.dumps({"host": host, "pid": live_pid})
    (ft.out_dir / ".lock").write_text(lock)
    report = run_sweep(
        study(),
        tmp_path,
        scheduler="inprocess",
        ensure_datasets=False,
        progress=False,
        show=False,
        **nbs,
    )
    r_pre, r_ft = report.results
    assert r_pre.status == "done"
    assert r_ft.status == "failed"
    assert r_ft.error.startswith(
        f"another sweep is running {ft.out_dir} (pid {live_pid} on host {host}); "
    )
    assert (ft.out_dir / ".lock").read_text() == lock  # left alone
    assert not (ft.out_dir / "summary.json").exists()
    assert [e["kind"] for e in executed(notebooks.counter)] == ["pretrain"]


def test_stale_lock_is_taken_over(tmp_path, notebooks):
    nbs = notebooks()
    pre, _ = plan(study(), tmp_path, **nbs)
    pre.out_dir.mkdir(parents=True)
    pid = dead_pid()
    (pre.out_dir / ".lock").write_text(json.dumps({"host": socket.gethostname(), "pid": pid}))
    report = run_sweep(
        study(),
        tmp_path,
        scheduler="inprocess",
        ensure_datasets=False,
        progress=False,
        show=False,
        **nbs,
    )
    assert [r.status for r in report.results] == ["done", "done"]
    assert not (pre.out_dir / ".lock").exists()
    assert f"taking over stale lock of dead pid {pid}" in (pre.out_dir / "run.log").read_text()


def test_run_lock_excludes_and_releases(tmp_path, live_pid):
    with run_lock(tmp_path / "r"):
        held = json.loads((tmp_path / "r" / ".lock").read_text())
        assert held == {"host": socket.gethostname(), "pid": os.getpid()}
        with pytest.raises(RunLocked, match="another sweep is running"):
            with run_lock(tmp_path / "r"):  # this very process holds it: still refused
                pass
        assert (tmp_path / "r" / ".lock").exists()
    assert not (tmp_path / "r" / ".lock").exists()
    # A lock taken on another host cannot be checked from here: refused, not stolen.
    (tmp_path / "r" / ".lock").write_text(json.dumps({"host": "elsewhere-node", "pid": live_pid}))
    with pytest.raises(RunLocked, match=r"pid \d+ on host elsewhere-node, which cannot"):
        with run_lock(tmp_path / "r"):
            pass


def test_run_dataclass_validates():
    with pytest.raises(ValueError, match="kind"):
        Run("train", "x", Path("/x"), Path("a.ipynb"), {}, "local/hopper/medium-v0")
    with pytest.raises(ValueError, match="pretrain_dir"):
        Run("finetune", "x", Path("/x"), Path("a.ipynb"), {}, "local/hopper/medium-v0")
