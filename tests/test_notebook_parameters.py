"""One source of truth for parameters: the notebooks' parameters cells and the configs."""

from __future__ import annotations

import ast
from pathlib import Path

import nbformat
import pytest

from sftlib.sweeps.notebook import EXTRAS, ParameterScope, config_fields

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
PHASE_NOTEBOOKS = {"01_offline_pretrain.ipynb": "pretrain", "02_sft_finetune.ipynb": "finetune"}


def parameters_cell_names(path: Path) -> list[str]:
    nb = nbformat.read(path, as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, f"{path.name} needs exactly one cell tagged 'parameters'"
    tree = ast.parse(cells[0].source)
    return [t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets]


@pytest.mark.parametrize(("notebook", "kind"), sorted(PHASE_NOTEBOOKS.items()))
def test_parameters_cell_lists_exactly_the_config_fields(notebook, kind):
    names = parameters_cell_names(NOTEBOOKS / notebook)
    assert len(names) == len(set(names)), f"{notebook} assigns a parameter twice"
    expected = set(config_fields(kind)) | set(EXTRAS[kind])
    assert not expected - set(names), f"{notebook} lacks config fields {expected - set(names)}"
    assert not set(names) - expected, f"{notebook} has non-fields {set(names) - expected}"


@pytest.mark.parametrize(("notebook", "kind"), sorted(PHASE_NOTEBOOKS.items()))
def test_phase_notebooks_build_their_config_from_the_scope(notebook, kind):
    source = "\n".join(c.source for c in nbformat.read(NOTEBOOKS / notebook, 4).cells)
    assert f'ParameterScope(globals(), "{kind}")' in source
    assert "scope.collect()" in source


def test_scope_collects_config_fields_defined_after_it():
    namespace = {"Path": Path, "In": []}
    scope = ParameterScope(namespace, "finetune")
    namespace.update(variant="pex", online_steps=7, out_dir="", scope=scope, _hidden=1)
    assert scope.collect() == {"variant": "pex", "online_steps": 7}


def test_scope_refuses_a_name_that_is_no_config_field():
    namespace: dict = {}
    scope = ParameterScope(namespace, "finetune")
    namespace.update(variant="sft", reset_evry=10)  # as papermill -p reset_evry 10 would
    with pytest.raises(ValueError, match=r"\['reset_evry'\] name no finetune config field"):
        scope.collect()


def test_scope_names_are_fixed_at_the_first_collect():
    """Running later cells again defines more globals; they never become parameters."""
    namespace: dict = {}
    scope = ParameterScope(namespace, "pretrain")
    namespace.update(algo="td3bc")
    assert scope.collect() == {"algo": "td3bc"}
    namespace.update(result=object(), algo="iql")
    assert scope.collect() == {"algo": "iql"}


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="kind must be"):
        config_fields("sweep")


# Fields a notebook may shrink so that it runs in seconds under nbval; every other value in
# its parameters cell must be the dataclass default (a frozen default has one home).
BUDGET_FIELDS = {
    "offline_steps",
    "online_steps",
    "eval_every",
    "eval_episodes",
    "check_every",
    "reset_every",
    "reset_start",
}


def dataclass_defaults(kind: str) -> dict:
    from sftlib.config import FinetuneConfig, PretrainConfig, SFTConfig

    configs = [PretrainConfig()] if kind == "pretrain" else [FinetuneConfig(), SFTConfig()]
    return {name: getattr(c, name) for c in configs for name in c.__dataclass_fields__}


@pytest.mark.parametrize(("notebook", "kind"), sorted(PHASE_NOTEBOOKS.items()))
def test_parameters_cell_keeps_the_defaults_but_for_the_budget(notebook, kind):
    nb = nbformat.read(NOTEBOOKS / notebook, as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    defaults = dataclass_defaults(kind)
    differing = []
    for node in ast.parse(cell.source).body:
        if not isinstance(node, ast.Assign) or node.targets[0].id not in defaults:
            continue
        name, value = node.targets[0].id, ast.literal_eval(node.value)
        default = defaults[name]
        if isinstance(default, tuple):
            default = list(default)
        if value != default:
            differing.append(name)
    assert set(differing) <= BUDGET_FIELDS, (
        f"{notebook} changes defaults beyond the smoke budget: "
        f"{sorted(set(differing) - BUDGET_FIELDS)}"
    )
