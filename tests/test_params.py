"""Layered study files: merging, and every invalid input caught, naming file and key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sftlib import cli
from sftlib.config import VARIANTS
from sftlib.sweeps.params import ParamsError, StudyParams, load_study_params
from sftlib.sweeps.study import pretrain_keys

REPO = Path(__file__).resolve().parent.parent
PARAMS = REPO / "params"

BASE = """\
datasets: [local/hopper/medium-v0]
algos: [iql]
variants: [direct, sft]
seeds: [0, 1]
pretrain:
  offline_steps: 100
  hidden: [64, 64]
  agent: {lr: 3e-4}
finetune:
  online_steps: 100
  reset_every: 50
  drift_tol: 0.05
"""


@pytest.fixture
def files(tmp_path):
    """Write YAML files into tmp_path: files(base=..., study=...) -> their paths, in order."""

    def write(**texts: str) -> list[Path]:
        paths = []
        for name, text in texts.items():
            p = tmp_path / f"{name}.yaml"
            p.write_text(text)
            paths.append(p)
        return paths

    return write


def error(paths) -> str:
    with pytest.raises(ParamsError) as e:
        load_study_params(paths)
    return str(e.value)


# --------------------------------------------------------------------------- layering


def test_layering_overrides_left_to_right_and_merges_mappings(files):
    paths = files(
        base=BASE,
        study="""\
study: s1
seeds: [7]
pretrain: {offline_steps: 300, agent: {iql: {expectile: 0.9}}}
finetune: {reset_every: 25}
""",
    )
    sp = load_study_params(paths)
    assert sp.study == "s1" and sp.seeds == [7]  # lists replaced whole
    assert sp.variants == ["direct", "sft"] and sp.algos == ["iql"]  # untouched base keys kept
    assert sp.pretrain["offline_steps"] == 300 and sp.pretrain["hidden"] == [64, 64]
    assert sp.finetune == {"online_steps": 100, "reset_every": 25, "drift_tol": 0.05}
    assert sp.agent_params("iql") == {"lr": 3e-4, "expectile": 0.9}  # 3e-4 is a float
    assert isinstance(sp.pretrain["agent"]["lr"], float)
    assert sp.source("pretrain.offline_steps") == str(paths[1])
    assert sp.source("pretrain.hidden") == str(paths[0])
    assert sp.files == [str(p) for p in paths]


def test_a_later_file_wins_even_when_it_sets_a_bad_value(files):
    paths = files(base=BASE, study="study: s\nfinetune: {reset_every: 0}\n")
    msg = error(paths)
    assert f"{paths[1]}: finetune.reset_every:" in msg and str(paths[0]) not in msg


def test_extends_layers_relative_files_first_and_detects_cycles(files, tmp_path):
    (tmp_path / "sub").mkdir()
    files(base=BASE)
    parent = tmp_path / "sub" / "parent.yaml"
    parent.write_text("study: parent\nseeds: [4, 5]\nfinetune: {online_steps: 999}\n")
    child = tmp_path / "sub" / "child.yaml"
    child.write_text("extends: parent.yaml\nstudy: child\n")
    sp = load_study_params([tmp_path / "base.yaml", child])
    assert (sp.study, sp.seeds, sp.finetune["online_steps"]) == ("child", [4, 5], 999)
    assert sp.files == [str(tmp_path / "base.yaml"), str(parent), str(child)]
    parent.write_text("extends: child.yaml\nstudy: parent\n")
    assert "extends: cycle" in error([child])


def test_grid_points_and_names(files):
    sp = load_study_params(
        files(
            base=BASE,
            study="""\
study: g
grid: {reset_scope: [last, full], shrink_alpha: [0.0, 0.5]}
""",
        )
    )
    points = sp.grid_points()
    assert len(points) == 4 and {"reset_scope": "full", "shrink_alpha": 0.5} in points
    assert (
        sp.grid_suffix({"reset_scope": "full", "shrink_alpha": 0.5})
        == "+reset_scope=full+shrink_alpha=0.5"
    )


def _differences_from_defaults(section: dict, config: object) -> list[str]:
    """Keys of ``section`` whose value equals ``config``'s default (lists compare as tuples)."""
    same = []
    for key, value in section.items():
        default = getattr(config, key)
        if (tuple(value) if isinstance(value, list) else value) == default:
            same.append(key)
    return same


def test_study_files_state_only_what_differs_from_the_dataclass_defaults():
    """One source of truth: a key that restates a dataclass default is a second copy."""
    from sftlib.config import FinetuneConfig, PretrainConfig, SFTConfig

    for path in sorted(PARAMS.glob("*.yaml")):
        data = yaml.safe_load(path.read_text()) or {}
        # A key may restate a default to undo what a file it extends sets.
        extended = data.get("extends") or []
        parents = [yaml.safe_load((PARAMS / p).read_text()) or {} for p in
                   ([extended] if isinstance(extended, str) else extended)]  # fmt: skip
        overridden = {k for p in parents for part in ("pretrain", "finetune")
                      for k in (p.get(part) or {})}  # fmt: skip
        pretrain = {
            k: v
            for k, v in (data.get("pretrain") or {}).items()
            if k != "agent" and k not in overridden
        }
        finetune = {k: v for k, v in (data.get("finetune") or {}).items() if k not in overridden}
        sft_keys = set(SFTConfig.__dataclass_fields__)
        restated = _differences_from_defaults(pretrain, PretrainConfig())
        restated += _differences_from_defaults(
            {k: v for k, v in finetune.items() if k not in sft_keys}, FinetuneConfig()
        )
        restated += _differences_from_defaults(
            {k: v for k, v in finetune.items() if k in sft_keys}, SFTConfig()
        )
        assert not restated, f"{path.name} restates dataclass defaults: {restated}"


def test_repository_study_files_are_valid():
    for path in sorted(PARAMS.glob("*.yaml")):
        if path.name == "base.yaml":
            continue
        sp = load_study_params(cli.with_base([path]))
        assert sp.study == path.stem
        assert sp.files[0] == str(PARAMS / "base.yaml")
    paper = load_study_params(cli.with_base([PARAMS / "paper.yaml"]))
    assert len(paper.seeds) >= 5
    assert all(d.startswith("mujoco/") for d in paper.datasets)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "study_text, key, expect",
    [
        ("study: s\nvariantz: [sft]\n", "variantz", "unknown top-level key; allowed keys"),
        (
            "study: s\npretrain: {offline_stepz: 5}\n",
            "pretrain.offline_stepz",
            "known pretrain keys: ['agent', 'batch_size', 'checkpoint_every'",
        ),
        (
            "study: s\nfinetune: {reset_evry: 5}\n",
            "finetune.reset_evry",
            "known finetune keys: ['beta', 'buffer_size'",
        ),
        ("study: s\nfinetune: {variant: sft}\n", "finetune.variant", "set by the sweep"),
        ("study: s\npretrain: {seed: 3}\n", "pretrain.seed", "set by the sweep"),
        (
            "study: s\npretrain: {offline_steps: 1.5}\n",
            "pretrain.offline_steps",
            "expected an int, got float 1.5",
        ),
        (
            "study: s\npretrain: {offline_steps: 1e6}\n",
            "pretrain.offline_steps",
            "expected an int, got float 1000000.0",
        ),
        (
            "study: s\npretrain: {offline_steps: '100'}\n",
            "pretrain.offline_steps",
            "expected an int, got str '100'",
        ),
        (
            "study: s\nfinetune: {utd_ratio: true}\n",
            "finetune.utd_ratio",
            "expected an int, got bool True",
        ),
        (
            "study: s\npretrain: {hidden: 256}\n",
            "pretrain.hidden",
            "expected a list of ints, got int 256",
        ),
        ("study: s\npretrain: {hidden: [64, 6.5]}\n", "pretrain.hidden", "expected a list of ints"),
        ("study: s\npretrain: {device: 1}\n", "pretrain.device", "expected a string, got int 1"),
        (
            "study: s\nfinetune: {drift_tol: fast}\n",
            "finetune.drift_tol",
            "expected a number, got str 'fast'",
        ),
        (
            "study: s\nvariants: [sft, stf]\n",
            "variants",
            f"unknown variant 'stf'; allowed: {list(VARIANTS)}",
        ),
        (
            "study: s\nalgos: [cql]\n",
            "algos",
            "unknown algorithm 'cql'; allowed: ['iql', 'td3bc', 'calql']",
        ),
        ("study: s\nalgos: [sac]\n", "algos", "unknown algorithm 'sac'"),
        ("study: s\nseeds: [0, 0]\n", "seeds", "repeated value(s) [0]"),
        ("study: s\nseeds: [0, 1.5]\n", "seeds", "expected a non-empty list of ints"),
        ("study: s\nseeds: []\n", "seeds", "expected a non-empty list"),
        ("study: s\ndatasets: [hopper-medium]\n", "datasets", "is not a Minari id with a version"),
        ("study: ../up\n", "study", "expected a name usable as one directory"),
        (
            "study: s\nfinetune: {drift_tol: -1}\n",
            "finetune.drift_tol",
            "drift_tol must be a positive number, got -1",
        ),
        (
            "study: s\nfinetune: {reset_scope: everything}\n",
            "finetune.reset_scope",
            "reset_scope must be one of ['last', 'full', 'offline'], got 'everything'",
        ),
        (
            "study: s\nfinetune: {offline_ratio: 2}\n",
            "finetune.offline_ratio",
            "offline_ratio must be in [0, 1]",
        ),
        ("study: s\npretrain: {hidden: [64, 0]}\n", "pretrain.hidden", "hidden must be"),
        (
            "study: s\npretrain: {agent: {iql: {expectile: 1.5}}}\n",
            "pretrain.agent.iql.expectile",
            "expectile must be in (0, 1), got 1.5",
        ),
        (
            "study: s\npretrain: {agent: {expectile: 0.7}}\nalgos: [iql, td3bc]\n",
            "pretrain.agent.expectile",
            "not a field of TD3BCConfig (algo td3bc)",
        ),
        ("study: s\npretrain: {agent: {lr: fast}}\n", "pretrain.agent.lr", "expected a number"),
        (
            "study: s\ngrid: {reset_scope: [last, everything]}\n",
            "grid.reset_scope",
            "reset_scope must be one of",
        ),
        ("study: s\ngrid: {variant: [sft]}\n", "grid.variant", "unknown key; a grid varies"),
        ("study: s\ngrid: {reset_scope: last}\n", "grid.reset_scope", "expected a non-empty list"),
        (
            "study: s\ngrid: {reset_every: [10, 2.5]}\n",
            "grid.reset_every",
            "expected values of an int",
        ),
        ("study: s\nfinetune: [1, 2]\n", "finetune", "expected a mapping"),
    ],
)
def test_invalid_input_names_file_and_key(files, study_text, key, expect):
    paths = files(base=BASE, study=study_text)
    msg = error(paths)
    assert f"{paths[1]}: {key}:" in msg, msg
    assert expect in msg, msg


def test_error_in_base_names_base(files):
    paths = files(base=BASE.replace("reset_every: 50", "reset_every: -5"), study="study: s\n")
    assert (
        f"{paths[0]}: finetune.reset_every: reset_every must be a positive integer, got -5"
        in error(paths)
    )


def test_several_problems_are_reported_together(files):
    paths = files(
        base=BASE, study="study: s\npretrain: {offline_stepz: 1}\nfinetune: {patience: 1.5}\n"
    )
    msg = error(paths)
    assert "pretrain.offline_stepz" in msg and "finetune.patience: expected an int" in msg


def test_yaml_syntax_error_names_file_and_line(files):
    paths = files(base=BASE, study="study: s\nfinetune:\n  reset_every: 5\n  drift_tol: [1\n")
    msg = error(paths)
    assert msg.startswith(f"{paths[1]}:5:") and "YAML does not parse" in msg
    assert "line 4" in msg  # where the unclosed list began


def test_missing_file_and_missing_study(files, tmp_path):
    assert f"{tmp_path / 'nope.yaml'}: no such study file" in error([tmp_path / "nope.yaml"])
    assert "missing key(s) ['study']" in error(files(base=BASE))
    assert "top level must be a mapping" in error(files(x="- a\n- b\n"))


def test_study_params_built_in_python_is_validated_too():
    with pytest.raises(ParamsError, match=r"<python>: finetune.reset_evry: unknown key"):
        StudyParams(
            study="s",
            datasets=["local/hopper/medium-v0"],
            algos=["iql"],
            variants=["sft"],
            seeds=[0],
            finetune={"reset_evry": 1},
        )


def test_known_pretrain_keys_exclude_the_swept_ones():
    assert {"dataset_id", "algo", "seed"}.isdisjoint(pretrain_keys())
    assert "offline_steps" in pretrain_keys()


# --------------------------------------------------------------------------- CLI


def test_cli_bad_file_exits_2_before_anything_runs(files, tmp_path, capsys, monkeypatch):
    from sftlib.sweeps import sweep

    def boom(*a, **k):
        raise AssertionError("nothing may run on invalid parameters")

    monkeypatch.setattr(sweep, "run_sweep", boom)
    monkeypatch.setattr(sweep, "plan", boom)
    paths = files(base=BASE, study="study: s\nfinetune: {reset_evry: 5}\n")
    results = tmp_path / "results"
    assert cli.main(["sweep", str(paths[1]), "--results", str(results)]) == 2
    err = capsys.readouterr().err
    assert f"{paths[1]}: finetune.reset_evry: unknown key" in err
    assert not results.exists()


def test_cli_prepends_base_beside_the_first_file(files, tmp_path, capsys):
    paths = files(base=BASE, quick="study: q\n")
    assert cli.with_base([paths[1]]) == [paths[0], paths[1]]
    assert cli.with_base([paths[0], paths[1]]) == [paths[0], paths[1]]
    assert cli.main(["sweep", str(paths[1]), "--dry-run", "--results", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "q/local-hopper-medium-v0/iql/pretrain/seed=0 (+ seeds 1" in out
    # each variant fine-tunes both seeds in one process
    assert "3 runs (1 pretraining, 2 fine-tuning): 0 complete, 3 to run" in out
    assert not (tmp_path / "r").exists()
    # Without base.yaml the study lacks datasets/algos/variants/seeds.
    assert cli.main(["sweep", str(paths[1]), "--no-base", "--dry-run"]) == 2


def test_python_m_sftlib_exits_2_on_bad_file(files, tmp_path):
    paths = files(base=BASE, study="study: s\nvariants: [nope]\n")
    proc = subprocess.run(
        [sys.executable, "-m", "sftlib", "sweep", str(paths[1]), "--results", str(tmp_path / "r")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 2, proc.stderr
    assert f"{paths[1]}: variants: unknown variant 'nope'" in proc.stderr
    assert not (tmp_path / "r").exists()


def test_cli_datasets_calls_the_factory(monkeypatch, capsys):
    import types

    calls = []

    def make_datasets(env_id, levels=None):  # prints one line per dataset, as the factory does
        calls.append((env_id, levels))
        for level in levels:
            print(f"dataset local/hopper/{level}-v0: made")
        return {level: f"local/hopper/{level}-v0" for level in levels}

    fake = types.ModuleType("sftlib.factory")
    fake.make_datasets = make_datasets
    monkeypatch.setitem(sys.modules, "sftlib.factory", fake)
    assert cli.main(["datasets", "Hopper-v5", "--levels", "medium", "medium-replay"]) == 0
    assert calls == [("Hopper-v5", ["medium", "medium-replay"])]
    # One line per dataset: the command adds none of its own.
    assert capsys.readouterr().out.splitlines() == [
        "dataset local/hopper/medium-v0: made",
        "dataset local/hopper/medium-replay-v0: made",
    ]
