"""Layered YAML study files: load, merge, validate before anything runs.

A study is described by one or more YAML files merged left to right: a later file
overrides an earlier one, nested mappings (``pretrain``, ``finetune``, ``grid``,
``pretrain.agent``) are merged key by key, and lists are replaced whole. The command line
always layers ``params/base.yaml`` first (see :mod:`sftlib.cli`). Schema of the merged
study::

    study: quick                          # name -> results/<study>/ (one path component)
    extends: paper.yaml                   # optional: file(s) layered before this one,
                                          #   relative to this file (a string or a list)
    datasets: [local/hopper/medium-v0]    # Minari ids; local ids are built if missing
    algos: [iql, td3bc]                   # base algorithms with an offline phase
    variants: [direct, pex, sft]          # names of sftlib.config.VARIANTS
    seeds: [0, 1, 2]                      # non-negative ints, no repeats
    pretrain:                             # PretrainConfig fields except dataset_id, algo, seed
      offline_steps: 100000
      hidden: [256, 256]
      agent:                              # fields of the algorithm's config shared by
        lr: 3.0e-4                        #   every algo, and per-algo fields under the
        iql: {expectile: 0.7}             #   algo's name (applied after the shared ones)
    finetune:                             # FinetuneConfig + SFTConfig fields except
      online_steps: 100000                #   pretrain_dir, seed, variant
      reset_every: 10000
    grid:                                 # optional: finetune keys -> lists of values; every
      reset_scope: [last, full]           #   combination is a separate fine-tuning run named
                                          #   <variant>+reset_scope=full (see sftlib.sweep)

Every problem is reported as one line ``<file>: <key>: <what is wrong>; <allowed values
or expected type>``, naming the file that set the key, and all lines are raised together
as one :class:`ParamsError` by :func:`load_study_params` -- before any dataset is built or
any result directory is created. Beyond keys and types, the configs of every grid point
are built with :func:`sftlib.config.pretrain_config` / :func:`sftlib.config.finetune_config`,
so their own ``__post_init__`` checks (ranges, choices) also run up front.

YAML pitfall handled here: YAML 1.1 (PyYAML) reads ``3e-4`` as a *string*; this loader
reads it as the float it looks like (YAML 1.2 rule). ``1e6`` is therefore a float too
and is rejected for integer fields -- write ``1_000_000``.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sftlib.agents import AGENTS, agent_class
from sftlib.config import (
    VARIANTS,
    FinetuneConfig,
    PretrainConfig,
    SFTConfig,
    field_names,
    finetune_config,
    pretrain_config,
    validate_dataset_id,
)

TOP_LEVEL_KEYS = (
    "study",
    "extends",
    "datasets",
    "algos",
    "variants",
    "seeds",
    "pretrain",
    "finetune",
    "grid",
)
"""Keys a study file may set."""
REQUIRED_KEYS = ("study", "datasets", "algos", "variants", "seeds")
"""Keys the merged study must have."""
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


# --------------------------------------------------------------------------- YAML loading


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-3`` / ``3E+4`` (no dot) as floats, as YAML 1.2 does."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ParamsError(f"{path}: no such study file") from None
    except OSError as e:
        raise ParamsError(f"{path}: cannot be read ({e.strerror})") from None
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 -- a SafeLoader subclass
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(e, "problem", None) or str(e)
        context, cmark = getattr(e, "context", None), getattr(e, "context_mark", None)
        if context and cmark is not None and cmark is not mark:
            context = f"{context} (line {cmark.line + 1})"
        detail = f"{context}, {problem}" if context else problem
        raise ParamsError(f"{where}: YAML does not parse: {detail}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ParamsError(
            f"{path}: the top level must be a mapping of keys {list(TOP_LEVEL_KEYS)}, "
            f"got a {type(data).__name__}"
        )
    return data


def _expand_extends(paths: list[Path]) -> list[Path]:
    """Put every file's ``extends`` before it; each file is layered once (first place)."""
    out: list[Path] = []
    seen: set[Path] = set()

    def visit(path: Path, stack: tuple[Path, ...]) -> None:
        key = path.resolve()
        if key in stack:
            chain = " -> ".join(str(p) for p in (*stack, key))
            raise ParamsError(f"{path}: extends: cycle {chain}")
        if key in seen:
            return
        data = _read_yaml(path)
        ext = data.get("extends", [])
        if isinstance(ext, str):
            ext = [ext]
        if not isinstance(ext, list) or not all(isinstance(e, str) for e in ext):
            raise ParamsError(
                f"{path}: extends: expected a file name or a list of file names "
                f"(relative to {path.parent}), got {ext!r}"
            )
        for e in ext:
            visit(path.parent / e, (*stack, key))
        if key not in seen:
            seen.add(key)
            out.append(path)

    for p in paths:
        visit(Path(p), ())
    return out


def _merge(into: dict, new: dict, sources: dict[str, str], src: str, prefix: str = "") -> None:
    """Merge ``new`` into ``into`` in place; mappings key by key, anything else replaced.

    ``sources`` records, for every dotted key set, the file that set it last.
    """
    for k, v in new.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            _merge(into[k], v, sources, src, f"{key}.")
        else:
            into[k] = _copy(v)
            for s in [s for s in sources if s.startswith(f"{key}.")]:
                del sources[s]
            _record(v, sources, src, key)


def _record(v: Any, sources: dict[str, str], src: str, key: str) -> None:
    sources[key] = src
    if isinstance(v, dict):
        for k, sub in v.items():
            _record(sub, sources, src, f"{key}.{k}")


def _copy(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _copy(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_copy(x) for x in v]
    return v


def load_study_params(paths: list[str | Path] | tuple[str | Path, ...]) -> StudyParams:
    """Merge the study files ``paths`` left to right and validate the result.

    Raises :class:`ParamsError` naming the file and key of every problem found.
    """
    if isinstance(paths, str | Path):
        paths = [paths]
    if not paths:
        raise ParamsError("no study file given")
    files = _expand_extends([Path(p) for p in paths])
    merged: dict[str, Any] = {}
    sources: dict[str, str] = {}
    problems: list[str] = []
    for path in files:
        data = _read_yaml(path)
        for k in data:
            if k not in TOP_LEVEL_KEYS:
                problems.append(
                    f"{path}: {k}: unknown top-level key; allowed keys: {list(TOP_LEVEL_KEYS)}"
                )
            elif k in ("pretrain", "finetune", "grid") and not isinstance(data[k], dict | None):
                problems.append(
                    f"{path}: {k}: expected a mapping of keys to values, got {_describe(data[k])}"
                )
        clean = {}
        for k, v in data.items():
            if k not in TOP_LEVEL_KEYS or k == "extends":
                continue
            if k in ("pretrain", "finetune", "grid"):
                if v is None:
                    v = {}  # an empty section ("finetune:") sets nothing
                elif not isinstance(v, dict):
                    continue  # reported above
            clean[k] = v
        _merge(merged, clean, sources, str(path))
    if problems:
        raise ParamsError("\n".join(problems))
    missing = [k for k in REQUIRED_KEYS if k not in merged]
    if missing:
        raise ParamsError(
            f"{', '.join(str(f) for f in files)}: missing key(s) {missing}; "
            f"no file sets them (base.yaml sets datasets, algos, variants and seeds; "
            f"each study file sets study)"
        )
    return StudyParams(
        study=merged["study"],
        datasets=merged["datasets"],
        algos=merged["algos"],
        variants=merged["variants"],
        seeds=merged["seeds"],
        pretrain=merged.get("pretrain", {}),
        finetune=merged.get("finetune", {}),
        grid=merged.get("grid", {}),
        sources=sources,
        files=[str(f) for f in files],
    )


# --------------------------------------------------------------------------- type checks


def _describe(v: Any) -> str:
    return f"{type(v).__name__} {v!r}"


def _type_name(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if hint is Any:
        return "any value"
    if hint in (int, float, str, bool):
        return {int: "an int", float: "a number", str: "a string", bool: "true/false"}[hint]
    if origin in (tuple, list):
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        return (
            f"a list of {_type_name(args[0]).removeprefix('a ').removeprefix('an ')}s"
            if args
            else "a list"
        )
    if origin is dict:
        return "a mapping"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(hint))
    if hint is type(None):
        return "null"
    return getattr(hint, "__name__", str(hint))


def _matches(v: Any, hint: Any) -> bool:
    """Whether the YAML value ``v`` fits the annotation ``hint`` of a config field.

    int rejects bools and floats; float accepts ints; tuple/list fields need lists.
    """
    origin = typing.get_origin(hint)
    if hint is Any:
        return True
    if hint is int:
        return isinstance(v, int) and not isinstance(v, bool)
    if hint is float:
        return isinstance(v, int | float) and not isinstance(v, bool)
    if hint is str:
        return isinstance(v, str)
    if hint is bool:
        return isinstance(v, bool)
    if hint is type(None):
        return v is None
    if origin in (tuple, list):
        if not isinstance(v, list):
            return False
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        return not args or all(_matches(x, args[0]) for x in v)
    if origin is dict:
        if not isinstance(v, dict):
            return False
        args = typing.get_args(hint)
        return not args or all(_matches(k, args[0]) and _matches(x, args[1]) for k, x in v.items())
    if origin in (typing.Union, types.UnionType):
        return any(_matches(v, a) for a in typing.get_args(hint))
    if isinstance(hint, type):
        return isinstance(v, hint)
    return True


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def pretrain_keys() -> list[str]:
    """Keys allowed under ``pretrain:``."""
    return [k for k in field_names(PretrainConfig) if k not in PRETRAIN_RESERVED]


def finetune_keys() -> list[str]:
    """Keys allowed under ``finetune:`` (and ``grid:``)."""
    ft = [k for k in field_names(FinetuneConfig) if k != "sft"]
    return [k for k in ft + field_names(SFTConfig) if k not in FINETUNE_RESERVED]


def _finetune_hints() -> dict[str, Any]:
    return {**_hints(SFTConfig), **{k: v for k, v in _hints(FinetuneConfig).items() if k != "sft"}}


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
            if not isinstance(v, list) or not v or not all(_matches(x, t) for x in v):
                p.append(
                    self._err(
                        key,
                        f"got {v!r}; expected a non-empty list of "
                        f"{_type_name(t).removeprefix('a ').removeprefix('an ')}s",
                    )
                )
            elif len(set(v)) != len(v):
                dup = sorted({x for x in v if v.count(x) > 1})
                p.append(self._err(key, f"repeated value(s) {dup}; each run needs its own dir"))
        if p:
            return p
        for d in self.datasets:
            try:
                validate_dataset_id(d)
            except ValueError as e:
                p.append(self._err("datasets", str(e)))
        algos = offline_algos()
        for a in self.algos:
            if a not in algos:
                p.append(self._err("algos", f"unknown algorithm {a!r}; allowed: {algos}"))
        for v in self.variants:
            if v not in VARIANTS:
                p.append(self._err("variants", f"unknown variant {v!r}; allowed: {list(VARIANTS)}"))
        for s in self.seeds:
            if s < 0:
                p.append(self._err("seeds", f"seed {s} is negative; seeds must be >= 0"))
        p += self._check_section(
            "pretrain",
            self.pretrain,
            pretrain_keys(),
            _hints(PretrainConfig),
            PRETRAIN_RESERVED,
            "datasets, algos and seeds",
        )
        p += self._check_section(
            "finetune",
            self.finetune,
            finetune_keys(),
            _finetune_hints(),
            FINETUNE_RESERVED,
            "variants and seeds (pretrain_dir by the sweep)",
        )
        if isinstance(self.pretrain, dict) and isinstance(self.pretrain.get("agent"), dict):
            p += self._check_agent(self.pretrain["agent"])
        p += self._check_grid()
        return p

    def _check_section(
        self,
        name: str,
        values: Any,
        known: list[str],
        hints: dict[str, Any],
        reserved: tuple[str, ...],
        set_by: str,
    ) -> list[str]:
        if not isinstance(values, dict):
            return [self._err(name, f"expected a mapping, got {_describe(values)}")]
        p = []
        for k, v in values.items():
            key = f"{name}.{k}"
            if k in reserved:
                p.append(self._err(key, f"is set by the sweep from {set_by}; remove it here"))
            elif k not in known:
                p.append(self._err(key, f"unknown key; known {name} keys: {sorted(known)}"))
            elif not _matches(v, hints[k]):
                p.append(self._err(key, f"expected {_type_name(hints[k])}, got {_describe(v)}"))
        return p

    def _check_agent(self, agent: dict[str, Any]) -> list[str]:
        p = []
        algos = [a for a in self.algos if a in AGENTS]  # unknown ones are reported already
        for k, v in agent.items():
            key = f"pretrain.agent.{k}"
            if k in AGENTS:
                if not isinstance(v, dict):
                    p.append(
                        self._err(key, f"expected a mapping of {k} fields, got {_describe(v)}")
                    )
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
                hints = _hints(cls)
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
                elif not _matches(v, hints[k]):
                    p.append(
                        self._err(
                            key,
                            f"expected {_type_name(hints[k])} ({cls.__name__}), got {_describe(v)}",
                        )
                    )
        return p

    def _check_grid(self) -> list[str]:
        if not isinstance(self.grid, dict):
            return [
                self._err(
                    "grid",
                    f"expected a mapping of finetune keys to lists, got {_describe(self.grid)}",
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
            elif len(set(map(repr, values))) != len(values):
                p.append(self._err(key, f"repeated values in {values!r}"))
            else:
                for v in values:
                    if not isinstance(v, str | int | float | bool):
                        p.append(
                            self._err(
                                key,
                                f"grid values must be scalars (they name the "
                                f"run dir), got {_describe(v)}",
                            )
                        )
                    elif not _matches(v, hints[k]):
                        p.append(
                            self._err(
                                key,
                                f"expected values of {_type_name(hints[k])}, got {_describe(v)}",
                            )
                        )
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
        values = {k: _copy(v) for k, v in self.pretrain.items() if k != "agent"}
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
            **_copy(self.finetune),
            **(point or {}),
        }


def resolved_pretrain(values: dict[str, Any]) -> dict[str, Any]:
    """Every :class:`PretrainConfig` field, defaults filled in, as YAML/JSON primitives."""
    cfg = pretrain_config(values)
    return {f.name: _plain(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}


def resolved_finetune(values: dict[str, Any]) -> dict[str, Any]:
    """Every fine-tuning field (FinetuneConfig + SFTConfig, flat), defaults filled in."""
    cfg = finetune_config(values)
    out = {f.name: _plain(getattr(cfg, f.name)) for f in dataclasses.fields(cfg) if f.name != "sft"}
    out.update({f.name: _plain(getattr(cfg.sft, f.name)) for f in dataclasses.fields(cfg.sft)})
    return out


def _plain(v: Any) -> Any:
    if isinstance(v, tuple | list):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v


__all__ = [
    "FINETUNE_RESERVED",
    "PRETRAIN_RESERVED",
    "ParamsError",
    "StudyParams",
    "TOP_LEVEL_KEYS",
    "finetune_keys",
    "load_study_params",
    "offline_algos",
    "pretrain_keys",
    "resolved_finetune",
    "resolved_pretrain",
]
