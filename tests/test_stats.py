"""Tests of sftlib.analysis.stats: score matrices, stratified-bootstrap aggregates, performance
profiles, probability of improvement and the stability table, without figures."""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rliable import metrics as rly_metrics
from study_tables import ONLINE_STEPS, REPS, write_hand_study, write_small_synthetic_study

from sftlib.analysis import results, stats, tables
from sftlib.analysis.metric_table import STABILITY_METRICS


@pytest.fixture(scope="module")
def hand(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    return results.load_summaries(write_hand_study(tmp_path_factory.mktemp("hand") / "hand"))


@pytest.fixture(scope="module")
def synthetic_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_small_synthetic_study(tmp_path_factory.mktemp("syn"))


@pytest.fixture(scope="module")
def synthetic(synthetic_dir: Path) -> pd.DataFrame:
    return results.load_summaries(synthetic_dir)


def test_statistics_import_and_run_without_matplotlib(tmp_path: Path) -> None:
    """rliable.library imports arch, which imports matplotlib: stats must not need either."""
    script = textwrap.dedent(
        f"""
        import sys
        from sftlib.analysis import report, results, stats, tables
        from sftlib.analysis.synthetic import write_synthetic_study

        study = write_synthetic_study({str(tmp_path)!r}, variants=("direct", "sft"), seeds=(0, 1))
        summaries = results.load_summaries(study)
        report.describe_aggregates(stats.aggregate(summaries, reps=20))
        report.describe_probability(stats.probability_of_improvement(summaries, reps=20))
        stats.performance_profiles(summaries, reps=20)
        report.write_stability_table(tables.stability_table(summaries), {str(tmp_path)!r})
        loaded = sorted(name for name in ("matplotlib", "seaborn") if name in sys.modules)
        assert not loaded, loaded
        """
    )
    completed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert completed.returncode == 0, completed.stderr


# ---------------------------------------------------------------- score matrices


def test_score_matrix_is_runs_by_tasks(hand: pd.DataFrame) -> None:
    matrix = stats.score_matrix(hand, "score_final", "sft")
    np.testing.assert_array_equal(matrix, [[90, 70], [95, 75], [110, 80]])


def test_score_matrix_censors_never_recovered_at_the_budget(hand: pd.DataFrame) -> None:
    matrix = stats.score_matrix(hand, "steps_to_recover", "direct")
    np.testing.assert_array_equal(matrix[:, 0], [ONLINE_STEPS, ONLINE_STEPS, 4000])


def test_score_matrix_keeps_seeds_common_to_all_tasks(hand: pd.DataFrame) -> None:
    ragged = hand.drop(hand.index[(hand["variant"] == "sft") & (hand["seed"] == 1)][:1])
    with pytest.warns(UserWarning, match="seeds"):
        matrix = stats.score_matrix(ragged, "score_final", "sft")
    np.testing.assert_array_equal(matrix, [[90, 70], [110, 80]])


def test_tasks_missing_for_a_variant_are_dropped_with_a_warning(hand: pd.DataFrame) -> None:
    extra = hand[(hand["variant"] == "sft") & (hand["dataset"] == "d-a-v0")].assign(
        dataset="d-c-v0"
    )
    with pytest.warns(UserWarning, match="d-c-v0"):
        aggregates = stats.aggregate(pd.concat([hand, extra]), reps=REPS)
    assert aggregates.attrs["tasks"] == [("d-a-v0", "iql"), ("d-b-v0", "iql")]


def test_runs_per_task_counts_complete_runs(hand: pd.DataFrame) -> None:
    one_less = (hand["variant"] == "sft") & (hand["dataset"] == "d-a-v0") & (hand["seed"] == 1)
    counts = stats.runs_per_task(hand[~one_less])
    assert list(counts.columns) == ["sft", "direct"]
    assert counts.loc[("d-a-v0", "iql"), "sft"] == 2
    assert counts.loc[("d-b-v0", "iql"), "direct"] == 3


# ---------------------------------------------------------------- stratified bootstrap


def test_bootstrap_draws_rliables_resamples(synthetic: pd.DataFrame) -> None:
    """Same intervals as rliable after np.random.seed(seed), without touching the global RNG."""
    from rliable import library as rly

    tasks = stats.tasks_of(synthetic)
    sft, direct = (stats.score_matrix(synthetic, "dip", v, tasks) for v in ("sft", "direct"))

    def aggregates_of(scores: np.ndarray) -> np.ndarray:
        return np.array([rly_metrics.aggregate_iqm(scores), rly_metrics.aggregate_mean(scores)])

    np.random.seed(5)
    expected_points, expected = rly.get_interval_estimates(
        {"sft": sft, "direct": direct}, aggregates_of, reps=REPS
    )
    np.random.seed(6)
    _, expected_pair = rly.get_interval_estimates(
        {"pair": [sft, direct]}, stats.improvement_probability, reps=REPS
    )
    state = np.random.get_state()
    random_state = np.random.RandomState(5)
    # Two implementations of the bootstrap (rliable's through arch, and ours): the same
    # resamples give the same numbers up to rounding, while resamples drawn in another order
    # give intervals that differ far beyond 1e-12 of them.
    same = {"rtol": 1e-12, "atol": 0}
    for variant, matrix in (("sft", sft), ("direct", direct)):
        point, interval = stats.stratified_bootstrap([matrix], aggregates_of, REPS, random_state)
        np.testing.assert_allclose(point, expected_points[variant], **same)
        np.testing.assert_allclose(interval, expected[variant], **same)
    _, interval = stats.stratified_bootstrap(
        [sft, direct], stats.improvement_probability, REPS, np.random.RandomState(6)
    )
    np.testing.assert_allclose(interval.ravel(), np.ravel(expected_pair["pair"]), **same)
    assert all(np.array_equal(a, b) for a, b in zip(state, np.random.get_state(), strict=True))


def test_bootstrap_rejects_a_coverage_outside_the_unit_interval() -> None:
    with pytest.raises(ValueError, match="confidence"):
        stats.stratified_bootstrap(
            [np.ones((2, 2))], np.mean, 10, np.random.RandomState(0), confidence=95
        )


# ---------------------------------------------------------------- aggregates


def test_aggregate_point_estimates_hand_computed(hand: pd.DataFrame) -> None:
    table = stats.aggregate(hand, "score_final", reps=REPS).set_index(["variant", "aggregate"])
    # sft final scores: task a [90, 95, 110], task b [70, 75, 80]
    assert table.loc[("sft", "Mean"), "estimate"] == pytest.approx(520 / 6)
    # median of the task means 98.33 and 75
    assert table.loc[("sft", "Median"), "estimate"] == pytest.approx((295 / 3 + 75) / 2)
    # 25% trimmed mean of the 6 runs: drop 70 and 110
    assert table.loc[("sft", "IQM"), "estimate"] == pytest.approx((75 + 80 + 90 + 95) / 4)
    # scores are on 0-100: 110 is clipped at 100, so the gap is 100 - 85
    assert table.loc[("sft", "Optimality Gap"), "estimate"] == pytest.approx(15.0)


def test_aggregate_intervals_contain_estimates(synthetic: pd.DataFrame) -> None:
    for metric in ("score_final", "dip", "steps_to_recover"):
        table = stats.aggregate(synthetic, metric, reps=REPS)
        assert len(table) == 3 * (4 if metric == "score_final" else 3)
        assert (table["ci_low"] <= table["estimate"]).all()
        assert (table["estimate"] <= table["ci_high"]).all()
        assert (table["ci_low"] < table["ci_high"]).any()  # not degenerate


def test_aggregate_is_reproducible_and_leaves_global_rng_alone(synthetic: pd.DataFrame) -> None:
    np.random.seed(123)
    expected_next = np.random.rand()
    np.random.seed(123)
    first = stats.aggregate(synthetic, reps=REPS, seed=7)
    assert np.random.rand() == expected_next
    again = stats.aggregate(synthetic, reps=REPS, seed=7)
    other_seed = stats.aggregate(synthetic, reps=REPS, seed=8)
    pd.testing.assert_frame_equal(first, again)
    assert not np.allclose(first["ci_low"], other_seed["ci_low"])


def test_optimality_gap_only_for_scores(hand: pd.DataFrame) -> None:
    assert "Optimality Gap" not in set(stats.aggregate(hand, "dip", reps=REPS)["aggregate"])
    with pytest.raises(ValueError, match="optimality gap"):
        stats.aggregate(hand, "dip", aggregates=["Optimality Gap"], reps=REPS)


# ---------------------------------------------------------------- probability of improvement


def test_probability_of_improvement_hand_computed(hand: pd.DataFrame) -> None:
    row = stats.probability_of_improvement(hand, "sft", ["direct"], reps=REPS).iloc[0]
    # task a: sft [90, 95, 110] beats direct [60, 100, 70] in 7 of 9 pairs; task b: 9 of 9
    assert row["probability"] == pytest.approx((7 / 9 + 1) / 2)
    assert row["ci_low"] <= row["probability"] <= row["ci_high"]


def test_improvement_probability_equals_rliable() -> None:
    rng = np.random.default_rng(0)
    for shape_x, shape_y in [((5, 3), (5, 3)), ((4, 2), (7, 2))]:
        scores_x = rng.integers(0, 6, shape_x).astype(float)  # small integers: many ties
        scores_y = rng.integers(0, 6, shape_y).astype(float)
        assert stats.improvement_probability(scores_x, scores_y) == pytest.approx(
            rly_metrics.probability_of_improvement(scores_x, scores_y)
        )
    assert stats.improvement_probability(scores_x, scores_x) == pytest.approx(0.5)


def test_headline_table_gives_each_metric_its_iqm_and_sfts_chance_to_be_better(
    hand: pd.DataFrame,
) -> None:
    table = tables.headline_table(hand, reps=REPS).set_index(["metric", "variant"])
    # the metrics the hand study has (no online regret, no learner score: left out)
    assert list(dict.fromkeys(m for m, _ in table.index)) == ["dip", "score_final", "auc"]
    final = table.loc[("score_final", "sft")]
    assert final["iqm"] == pytest.approx((75 + 80 + 90 + 95) / 4)  # as the aggregate's IQM
    assert final["iqm_low"] <= final["iqm"] <= final["iqm_high"]
    assert np.isnan(final["p_x_better"]) and final["runs_per_task"] == 3
    assert table.loc[("score_final", "direct"), "p_x_better"] == pytest.approx((7 / 9 + 1) / 2)
    assert table.loc[("dip", "direct"), "p_x_better"] == pytest.approx(1.0)  # smaller dips
    assert table.loc[("dip", "direct"), "iqm"] == pytest.approx(
        stats.aggregate(hand, "dip", ["direct"], ["IQM"], REPS)["estimate"].iloc[0]
    )


def test_probability_of_improvement_lower_is_better_for_dip(hand: pd.DataFrame) -> None:
    # every sft dip is smaller than every direct dip on both tasks
    sft = stats.probability_of_improvement(hand, "sft", ["direct"], metric="dip", reps=REPS)
    direct = stats.probability_of_improvement(hand, "direct", ["sft"], metric="dip", reps=REPS)
    assert sft["probability"].iloc[0] == pytest.approx(1.0)
    assert direct["probability"].iloc[0] == pytest.approx(0.0)


def test_improvement_by_metric_stacks_one_table_per_metric(synthetic: pd.DataFrame) -> None:
    metrics = ("dip", "score_final")
    table = stats.improvement_by_metric(synthetic, "sft", ["direct"], metrics, reps=REPS)
    assert table["metric"].tolist() == list(metrics) and table.attrs["synthetic"]
    single = stats.probability_of_improvement(synthetic, "sft", ["direct"], "dip", reps=REPS)
    pd.testing.assert_frame_equal(table.iloc[:1], single)


# ---------------------------------------------------------------- performance profiles


def test_score_distribution_equals_rliable() -> None:
    from rliable import library as rly

    scores = np.random.default_rng(1).normal(50, 20, (5, 3))
    taus = np.linspace(0, 100, 11)
    np.testing.assert_allclose(
        stats.score_distribution(scores, taus), rly.score_distributions(scores, taus)
    )


def test_performance_profiles_hand_computed(hand: pd.DataFrame) -> None:
    profiles = stats.performance_profiles(hand, taus=[0.0, 85.0, 200.0], reps=REPS)
    sft = profiles[profiles["variant"] == "sft"].set_index("tau")
    # sft final scores 90, 95, 110, 70, 75, 80: all > 0, half > 85, none > 200
    assert sft["fraction"].tolist() == pytest.approx([1.0, 0.5, 0.0])
    assert (profiles["ci_low"] <= profiles["fraction"] + 1e-12).all()
    assert (profiles["fraction"] <= profiles["ci_high"] + 1e-12).all()


# ---------------------------------------------------------------- stability table


def test_stability_table_hand_computed(hand: pd.DataFrame) -> None:
    table = tables.stability_table(hand).set_index(["dataset", "algo", "variant"])
    row = table.loc[("d-a-v0", "iql", "sft")]
    assert row["n_seeds"] == 3
    assert row["dip_mean"] == pytest.approx(3.0)
    assert row["dip_std"] == pytest.approx(math.sqrt(7.0))  # sample std of 1, 2, 6
    # the seed that never recovered is left out
    assert row["steps_to_recover_mean"] == pytest.approx(2000.0)
    assert row["steps_to_recover_std"] == pytest.approx(1000.0 * math.sqrt(2.0))
    assert row["n_recovered"] == 2
    assert row["score_final_mean"] == pytest.approx(295 / 3)
    assert row["regret_std"] == pytest.approx(2.0)
    assert table.loc[("d-a-v0", "iql", "direct"), "n_recovered"] == 1
    assert table.index.get_level_values("variant").tolist() == ["sft", "direct"] * 2


def test_stability_table_has_the_learners_final_score(tmp_path: Path) -> None:
    """Averaged over the runs whose summary has it; NaN where none has (older summaries)."""
    learner = {("d/a-v0", "sft"): [40.0, None, 60.0], ("d/b-v0", "sft"): [10.0, 20.0, 30.0]}
    summaries = results.load_summaries(write_hand_study(tmp_path / "hand", learner))
    table = tables.stability_table(summaries).set_index(["dataset", "algo", "variant"])
    means = [column for column in table.columns if column.endswith("_mean")]
    assert means[-2:] == ["score_final_mean", "learner_score_final_mean"]
    assert table.loc[("d-a-v0", "iql", "sft"), "learner_score_final_mean"] == pytest.approx(50.0)
    assert table.loc[("d-b-v0", "iql", "sft"), "learner_score_final_std"] == pytest.approx(10.0)
    assert math.isnan(table.loc[("d-a-v0", "iql", "direct"), "learner_score_final_mean"])


def test_stability_table_without_any_learner_score_is_nan(hand: pd.DataFrame) -> None:
    assert "learner_score_final" not in hand.columns
    table = tables.stability_table(hand)
    assert table["learner_score_final_mean"].isna().all()
    assert table["learner_score_final_std"].isna().all()


def test_stability_table_matches_summary_files(
    synthetic_dir: Path, synthetic: pd.DataFrame
) -> None:
    """Mean and std recomputed with the statistics module straight from the summary.json files."""
    table = tables.stability_table(synthetic).set_index(["dataset", "algo", "variant"])
    groups: dict[tuple, list[dict]] = {}
    for path in synthetic_dir.glob("*/*/*/seed=*/summary.json"):
        dataset, algo, variant = path.parts[-5:-2]
        if variant != "pretrain":
            groups.setdefault((dataset, algo, variant), []).append(json.loads(path.read_text()))
    assert len(groups) == len(table)
    for key, runs in groups.items():
        for metric in STABILITY_METRICS:
            values = [run[metric] for run in runs if run.get(metric) is not None]
            if not values:
                assert math.isnan(table.loc[key, f"{metric}_mean"])
                continue
            assert table.loc[key, f"{metric}_mean"] == pytest.approx(statistics.mean(values))
            assert table.loc[key, f"{metric}_std"] == pytest.approx(statistics.stdev(values))


def test_promise_table_applies_both_dip_rules_by_hand():
    from sftlib.analysis.tables import promise_table

    rows = []
    # task A: direct dips 30 -> sft must dip <= 10 (it dips 9: met)
    # task B: direct dips 4 -> sft may dip at most 9 (it dips 12: missed)
    for dataset, dips in (("a", {"direct": 30.0, "sft": 9.0}), ("b", {"direct": 4.0, "sft": 12.0})):
        for seed in (0, 1):
            for variant, dip in dips.items():
                rows.append(
                    dict(
                        dataset=dataset,
                        algo="iql",
                        variant=variant,
                        seed=seed,
                        dip=dip,
                        score_offline=40.0,
                        score_final=50.0 if variant == "sft" else 45.0,
                        learner_score_final=41.0 if dataset == "a" else 39.0,
                    )
                )
    table = promise_table(pd.DataFrame(rows)).set_index("dataset")
    assert table.loc["a", "dip_met"] and not table.loc["b", "dip_met"]
    assert table.loc["a", "dip_rule"].startswith("<= 0.33") and "+ 5" in table.loc["b", "dip_rule"]
    assert table.loc["a", "learner_above_offline"] and not table.loc["b", "learner_above_offline"]
    assert table.loc["a", "final_sft"] == 50.0 and table.loc["a", "final_direct"] == 45.0
