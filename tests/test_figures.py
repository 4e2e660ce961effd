"""Tests of sftlib.analysis.figures and sftlib.analysis.run_figures: every figure is written and labelled, and
``sft figures`` and notebook 06 are one pipeline (same files, same tables)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import papermill
import pytest
from matplotlib.collections import PathCollection
from study_tables import REPS, write_hand_study, write_small_synthetic_study

from sftlib import cli
from sftlib.analysis import curves as curves_module
from sftlib.analysis import figures, report, results, run_figures, stats, tables
from sftlib.analysis.paper import write_paper_figures

NOTEBOOK_06 = Path(__file__).resolve().parents[1] / "notebooks" / "06_paper_figures.ipynb"


@pytest.fixture(scope="module")
def hand(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    return results.load_summaries(write_hand_study(tmp_path_factory.mktemp("hand") / "hand"))


@pytest.fixture(scope="module")
def synthetic_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_small_synthetic_study(tmp_path_factory.mktemp("syn"))


@pytest.fixture(scope="module")
def synthetic(synthetic_dir: Path) -> pd.DataFrame:
    return results.load_summaries(synthetic_dir)


def _assert_written(paths: list[Path]) -> None:
    png, pdf = paths
    assert png.suffix == ".png" and pdf.suffix == ".pdf"
    assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 5_000
    assert pdf.read_bytes()[:4] == b"%PDF" and pdf.stat().st_size > 1_000


def _title(fig: plt.Figure) -> str:
    return fig._suptitle.get_text() if fig._suptitle is not None else ""


# ---------------------------------------------------------------- single figures


def test_figures_are_written_and_labelled_synthetic(
    synthetic_dir: Path, synthetic: pd.DataFrame, tmp_path: Path
) -> None:
    curves, events = results.load_study(synthetic_dir), results.load_events(synthetic_dir)
    made = {
        "aggregates": figures.plot_aggregates(stats.aggregate(synthetic, reps=REPS)),
        "profiles": figures.plot_performance_profiles(
            stats.performance_profiles(synthetic, reps=REPS)
        ),
        "poi": figures.plot_probability_of_improvement(
            stats.probability_of_improvement(synthetic, "sft", reps=REPS)
        ),
        "by_task": figures.plot_metric_by_task(synthetic, "dip"),
        "curves": curves_module.plot_learning_curves(curves, events, show_learner=True),
        "drops": curves_module.plot_reset_drops(results.reset_drops(curves, events)),
    }
    for name, fig in made.items():
        assert "SYNTHETIC DATA" in _title(fig), name
        _assert_written(figures.save_figure(fig, tmp_path / "figures", name))
        plt.close(fig)


def test_figures_of_real_data_carry_no_synthetic_label(hand: pd.DataFrame) -> None:
    fig = figures.plot_aggregates(stats.aggregate(hand, reps=REPS), title="hand")
    assert _title(fig) == "hand"
    plt.close(fig)


def test_learning_curves_panels_and_switch_markers(synthetic_dir: Path) -> None:
    curves, events = results.load_study(synthetic_dir), results.load_events(synthetic_dir)
    variants = ["sft", "direct"]
    fig = curves_module.plot_learning_curves(curves, events, variants=variants, ncols=3)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == curves.groupby(["dataset", "algo"]).ngroups == 2
    n_markers = sum(
        len(collection.get_offsets())
        for ax in visible
        for collection in ax.collections
        if isinstance(collection, PathCollection)
    )
    shown = events[events["variant"].isin(variants) & (events["event"] == "switch")]
    assert n_markers == len(shown) > 0
    assert all(ax.get_xlabel() == figures.STEP_LABEL for ax in visible)
    assert all(ax.get_ylabel() == figures.SCORE_LABEL for ax in visible)
    plt.close(fig)


def test_single_run_figures_mark_switches_and_resets(synthetic_dir: Path) -> None:
    run_dir = next(synthetic_dir.glob("*/iql/sft/seed=0"))
    curve = pd.read_csv(run_dir / "eval.csv")
    events = pd.read_csv(run_dir / "events.csv")
    fig = run_figures.plot_finetune_run(curve, events, title="one run")
    (ax,) = fig.axes
    (markers,) = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert len(markers.get_offsets()) == (events["event"] == "switch").sum() > 0
    resets = [line for line in ax.lines if line.get_linestyle() == ":"]
    assert len(resets) == (events["event"] == "reset").sum() > 0
    plt.close(fig)
    episodes = pd.DataFrame(
        {"start_step": [1, 301], "length": [300, 200], "normalized_return": [20.0, 35.0],
         "share_learner": [0.0, 1.0]}
    )  # fmt: skip
    fig = run_figures.plot_finetune_run(curve, events, episodes=episodes)
    dots = [c for c in fig.axes[0].collections if len(c.get_offsets()) == 2]
    assert [tuple(xy) for xy in dots[0].get_offsets()] == [(300, 20.0), (500, 35.0)]
    plt.close(fig)
    pretrain = pd.DataFrame({"step": [0, 1000], "score": [10.0, 50.0]})
    fig = run_figures.plot_pretrain_curve(pretrain, title="pretraining")
    assert _title(fig) == "pretraining" and fig.axes[0].get_ylabel() == figures.SCORE_LABEL
    plt.close(fig)


def test_variant_colours_are_stable_across_subsets() -> None:
    assert figures.variant_color("sft") == figures.VARIANT_COLORS["sft"]
    assert len(set(figures.VARIANT_COLORS.values())) == len(figures.VARIANT_COLORS)
    assert stats.ordered_variants(["direct", "zzz", "sft"]) == ["sft", "direct", "zzz"]


def test_figures_do_not_switch_off_interactive_mode() -> None:
    """Jupyter's inline backend turns interactive mode on while the first figure is made;
    restoring every rcParam afterwards (plt.rc_context) hid every later figure."""
    was = plt.isinteractive()
    try:
        plt.ioff()
        with figures.style():
            plt.ion()  # what the inline backend does on the first figure
            assert plt.rcParams["font.size"] == figures.STYLE["font.size"]
        assert plt.isinteractive()
    finally:
        plt.interactive(was)


# ---------------------------------------------------------------- the paper pipeline

PRODUCTS = {
    "aggregates",
    "performance_profiles",
    "probability_of_improvement",
    "learning_curves",
    "learning_curves_learner",
    "stability_table",
    "promise_table",
    "headline_table",
    "numbers",
}
TABLES = {"stability_table", "promise_table", "headline_table", "numbers"}


def test_write_paper_figures_writes_every_file(tmp_path: Path) -> None:
    study_dir = write_hand_study(tmp_path / "hand")
    paper = write_paper_figures(study_dir, reps=REPS)
    assert set(paper.files) == PRODUCTS
    assert paper.out_dir == study_dir / "figures"
    for name, paths in paper.files.items():
        assert all(path.parent == study_dir / "figures" for path in paths)
        if name not in TABLES:
            _assert_written(paths)
    assert [path.suffix for path in paper.files["stability_table"]] == [".csv", ".tex"]
    # the figures folder is not mistaken for a dataset when the study is loaded again
    assert set(results.load_summaries(study_dir)["dataset"]) == {"d-a-v0", "d-b-v0"}


def test_write_paper_figures_returns_what_it_wrote(tmp_path: Path) -> None:
    study_dir = write_hand_study(tmp_path / "hand")
    paper = write_paper_figures(study_dir, tmp_path / "out", reps=REPS)
    summaries = results.load_summaries(study_dir)
    assert set(paper.figures) == PRODUCTS - TABLES
    assert not plt.get_fignums()  # closed in pyplot; still drawable where displayed
    assert paper.figures["aggregates"].axes and not paper.synthetic
    pd.testing.assert_frame_equal(paper.aggregates, stats.aggregate(summaries, reps=REPS))
    expected = stats.probability_of_improvement(summaries, "sft", ["direct"], reps=REPS)
    pd.testing.assert_frame_equal(paper.probability_of_improvement, expected)
    pd.testing.assert_frame_equal(
        pd.read_csv(tmp_path / "out" / "stability_table.csv").drop(columns="synthetic"),
        paper.stability_table,
        check_dtype=False,
    )
    written = pd.read_csv(tmp_path / "out" / "aggregates.csv")
    assert set(written["metric"]) == {"score_final"}
    np.testing.assert_allclose(written["estimate"], paper.aggregates["estimate"], atol=1e-4)
    written = pd.read_csv(tmp_path / "out" / "probability_of_improvement.csv")
    np.testing.assert_allclose(written["probability"], expected["probability"], atol=1e-4)
    assert (tmp_path / "out" / "conclusion.txt").read_text() == paper.conclusion + "\n"
    assert paper.runs_per_task.to_numpy().tolist() == [[3, 3], [3, 3]]
    expected_promise = tables.promise_table(summaries, "sft", "direct")
    pd.testing.assert_frame_equal(paper.promise_table, expected_promise)
    assert paper.conclusion == (
        report.describe_aggregates(paper.aggregates)
        + "\n\n"
        + report.describe_probability(paper.probability_of_improvement)
        + "\n\n"
        + report.describe_promise(expected_promise)
        + "\n\n"
        + report.describe_headline(tables.headline_table(summaries, reps=REPS))
    )
    assert "sft has the highest IQM of score_final" in paper.conclusion


def test_cli_and_notebook_06_write_the_same_files(synthetic_dir: Path, tmp_path: Path) -> None:
    """One pipeline: `sft figures` and the notebook write the same names and tables."""
    cli_out, notebook_out = tmp_path / "cli", tmp_path / "notebook"
    argv = ["figures", str(synthetic_dir), "--out", str(cli_out), "--reps", str(REPS)]
    assert cli.main(argv) == 0
    papermill.execute_notebook(
        str(NOTEBOOK_06),
        str(tmp_path / "06_executed.ipynb"),
        parameters={
            "results_root": str(synthetic_dir.parent),
            "study": synthetic_dir.name,
            "out_dir": str(notebook_out),
            "bootstrap_reps": REPS,
        },
        cwd=str(NOTEBOOK_06.parent),
        kernel_name="python3",
        progress_bar=False,
    )
    cli_files = sorted(path.name for path in cli_out.iterdir())
    assert cli_files == sorted(path.name for path in notebook_out.iterdir())
    assert {Path(name).stem for name in cli_files} == PRODUCTS - {"numbers"} | {"conclusion"}
    for name in cli_files:
        if name.endswith((".csv", ".tex", ".txt")):
            assert (cli_out / name).read_text() == (notebook_out / name).read_text(), name
