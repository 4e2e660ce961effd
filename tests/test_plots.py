"""Tests of sftlib.plots: score matrices, rliable aggregates, stability tables and figures."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PathCollection

from sftlib import plots, results
from sftlib.synthetic import write_synthetic_study

REPS = 200  # bootstrap resamples: enough to test intervals, fast on a busy CPU

# Hand-made study: 2 tasks (datasets a, b with IQL) x 2 variants x 3 seeds, every number chosen.
# Per (dataset, variant): one value per seed 0, 1, 2.
HAND = {
    ("d/a-v0", "sft"): dict(
        dip=[1.0, 2.0, 6.0],
        steps_to_recover=[1000, None, 3000],
        regret=[20.0, 22.0, 24.0],
        auc=[80.0, 78.0, 76.0],
        score_final=[90.0, 95.0, 110.0],
    ),
    ("d/b-v0", "sft"): dict(
        dip=[0.0, 0.0, 3.0],
        steps_to_recover=[0, 0, 2000],
        regret=[30.0, 30.0, 30.0],
        auc=[70.0, 70.0, 70.0],
        score_final=[70.0, 75.0, 80.0],
    ),
    ("d/a-v0", "direct"): dict(
        dip=[10.0, 12.0, 14.0],
        steps_to_recover=[None, None, 4000],
        regret=[40.0, 41.0, 42.0],
        auc=[60.0, 59.0, 58.0],
        score_final=[60.0, 100.0, 70.0],
    ),
    ("d/b-v0", "direct"): dict(
        dip=[8.0, 9.0, 10.0],
        steps_to_recover=[3000, 3000, 3000],
        regret=[45.0, 45.0, 45.0],
        auc=[55.0, 55.0, 55.0],
        score_final=[50.0, 55.0, 60.0],
    ),
}
ONLINE_STEPS = 5000


def _write_hand_study(study_dir: Path) -> Path:
    for (dataset_id, variant), values in HAND.items():
        for seed in range(3):
            run_dir = study_dir / dataset_id.replace("/", "-") / "iql" / variant / f"seed={seed}"
            run_dir.mkdir(parents=True)
            pd.DataFrame(
                {
                    "step": [0, 2500, 5000],
                    "executed_score": [50.0, 40.0 + seed, 60.0],
                    "learner_score": [50.0, 30.0, 55.0],
                }
            ).to_csv(run_dir / "eval.csv", index=False)
            events = [(1000 + 100 * seed, "switch", "")] if variant == "sft" else []
            pd.DataFrame(events, columns=["step", "event", "detail"]).to_csv(
                run_dir / "events.csv", index=False
            )
            summary = {k: v[seed] for k, v in values.items()}
            summary.update(
                score_offline=50.0,
                score_max=max(summary["score_final"], 60.0),
                switch_step=None,
                n_resets=0,
                wall_time_s=1.0,
                online_steps=ONLINE_STEPS,
                variant=variant,
                algo="iql",
                dataset_id=dataset_id,
                seed=seed,
            )
            (run_dir / "summary.json").write_text(json.dumps(summary))
    return study_dir


@pytest.fixture(scope="module")
def hand(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    return results.load_summaries(_write_hand_study(tmp_path_factory.mktemp("hand") / "hand"))


@pytest.fixture(scope="module")
def synthetic_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_study(
        tmp_path_factory.mktemp("syn"),
        study="syn",
        algos=("iql",),
        variants=("direct", "sft", "sft-noswitch"),
        seeds=(0, 1, 2, 3),
        online_steps=40_000,
        eval_every=5_000,
        reset_every=20_000,
    )


@pytest.fixture(scope="module")
def synthetic(synthetic_dir: Path) -> pd.DataFrame:
    return results.load_summaries(synthetic_dir)


# ---------------------------------------------------------------- score matrices


def test_score_matrix_is_runs_by_tasks(hand: pd.DataFrame) -> None:
    matrix = plots.score_matrix(hand, "score_final", "sft")
    np.testing.assert_array_equal(matrix, [[90, 70], [95, 75], [110, 80]])


def test_score_matrix_censors_never_recovered_at_the_budget(hand: pd.DataFrame) -> None:
    matrix = plots.score_matrix(hand, "steps_to_recover", "direct")
    np.testing.assert_array_equal(matrix[:, 0], [ONLINE_STEPS, ONLINE_STEPS, 4000])


def test_score_matrix_keeps_seeds_common_to_all_tasks(hand: pd.DataFrame) -> None:
    ragged = hand.drop(hand.index[(hand["variant"] == "sft") & (hand["seed"] == 1)][:1])
    with pytest.warns(UserWarning, match="seeds"):
        matrix = plots.score_matrix(ragged, "score_final", "sft")
    np.testing.assert_array_equal(matrix, [[90, 70], [110, 80]])


def test_tasks_missing_for_a_variant_are_dropped_with_a_warning(hand: pd.DataFrame) -> None:
    extra = hand[(hand["variant"] == "sft") & (hand["dataset"] == "d-a-v0")].assign(
        dataset="d-c-v0"
    )
    with pytest.warns(UserWarning, match="d-c-v0"):
        agg = plots.aggregate(pd.concat([hand, extra]), reps=REPS)
    assert agg.attrs["tasks"] == [("d-a-v0", "iql"), ("d-b-v0", "iql")]


# ---------------------------------------------------------------- aggregates


def test_aggregate_point_estimates_hand_computed(hand: pd.DataFrame) -> None:
    agg = plots.aggregate(hand, "score_final", reps=REPS).set_index(["variant", "aggregate"])
    # sft final scores: task a [90, 95, 110], task b [70, 75, 80]
    assert agg.loc[("sft", "Mean"), "estimate"] == pytest.approx(520 / 6)
    # median of the task means 98.33 and 75
    assert agg.loc[("sft", "Median"), "estimate"] == pytest.approx((295 / 3 + 75) / 2)
    # 25% trimmed mean of the 6 runs: drop 70 and 110
    assert agg.loc[("sft", "IQM"), "estimate"] == pytest.approx((75 + 80 + 90 + 95) / 4)
    # scores are on 0-100: 110 is clipped at 100, so the gap is 100 - 85
    assert agg.loc[("sft", "Optimality Gap"), "estimate"] == pytest.approx(15.0)


def test_aggregate_intervals_contain_estimates(synthetic: pd.DataFrame) -> None:
    for metric in ("score_final", "dip", "steps_to_recover"):
        agg = plots.aggregate(synthetic, metric, reps=REPS)
        assert len(agg) == 3 * (4 if metric == "score_final" else 3)
        assert (agg["ci_low"] <= agg["estimate"]).all()
        assert (agg["estimate"] <= agg["ci_high"]).all()
        assert (agg["ci_low"] < agg["ci_high"]).any()  # not degenerate


def test_aggregate_is_reproducible_and_restores_global_rng(synthetic: pd.DataFrame) -> None:
    np.random.seed(123)
    expected_next = np.random.rand()
    np.random.seed(123)
    a = plots.aggregate(synthetic, reps=REPS, seed=7)
    assert np.random.rand() == expected_next
    b = plots.aggregate(synthetic, reps=REPS, seed=7)
    c = plots.aggregate(synthetic, reps=REPS, seed=8)
    pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(a["ci_low"], c["ci_low"])


def test_optimality_gap_only_for_scores(hand: pd.DataFrame) -> None:
    assert "Optimality Gap" not in set(plots.aggregate(hand, "dip", reps=REPS)["aggregate"])
    with pytest.raises(ValueError, match="optimality gap"):
        plots.aggregate(hand, "dip", aggregates=["Optimality Gap"], reps=REPS)


def test_probability_of_improvement_hand_computed(hand: pd.DataFrame) -> None:
    poi = plots.probability_of_improvement(hand, "sft", ["direct"], reps=REPS).iloc[0]
    # task a: sft [90, 95, 110] beats direct [60, 100, 70] in 7 of 9 pairs; task b: 9 of 9
    assert poi["probability"] == pytest.approx((7 / 9 + 1) / 2)
    assert poi["ci_low"] <= poi["probability"] <= poi["ci_high"]


def test_improvement_probability_equals_rliable() -> None:
    from rliable import metrics as rly_metrics

    rng = np.random.default_rng(0)
    for shape_x, shape_y in [((5, 3), (5, 3)), ((4, 2), (7, 2))]:
        x = rng.integers(0, 6, shape_x).astype(float)  # small integers: many ties
        y = rng.integers(0, 6, shape_y).astype(float)
        assert plots.improvement_probability(x, y) == pytest.approx(
            rly_metrics.probability_of_improvement(x, y)
        )
    assert plots.improvement_probability(x, x) == pytest.approx(0.5)


def test_probability_of_improvement_lower_is_better_for_dip(hand: pd.DataFrame) -> None:
    # every sft dip is smaller than every direct dip on both tasks
    sft = plots.probability_of_improvement(hand, "sft", ["direct"], metric="dip", reps=REPS)
    direct = plots.probability_of_improvement(hand, "direct", ["sft"], metric="dip", reps=REPS)
    assert sft["probability"].iloc[0] == pytest.approx(1.0)
    assert direct["probability"].iloc[0] == pytest.approx(0.0)


def test_score_distribution_equals_rliable() -> None:
    from rliable import library as rly

    scores = np.random.default_rng(1).normal(50, 20, (5, 3))
    taus = np.linspace(0, 100, 11)
    np.testing.assert_allclose(
        plots._score_distribution(scores, taus), rly.score_distributions(scores, taus)
    )


def test_performance_profiles_hand_computed(hand: pd.DataFrame) -> None:
    profiles = plots.performance_profiles(hand, taus=[0.0, 85.0, 200.0], reps=REPS)
    sft = profiles[profiles["variant"] == "sft"].set_index("tau")
    # sft final scores 90, 95, 110, 70, 75, 80: all > 0, half > 85, none > 200
    assert sft["fraction"].tolist() == pytest.approx([1.0, 0.5, 0.0])
    assert (profiles["ci_low"] <= profiles["fraction"] + 1e-12).all()
    assert (profiles["fraction"] <= profiles["ci_high"] + 1e-12).all()


# ---------------------------------------------------------------- stability table


def test_stability_table_hand_computed(hand: pd.DataFrame) -> None:
    table = plots.stability_table(hand).set_index(["dataset", "algo", "variant"])
    row = table.loc[("d-a-v0", "iql", "sft")]
    assert row["n_seeds"] == 3
    assert row["dip_mean"] == pytest.approx(3.0)
    assert row["dip_std"] == pytest.approx(math.sqrt(7.0))  # sample std of 1, 2, 6
    assert row["steps_to_recover_mean"] == pytest.approx(
        2000.0
    )  # the seed that never recovered is left out
    assert row["steps_to_recover_std"] == pytest.approx(1000.0 * math.sqrt(2.0))
    assert row["n_recovered"] == 2
    assert row["score_final_mean"] == pytest.approx(295 / 3)
    assert row["regret_std"] == pytest.approx(2.0)
    assert table.loc[("d-a-v0", "iql", "direct"), "n_recovered"] == 1
    assert table.index.get_level_values("variant").tolist() == ["sft", "direct"] * 2


def test_stability_table_matches_summary_files(
    synthetic_dir: Path, synthetic: pd.DataFrame
) -> None:
    """Mean and std recomputed with the statistics module straight from the summary.json files."""
    table = plots.stability_table(synthetic).set_index(["dataset", "algo", "variant"])
    groups: dict[tuple, list[dict]] = {}
    for path in synthetic_dir.glob("*/*/*/seed=*/summary.json"):
        dataset, algo, variant = path.parts[-5:-2]
        if variant != "pretrain":
            groups.setdefault((dataset, algo, variant), []).append(json.loads(path.read_text()))
    assert len(groups) == len(table)
    for key, runs in groups.items():
        for metric in ("dip", "regret", "auc", "score_final", "steps_to_recover"):
            values = [r[metric] for r in runs if r[metric] is not None]
            assert table.loc[key, f"{metric}_mean"] == pytest.approx(statistics.mean(values))
            assert table.loc[key, f"{metric}_std"] == pytest.approx(statistics.stdev(values))


def test_write_stability_table(hand: pd.DataFrame, synthetic: pd.DataFrame, tmp_path: Path) -> None:
    table = plots.stability_table(hand)
    csv_path, tex_path = plots.write_stability_table(table, tmp_path)
    back = pd.read_csv(csv_path)
    pd.testing.assert_frame_equal(back.drop(columns="synthetic"), table, check_dtype=False)
    assert not back["synthetic"].any()
    tex = tex_path.read_text()
    assert r"\begin{tabular}" in tex and r"\toprule" in tex
    assert r"$3.0 \pm 2.6$" in tex  # dip of sft on task a
    assert r"$2.0 \pm 1.4$ (2/3)" in tex  # steps to recover, in thousands
    assert "SYNTHETIC" not in tex

    _, syn_tex = plots.write_stability_table(plots.stability_table(synthetic), tmp_path / "syn")
    assert "SYNTHETIC" in syn_tex.read_text()
    assert pd.read_csv(tmp_path / "syn" / "stability_table.csv")["synthetic"].all()


# ---------------------------------------------------------------- computed conclusions


def test_describe_aggregates_names_the_better_variant(hand: pd.DataFrame) -> None:
    dip = plots.aggregate(hand, "dip", reps=REPS)
    text = plots.describe_aggregates(dip)
    assert "sft has the lowest IQM of dip" in text
    sft_iqm = dip.query("variant == 'sft' and aggregate == 'IQM'")["estimate"].iloc[0]
    assert f"{sft_iqm:.1f}" in text
    assert "SYNTHETIC" not in text
    final = plots.aggregate(hand, "score_final", reps=REPS)
    assert "sft has the highest IQM of score_final" in plots.describe_aggregates(final)


def test_describe_probability_reads_the_interval(hand: pd.DataFrame) -> None:
    poi = plots.probability_of_improvement(hand, "direct", ["sft"], metric="dip", reps=REPS)
    assert "sft tends to be better than direct" in plots.describe_probability(poi)


def test_concatenated_probabilities_stay_labelled_synthetic(synthetic: pd.DataFrame) -> None:
    poi = pd.concat(
        [
            plots.probability_of_improvement(synthetic, "sft", ["direct"], m, reps=REPS)
            for m in ("dip", "score_final")
        ]
    )
    text = plots.describe_probability(poi)
    assert text.startswith("[SYNTHETIC DATA")
    assert "P(sft < direct on dip)" in text and "P(sft > direct on score_final)" in text


# ---------------------------------------------------------------- figures


def _assert_written(paths: list[Path]) -> None:
    png, pdf = paths
    assert png.suffix == ".png" and pdf.suffix == ".pdf"
    assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 5_000
    assert pdf.read_bytes()[:4] == b"%PDF" and pdf.stat().st_size > 1_000


def _title(fig: plt.Figure) -> str:
    return fig._suptitle.get_text() if fig._suptitle is not None else ""


def test_figures_are_written_and_labelled_synthetic(
    synthetic_dir: Path, synthetic: pd.DataFrame, tmp_path: Path
) -> None:
    curves, events = results.load_study(synthetic_dir), results.load_events(synthetic_dir)
    figures = {
        "aggregates": plots.plot_aggregates(plots.aggregate(synthetic, reps=REPS)),
        "profiles": plots.plot_performance_profiles(
            plots.performance_profiles(synthetic, reps=REPS)
        ),
        "poi": plots.plot_probability_of_improvement(
            plots.probability_of_improvement(synthetic, "sft", reps=REPS)
        ),
        "by_task": plots.plot_metric_by_task(synthetic, "dip"),
        "curves": plots.plot_learning_curves(curves, events, show_learner=True),
        "drops": plots.plot_reset_drops(results.reset_drops(curves, events)),
    }
    for name, fig in figures.items():
        assert "SYNTHETIC DATA" in _title(fig), name
        _assert_written(plots.save_figure(fig, tmp_path / "figures", name))
        plt.close(fig)


def test_write_paper_figures_writes_every_file(tmp_path: Path) -> None:
    study_dir = _write_hand_study(tmp_path / "hand")
    written = plots.write_paper_figures(study_dir, reps=REPS)
    assert set(written) == {
        "aggregates",
        "performance_profiles",
        "probability_of_improvement",
        "learning_curves",
        "learning_curves_learner",
        "stability_table",
    }
    for name, paths in written.items():
        assert all(p.parent == study_dir / "figures" for p in paths)
        if name != "stability_table":
            _assert_written(paths)
    assert [p.suffix for p in written["stability_table"]] == [".csv", ".tex"]
    # the figures folder is not mistaken for a dataset when the study is loaded again
    assert set(results.load_summaries(study_dir)["dataset"]) == {"d-a-v0", "d-b-v0"}


def test_figures_of_real_data_carry_no_synthetic_label(hand: pd.DataFrame) -> None:
    fig = plots.plot_aggregates(plots.aggregate(hand, reps=REPS), title="hand")
    assert _title(fig) == "hand"
    plt.close(fig)


def test_learning_curves_panels_and_switch_markers(synthetic_dir: Path) -> None:
    curves, events = results.load_study(synthetic_dir), results.load_events(synthetic_dir)
    variants = ["sft", "direct"]
    fig = plots.plot_learning_curves(curves, events, variants=variants, ncols=3)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == curves.groupby(["dataset", "algo"]).ngroups == 2
    n_markers = sum(
        len(c.get_offsets())
        for ax in visible
        for c in ax.collections
        if isinstance(c, PathCollection)
    )
    shown = events[events["variant"].isin(variants) & (events["event"] == "switch")]
    assert n_markers == len(shown) > 0
    assert all(ax.get_xlabel() == plots.STEP_LABEL for ax in visible)
    assert all(ax.get_ylabel() == plots.SCORE_LABEL for ax in visible)
    plt.close(fig)


def test_variant_colours_are_stable_across_subsets() -> None:
    assert plots.variant_color("sft") == plots.VARIANT_COLORS["sft"]
    assert len(set(plots.VARIANT_COLORS.values())) == len(plots.VARIANT_COLORS)
    assert plots.ordered_variants(["direct", "zzz", "sft"]) == ["sft", "direct", "zzz"]


def test_figures_do_not_switch_off_interactive_mode() -> None:
    """Jupyter's inline backend turns interactive mode on while the first figure is made;
    restoring every rcParam afterwards (plt.rc_context) hid every later figure."""
    was = plt.isinteractive()
    try:
        plt.ioff()
        with plots._style():
            plt.ion()  # what the inline backend does on the first figure
            assert plt.rcParams["font.size"] == plots.STYLE["font.size"]
        assert plt.isinteractive()
    finally:
        plt.interactive(was)
