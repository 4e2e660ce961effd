"""Minari datasets: one loader for local and remote ids, transitions and normalised scores.

Two kinds of observations are supported: flat vectors (``Box``, MuJoCo locomotion, Adroit)
and goal dicts (``Dict`` with ``observation``/``achieved_goal``/``desired_goal``: D4RL
PointMaze, AntMaze), which are flattened by the goal rule of :mod:`sftlib.data.goals`
(``concat(observation, desired_goal)``) -- the same rule :func:`sftlib.data.envs.make_env`
applies online and in evaluation. Anything else (images, discrete actions, a dict without
a goal, an environment whose package is missing) is one :class:`DatasetError` from
:func:`check_dataset`, raised by :func:`dataset_info` and :func:`transitions` before any
compute.

Scores: a task reports the D4RL-normalised return (:meth:`DatasetInfo.normalize`, 0-100)
when its dataset has ``ref_min_score``/``ref_max_score``; a task that defines success
(``DatasetInfo.success_key``, the mazes) also reports the success rate in percent
(:func:`sftlib.data.goals.success_rate` of :func:`sftlib.data.rollouts.evaluate_policy_with_success`).
"""

from __future__ import annotations

import contextlib
import importlib.util
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import minari
import numpy as np
from gymnasium.envs.registration import EnvSpec

from sftlib.data.buffer import ReplayBuffer
from sftlib.data.envs import EnvPackageError, import_env_package
from sftlib.data.goals import (
    check_reward_convention,
    flat_obs_dim,
    flatten_goal_obs,
    is_goal_space,
    observation_problem,
    shape_reward,
    success_key,
)
from sftlib.data.rollouts import from_env_action
from sftlib.data.store import dataset_dir, files_problem


class DatasetError(ValueError):
    """A dataset id that cannot be loaded; the message says why and what to do."""


def validate_dataset_id(dataset_id: str) -> None:
    """Minari ids are ``[namespace/]name-vN``; catch a missing version before any I/O."""
    if not isinstance(dataset_id, str) or not re.fullmatch(r"[\w.\-/]+-v\d+", dataset_id):
        raise ValueError(
            f"dataset_id {dataset_id!r} is not a Minari id with a version, e.g. "
            "'local/hopper/medium-v0' or 'mujoco/hopper/medium-v0'"
        )


@contextlib.contextmanager
def announce_first_use(dataset_id: str) -> Iterator[None]:
    """One line while a factory makes a missing dataset on first use (a minute or so of
    silence otherwise): its start is printed at once, its end (the time taken, or that it
    failed) when the dataset is made."""
    print(
        f"dataset {dataset_id}: not in the Minari store, making it locally ...", end="", flush=True
    )
    start = time.perf_counter()
    try:
        yield
    except BaseException:
        print(" failed", flush=True)
        raise
    print(f" made in {time.perf_counter() - start:.0f} s", flush=True)


def local_dataset_ids() -> list[str]:
    return sorted(minari.list_local_datasets())


MAKE_LOCAL_HINT = (
    "To make a local D4RL-style dataset instead, run e.g. "
    "`python -m sftlib datasets Hopper-v5 --levels medium` "
    "(gives 'local/hopper/medium-v0'), or call sftlib.factory.make_dataset(...)."
)
MAKE_LOCAL_POINTMAZE_HINT = (
    "To make a local D4RL-style PointMaze dataset instead, run e.g. "
    "`python -m sftlib.factory.maze umaze` (gives 'local/pointmaze/umaze-v0'), "
    "or call sftlib.factory.maze.make_pointmaze_dataset(...)."
)


def make_local_hint(dataset_id: str) -> str:
    """How to make a local dataset like ``dataset_id``: the PointMaze factory for maze ids,
    the MuJoCo factory otherwise."""
    return MAKE_LOCAL_POINTMAZE_HINT if "pointmaze" in dataset_id else MAKE_LOCAL_HINT


def remake_hint(dataset_id: str) -> str:
    """How to replace a broken copy of ``dataset_id`` in the local store (the factories'
    exact commands: :func:`sftlib.factory.catalog.remake_command`)."""
    if not dataset_id.startswith("local/"):
        return f"`minari delete {dataset_id} && minari download {dataset_id}`"
    return (
        f"`minari delete {dataset_id}`, then make it again: the next sweep (or "
        f"sftlib.factory.ensure_dataset) remakes the factories' local ids. "
        + make_local_hint(dataset_id)
    )


def unreadable(dataset_id: str, path: Path | str, problem: str, remake: str | None = None):
    """The :class:`DatasetError` for a copy of ``dataset_id`` in the store that cannot be used:
    the id, the file, what is wrong with it and how to remake it."""
    return DatasetError(
        f"dataset {dataset_id!r} in the local Minari store cannot be used: {path} {problem}. "
        f"Remake it: {remake or remake_hint(dataset_id)}"
    )


def check_store_copy(dataset_id: str, remake: str | None = None) -> None:
    """One :class:`DatasetError` for an id without a version, or for a copy of it in the local
    store that cannot be used (:func:`unreadable`, with ``remake`` as the way to remake it);
    nothing otherwise."""
    try:
        validate_dataset_id(dataset_id)
    except ValueError as e:
        raise DatasetError(str(e)) from None
    problem = files_problem(dataset_id)
    if problem is not None:
        raise unreadable(dataset_id, *problem, remake)


def load_dataset(dataset_id: str, download: bool = True) -> minari.MinariDataset:
    """Load a Minari dataset by id: a local one, else download a remote one.

    Remote ids (e.g. ``mujoco/hopper/medium-v0``) need the ``[remote]`` extra
    (huggingface_hub) and network access. Any failure is one :class:`DatasetError`
    naming the id, the reason and what to do: how to make a local dataset instead, or, for
    a copy in the store that cannot be used (truncated, corrupt, half-written by a killed
    build), the file and how to remake it.
    """
    check_store_copy(dataset_id)
    if dataset_dir(dataset_id).exists():
        try:
            return minari.load_dataset(dataset_id)
        except Exception as e:  # anything files_problem does not look at
            raise unreadable(
                dataset_id, dataset_dir(dataset_id), f"cannot be read ({type(e).__name__}: {e})"
            ) from e
    if dataset_id.startswith("local/"):
        raise DatasetError(
            f"dataset {dataset_id!r} is not in the local Minari store "
            f"({minari.storage.get_dataset_path()}). {make_local_hint(dataset_id)}"
        )
    if not download:
        raise DatasetError(f"dataset {dataset_id!r} is not local and download=False.")
    if importlib.util.find_spec("huggingface_hub") is None:
        raise DatasetError(
            f"dataset {dataset_id!r} is not local and downloading it needs the optional "
            "dependency huggingface_hub: `pip install -e '.[remote]'`. "
            + make_local_hint(dataset_id)
        )
    try:
        return minari.load_dataset(dataset_id, download=True)
    except Exception as e:
        raise DatasetError(
            f"dataset {dataset_id!r} could not be downloaded ({type(e).__name__}: {e}). "
            "Check the id (`minari list remote`) and your network. " + make_local_hint(dataset_id)
        ) from None


def _spec_from_json(text: str) -> EnvSpec:
    """An ``EnvSpec`` from Minari's stored JSON, with the same gymnasium-1.0 fix-ups Minari
    applies when it loads a dataset (keys older gymnasium wrote that 1.0 refuses)."""
    for stale in (
        '"order_enforce": true,',
        '"apply_api_compatibility": false,',
        '"autoreset": false, ',
    ):
        text = text.replace(stale, "")
    return EnvSpec.from_json(text)


def evaluation_env_spec(ds: minari.MinariDataset) -> EnvSpec | None:
    """The environment Minari says to evaluate ``ds`` in (its ``eval_env_spec``), if recorded.

    D4RL PointMaze/AntMaze datasets record one: the same maze with a single goal cell,
    ``reset_target=False`` and the registered step limit (300 for the U-maze), while the
    data environment is a continuing task with random goals and a 10^6-step limit.
    """
    text = ds.storage.metadata.get("eval_env_spec")
    return None if text is None else _spec_from_json(text)


def check_dataset(ds: minari.MinariDataset) -> None:
    """One :class:`DatasetError` naming the dataset, what is unsupported and what to do, for
    data sftlib cannot train on; nothing if ``ds`` is fine. Cheap: reads only metadata.

    Refused: non-Box (e.g. discrete) actions; image or other non-vector observations,
    including a goal ``Dict`` whose ``observation`` is an image; a ``Dict`` observation
    without ``observation``/``desired_goal``; an environment whose package (e.g.
    gymnasium-robotics for ``PointMaze_*``/``AntMaze_*``/``AdroitHand*``) is not installed.
    """
    did = ds.spec.dataset_id
    actions = ds.spec.action_space
    if not isinstance(actions, gym.spaces.Box):
        raise DatasetError(
            f"dataset {did!r}: {type(actions).__name__} actions ({actions}) are not supported: "
            "sftlib's agents are continuous-control agents that need Box actions. "
            "Use a continuous-control dataset (e.g. D4RL/pointmaze/umaze-v2, mujoco/hopper/medium-v0)."
        )
    problem = observation_problem(ds.spec.observation_space)
    if problem is not None:
        raise DatasetError(
            f"dataset {did!r}: {problem}. sftlib's agents are MLPs on state vectors: use a "
            "state-based dataset of the task, or a goal dataset whose Dict observations hold "
            "'observation' and 'desired_goal' vectors."
        )
    for spec in (ds.spec.env_spec, evaluation_env_spec(ds)):
        if spec is None:
            continue
        try:
            import_env_package(spec.id, spec.entry_point)
        except EnvPackageError as e:
            raise DatasetError(f"dataset {did!r}: {e}") from None


@dataclass(frozen=True)
class DatasetInfo:
    """What training and evaluation need to know about a dataset."""

    dataset_id: str
    env_id: str
    obs_dim: int
    """Size of the policy input: the Box size, or for goal datasets the flat size of
    ``concat(observation, desired_goal)`` (see :mod:`sftlib.data.goals`)."""
    act_dim: int
    ref_min_score: float
    ref_max_score: float
    n_episodes: int
    n_transitions: int
    goal_conditioned: bool = False
    """Observations are goal dicts, flattened by :func:`sftlib.data.goals.flatten_goal_obs`."""
    success_key: str | None = None
    """The ``info`` key that defines success (``"success"`` for the mazes), else ``None``:
    such a task also reports its success rate in percent."""
    eval_env_spec: str | None = None
    """JSON of the ``EnvSpec`` to evaluate and fine-tune in (Minari's evaluation
    environment), or ``None``: ``gym.make(env_id)``. Used by :func:`sftlib.data.envs.make_env`."""

    def normalize(self, returns: np.ndarray | float) -> np.ndarray:
        """D4RL normalised score on a 0-100 scale: ``100 (R - min) / (max - min)``."""
        return (
            100.0
            * (np.asarray(returns) - self.ref_min_score)
            / (self.ref_max_score - self.ref_min_score)
        )


def dataset_info(ds: minari.MinariDataset) -> DatasetInfo:
    """Env id, sizes and reference scores of ``ds``; a clear error if ``ds`` is unsupported
    (:func:`check_dataset`) or its references are missing."""
    check_dataset(ds)
    meta = ds.storage.metadata
    did = ds.spec.dataset_id
    if meta.get("ref_min_score") is None or meta.get("ref_max_score") is None:
        raise DatasetError(
            f"dataset {did!r} has no ref_min_score/ref_max_score, so scores cannot be "
            "normalised. Use a dataset made by sftlib.factory or sftlib.factory.maze, or a Minari "
            "MuJoCo or D4RL dataset."
        )
    env_spec = ds.spec.env_spec
    if env_spec is None:
        raise DatasetError(f"dataset {did!r} records no environment to evaluate in")
    evaluation_spec = evaluation_env_spec(ds)
    env_id = env_spec.id if evaluation_spec is None else evaluation_spec.id
    return DatasetInfo(
        dataset_id=did,
        env_id=env_id,
        obs_dim=flat_obs_dim(ds.spec.observation_space),
        act_dim=int(np.prod(ds.spec.action_space.shape)),
        ref_min_score=float(meta["ref_min_score"]),
        ref_max_score=float(meta["ref_max_score"]),
        n_episodes=int(ds.total_episodes),
        n_transitions=int(ds.total_steps),
        goal_conditioned=is_goal_space(ds.spec.observation_space),
        success_key=success_key(env_id),
        eval_env_spec=None if evaluation_spec is None else evaluation_spec.to_json(),
    )


def transitions(ds: minari.MinariDataset, *, reward_convention: str = "raw") -> ReplayBuffer:
    """All transitions of ``ds`` in a buffer, actions mapped to ``[-1, 1]``.

    ``obs``/``next_obs`` are ``[N, obs_dim]`` float32: the Box observations, or for goal
    datasets ``concat(observation, desired_goal)`` (:func:`sftlib.data.goals.flatten_goal_obs`).
    ``rewards`` follow ``reward_convention`` (:data:`sftlib.data.goals.REWARD_CONVENTIONS`;
    ``"raw"`` keeps them as stored). ``terminals`` holds *terminations only*: an episode
    cut by the time limit (truncation) still bootstraps from its last next-observation.
    """
    check_reward_convention(reward_convention)
    check_dataset(ds)
    space = ds.spec.action_space
    goal_conditioned = is_goal_space(ds.spec.observation_space)
    parts: dict[str, list[np.ndarray]] = {
        k: [] for k in ("obs", "actions", "rewards", "next_obs", "terminals", "episode_ends")
    }
    for ep in episodes(ds):
        observations = flatten_goal_obs(ep.observations) if goal_conditioned else ep.observations
        obs = np.asarray(observations, np.float32)
        parts["obs"].append(obs[:-1])
        parts["next_obs"].append(obs[1:])
        parts["actions"].append(from_env_action(np.asarray(ep.actions), space))
        rewards = np.asarray(ep.rewards, np.float32)
        parts["rewards"].append(shape_reward(rewards, reward_convention))
        parts["terminals"].append(np.asarray(ep.terminations, np.float32))
        ends = np.zeros(len(rewards), bool)
        ends[-1] = True
        parts["episode_ends"].append(ends)
    return ReplayBuffer.from_arrays(**{k: np.concatenate(v) for k, v in parts.items()})


def episodes(ds: minari.MinariDataset) -> Iterator[minari.EpisodeData]:
    """``ds.iterate_episodes()``, with a file that breaks off while it is read (a copy
    damaged after :func:`load_dataset` checked it) as one :class:`DatasetError`."""
    try:
        yield from ds.iterate_episodes()
    except (OSError, KeyError) as e:  # what h5py raises for damaged files
        did = ds.spec.dataset_id
        raise unreadable(did, dataset_dir(did), f"cannot be read ({type(e).__name__}: {e})") from e


def episode_returns(ds: minari.MinariDataset) -> np.ndarray:
    """Undiscounted return of every episode, shape ``[n_episodes]``."""
    return np.array([float(np.sum(ep.rewards)) for ep in episodes(ds)])
