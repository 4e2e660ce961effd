"""A merged study: the grid of runs and their shared parameters, validated up front.

:class:`StudyParams` is what :func:`sftlib.sweeps.params.load_study_params` returns after layering
the study files. Every problem is reported as one line ``<file>: <key>: <what is wrong>;
<allowed values or expected type>`` naming the file that set the key, all lines together as
one :class:`ParamsError`. Beyond keys and types, the configs of every grid point are built
with :func:`sftlib.config.pretrain_config` / :func:`sftlib.config.finetune_config`, so their
own ``__post_init__`` checks (ranges, choices) also run before anything runs.
"""

from __future__ import annotations

import copy
import itertools
import re
from dataclasses import dataclass, field
from typing import Any

from sftlib.agents import AGENTS, agent_class
from sftlib.config import (
    VARIANTS,
    FinetuneConfig,
    PretrainConfig,
    SFTConfig,
    field_names,
    finetune_config,
    pretrain_config,
)
from sftlib.factory.catalog import check_dataset_id
from sftlib.layout import dataset_slug
from sftlib.typecheck import FINITE, Range, describe, field_hints, matches, range_problem, type_name

PRETRAIN_RESERVED = ("dataset_id", "algo", "seed")
"""PretrainConfig fields the sweep sets from the grid (``datasets``, ``algos``, ``seeds``)."""
FINETUNE_RESERVED = ("pretrain_dir", "seed", "variant")
"""Fine-tuning fields the sweep sets (the pretraining run's dir, ``seeds``, ``variants``)."""
STUDY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")
PYTHON = "<python>"
"""Source name of values given directly in Python rather than by a file."""
DEFAULT = "<default>"
"""Source name of dataclass defaults (no file set the key)."""


class ParamsError(ValueError):
    """A study file is invalid; the message names the file, the key and what is allowed."""


# --------------------------------------------------------------------------- keys


def pretrain_keys() -> list[str]:
    """Keys allowed under ``pretrain:``."""
    return [k for k in field_names(PretrainConfig) if k not in PRETRAIN_RESERVED]


def finetune_keys() -> list[str]:
    """Keys allowed under ``finetune:`` (and ``grid:``)."""
    ft = [k for k in field_names(FinetuneConfig) if k != "sft"]
    return [k for k in ft + field_names(SFTConfig) if k not in FINETUNE_RESERVED]


def _finetune_hints() -> dict[str, Any]:
    return {
        **field_hints(SFTConfig),
        **{k: v for k, v in field_hints(FinetuneConfig).items() if k != "sft"},
    }


FINETUNE_RANGES: dict[str, Range] = {**SFTConfig.RANGES, **FinetuneConfig.RANGES}
"""The ranges of the numeric keys of ``finetune:`` and ``grid:``."""


def offline_algos() -> list[str]:
    """Algorithms :class:`PretrainConfig` accepts (those with an offline update)."""
    ok = []
    for a in AGENTS:
        try:
            PretrainConfig(algo=a)
        except ValueError:
            continue
        ok.append(a)
    return ok


def _repeats(values: list[Any]) -> bool:
    """Whether two of ``values`` are the same value (``1`` and ``1.0`` are: the same config
    under two run names); ``true`` and ``1`` are not."""
    keys = [(isinstance(v, bool), v) if isinstance(v, int | float) else repr(v) for v in values]
    return any(a == b for i, a in enumerate(keys) for b in keys[i + 1 :])


def _grid_label(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


# --------------------------------------------------------------------------- the study


@dataclass
class StudyParams:
    """A merged, validated study: the grid of runs and their shared parameters."""

    study: str
    """Name of the study; results go to ``<results_root>/<study>/``."""
    datasets: list[str]
    """Minari dataset ids."""
    algos: list[str]
    """Base algorithms."""
    variants: list[str]
    """Fine-tuning variants (names of :data:`sftlib.config.VARIANTS`)."""
    seeds: list[int]
    """Seeds; every (dataset, algo, variant) runs once per seed."""
    pretrain: dict[str, Any] = field(default_factory=dict)
    """PretrainConfig fields shared by every pretraining run."""
    finetune: dict[str, Any] = field(default_factory=dict)
    """FinetuneConfig and SFTConfig fields shared by every fine-tuning run."""
    grid: dict[str, list[Any]] = field(default_factory=dict)
    """Fine-tuning keys -> values; each combination is a separate fine-tuning run."""
    sources: dict[str, str] = field(default_factory=dict)
    """Dotted key (``pretrain.offline_steps``) -> the file that set it (for messages)."""
    files: list[str] = field(default_factory=list)
    """The study files in the order they were layered."""

    def __post_init__(self) -> None:
        problems = self._check_shapes()
        if problems:
            raise ParamsError("\n".join(problems))
        problems = self._check_configs()
        if problems:
            raise ParamsError("\n".join(problems))

    # -- where a key came from

    def source(self, key: str) -> str:
        """The file that set dotted ``key`` (or its closest set parent)."""
        parts = key.split(".")
        for i in range(len(parts), 0, -1):
            k = ".".join(parts[:i])
            if k in self.sources:
                return self.sources[k]
        return PYTHON if not self.files else DEFAULT

    def _err(self, key: str, what: str) -> str:
        return f"{self.source(key)}: {key}: {what}"

    # -- static checks: keys and types

    def _check_shapes(self) -> list[str]:
        p: list[str] = []
        if not isinstance(self.study, str) or not STUDY_NAME.fullmatch(self.study):
            p.append(
                self._err(
                    "study",
                    f"got {self.study!r}; expected a name usable as one "
                    "directory: letters, digits, '_', '-', '.'",
                )
            )
        checks = {"datasets": str, "algos": str, "variants": str, "seeds": int}
        for key, t in checks.items():
            v = getattr(self, key)
            if not isinstance(v, list) or not v or not all(matches(x, t) for x in v):
                p.append(
                    self._err(
                        key,
                        f"got {v!r}; expected a non-empty list of "
                        f"{type_name(t).removeprefix('a ').removeprefix('an ')}s",
                    )
                )
            elif len(set(v)) != len(v):
                dup = sorted({x for x in v if v.count(x) > 1})
                p.append(self._err(key, f"repeated value(s) {dup}; each run needs its own dir"))
        if p:
            return p
        p += self._check_names()
        seeds = PretrainConfig.RANGES["seed"]
        for s in self.seeds:
            problem = seeds.problem(s, integer=True)
            if problem is not None:
                p.append(self._err("seeds", f"seed {problem}"))
        p += self._check_section(
            "pretrain",
            self.pretrain,
            pretrain_keys(),
            field_hints(PretrainConfig),
            PRETRAIN_RESERVED,
            "datasets, algos and seeds",
            PretrainConfig.RANGES,
        )
        p += self._check_section(
            "finetune",
            self.finetune,
            finetune_keys(),
            _finetune_hints(),
            FINETUNE_RESERVED,
            "variants and seeds (pretrain_dir by the sweep)",
            FINETUNE_RANGES,
        )
        if isinstance(self.pretrain, dict) and isinstance(self.pretrain.get("agent"), dict):
            p += self._check_agent(self.pretrain["agent"])
        p += self._check_grid()
        return p

    def _check_names(self) -> list[str]:
        """Datasets (known to a factory or the store, none sharing a run directory),
        algorithms with an offline phase and variants of the table."""
        p: list[str] = []
        for d in self.datasets:
            try:
                check_dataset_id(d)  # unknown local ids and broken local copies, before any run
            except ValueError as e:
                p.append(self._err("datasets", str(e)))
        slugs: dict[str, str] = {}
        for d in self.datasets:
            other = slugs.setdefault(dataset_slug(d), d)
            if other != d:
                p.append(
                    self._err(
                        "datasets",
                        f"{other!r} and {d!r} would share the run directories "
                        f"{dataset_slug(d)}/...; keep one of them",
                    )
                )
        algos = offline_algos()
        for a in self.algos:
            if a not in algos:
                p.append(self._err("algos", f"unknown algorithm {a!r}; allowed: {algos}"))
        for v in self.variants:
            if v not in VARIANTS:
                p.append(self._err("variants", f"unknown variant {v!r}; allowed: {list(VARIANTS)}"))
        return p

    def _check_section(
        self,
        name: str,
        values: Any,
        known: list[str],
        hints: dict[str, Any],
        reserved: tuple[str, ...],
        set_by: str,
        ranges: dict[str, Range],
    ) -> list[str]:
        """Unknown and reserved keys, wrong types and numbers out of range: every one."""
        if not isinstance(values, dict):
            return [self._err(name, f"expected a mapping, got {describe(values)}")]
        p = []
        for k, v in values.items():
            key = f"{name}.{k}"
            if k in reserved:
                p.append(self._err(key, f"is set by the sweep from {set_by}; remove it here"))
            elif k not in known:
                p.append(self._err(key, f"unknown key; known {name} keys: {sorted(known)}"))
            elif not matches(v, hints[k]):
                p.append(self._err(key, f"expected {type_name(hints[k])}, got {describe(v)}"))
            elif (problem := range_problem(k, v, hints[k], ranges.get(k, FINITE))) is not None:
                p.append(self._err(key, problem))
        return p

    def _check_agent(self, agent: dict[str, Any]) -> list[str]:
        p = []
        algos = [a for a in self.algos if a in AGENTS]  # unknown ones are reported already
        for k, v in agent.items():
            key = f"pretrain.agent.{k}"
            if k in AGENTS:
                if not isinstance(v, dict):
                    p.append(self._err(key, f"expected a mapping of {k} fields, got {describe(v)}"))
                    continue
                if k in algos:
                    p += self._check_agent_fields(v, [k], f"{key}.")
                continue
            p += self._check_agent_fields({k: v}, algos, "pretrain.agent.")
        return p

    def _check_agent_fields(self, values: dict, algos: list[str], prefix: str) -> list[str]:
        p = []
        reserved = ("hidden", "batch_size")  # taken from pretrain.hidden / pretrain.batch_size
        for k, v in values.items():
            key = f"{prefix}{k}"
            if k in reserved:
                p.append(self._err(key, f"set pretrain.{k} instead (it applies to every network)"))
                continue
            for algo in algos:
                cls = agent_class(algo).config_cls
                hints = field_hints(cls)
                if k not in hints:
                    known = sorted(set(hints) - set(reserved))
                    hint = (
                        ""
                        if prefix.count(".") > 1
                        else f"; fields of one algorithm go under pretrain.agent.{algo}"
                    )
                    p.append(
                        self._err(
                            key,
                            f"not a field of {cls.__name__} (algo {algo}); known: {known}{hint}",
                        )
                    )
                elif not matches(v, hints[k]):
                    p.append(
                        self._err(
                            key,
                            f"expected {type_name(hints[k])} ({cls.__name__}), got {describe(v)}",
                        )
                    )
                elif (problem := range_problem(k, v, hints[k])) is not None:
                    p.append(self._err(key, problem))  # the algorithm's config checks the rest
        return p

    def _check_grid(self) -> list[str]:
        if not isinstance(self.grid, dict):
            return [
                self._err(
                    "grid",
                    f"expected a mapping of finetune keys to lists, got {describe(self.grid)}",
                )
            ]
        p, hints, known = [], _finetune_hints(), finetune_keys()
        for k, values in self.grid.items():
            key = f"grid.{k}"
            if k not in known:
                p.append(
                    self._err(key, f"unknown key; a grid varies finetune keys: {sorted(known)}")
                )
            elif not isinstance(values, list) or not values:
                p.append(self._err(key, f"expected a non-empty list of values, got {values!r}"))
            elif _repeats(values):
                p.append(
                    self._err(key, f"repeated values in {values!r}: they would be the same runs")
                )
            else:
                for v in values:
                    if not isinstance(v, str | int | float | bool):
                        p.append(
                            self._err(
                                key,
                                f"grid values must be scalars (they name the "
                                f"run dir), got {describe(v)}",
                            )
                        )
                    elif not matches(v, hints[k]):
                        p.append(
                            self._err(
                                key,
                                f"expected values of {type_name(hints[k])}, got {describe(v)}",
                            )
                        )
                    elif (
                        problem := range_problem(k, v, hints[k], FINETUNE_RANGES.get(k, FINITE))
                    ) is not None:
                        p.append(self._err(key, problem))
                    elif not re.fullmatch(r"[\w.\-]+", _grid_label(v)):
                        p.append(self._err(key, f"value {v!r} cannot be part of a dir name"))
        return p

    # -- dynamic checks: build every config the sweep will build

    def _check_configs(self) -> list[str]:
        p: list[str] = []

        def wrap(section: str, e: ValueError, keys: dict[str, str]) -> None:
            """``keys``: a field name as the message may say it -> the dotted key that set it."""
            msg = str(e)
            named = [
                dotted for word, dotted in keys.items() if re.search(rf"\b{re.escape(word)}\b", msg)
            ]
            if named:
                where = "; ".join(f"{self.source(k)}: {k}" for k in dict.fromkeys(named))
            else:
                files = sorted(
                    {
                        v
                        for k, v in self.sources.items()
                        if k == section or k.startswith(f"{section}.")
                    }
                ) or [DEFAULT]
                where = f"{', '.join(files)}: {section}"
            line = f"{where}: {msg}"
            if line not in p:
                p.append(line)

        agent = self.pretrain.get("agent") or {}
        # One pretraining config per algo: dataset ids are checked above, seeds cannot
        # make a config invalid.
        for algo in self.algos:
            values = self.pretrain_params(self.datasets[0], algo, self.seeds[0])
            try:
                pretrain_config(values)
            except ValueError as e:
                keys = {k: f"pretrain.{k}" for k in self.pretrain if k != "agent"}
                keys |= {k: f"pretrain.agent.{k}" for k in agent if k not in AGENTS}
                keys |= {k: f"pretrain.agent.{algo}.{k}" for k in agent.get(algo) or {}}
                wrap("pretrain", e, keys)
        for variant, point in itertools.product(self.variants, self.grid_points()):
            values = self.finetune_params(variant, self.seeds[0], "<pretrain_dir>", point)
            try:
                finetune_config(values)
            except ValueError as e:
                keys = {k: f"finetune.{k}" for k in self.finetune}
                keys |= {k: f"grid.{k}" for k in point}
                wrap("finetune", e, keys)
        return p

    # -- the grid

    def grid_points(self) -> list[dict[str, Any]]:
        """Every combination of the ``grid`` values (``[{}]`` without a grid)."""
        keys = list(self.grid)
        return [
            dict(zip(keys, vals, strict=True))
            for vals in itertools.product(*(self.grid[k] for k in keys))
        ]

    @staticmethod
    def grid_suffix(point: dict[str, Any]) -> str:
        """``{"reset_scope": "full"}`` -> ``+reset_scope=full`` (appended to the variant)."""
        return "".join(f"+{k}={_grid_label(v)}" for k, v in point.items())

    def agent_params(self, algo: str) -> dict[str, Any]:
        """``pretrain.agent`` for ``algo``: shared fields, then those under its name."""
        agent = self.pretrain.get("agent", {}) or {}
        shared = {k: v for k, v in agent.items() if k not in AGENTS}
        return {**shared, **(agent.get(algo) or {})}

    def pretrain_params(self, dataset: str, algo: str, seed: int) -> dict[str, Any]:
        """Flat parameters of one pretraining run (what the study sets; no defaults)."""
        values = {k: copy.deepcopy(v) for k, v in self.pretrain.items() if k != "agent"}
        if "agent" in self.pretrain:
            values["agent"] = self.agent_params(algo)
        return {"dataset_id": dataset, "algo": algo, "seed": seed, **values}

    def finetune_params(
        self, variant: str, seed: int, pretrain_dir: str, point: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Flat parameters of one fine-tuning run (what the study sets; no defaults)."""
        return {
            "pretrain_dir": pretrain_dir,
            "seed": seed,
            "variant": variant,
            **copy.deepcopy(self.finetune),
            **(point or {}),
        }
