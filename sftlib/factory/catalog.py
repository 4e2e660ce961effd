"""The names of the factories' local datasets (levels, ids, env ids), and the check of a
dataset id before a sweep runs anything.

A sweep makes a missing ``local/<env>/<level>-v0`` (:mod:`sftlib.factory`, any gymnasium env
with continuous actions) or ``local/pointmaze/<maze>[-dense]-v0`` (:mod:`sftlib.factory.maze`)
in its dataset phase, after the plan is made. :func:`check_dataset_id` refuses at plan time
what that phase could not do: a local id that is neither in the store nor a factory recipe
(an unknown env name, level or maze, another version; the closest known ids are named), and a
copy in the store that cannot be used (truncated, corrupt, half-written by a killed build;
the file and the command that remakes it are named). Remote ids are left to the dataset
phase: checking them needs the network.
"""

from __future__ import annotations

import difflib
import functools
import re
from pathlib import Path

import gymnasium as gym
import minari

from sftlib.data.datasets import (
    DatasetError,
    check_store_copy,
    make_local_hint,
)
from sftlib.data.envs import gym_make
from sftlib.data.store import dataset_dir, store_root
from sftlib.factory import maze

LEVELS = ("random", "medium", "medium-replay", "medium-expert", "expert")
ASSETS = Path(__file__).parent.parent / "assets" / "behaviour"
"""Shipped behaviour snapshots, one ``<env id>.pt`` per environment."""
LOCAL_ID = re.compile(r"local/(?P<env>[\w\-]+)/(?P<level>[a-z\-]+)-v(?P<version>\d+)")
RECIPE_FORMS = "local/<env>/<level>-v0 or local/pointmaze/<maze>[-dense]-v0"


def check_env_id(env_id: str) -> gym.Env:
    """``gym.make(env_id)`` with a clear error for unknown ids or non-Box spaces."""
    try:
        env = gym_make(env_id)
    except Exception as e:
        raise ValueError(
            f"unknown or unavailable gymnasium env id {env_id!r} ({type(e).__name__}: {e}). "
            "MuJoCo ids look like 'Hopper-v5', 'HalfCheetah-v5', 'Walker2d-v5'."
        ) from None
    if not isinstance(env.action_space, gym.spaces.Box):
        raise ValueError(f"env {env_id!r} has a non-continuous action space")
    return env


def dataset_id_for(env_id: str, level: str, version: int = 0) -> str:
    """``Hopper-v5``, ``medium`` -> ``local/hopper/medium-v0``."""
    if level not in LEVELS:
        raise ValueError(f"level must be one of {list(LEVELS)}, got {level!r}")
    name = re.sub(r"-v\d+$", "", env_id).lower()
    return f"local/{name}/{level}-v{version}"


def env_id_for(name: str) -> str:
    """Inverse of :func:`dataset_id_for` for registered envs: ``hopper`` -> ``Hopper-v5``."""
    matches = sorted(
        i for i in gym.registry if re.sub(r"-v\d+$", "", i).lower() == name and "/" not in i
    )
    if not matches:
        raise ValueError(f"no gymnasium env id matches dataset env name {name!r}")
    return matches[-1]  # the newest version


def recipe_command(dataset_id: str) -> str | None:
    """The command that makes ``dataset_id`` (``python -m sftlib datasets Hopper-v5 --levels
    medium``), or ``None`` if no factory makes it."""
    if unmakeable(dataset_id) is not None:
        return None
    match = maze.LOCAL_ID.fullmatch(dataset_id)
    if match:
        dense = " --dense" if match["dense"] else ""
        return f"python -m sftlib.factory.maze {match['maze']}{dense}"
    match = LOCAL_ID.fullmatch(dataset_id)
    return f"python -m sftlib datasets {env_id_for(match['env'])} --levels {match['level']}"


def remake_command(dataset_id: str) -> str | None:
    """The commands that replace a broken copy of ``dataset_id`` in the store, or ``None``
    for a local id no factory makes."""
    if not dataset_id.startswith("local/"):
        return f"`minari delete {dataset_id} && minari download {dataset_id}`"
    recipe = recipe_command(dataset_id)
    return None if recipe is None else f"`minari delete {dataset_id} && {recipe}`"


def unmakeable(dataset_id: str) -> str | None:
    """Why no factory makes local id ``dataset_id``; ``None`` if one does."""
    match = maze.LOCAL_ID.fullmatch(dataset_id)
    if match:
        if match["maze"] not in maze.MAZES:
            return f"unknown maze {match['maze']!r}; sftlib.factory.maze makes {list(maze.MAZES)}"
        if match["version"] != "0":
            return "only version 0 is sftlib.factory.maze's recipe"
        return None
    match = LOCAL_ID.fullmatch(dataset_id)
    if not match:
        return f"it is not of the forms the factories make ({RECIPE_FORMS})"
    problem = _env_problem(match["env"])
    if problem is not None:
        return problem
    if match["level"] not in LEVELS:
        return f"unknown level {match['level']!r}; sftlib.factory makes {list(LEVELS)}"
    if match["version"] != "0":
        return "only version 0 is sftlib.factory's recipe"
    return None


@functools.cache
def _env_problem(name: str) -> str | None:
    """Why the factory cannot make data for env name ``name`` (``hopper``), or ``None``."""
    try:
        env_id = env_id_for(name)
    except ValueError:
        return f"unknown environment name {name!r}: no gymnasium env id is called that"
    try:
        check_env_id(env_id).close()
    except ValueError as e:
        return str(e)
    return None


def known_ids() -> list[str]:
    """Ids to suggest for a mistyped one: what the store holds, every level of the envs whose
    behaviour policies ship with sftlib, and every PointMaze recipe."""
    ids = set(minari.list_local_datasets())
    for asset in ASSETS.glob("*.pt"):
        ids.update(dataset_id_for(asset.stem, level) for level in LEVELS)
    for name in maze.MAZES:
        ids.update(maze.dataset_id_for(name, dense) for dense in (False, True))
    return sorted(ids)


def closest_ids(dataset_id: str, n: int = 3) -> list[str]:
    """The known ids most like ``dataset_id`` (``difflib``), best first."""
    return difflib.get_close_matches(dataset_id, known_ids(), n=n, cutoff=0.6)


def check_dataset_id(dataset_id: str) -> None:
    """One :class:`DatasetError` for a dataset id a sweep could not use; nothing if it can.

    Refused: an id without a version; a copy in the local store that cannot be used (the
    error names the file and the command that remakes it); a local id not in the store that
    no factory makes (the error names the closest known ids). Remote ids not in the store
    pass: they are downloaded in the sweep's dataset phase.
    """
    check_store_copy(dataset_id, remake_command(dataset_id))
    if dataset_dir(dataset_id).exists() or not dataset_id.startswith("local/"):
        return
    why = unmakeable(dataset_id)
    if why is None:
        return
    closest = closest_ids(dataset_id)
    suggestion = f" Closest known ids: {closest}." if closest else ""
    raise DatasetError(
        f"dataset {dataset_id!r} is not in the local Minari store ({store_root()}) and no "
        f"factory makes it: {why}.{suggestion} {make_local_hint(dataset_id)}"
    )


__all__ = [
    "ASSETS",
    "LEVELS",
    "LOCAL_ID",
    "check_dataset_id",
    "check_env_id",
    "closest_ids",
    "dataset_id_for",
    "env_id_for",
    "known_ids",
    "recipe_command",
    "remake_command",
    "unmakeable",
]
