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
                                          #   <variant>+reset_scope=full (see sftlib.sweeps.sweep)

The merged study is validated by :class:`sftlib.sweeps.study.StudyParams`. Every problem is
reported as one line ``<file>: <key>: <what is wrong>; <allowed values
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

import re
from pathlib import Path
from typing import Any

import yaml

from sftlib.sweeps.study import ParamsError, StudyParams
from sftlib.typecheck import describe

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
                    f"{path}: {k}: expected a mapping of keys to values, got {describe(data[k])}"
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


__all__ = ["TOP_LEVEL_KEYS", "ParamsError", "StudyParams", "load_study_params"]
