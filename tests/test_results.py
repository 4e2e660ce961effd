"""Tests of sftlib.analysis.results (loading a study) and sftlib.analysis.synthetic (the fake study writer)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sftlib import layout
from sftlib.analysis import results, synthetic
from sftlib.analysis.synthetic import write_synthetic_study

DATASETS = ("local/hopper-medium-v0", "mujoco/walker2d/medium-v0")
VARIANTS = ("direct", "sft", "sft-noswitch")
SEEDS = (0, 1, 2)
ONLINE_STEPS, EVAL_EVERY = 20_000, 5_000
N_EVALS = ONLINE_STEPS // EVAL_EVERY + 1


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_study(
        tmp_path_factory.mktemp("results"),
        study="unit",
        datasets=DATASETS,
        algos=("iql",),
        variants=VARIANTS,
        seeds=SEEDS,
        online_steps=ONLINE_STEPS,
        eval_every=EVAL_EVERY,
        reset_every=10_000,
    )


def run_dirs(study_dir: Path) -> list[Path]:
    """Fine-tuning run folders, found by globbing (independently of the loader)."""
    return sorted(
        p.parent for p in study_dir.glob("*/*/*/seed=*/summary.json") if "pretrain" not in p.parts
    )


def write_run(
    study_dir: Path,
    dataset_id: str,
    algo: str,
    variant: str,
    seed: int,
    executed: list[float],
    learner: list[float] | None = None,
    events: list[tuple[int, str, str]] = (),
    eval_every: int = 1000,
    **summary: object,
) -> Path:
    """Hand-made run folder in the contract layout."""
    run_dir = study_dir / dataset_id.replace("/", "-") / algo / variant / f"seed={seed}"
    run_dir.mkdir(parents=True)
    steps = [i * eval_every for i in range(len(executed))]
    learner = executed if learner is None else learner
    pd.DataFrame(
        {
            "step": steps,
            "executed_score": executed,
            "learner_score": learner,
            "executed_return": [10 * s for s in executed],
            "learner_return": [10 * s for s in learner],
        }
    ).to_csv(run_dir / "eval.csv", index=False)
    pd.DataFrame(list(events), columns=["step", "event", "detail"]).to_csv(
        run_dir / "events.csv", index=False
    )
    full = dict.fromkeys(layout.SUMMARY_KEYS, 0.0)
    full.update(
        steps_to_recover=None,
        switch_step=None,
        online_steps=steps[-1],
        variant=variant,
        algo=algo,
        dataset_id=dataset_id,
        seed=seed,
    )
    full.update(summary)
    (run_dir / "summary.json").write_text(json.dumps(full))
    return run_dir


# ---------------------------------------------------------------- load_study


def test_load_study_has_one_row_per_run_and_eval(study_dir: Path) -> None:
    curves = results.load_study(study_dir)
    assert list(curves.columns) == [
        "study",
        "dataset",
        "algo",
        "variant",
        "seed",
        "step",
        "executed_score",
        "learner_score",
        "executed_return",
        "learner_return",
    ]
    n_runs = len(DATASETS) * len(VARIANTS) * len(SEEDS)
    assert len(curves) == n_runs * N_EVALS
    assert not curves.duplicated(["dataset", "algo", "variant", "seed", "step"]).any()
    assert set(curves["variant"]) == set(VARIANTS)  # the pretrain folders are not variants
    assert set(curves["dataset"]) == {"local-hopper-medium-v0", "mujoco-walker2d-medium-v0"}
    assert set(curves["study"]) == {"unit"}
    assert sorted(curves["step"].unique()) == list(range(0, ONLINE_STEPS + 1, EVAL_EVERY))
    assert curves.attrs["synthetic"] is True


def test_load_study_values_come_from_eval_csv(study_dir: Path) -> None:
    curves = results.load_study(study_dir)
    raw = pd.read_csv(study_dir / "mujoco-walker2d-medium-v0/iql/sft/seed=2/eval.csv")
    run = curves.query("dataset == 'mujoco-walker2d-medium-v0' and variant == 'sft' and seed == 2")
    np.testing.assert_allclose(run["executed_score"], raw["executed_score"])
    np.testing.assert_allclose(run["learner_score"], raw["learner_score"])


def test_not_synthetic_without_marker(tmp_path: Path) -> None:
    write_run(tmp_path / "real", "d/x-v0", "iql", "sft", 0, [50.0, 40.0, 60.0])
    assert results.load_study(tmp_path / "real").attrs["synthetic"] is False
    assert results.load_summaries(tmp_path / "real").attrs["synthetic"] is False


# ---------------------------------------------------------------- load_summaries


def test_load_summaries_one_row_per_run(study_dir: Path) -> None:
    summaries = results.load_summaries(study_dir)
    assert len(summaries) == len(run_dirs(study_dir)) == len(DATASETS) * len(VARIANTS) * len(SEEDS)
    assert list(summaries.columns[:5]) == ["study", "dataset", "algo", "variant", "seed"]
    assert set(layout.SUMMARY_KEYS) <= set(summaries.columns)
    assert not summaries.duplicated(["dataset", "algo", "variant", "seed"]).any()
    # null in JSON -> NaN; direct never switches, sft does
    assert summaries.loc[summaries["variant"] == "direct", "switch_step"].isna().all()
    assert summaries.loc[summaries["variant"] == "sft", "switch_step"].notna().all()
    assert summaries["dataset_id"].isin(DATASETS).all()


def test_synthetic_summaries_agree_with_their_eval_csv(study_dir: Path) -> None:
    """The spec's metrics, recomputed here from each eval.csv, match summary.json."""
    for run_dir in run_dirs(study_dir):
        summary = json.loads((run_dir / "summary.json").read_text())
        curve = pd.read_csv(run_dir / "eval.csv")
        scores, steps = curve["executed_score"].tolist(), curve["step"].tolist()
        online = scores[1:]
        assert summary["score_offline"] == pytest.approx(scores[0])
        assert summary["score_final"] == pytest.approx(scores[-1])
        assert summary["score_max"] == pytest.approx(max(online))
        assert summary["auc"] == pytest.approx(sum(online) / len(online))
        assert summary["regret"] == pytest.approx(sum(100 - s for s in online) / len(online))
        assert summary["dip"] == pytest.approx(max(0.0, scores[0] - min(online)))
        lowest = 1 + online.index(min(online))
        recovered = [
            t for t, s in zip(steps[lowest:], scores[lowest:], strict=False) if s >= scores[0]
        ]
        expected = 0 if summary["dip"] == 0 else (recovered[0] if recovered else None)
        assert summary["steps_to_recover"] == expected
        events = pd.read_csv(run_dir / "events.csv")
        assert summary["n_resets"] == (events["event"] == "reset").sum()


def test_summary_disagreeing_with_its_path_is_an_error(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path / "s", "d/x-v0", "iql", "sft", 0, [50.0, 60.0])
    summary = json.loads((run_dir / "summary.json").read_text())
    summary["variant"] = "direct"
    (run_dir / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(ValueError, match="disagrees with its path"):
        results.load_summaries(tmp_path / "s")


def test_grid_point_folders_are_variants(tmp_path: Path) -> None:
    """The sweep writes grid points as <variant>+<key>=<value>; summary.json says <variant>."""
    for scope in ("last", "full"):
        run_dir = write_run(tmp_path / "s", "d/x-v0", "iql", "sft", 0, [50.0, 60.0])
        run_dir.parent.rename(run_dir.parent.with_name(f"sft+reset_scope={scope}"))
    summaries = results.load_summaries(tmp_path / "s")
    assert sorted(summaries["variant"]) == ["sft+reset_scope=full", "sft+reset_scope=last"]


def test_incomplete_runs_are_skipped_with_a_warning(tmp_path: Path) -> None:
    write_run(tmp_path / "s", "d/x-v0", "iql", "sft", 0, [50.0, 60.0])
    unfinished = write_run(tmp_path / "s", "d/x-v0", "iql", "sft", 1, [50.0, 60.0])
    (unfinished / "summary.json").unlink()
    with pytest.warns(UserWarning, match="1 incomplete run"):
        summaries = results.load_summaries(tmp_path / "s")
    assert summaries["seed"].tolist() == [0]
    with pytest.warns(UserWarning):
        assert results.load_study(tmp_path / "s")["seed"].unique().tolist() == [0]


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "loader", [results.load_study, results.load_summaries, results.load_events]
)
def test_missing_study_dir_names_path_and_remedy(tmp_path: Path, loader) -> None:
    missing = tmp_path / "results" / "no_such_study"
    with pytest.raises(FileNotFoundError) as info:
        loader(missing)
    message = str(info.value)
    assert str(missing) in message
    assert "make demo" in message and "sweep" in message


def test_study_without_complete_runs_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "empty" / "d-x-v0" / "iql" / "sft" / "seed=0").mkdir(parents=True)
    with pytest.warns(UserWarning), pytest.raises(FileNotFoundError, match="No complete"):
        results.load_study(tmp_path / "empty")


def test_complete_run_without_eval_csv_is_an_error(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path / "s", "d/x-v0", "iql", "sft", 0, [50.0, 60.0])
    (run_dir / "eval.csv").unlink()
    with pytest.raises(FileNotFoundError, match="eval.csv"):
        results.load_study(tmp_path / "s")


# ---------------------------------------------------------------- events


def test_load_events_matches_event_files(study_dir: Path) -> None:
    events = results.load_events(study_dir)
    assert list(events.columns) == [*results.RUN_KEYS, "step", "event", "detail"]
    expected = sum(len(pd.read_csv(d / "events.csv")) for d in run_dirs(study_dir))
    assert len(events) == expected > 0
    assert set(events["event"]) <= set(layout.EVENT_TYPES)
    assert "direct" not in set(events["variant"])  # header-only files add no rows
    # an sft run's events, one by one
    raw = pd.read_csv(study_dir / "local-hopper-medium-v0/iql/sft/seed=1/events.csv")
    run = events.query("dataset == 'local-hopper-medium-v0' and variant == 'sft' and seed == 1")
    assert run["step"].tolist() == raw["step"].tolist()
    assert run["event"].tolist() == raw["event"].tolist()


def test_load_events_of_a_study_without_events_is_empty(tmp_path: Path) -> None:
    write_run(tmp_path / "s", "d/x-v0", "iql", "direct", 0, [50.0, 60.0])
    events = results.load_events(tmp_path / "s")
    assert events.empty
    assert list(events.columns) == [*results.RUN_KEYS, "step", "event", "detail"]


# ---------------------------------------------------------------- pretrain


def test_load_pretrain(study_dir: Path) -> None:
    summaries = results.load_pretrain_summaries(study_dir)
    assert len(summaries) == len(DATASETS) * len(SEEDS)
    assert {"score_final", "wall_time_s", "offline_steps"} <= set(summaries.columns)
    curves = results.load_pretrain(study_dir)
    n_evals = len(pd.read_csv(study_dir / "local-hopper-medium-v0/iql/pretrain/seed=0/eval.csv"))
    assert len(curves) == len(DATASETS) * len(SEEDS) * n_evals
    assert {"step", "score", "return"} <= set(curves.columns)


# ---------------------------------------------------------------- reset drops


def test_reset_drops_hand_computed(tmp_path: Path) -> None:
    # evals at 0, 1000, ..., 5000; resets at 2000 and 4000
    write_run(
        tmp_path / "s",
        "d/x-v0",
        "iql",
        "sft",
        0,
        executed=[50.0, 60.0, 62.0, 58.0, 65.0, 70.0],
        learner=[50.0, 60.0, 62.0, 40.0, 66.0, 50.0],
        events=[(2000, "reset", ""), (2500, "switch", ""), (4000, "reset", "")],
    )
    curves, events = results.load_study(tmp_path / "s"), results.load_events(tmp_path / "s")
    drops = results.reset_drops(curves, events)
    assert drops["reset_step"].tolist() == [2000, 4000]
    # reset at 2000: pre = 62 (step 2000), window = steps 3000, 4000
    # reset at 4000: pre = learner 66 / executed 65 (step 4000), window = step 5000
    assert drops["learner_drop"].tolist() == pytest.approx([22.0, 16.0])
    assert drops["executed_drop"].tolist() == pytest.approx([4.0, 0.0])


# ---------------------------------------------------------------- resolve_study


def test_resolve_study_returns_existing_dir(study_dir: Path) -> None:
    assert synthetic.resolve_study(study_dir.parent, "unit") == study_dir


def test_resolve_study_falls_back_to_synthetic_loudly(tmp_path: Path, capsys) -> None:
    path = synthetic.resolve_study(
        tmp_path, "ablation_reset", synthetic_variants=["sft", "sft-noreset"]
    )
    assert "SYNTHETIC DATA" in capsys.readouterr().out
    assert not (tmp_path / "ablation_reset").exists()  # nothing fake lands in results/
    assert results.is_synthetic(path) and path.name == "ablation_reset"
    summaries = results.load_summaries(path)
    assert summaries.attrs["synthetic"] is True
    assert set(summaries["variant"]) == {"sft", "sft-noreset"}


def test_resolve_study_without_fallback_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="make demo"):
        synthetic.resolve_study(tmp_path, "quick", synthetic_fallback=False)


def test_synthetic_study_is_deterministic(tmp_path: Path) -> None:
    kwargs = dict(datasets=DATASETS[:1], algos=("iql",), variants=("sft",), seeds=(0, 1))
    a = results.load_study(write_synthetic_study(tmp_path / "a", **kwargs))
    b = results.load_study(write_synthetic_study(tmp_path / "b", **kwargs))
    c = results.load_study(write_synthetic_study(tmp_path / "c", rng_seed=1, **kwargs))
    cols = ["executed_score", "learner_score"]
    pd.testing.assert_frame_equal(a[cols], b[cols])
    assert not math.isclose(a["executed_score"].sum(), c["executed_score"].sum())
