"""Tests of sftlib.analysis.report: the stability table as CSV and LaTeX, and the computed verdicts."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from study_tables import REPS, write_hand_study, write_small_synthetic_study

from sftlib.analysis import report, results, stats, tables
from sftlib.analysis.metric_table import STABILITY_METRICS


@pytest.fixture(scope="module")
def hand(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    return results.load_summaries(write_hand_study(tmp_path_factory.mktemp("hand") / "hand"))


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    return results.load_summaries(write_small_synthetic_study(tmp_path_factory.mktemp("syn")))


# ---------------------------------------------------------------- stability table


def test_write_stability_table(hand: pd.DataFrame, synthetic: pd.DataFrame, tmp_path: Path) -> None:
    table = tables.stability_table(hand)
    csv_path, tex_path = report.write_stability_table(table, tmp_path)
    assert (csv_path.name, tex_path.name) == ("stability_table.csv", "stability_table.tex")
    back = pd.read_csv(csv_path)
    pd.testing.assert_frame_equal(back.drop(columns="synthetic"), table, check_dtype=False)
    assert not back["synthetic"].any()
    tex = tex_path.read_text()
    assert r"\begin{tabular}" in tex and r"\toprule" in tex
    assert r"$3.0 \pm 2.6$" in tex  # dip of sft on task a
    assert r"$2.0 \pm 1.4$ (2/3)" in tex  # steps to recover, in thousands
    assert "SYNTHETIC" not in tex

    _, syn_tex = report.write_stability_table(tables.stability_table(synthetic), tmp_path / "syn")
    assert "SYNTHETIC" in syn_tex.read_text()
    assert pd.read_csv(tmp_path / "syn" / "stability_table.csv")["synthetic"].all()


def test_latex_table_has_one_cell_per_metric_and_the_learners_score(tmp_path: Path) -> None:
    learner = {("d/a-v0", "sft"): [40.0, None, 60.0]}
    summaries = results.load_summaries(write_hand_study(tmp_path / "hand", learner))
    tex = report.stability_latex(tables.stability_table(summaries))
    lines = tex.splitlines()
    assert lines[0] == r"\begin{table}" and lines[-1] == r"\end{table}"
    assert r"\begin{tabular}{lll" + "r" * len(STABILITY_METRICS) + "}" in lines
    header = lines[lines.index(r"\toprule") + 1]
    assert header.endswith(r"Final $\uparrow$ & Learner final $\uparrow$ \\")
    body = lines[lines.index(r"\midrule") + 1 : lines.index(r"\bottomrule")]
    assert len(body) == 4 and all(row.count(" & ") == 2 + len(STABILITY_METRICS) for row in body)
    sft_a = next(row for row in body if row.startswith("d-a-v0 & IQL & sft &"))
    assert sft_a.endswith(r"& $50.0 \pm 14.1$ \\")  # over the two runs that report it
    assert all(row.endswith(r"& -- \\") for row in body if row != sft_a)


def test_latex_escapes_underscores_and_one_seed_has_no_std() -> None:
    assert report.latex_escape("a_b & 5%") == r"a\_b \& 5\%"
    assert report.format_mean_std(2500.0, float("nan"), 1000.0) == "$2.5$"
    assert report.format_mean_std(float("nan"), 1.0) == "--"


def test_format_value_in_the_metrics_units() -> None:
    assert report.format_value(12345.6, "steps_to_recover") == "12,346"
    assert report.format_value(12.34, "dip") == "12.3"


# ---------------------------------------------------------------- computed conclusions


def test_describe_aggregates_names_the_better_variant(hand: pd.DataFrame) -> None:
    dip = stats.aggregate(hand, "dip", reps=REPS)
    text = report.describe_aggregates(dip)
    assert "sft has the lowest IQM of dip" in text
    sft_iqm = dip.query("variant == 'sft' and aggregate == 'IQM'")["estimate"].iloc[0]
    assert f"{sft_iqm:.1f}" in text
    assert "SYNTHETIC" not in text
    final = stats.aggregate(hand, "score_final", reps=REPS)
    assert "sft has the highest IQM of score_final" in report.describe_aggregates(final)


def test_describe_probability_reads_the_interval(hand: pd.DataFrame) -> None:
    improvement = stats.probability_of_improvement(hand, "direct", ["sft"], metric="dip", reps=REPS)
    assert "sft tends to be better than direct" in report.describe_probability(improvement)


def test_concatenated_probabilities_stay_labelled_synthetic(synthetic: pd.DataFrame) -> None:
    improvement = pd.concat(
        [
            stats.probability_of_improvement(synthetic, "sft", ["direct"], metric, reps=REPS)
            for metric in ("dip", "score_final")
        ]
    )
    text = report.describe_probability(improvement)
    assert text.startswith("[SYNTHETIC DATA")
    assert "P(sft < direct on dip)" in text and "P(sft > direct on score_final)" in text


def test_describe_reset_drops_compares_learner_and_executed() -> None:
    drops = pd.DataFrame(
        {"variant": ["sft", "sft"], "learner_drop": [20.0, 30.0], "executed_drop": [5.0, 5.0]}
    )
    text = report.describe_reset_drops(drops, synthetic=False)
    assert "learner 25.0 (max 30.0), executed 5.0 (max 5.0) over 2 resets" in text
    assert "20% of the learner's mean drop" in text
    assert report.describe_reset_drops(drops.iloc[:0]) == "No reset events in these runs."
