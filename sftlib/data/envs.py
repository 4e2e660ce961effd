"""The environment of a dataset, made one way for evaluation and online fine-tuning.

:func:`make_env` imports the package an environment lives in (registering its ids, e.g.
gymnasium-robotics' ``PointMaze_*``/``AntMaze_*``/``AdroitHand*``), builds it from an id, an
``EnvSpec`` or a dataset's :class:`~sftlib.data.datasets.DatasetInfo`, and applies the goal
observation rule of :mod:`sftlib.data.goals` to goal-reaching environments, so that the agent
sees online exactly the inputs it was trained on offline.

A missing package is one :class:`EnvPackageError` naming the package and the command that
installs it, raised before the environment is built.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import gymnasium as gym
from gymnasium.envs.registration import EnvSpec

from sftlib.data.goals import GoalObservation, is_goal_space, observation_problem


@dataclass(frozen=True)
class EnvPackage:
    """A Python package that provides environments, and how to install it."""

    module: str
    """Import name, e.g. ``gymnasium_robotics``."""
    install: str
    """What to run to install it."""
    env_prefixes: tuple[str, ...] = ()
    """Env ids starting with one of these need the package (ids are registered on import)."""
    entry_points: tuple[str, ...] = ()
    """Entry-point modules starting with one of these need the package."""


ENV_PACKAGES: tuple[EnvPackage, ...] = (
    EnvPackage(
        module="gymnasium_robotics",
        install=(
            "pip install 'gymnasium-robotics>=1.4.2,<1.5' "
            "(a dependency of sftlib: `pip install -e .` installs it)"
        ),
        env_prefixes=(
            "PointMaze_",
            "AntMaze_",
            "AdroitHand",
            "FrankaKitchen",
            "Fetch",
            "HandManipulate",
            "HandReach",
        ),
        entry_points=("gymnasium_robotics",),
    ),
    EnvPackage(
        module="mujoco",
        install="pip install 'gymnasium[mujoco]' (a dependency of sftlib)",
        entry_points=("gymnasium.envs.mujoco",),
    ),
)
"""Packages that environments of the supported datasets need, beyond gymnasium itself."""


class EnvPackageError(ImportError):
    """An environment needs a package that cannot be imported; the message says how to
    install it."""


class EnvRecord(Protocol):
    """What :func:`make_env` needs from a dataset description (:class:`sftlib.data.datasets.DatasetInfo`)."""

    env_id: str
    eval_env_spec: str | None


EnvSource = str | EnvSpec | EnvRecord
"""An env id (``"Hopper-v5"``, ``"PointMaze_UMaze-v3"``), an ``EnvSpec``, or a dataset's
``DatasetInfo`` (whose ``eval_env_spec``, if recorded, wins over its ``env_id``)."""


def required_package(env_id: str, entry_point: object = None) -> EnvPackage | None:
    """The package of :data:`ENV_PACKAGES` that ``env_id`` (or its entry point) needs, if any."""
    for package in ENV_PACKAGES:
        if package.env_prefixes and env_id.startswith(package.env_prefixes):
            return package
        if (
            package.entry_points
            and isinstance(entry_point, str)
            and entry_point.startswith(package.entry_points)
        ):
            return package
    return None


def import_env_package(env_id: str, entry_point: object = None) -> None:
    """Import (and so register) the package ``env_id`` needs; :class:`EnvPackageError` if it
    is not installed."""
    if entry_point is None and env_id in gym.registry:
        entry_point = gym.registry[env_id].entry_point
    package = required_package(env_id, entry_point)
    if package is None:
        return
    try:
        module = importlib.import_module(package.module)
    except ImportError as e:
        raise EnvPackageError(
            f"environment {env_id!r} needs the package {package.module!r}, which cannot be "
            f"imported ({type(e).__name__}: {e}). Install it: {package.install}"
        ) from None
    if package.module == "gymnasium_robotics":
        gym.register_envs(module)  # importing registers the ids; this states the intent


def resolve_env(source: EnvSource) -> str | EnvSpec:
    """What ``gym.make`` is called with for ``source``: an id or an ``EnvSpec``.

    A dataset's ``eval_env_spec`` (Minari's evaluation environment, e.g. PointMaze's
    single-goal map with a 300-step limit) is preferred over its ``env_id``: the data
    environment of a continuing task can have a 10^6-step limit and random goals.
    """
    if isinstance(source, (str, EnvSpec)):
        return source
    if source.eval_env_spec is not None:
        return EnvSpec.from_json(source.eval_env_spec)
    return source.env_id


# Lines that native code prints to the process's stderr when an environment is made, known to
# be harmless: MuJoCo 3.3+ deprecates an attribute of gymnasium's half_cheetah.xml and says so
# at every model compile (hundreds of lines in a sweep).
KNOWN_NATIVE_NOISE = ("compiler attribute 'settotalmass' is deprecated",)


@contextlib.contextmanager
def dropping_native_noise(noise: tuple[str, ...] = KNOWN_NATIVE_NOISE) -> Iterator[None]:
    """Capture what native code writes to file descriptor 2 inside the block, and write it
    back afterwards without the lines that contain one of ``noise``."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no file descriptor 2 (a detached process): nothing to filter
        yield
        return
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines = captured.read().decode(errors="replace").splitlines(keepends=True)
            kept, after_noise = [], False
            for line in lines:
                # MuJoCo ends each warning with an empty line: it goes with the warning.
                dropped = any(n in line for n in noise) or (after_noise and not line.strip())
                if not dropped:
                    kept.append(line)
                after_noise = dropped and bool(line.strip())
            kept = "".join(kept)
            if kept:
                os.write(2, kept.encode())


def gym_make(target: str | EnvSpec) -> gym.Env:
    """``gym.make(target)`` without the known native noise (:data:`KNOWN_NATIVE_NOISE`)."""
    with dropping_native_noise():
        return gym.make(target)


def make_env(source: EnvSource) -> gym.Env:
    """The environment of ``source`` as the agent sees it: flat vector observations.

    Imports (and registers) the package the environment needs, ``gym.make`` s it, and wraps
    goal-reaching environments (``Dict`` observations with ``observation`` and
    ``desired_goal``) in :class:`sftlib.data.goals.GoalObservation`. A Box environment is exactly
    ``gym.make(env_id)``. Raises :class:`EnvPackageError` for a missing package and
    ``ValueError`` for observations the agents cannot take (images, other ``Dict`` s).
    """
    target = resolve_env(source)
    env_id = target.id if isinstance(target, EnvSpec) else target
    import_env_package(env_id, target.entry_point if isinstance(target, EnvSpec) else None)
    env = gym_make(target)
    problem = observation_problem(env.observation_space)
    if problem is not None:
        env.close()
        raise ValueError(f"environment {env_id!r}: {problem}")
    if is_goal_space(env.observation_space):
        env = GoalObservation(env)
    return env


def env_id_of(source: EnvSource) -> str:
    """The env id ``source`` makes."""
    target = resolve_env(source)
    return target.id if isinstance(target, EnvSpec) else target


__all__ = [
    "ENV_PACKAGES",
    "EnvPackage",
    "EnvPackageError",
    "EnvRecord",
    "EnvSource",
    "dropping_native_noise",
    "env_id_of",
    "gym_make",
    "import_env_package",
    "make_env",
    "required_package",
    "resolve_env",
]
