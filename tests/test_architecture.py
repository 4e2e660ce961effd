"""The shape of the house: small modules and functions, no import cycle (none under
``TYPE_CHECKING`` either), imports that only run down the layers, one table of variants, and
light modules that stay light."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "sftlib"
MAX_LINES = 500
MAX_FUNCTION_LINES = 70
LAYERS = [
    ("sftlib.utils", "sftlib.typecheck", "sftlib.layout"),
    ("sftlib.data",),
    ("sftlib.agents",),
    ("sftlib.config", "sftlib.variants"),
    ("sftlib.sft", "sftlib.factory", "sftlib.analysis"),
    ("sftlib.training",),
    ("sftlib.sweeps",),
    ("sftlib.cli", "sftlib.__main__", "sftlib"),
]
"""The layers of the package, lowest first: a module imports only from its own layer's
package or lower layers (``sftlib.factory`` makes datasets with agents; ``sftlib.analysis``
reads result tables and imports no algorithm code)."""


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def sftlib_imports(path: Path) -> set[str]:
    """Every ``sftlib`` module ``path`` imports, at top level, inside a function (a lazy
    import still ties the two modules together) or under ``if TYPE_CHECKING:`` (so does a
    type annotation)."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("sftlib")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sftlib"):
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                is_module = (PACKAGE.parent / candidate.replace(".", "/")).with_suffix(".py")
                found.add(candidate if is_module.exists() else node.module)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        # Importing a.b runs a/__init__ first; count edges to the module itself only.
        graph[name] = {m for m in sftlib_imports(path) if m in modules and m != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if state.get(nxt) is None and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if state.get(node) is None and (cycle := visit(node)):
            return cycle
    return None


def layer_of(module: str) -> int:
    for rank, packages in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in packages if p != "sftlib"):
            return rank
    return len(LAYERS) - 1


def test_imports_only_run_down_the_layers():
    upward = sorted(
        f"{module} -> {imported}"
        for module, imports in import_graph().items()
        for imported in imports
        if layer_of(imported) > layer_of(module)
    )
    assert not upward, f"imports that run up the layers: {upward}"


def test_the_layer_check_finds_an_upward_import():
    assert layer_of("sftlib.training.seed_run") > layer_of("sftlib.sft.control")
    assert layer_of("sftlib.data.buffer") < layer_of("sftlib.config")


def long_functions(source: str) -> dict[str, int]:
    return {
        node.name: n
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and (n := node.end_lineno - node.lineno + 1) > MAX_FUNCTION_LINES
    }


def test_no_function_is_over_70_lines():
    long = {
        f"{p.relative_to(PACKAGE.parent)}:{name}": n
        for p in PACKAGE.rglob("*.py")
        for name, n in long_functions(p.read_text()).items()
    }
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"
    assert long_functions("def f():\n" + "    pass\n" * 80) == {"f": 81}


VARIANT_FLAGS = {"spec", "switch", "composite", "ope", "baseline", "probe_every", "selection"}


def test_the_fine_tuning_loop_holds_no_variant_checks_and_its_run_stays_small():
    """Who acts is the control's business (sftlib.sft.control): the loop and the run ask it."""
    for name in ("seed_run.py", "finetune.py"):
        tree = ast.parse((PACKAGE / "training" / name).read_text())
        flags = {
            node.attr
            for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and node.attr in VARIANT_FLAGS
        }
        assert not flags, f"training/{name} checks variant flags {sorted(flags)}"
    tree = ast.parse((PACKAGE / "training" / "seed_run.py").read_text())
    (tuner,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "FineTuner"]
    assert tuner.end_lineno - tuner.lineno + 1 <= 250


def test_every_list_of_variants_follows_the_variants_table():
    from sftlib.analysis import figures, results, stats
    from sftlib.analysis.synthetic import DEFAULT_VARIANTS
    from sftlib.config import VARIANTS

    assert sorted(results.VARIANT_ORDER) == sorted(VARIANTS)
    assert tuple(DEFAULT_VARIANTS) == tuple(results.VARIANT_ORDER)
    assert stats.BASELINES == tuple(name for name, v in VARIANTS.items() if v.baseline)
    assert set(figures.VARIANT_COLORS) == set(VARIANTS)


def test_every_metric_a_run_reports_is_in_the_metrics_table():
    import numpy as np

    from sftlib.analysis import metric_table, metrics

    reported = set(metrics.METRICS) | {"online_regret", "worst_training_episode"}
    reported |= {"learner_score_final", "right_call_share"}
    assert set(metrics.online_cost(np.ones(1), np.ones(1))) - {"training_episodes"} <= reported
    assert reported <= set(metric_table.METRICS)
    assert set(metric_table.STABILITY_METRICS) <= reported


def test_no_module_is_over_500_lines():
    long = {
        str(p.relative_to(PACKAGE.parent)): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_no_import_cycle_inside_sftlib():
    cycle = find_cycle(import_graph())
    assert cycle is None, f"import cycle: {' -> '.join(cycle)}"


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        ("sftlib.layout", ("torch", "pandas", "matplotlib")),
        ("sftlib.analysis.results", ("torch", "matplotlib", "seaborn")),
        ("sftlib.typecheck", ("torch", "pandas")),
        ("sftlib.analysis.stats", ("torch", "matplotlib", "seaborn")),
        ("sftlib.analysis.report", ("torch", "matplotlib", "seaborn")),
    ],
)
def test_light_modules_import_no_heavy_dependency(module, forbidden):
    code = f"import sys, {module}; print(','.join(m for m in {forbidden!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"{module} imports {out.stdout.strip()}"
