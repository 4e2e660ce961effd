"""The ablation pipeline of notebooks 03-05 and of ``sft ablation``: one library call each."""

from __future__ import annotations

from pathlib import Path

import pytest
from study_tables import REPS

from sftlib import cli
from sftlib.analysis.ablations import ABLATIONS, ablation_report
from sftlib.analysis.synthetic import write_synthetic_study
from sftlib.variants import VARIANTS


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    variants = sorted({v for a in ABLATIONS.values() for v in a.variants})
    return write_synthetic_study(
        tmp_path_factory.mktemp("abl"), study="abl", algos=("iql",), variants=variants,
        seeds=(0, 1, 2), online_steps=20_000, eval_every=5_000, reset_every=10_000,
    )  # fmt: skip


@pytest.mark.parametrize("name", sorted(ABLATIONS))
def test_each_ablation_writes_its_figures_tables_and_verdicts(study, tmp_path, name):
    made = ablation_report(study, name, tmp_path, reps=REPS)
    ablation = ABLATIONS[name]
    assert {p.suffix for p in made.files} >= {".png", ".pdf"}
    assert all(p.exists() and p.parent == tmp_path for p in made.files)
    assert all(stem.startswith(f"{name}_") for stem in made.figures)
    for metric in ablation.aggregates:
        assert set(made.tables[metric]["variant"]) <= set(ablation.variants)
    assert "SYNTHETIC" in made.conclusion and "sft" in made.conclusion
    assert ("reset_drops" in made.tables) is ablation.learner
    assert ("stability_table" in made.tables) is ablation.stability_table


def test_ablations_name_known_variants_only():
    for ablation in ABLATIONS.values():
        assert set(ablation.variants) <= set(VARIANTS) and "sft" in ablation.required


def test_an_unknown_ablation_is_refused():
    with pytest.raises(ValueError, match="unknown ablation 'swtich'"):
        ablation_report(".", "swtich")


def test_the_command_line_makes_the_same_files(study, tmp_path, capsys):
    code = cli.main(["ablation", str(study), "--ablation", "reset", "--out", str(tmp_path),
                     "--reps", str(REPS)])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert str(tmp_path / "reset_drops.png") in printed
    assert (tmp_path / "reset_final_score.pdf").exists()
