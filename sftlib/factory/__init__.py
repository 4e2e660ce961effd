"""D4RL-style datasets for gymnasium MuJoCo environments, stored as local Minari datasets.

Levels follow D4RL's recipes with this project's own behaviour policies (SAC, see
:mod:`sftlib.factory.behaviour`); the numbers are *not* D4RL's:

- ``random``: uniform random actions.
- ``medium``: the stochastic policy of a SAC snapshot at about a third of the expert return.
- ``expert``: the stochastic policy of the best SAC snapshot.
- ``medium-expert``: half ``medium``, half ``expert`` transitions.
- ``medium-replay``: what training saw up to ``medium``, replayed: equal shares of random
  actions (SAC's warm-up) and of every snapshot up to ``medium`` (D4RL stores the literal
  replay buffer; here the snapshots stand in for it).

``ref_min_score`` is the random policy's mean return, ``ref_max_score`` the expert
snapshot's (deterministic) mean return, so ``minari.get_normalized_score`` works.
Time-limit truncation is stored as truncation, never as termination.

For ``Hopper-v5``, ``Walker2d-v5`` and ``HalfCheetah-v5`` the behaviour snapshots ship with
the package (``sftlib/assets/behaviour/<env>.pt``): making their datasets takes a minute or
so per level. Any other env id is trained from scratch and cached under ``~/.cache/sftlib``.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from pathlib import Path

import minari
import numpy as np
import torch
from minari.data_collector import EpisodeBuffer

from sftlib.data.datasets import DatasetError, announce_first_use, load_dataset, unreadable
from sftlib.data.envs import dropping_native_noise, gym_make
from sftlib.data.rollouts import Policy, to_env_action
from sftlib.data.store import building, dataset_dir, files_problem
from sftlib.factory import maze
from sftlib.factory.behaviour import (
    BehaviourRecord,
    choose_levels,
    prune,
    snapshot_policy,
    train_behaviour,
)
from sftlib.factory.catalog import (
    ASSETS,
    LEVELS,
    LOCAL_ID,
    check_dataset_id,
    check_env_id,
    dataset_id_for,
    env_id_for,
)
from sftlib.utils import atomic_torch_save

DEFAULT_STEPS = 100_000


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "sftlib" / "behaviour"


def behaviour_record(
    env_id: str, train_steps: int = 300_000, progress: bool = True
) -> BehaviourRecord:
    """The behaviour snapshots for ``env_id``: shipped asset, cache, or trained now (slow)."""
    for path in (ASSETS / f"{env_id}.pt", cache_dir() / f"{env_id}.pt"):
        if path.exists():
            return torch.load(path, weights_only=False)
    check_env_id(env_id).close()
    record = prune(train_behaviour(env_id, train_steps, progress=progress))
    atomic_torch_save(cache_dir() / f"{env_id}.pt", record)
    return record


def rollouts(
    env_id: str, policy: Policy | None, n_steps: int, seed: int, first_id: int
) -> list[EpisodeBuffer]:
    """Episodes of ``policy`` (``None``: uniform random) totalling exactly ``n_steps``
    transitions; the last one is cut (marked truncated) at the budget."""
    env = gym_make(env_id)
    env.action_space.seed(seed)
    episodes: list[EpisodeBuffer] = []
    steps = 0
    while steps < n_steps:
        obs, _ = env.reset(seed=seed + len(episodes))
        o, a, r, te, tr = [obs], [], [], [], []
        while True:
            if policy is None:
                act = env.action_space.sample()
            else:
                act = to_env_action(policy(obs), env.action_space)
            obs, rew, term, trunc, _ = env.step(act)
            steps += 1
            trunc = trunc or (steps >= n_steps and not term)
            o.append(obs), a.append(act), r.append(rew), te.append(term), tr.append(trunc)
            if term or trunc:
                break
        episodes.append(
            EpisodeBuffer(
                id=first_id + len(episodes),
                seed=seed + len(episodes),
                observations=np.asarray(o),
                actions=np.asarray(a, dtype=np.float32),
                rewards=np.asarray(r),
                terminations=np.asarray(te),
                truncations=np.asarray(tr),
            )
        )
    env.close()
    return episodes


def collect(
    env_id: str, level: str, record: BehaviourRecord, n_steps: int, seed: int
) -> list[EpisodeBuffer]:
    """The episodes of one D4RL-style ``level`` (see the module docstring)."""
    lv = choose_levels(record)
    if level == "random":
        snapshots: list[int | None] = [None]
    elif level in ("medium", "expert"):
        snapshots = [lv[level]]
    elif level == "medium-expert":
        snapshots = [lv["medium"], lv["expert"]]
    elif level == "medium-replay":
        snapshots = [None, *range(lv["medium"] + 1)]
    else:
        raise ValueError(f"level must be one of {list(LEVELS)}, got {level!r}")
    # Source k rolls out with seed + 100_000 k: its environments and its policy noise.
    sources: list[Policy | None] = [
        None if index is None else snapshot_policy(record, index, False, seed + 100_000 * k)
        for k, index in enumerate(snapshots)
    ]
    shares = np.full(len(sources), n_steps // len(sources))
    shares[: n_steps - shares.sum()] += 1
    episodes: list[EpisodeBuffer] = []
    for k, (policy, share) in enumerate(zip(sources, shares, strict=True)):
        episodes += rollouts(env_id, policy, int(share), seed + 100_000 * k, len(episodes))
    return episodes


def make_dataset(
    env_id: str,
    level: str,
    n_steps: int = DEFAULT_STEPS,
    seed: int = 0,
    dataset_id: str | None = None,
    progress: bool = True,
) -> minari.MinariDataset:
    """Make (or load, if it exists) the local Minari dataset of ``level`` for ``env_id``.

    Existing ids are never overwritten: an existing dataset is returned as it is.
    """
    if n_steps <= 0:
        raise ValueError(f"n_steps must be positive, got {n_steps}")
    dataset_id = dataset_id or dataset_id_for(env_id, level)
    if dataset_dir(dataset_id).exists():  # a broken copy is an error here, before any compute
        return load_dataset(dataset_id)
    env = check_env_id(env_id)
    record = behaviour_record(env_id, progress=progress)
    if (record["obs_dim"], record["act_dim"]) != (
        env.observation_space.shape[0],
        env.action_space.shape[0],
    ):
        raise ValueError(f"behaviour record does not match the spaces of {env_id!r}")
    episodes = collect(env_id, level, record, n_steps, seed)
    lv = choose_levels(record)
    return create_dataset(
        dataset_id,
        env_id,
        episodes,
        ref_min_score=record["random_return"],
        ref_max_score=record["snapshots"][lv["expert"]]["return"],
        algorithm_name=f"sftlib SAC behaviour ({level})",
        description=(
            f"D4RL-style '{level}' dataset for {env_id} made by sftlib.factory with its own "
            f"SAC behaviour policies ({n_steps} transitions, seed {seed}). Not D4RL's data."
        ),
    )


def create_dataset(
    dataset_id: str,
    env_id: str,
    episodes: list[EpisodeBuffer],
    ref_min_score: float,
    ref_max_score: float,
    algorithm_name: str = "sftlib",
    description: str = "",
) -> minari.MinariDataset:
    """Store ``episodes`` as the local Minari dataset ``dataset_id`` with its reference
    scores (``jax``-free: built from episode buffers).

    The dataset is written aside and renamed into the store when it is complete
    (:func:`sftlib.data.store.building`): a build killed part-way leaves nothing under
    ``dataset_id``."""
    if dataset_dir(dataset_id).exists():
        problem = files_problem(dataset_id)
        if problem is not None:
            raise unreadable(dataset_id, *problem)
        raise DatasetError(
            f"dataset {dataset_id!r} exists already; Minari ids are never overwritten"
        )
    if not ref_max_score > ref_min_score:
        raise ValueError(
            f"ref_max_score ({ref_max_score}) must exceed ref_min_score ({ref_min_score})"
        )
    # Minari makes the env to record its spec: MuJoCo's deprecation notice for HalfCheetah.
    with warnings.catch_warnings(), dropping_native_noise():
        # Minari nags about optional provenance fields (author, permalink, eval env).
        warnings.filterwarnings(
            "ignore", message=r"`(code_permalink|author|author_email|eval_env)`"
        )
        with building(dataset_id):
            minari.create_dataset_from_buffers(
                dataset_id=dataset_id,
                buffer=episodes,
                env=env_id,
                algorithm_name=algorithm_name,
                author="sftlib dataset factory",
                ref_min_score=float(ref_min_score),
                ref_max_score=float(ref_max_score),
                description=description,
            )
    return minari.load_dataset(dataset_id)


def make_datasets(
    env_id: str, levels: str | list[str] | tuple[str, ...] = LEVELS, **kw
) -> dict[str, str]:
    """Make several levels (or one, given as a string); returns ``{level: dataset_id}``.

    Every level name is checked before any dataset is made. With ``progress`` (the
    default), one line per dataset: made (and how long it took), or there already.
    """
    levels = [levels] if isinstance(levels, str) else list(levels)
    for level in levels:
        dataset_id_for(env_id, level)  # an unknown level fails here, before any compute
    progress = kw.get("progress", True)
    out = {}
    for level in levels:
        dataset_id = dataset_id_for(env_id, level)
        if dataset_id in minari.list_local_datasets():
            if progress:
                print(f"dataset {dataset_id}: in the Minari store already", flush=True)
            out[level] = dataset_id
            continue
        with announce_first_use(dataset_id) if progress else contextlib.nullcontext():
            out[level] = make_dataset(env_id, level, **kw).spec.dataset_id
    return out


def ensure_dataset(dataset_id: str) -> minari.MinariDataset:
    """Load ``dataset_id``; a missing ``local/<env>/<level>-vN`` id is made by the factory
    first (only version 0 corresponds to the default recipe), a missing
    ``local/pointmaze/<maze>-vN`` by the PointMaze factory (:mod:`sftlib.factory.maze`).

    An id no factory makes, or a copy in the store that cannot be used, is one
    :class:`DatasetError` first (:func:`sftlib.factory.catalog.check_dataset_id`)."""
    check_dataset_id(dataset_id)
    if maze.LOCAL_ID.fullmatch(dataset_id):
        return maze.ensure_pointmaze_dataset(dataset_id)
    if dataset_id not in minari.list_local_datasets():
        m = LOCAL_ID.fullmatch(dataset_id)
        if m and m["level"] in LEVELS and m["version"] == "0":
            with announce_first_use(dataset_id):
                return make_dataset(env_id_for(m["env"]), m["level"], dataset_id=dataset_id)
    return load_dataset(dataset_id)


__all__ = [
    "LEVELS",
    "behaviour_record",
    "collect",
    "create_dataset",
    "dataset_id_for",
    "ensure_dataset",
    "make_dataset",
    "make_datasets",
    "rollouts",
]
