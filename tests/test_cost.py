"""What a sweep will cost before it runs (sftlib.sweeps.cost): the work counted from the plan
by hand, the wall time on N workers, the printed estimate with its method, and the sweep's
summary of estimate against actual. Rates are given, so every number here is exact."""

from __future__ import annotations

import json

import nbformat
import pytest
import yaml

from sftlib.cli import main
from sftlib.sweeps import cost
from sftlib.sweeps.plan import plan
from sftlib.sweeps.rates import ANY, Rates, shape_key
from sftlib.sweeps.study import StudyParams
from sftlib.sweeps.sweep import run_sweep

from conftest import PENDULUM_ID

UPDATE, ACT, ENV = 1e-3, 2e-4, 5e-5
RATES = Rates(update_s={ANY: UPDATE}, act_s={ANY: ACT}, env_step_s={ANY: ENV})
EPISODE = 200


def study(**kw) -> StudyParams:
    values = dict(
        study="c",
        datasets=[PENDULUM_ID],
        algos=["iql"],
        variants=["direct", "sft"],
        seeds=[0, 1],
        pretrain={"offline_steps": 1_000, "eval_every": 500, "eval_episodes": 2},
        finetune={"online_steps": 400, "eval_every": 200, "eval_episodes": 1, "fqe_every": 2},
    )
    return StudyParams(**{**values, **kw})


def costs(runs, rates=RATES):
    shapes = cost.shapes(runs, {PENDULUM_ID: "Pendulum-v1"})
    return {
        run.name.split("/")[3]: cost.run_cost(run, shapes[run.name], rates, EPISODE) for run in runs
    }


def complete(run) -> None:
    """Mark ``run`` complete: a summary in each of its seeds' directories."""
    for directory in run.dirs:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "summary.json").write_text("{}")


def test_the_work_of_each_run_is_counted_from_its_parameters(tmp_path):
    by_variant = costs(plan(study(), tmp_path))
    pre, direct, sft = by_variant["pretrain"], by_variant["direct"], by_variant["sft"]
    # Pretraining, 2 seeds in one process: 1,000 stacked updates; evaluations at 0, 500, 1,000
    # of 2 episodes of 200 steps per seed, all 4 episodes at once (one forward a step).
    assert (pre.seeds, pre.updates, pre.fqe_updates, pre.env_steps) == (2, 2_000, 0, 0)
    assert pre.eval_steps == 3 * 2 * EPISODE * 2
    assert pre.seconds == pytest.approx(
        1_000 * UPDATE + 3 * EPISODE * (2 * 2 * ENV + ACT) + cost.NOTEBOOK_START_S
    )
    # direct: the learner alone, one batched forward a step; one evaluation of the learner.
    assert (direct.updates, direct.fqe_updates, direct.env_steps) == (800, 0, 800)
    assert direct.eval_steps == 3 * 1 * EPISODE * 2
    assert direct.seconds == pytest.approx(
        400 * (UPDATE + 2 * ENV + ACT) + 3 * EPISODE * (2 * ENV + ACT) + cost.NOTEBOOK_START_S
    )
    # sft: the anchors' forwards (each for both seeds), an FQE step every 2 steps, the
    # executed policy evaluated beside the learner.
    assert (sft.updates, sft.fqe_updates, sft.env_steps) == (800, 400, 800)
    assert sft.eval_steps == 2 * direct.eval_steps
    forwards = cost.ANCHOR_FORWARDS
    assert sft.seconds == pytest.approx(
        400 * (UPDATE + 2 * ENV + forwards * ACT)
        + 200 * UPDATE
        + 3 * EPISODE * (2 * 2 * ENV + (1 + cost.ANCHOR_FORWARDS) * ACT)
        + cost.NOTEBOOK_START_S
    )


def test_each_shape_has_its_own_rate(tmp_path):
    runs = plan(study(algos=["iql", "td3bc"], variants=["direct"]), tmp_path, seeds_per_process=1)
    shapes = cost.shapes(runs, {PENDULUM_ID: "Pendulum-v1"})
    keys = sorted({shape_key(shape) for shape in shapes.values()})
    assert keys == [
        "iql 256-256 b256 x1 Pendulum-v1 cpu",
        "td3bc 256-256 b256 x1 Pendulum-v1 cpu",
    ]
    rates = Rates({keys[0]: 1.0, keys[1]: 2.0}, {ANY: 0.0}, {ANY: 0.0})
    seconds = {
        run.name: cost.run_cost(run, shapes[run.name], rates, EPISODE).seconds for run in runs
    }
    iql_pre = next(r for r in runs if r.kind == "pretrain" and "/iql/" in r.name)
    td3bc_pre = next(r for r in runs if r.kind == "pretrain" and "/td3bc/" in r.name)
    assert seconds[iql_pre.name] == pytest.approx(1_000 * 1.0 + cost.NOTEBOOK_START_S)
    assert seconds[td3bc_pre.name] == pytest.approx(1_000 * 2.0 + cost.NOTEBOOK_START_S)
    with pytest.raises(KeyError, match="no rate for"):
        cost.run_cost(runs[0], shapes[runs[0].name], Rates(), EPISODE)


def test_wall_time_places_runs_on_workers_after_their_pretraining(tmp_path):
    runs = plan(study(algos=["iql", "td3bc"], variants=["direct", "sft"], seeds=[0]), tmp_path)
    assert [r.kind for r in runs] == ["pretrain"] * 2 + ["finetune"] * 4
    seconds = {run.name: 10.0 if run.kind == "pretrain" else 5.0 for run in runs}
    assert cost.wall_seconds(runs, seconds, 1) == 40.0
    assert cost.wall_seconds(runs, seconds, 2) == 20.0
    # A third worker waits for a pretraining run to end; the fourth fine-tuning run follows.
    assert cost.wall_seconds(runs, seconds, 3) == 20.0
    assert cost.wall_seconds(runs, seconds, 4) == 15.0
    # A complete pretraining run (not among those to run) holds nothing up.
    only_ft = {name: s for name, s in seconds.items() if "/pretrain/" not in name}
    assert cost.wall_seconds(runs, only_ft, 4) == 5.0
    with pytest.raises(ValueError, match="workers"):
        cost.wall_seconds(runs, seconds, 0)


def test_the_estimate_states_its_totals_and_method(tmp_path):
    runs = plan(study(), tmp_path)
    estimate = cost.estimate(runs, RATES, workers=2)
    by_variant = costs(runs)
    assert estimate.process_seconds == pytest.approx(sum(c.seconds for c in by_variant.values()))
    assert estimate.total_updates == 2_000 + 800 + 800 + 400
    text = cost.describe(estimate)
    assert "cost of the plan: 4,000 gradient updates" in text
    assert "still to run: 3 notebook runs (6 seed runs)" in text
    assert "CPU-hours" in text and "with 2 worker(s)" in text
    assert "method: rates given" in text and "an FQE step counted as one update" in text
    # Complete runs cost nothing more; the plan's totals stay.
    complete(runs[0])
    later = cost.estimate(runs, RATES, workers=2)
    assert [c.name for c in later.runs] == [r.name for r in runs[1:]]
    assert later.total_updates == estimate.total_updates
    assert cost.CostEstimate.from_json(json.loads(json.dumps(later.to_json()))) == later


def test_a_resumed_plan_needs_rates_only_for_the_runs_still_to_run(tmp_path):
    # What a resumed sweep measures: the shapes of its incomplete runs. Its complete runs,
    # of another shape here (the IQL half done, the TD3+BC half to run), are counted in the
    # plan's totals without a rate.
    runs = plan(study(algos=["iql", "td3bc"]), tmp_path)
    for run in runs:
        if "/iql/" in str(run.dirs[0]):
            complete(run)
    shapes = cost.shapes(runs, {PENDULUM_ID: "Pendulum-v1"})
    todo = {shape_key(shapes[run.name]) for run in runs if not run.complete}
    assert len(todo) == 1 and "td3bc" in next(iter(todo))
    rates = Rates(dict.fromkeys(todo, UPDATE), dict.fromkeys(todo, ACT), {ANY: ENV})
    resumed = cost.estimate(runs, rates, workers=1)
    fresh = cost.estimate(plan(study(algos=["iql", "td3bc"]), tmp_path / "fresh"), RATES, 1)
    assert [c.name for c in resumed.runs] == [r.name for r in runs if not r.complete]
    assert resumed.total_updates == fresh.total_updates
    assert resumed.process_seconds == pytest.approx(
        sum(c.seconds for c in fresh.runs if "/td3bc/" in c.name)
    )


def test_gpu_runs_are_counted_in_gpu_hours(tmp_path):
    runs = plan(study(pretrain={"offline_steps": 100, "device": "cuda"}), tmp_path)
    shapes = cost.shapes(runs, {PENDULUM_ID: "Pendulum-v1"})
    assert {s.device for n, s in shapes.items() if "/pretrain/" in n} == {"cuda"}
    gpu = Rates(RATES.update_s, RATES.act_s, RATES.env_step_s, device="cuda")
    assert "GPU-hours" in cost.describe(cost.estimate(runs, gpu, workers=1))


def test_rates_are_measured_for_every_shape_and_environment(pendulum_dataset, tmp_path):
    runs = plan(
        study(algos=["iql", "td3bc"], pretrain={"offline_steps": 10, "hidden": [8, 8]}), tmp_path
    )
    rates = cost.measure_rates(runs, seconds_per_rate=0.01)
    assert sorted(rates.update_s) == [
        "iql 8-8 b256 x2 Pendulum-v1 cpu",
        "td3bc 8-8 b256 x2 Pendulum-v1 cpu",
    ]
    assert sorted(rates.act_s) == sorted(rates.update_s)
    assert list(rates.env_step_s) == ["Pendulum-v1"]
    assert all(
        v > 0 for table in (rates.update_s, rates.act_s, rates.env_step_s) for v in table.values()
    )
    assert rates.source.startswith("measured on this machine in ")
    # The dataset in the store gives the episode length of its evaluations.
    assert cost.environments(runs) == ({PENDULUM_ID: "Pendulum-v1"}, {PENDULUM_ID: 200})


def test_environments_are_inferred_from_dataset_ids():
    assert cost.env_for_dataset("mujoco/halfcheetah/medium-v0") == ("HalfCheetah-v5", None)
    assert cost.env_for_dataset("local/walker2d/never-made-v0")[0] == "Walker2d-v5"
    assert cost.env_for_dataset("D4RL/door/human-v2") == ("?", None)
    assert cost.episode_steps("Hopper-v5", None) == 1_000
    assert cost.episode_steps("Hopper-v5", 206) == 206
    assert cost.episode_steps("?", None) == cost.DEFAULT_EPISODE_STEPS


def test_dry_run_prints_the_estimate_and_touches_nothing(pendulum_dataset, tmp_path, capsys):
    path = tmp_path / "tiny.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "study": "tiny",
                "datasets": [PENDULUM_ID],
                "algos": ["iql"],
                "variants": ["direct"],
                "seeds": [0],
                "pretrain": {"offline_steps": 10, "hidden": [8, 8]},
                "finetune": {"online_steps": 10},
            }
        )
    )
    results = tmp_path / "results"
    assert main(["sweep", str(path), "--dry-run", "--no-base", "--results", str(results)]) == 0
    out = capsys.readouterr().out
    assert "2 runs (1 pretraining, 1 fine-tuning)" in out
    assert "cost of the plan: 20 gradient updates" in out
    assert "wall time" in out and "method: rates measured on this machine" in out
    assert not results.exists()


def _notebook(path, body):
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell('out_dir = ""\nseed = 0')
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, path)
    return path


def test_the_sweep_summary_shows_estimate_against_actual(tmp_path, capsys):
    write = "import pathlib\npathlib.Path(out_dir, 'summary.json').write_text('{}')"
    notebooks = {
        "pretrain_notebook": _notebook(tmp_path / "01.ipynb", write),
        "finetune_notebook": _notebook(tmp_path / "02.ipynb", write),
    }
    sp = study(variants=["direct"], seeds=[0])
    runs = plan(sp, tmp_path / "results", **notebooks)
    estimate = cost.estimate(runs, RATES, workers=1)
    report = run_sweep(
        sp,
        tmp_path / "results",
        scheduler="inprocess",
        ensure_datasets=False,
        progress=False,
        estimate=estimate,
        **notebooks,
    )
    assert [r.status for r in report.results] == ["done", "done"]
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.startswith("cost of the 2 runs"))
    estimated = sum(c.seconds for c in estimate.runs)
    assert f"estimated {estimated / 3600:.2f} CPU-hours" in line
    assert f"actual {sum(r.seconds for r in report.done) / 3600:.2f}" in line
    assert "with 1 worker(s), actual " in line
    recorded = json.loads((tmp_path / "results" / "c" / "sweep.json").read_text())
    assert cost.CostEstimate.from_json(recorded["estimate"]) == estimate
    assert set(recorded["actual"]["process_seconds"]) == {r.name for r in runs}
    assert recorded["actual"]["wall_seconds"] == pytest.approx(report.wall_seconds)
