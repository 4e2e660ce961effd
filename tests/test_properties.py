"""Property-based tests over the parameter space: every study file and every set of notebook
parameters is either accepted, as a plan whose runs have finite numbers in range and
directories of their own, or refused with one sftlib error naming the key; never a traceback,
never an accepted NaN. And every numeric config field has a range that is checked."""

from __future__ import annotations

import dataclasses
import math
import re
import tempfile
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from papermill.cli import _resolve_type

from sftlib.config import (
    VARIANTS,
    FinetuneConfig,
    PretrainConfig,
    SFTConfig,
    field_names,
    finetune_config,
    pretrain_config,
)
from sftlib.sweeps.params import ParamsError, load_study_params
from sftlib.sweeps.plan import plan
from sftlib.sweeps.study import finetune_keys, pretrain_keys
from sftlib.typecheck import INT64_MAX, field_hints

SETTINGS = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,  # the same examples on every machine and run: a failure reproduces
    database=None,  # nothing written into the checkout
    suppress_health_check=[HealthCheck.too_slow],
)
CONFIGS = (PretrainConfig, SFTConfig, FinetuneConfig)
NUMERIC = (int, float, tuple[int, ...], list[int])


# --- every numeric field has a range, and it is checked ----------------------------------------
def numeric_fields(cls: type) -> list[str]:
    hints = field_hints(cls)
    return [f.name for f in dataclasses.fields(cls) if hints[f.name] in NUMERIC]


@pytest.mark.parametrize("cls", CONFIGS, ids=lambda c: c.__name__)
def test_every_numeric_field_has_a_range(cls):
    fields = numeric_fields(cls)
    assert fields, "no numeric field found: the test would check nothing"
    assert sorted(cls.RANGES) == sorted(fields)


def build(cls: type, name: str, value: Any) -> Any:
    hint = field_hints(cls)[name]
    return cls(**{name: [64, value] if typing.get_origin(hint) is tuple else value})


@pytest.mark.parametrize(
    ("cls", "name"),
    [(cls, name) for cls in CONFIGS for name in numeric_fields(cls)],
    ids=lambda x: getattr(x, "__name__", x),
)
def test_every_numeric_field_refuses_values_outside_its_range(cls, name):
    allowed = cls.RANGES[name]
    integer = field_hints(cls)[name] in (int, tuple[int, ...])
    bad = [allowed.low - 1, INT64_MAX + 1] if integer else [math.nan, math.inf, -math.inf]
    if not integer:
        bad.append(allowed.low - 0.5)
    if allowed.high is not None:
        bad.append(allowed.high + (0 if allowed.high_open else 1))
    for value in bad:
        with pytest.raises(ValueError, match=rf"^{name} must be .*got "):
            build(cls, name, value)


# --- study files ------------------------------------------------------------------------------
# Mostly values a study could mean (so that accepted plans and clashes get explored), now and
# then anything: a wrong type, a huge int, NaN or an infinity.
NUMBERS = st.one_of(
    st.integers(min_value=-3, max_value=3),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, 0.5, 1.0, 0.999, 1e-4, 3e-4]),
)
ANYTHING = st.one_of(
    NUMBERS,
    st.booleans(),
    st.none(),
    st.sampled_from(["sft", "last", "abc", "", "x y"]),
    st.lists(st.integers(min_value=-2, max_value=300), max_size=3),
)


def mostly(good: Any, bad: Any) -> st.SearchStrategy[Any]:
    """``good`` four times in five (lists are sampled from, strategies drawn from)."""
    good, bad = (x if isinstance(x, st.SearchStrategy) else st.sampled_from(x) for x in (good, bad))
    return st.sampled_from([good, good, good, good, bad]).flatmap(lambda strategy: strategy)


WORDS = {
    "selection": ["argmax", "softmax", "lcb"],
    "ope": ["q", "mc", "fqe", "cpe"],
    "reset_scope": ["last", "full", "offline"],
    "online_data": ["auto", "mix", "append"],
    "torch_compile": ["auto", "on", "off"],
    "device": ["auto", "cpu"],
    "reward_convention": ["raw", "minus_one", "calql"],
}


def meant(name: str, hint: Any) -> st.SearchStrategy[Any]:
    """A value of the field's type, mostly in a plausible range."""
    if hint is bool:
        return st.booleans()
    if hint is int:
        return st.integers(min_value=0, max_value=5_000)
    if hint is float:
        return st.floats(min_value=0.0, max_value=2.0)
    if typing.get_origin(hint) is tuple:
        return st.lists(st.integers(min_value=1, max_value=64), min_size=1, max_size=3)
    return st.sampled_from(WORDS.get(name, ["none", "auto"]))


def value_for(name: str, hint: Any) -> st.SearchStrategy[Any]:
    return mostly(meant(name, hint), ANYTHING)


def section(hints: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    keys = st.sampled_from([*hints, *hints, "nope"])
    return st.dictionaries(keys, st.just(None), max_size=4).flatmap(
        lambda chosen: st.fixed_dictionaries({k: value_for(k, hints.get(k, str)) for k in chosen})
    )


FINETUNE_HINTS = {
    k: v
    for k, v in {**field_hints(SFTConfig), **field_hints(FinetuneConfig)}.items()
    if k in finetune_keys()
}
PRETRAIN_HINTS = {
    k: v for k, v in field_hints(PretrainConfig).items() if k in pretrain_keys() and k != "agent"
}
AGENT_HINTS = {"lr": float, "discount": float, "tau": float, "expectile": float, "n_critics": int}
GRID = st.dictionaries(st.sampled_from(sorted(FINETUNE_HINTS)), st.just(None), max_size=2).flatmap(
    lambda chosen: st.fixed_dictionaries(
        {k: st.lists(value_for(k, FINETUNE_HINTS[k]), min_size=1, max_size=3) for k in chosen}
    )
)
DATASETS = mostly(
    ["local/hopper/medium-v0", "mujoco/hopper/medium-v0", "local/pointmaze/umaze-v0"],
    ["local/hoper/medium-v0", "local/hopper/medium", "mujoco/hopper-medium-v0"],
)


STUDIES = st.fixed_dictionaries(
    {
        "study": mostly(["s", "s.1"], ["../up", ""]),
        "datasets": st.lists(DATASETS, min_size=1, max_size=2, unique=True),
        "algos": st.lists(
            mostly(["iql", "td3bc", "calql"], ["cql", "sac"]), min_size=1, max_size=2, unique=True
        ),
        "variants": st.lists(mostly(list(VARIANTS), ["nope"]), min_size=1, max_size=3, unique=True),
        "seeds": st.lists(
            mostly(st.integers(min_value=0, max_value=9), NUMBERS),
            min_size=1,
            max_size=3,
            unique=True,
        ),
    },
    optional={
        "pretrain": st.tuples(
            section(PRETRAIN_HINTS), st.dictionaries(st.just("agent"), section(AGENT_HINTS))
        ).map(lambda parts: {**parts[0], **parts[1]}),
        "finetune": section(FINETUNE_HINTS),
        "grid": GRID,
    },
)


def finite_numbers(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(finite_numbers(v) for v in value.values())
    if isinstance(value, list | tuple):
        return all(finite_numbers(v) for v in value)
    return True


def computation(parameters: dict[str, Any]) -> tuple:
    """What a run computes: its parameters less where it writes, lists as tuples."""
    where = ("out_dir", "other_out_dirs")
    return tuple(
        (k, tuple(v) if isinstance(v, list) else v)
        for k, v in sorted(parameters.items())
        if k not in where
    )


def check_outcome(study: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "study.yaml"
        path.write_text(yaml.safe_dump(study))
        try:
            study_params = load_study_params([path])
        except ParamsError as e:
            lines = str(e).splitlines()
            assert lines
            for line in lines:  # each problem names the file and the key
                assert re.match(rf"{re.escape(str(path))}: [a-z_]+(\.[a-z_0-9]+)*[:;] \S", line), (
                    line
                )
            return
        runs = plan(study_params, Path(tmp) / "results")
    assert runs
    assert len({run.out_dir for run in runs}) == len(runs), "two runs share a directory"
    computations = [computation(run.parameters) for run in runs]
    for i, a in enumerate(computations):  # == compares numbers by value: 1 is 1.0
        assert a not in computations[i + 1 :], f"two runs compute the same: {runs[i].name}"
    for run in runs:
        assert finite_numbers(run.parameters), run.parameters
        for values in (study_params.pretrain, study_params.finetune, study_params.grid):
            assert finite_numbers(values)


@SETTINGS
@given(study=STUDIES)
@example(
    study={
        "study": "s",
        "datasets": ["local/hopper/medium-v0"],
        "algos": ["iql"],
        "variants": ["sft"],
        "seeds": [0],
        "finetune": {"margin": math.nan, "kappa": math.inf, "drift_tol": math.nan},
    }
)
@example(  # each value valid alone, clashing together: the same run twice
    study={
        "study": "s",
        "datasets": ["local/hopper/medium-v0"],
        "algos": ["iql"],
        "variants": ["sft"],
        "seeds": [0],
        "grid": {"margin": [1, 1.0]},
    }
)
@example(
    study={
        "study": "s",
        "datasets": ["mujoco/hopper/medium-v0", "mujoco/hopper-medium-v0"],
        "algos": ["iql"],
        "variants": ["sft"],
        "seeds": [0],
    }
)
@example(
    study={
        "study": "s",
        "datasets": ["local/hopper/medium-v0"],
        "algos": ["iql"],
        "variants": ["sft"],
        "seeds": [0, 2**64],
        "pretrain": {"agent": {"lr": math.nan}},
    }
)
def test_a_study_file_is_a_valid_plan_or_one_error_naming_file_and_key(study):
    check_outcome(study)


# --- notebook parameters (papermill -p / -f) ----------------------------------------------------
PAPERMILL_TEXT = st.sampled_from(
    ["nan", "inf", "-inf", "1e400", "0", "-1", "1", "2.5", "0.5", "1e6", "True", "None", "abc"]
    + ["99999999999999999999999", "[64, 64]", "local/hopper/medium-v0", "sft", "lcb"]
)
PARAMETER_VALUES = st.one_of(PAPERMILL_TEXT.map(_resolve_type), ANYTHING)


def parameters(names: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(st.sampled_from(names), PARAMETER_VALUES, min_size=1, max_size=4)


def check_config(build_config, values: dict[str, Any]) -> None:
    try:
        config = build_config(values)
    except ValueError as e:  # DatasetError and ParamsError are ValueErrors too
        named = [k for k in values if re.search(rf"\b{re.escape(k)}\b", str(e))]
        nested = [k for v in values.values() if isinstance(v, dict) for k in v]
        assert named or any(k in str(e) for k in nested), f"{values}: {e}"
        return
    flat = dataclasses.asdict(config)
    assert finite_numbers(flat), flat


@SETTINGS
@given(values=parameters([*field_names(PretrainConfig), "agent"]))
@example(values={"margin": math.nan})  # a finetune key: unknown here
@example(values={"seed": 2**64})
@example(values={"agent": {"lr": math.nan}})
def test_pretraining_parameters_build_a_config_or_one_error_naming_the_key(values):
    check_config(pretrain_config, values)


@SETTINGS
@given(values=parameters(field_names(SFTConfig) + field_names(FinetuneConfig)))
@example(values={"margin": math.nan, "kappa": math.inf})
@example(values={"offline_ratio": math.nan})
@example(values={"lcb_k": _resolve_type("nan"), "support_k": _resolve_type("inf")})
def test_finetuning_parameters_build_a_config_or_one_error_naming_the_key(values):
    check_config(finetune_config, values)
