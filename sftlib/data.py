"""Minari datasets: one loader for local and remote ids, transitions and normalised scores."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

import gymnasium as gym
import minari
import numpy as np

from sftlib.buffer import ReplayBuffer
from sftlib.config import validate_dataset_id
from sftlib.evaluation import from_env_action


class DatasetError(ValueError):
    """A dataset id that cannot be loaded; the message says why and what to do."""


def local_dataset_ids() -> list[str]:
    return sorted(minari.list_local_datasets())


MAKE_LOCAL_HINT = (
    "To make a local D4RL-style dataset instead, run e.g. "
    "`python -m sftlib datasets Hopper-v5 --levels medium` "
    "(gives 'local/hopper/medium-v0'), or call sftlib.factory.make_dataset(...)."
)


def load_dataset(dataset_id: str, download: bool = True) -> minari.MinariDataset:
    """Load a Minari dataset by id: a local one, else download a remote one.

    Remote ids (e.g. ``mujoco/hopper/medium-v0``) need the ``[remote]`` extra
    (huggingface_hub) and network access. Any failure is one :class:`DatasetError`
    naming the id, the reason and how to make a local dataset instead.
    """
    try:
        validate_dataset_id(dataset_id)
    except ValueError as e:
        raise DatasetError(str(e)) from None
    if dataset_id in minari.list_local_datasets():
        try:
            return minari.load_dataset(dataset_id)
        except Exception as e:  # a half-written or corrupt local copy
            raise DatasetError(
                f"local dataset {dataset_id!r} exists but cannot be read ({type(e).__name__}: {e}). "
                f"Delete it with `minari delete {dataset_id}` and make it again."
            ) from e
    if dataset_id.startswith("local/"):
        raise DatasetError(
            f"dataset {dataset_id!r} is not in the local Minari store "
            f"({minari.storage.get_dataset_path()}). {MAKE_LOCAL_HINT}"
        )
    if not download:
        raise DatasetError(f"dataset {dataset_id!r} is not local and download=False.")
    if importlib.util.find_spec("huggingface_hub") is None:
        raise DatasetError(
            f"dataset {dataset_id!r} is not local and downloading it needs the optional "
            "dependency huggingface_hub: `pip install -e '.[remote]'`. " + MAKE_LOCAL_HINT
        )
    try:
        return minari.load_dataset(dataset_id, download=True)
    except Exception as e:
        raise DatasetError(
            f"dataset {dataset_id!r} could not be downloaded ({type(e).__name__}: {e}). "
            "Check the id (`minari list remote`) and your network. " + MAKE_LOCAL_HINT
        ) from None


@dataclass(frozen=True)
class DatasetInfo:
    """What training and evaluation need to know about a dataset."""

    dataset_id: str
    env_id: str
    obs_dim: int
    act_dim: int
    ref_min_score: float
    ref_max_score: float
    n_episodes: int
    n_transitions: int

    def normalize(self, returns: np.ndarray | float) -> np.ndarray:
        """D4RL normalised score on a 0-100 scale: ``100 (R - min) / (max - min)``."""
        return (
            100.0
            * (np.asarray(returns) - self.ref_min_score)
            / (self.ref_max_score - self.ref_min_score)
        )


def dataset_info(ds: minari.MinariDataset) -> DatasetInfo:
    """Env id, sizes and reference scores of ``ds``; a clear error if the references are missing."""
    meta = ds.storage.metadata
    did = ds.spec.dataset_id
    if meta.get("ref_min_score") is None or meta.get("ref_max_score") is None:
        raise DatasetError(
            f"dataset {did!r} has no ref_min_score/ref_max_score, so scores cannot be "
            "normalised. Use a dataset made by sftlib.factory or a Minari MuJoCo dataset."
        )
    env_spec = ds.spec.env_spec
    if env_spec is None:
        raise DatasetError(f"dataset {did!r} records no environment to evaluate in")
    return DatasetInfo(
        dataset_id=did,
        env_id=env_spec.id,
        obs_dim=int(np.prod(ds.spec.observation_space.shape)),
        act_dim=int(np.prod(ds.spec.action_space.shape)),
        ref_min_score=float(meta["ref_min_score"]),
        ref_max_score=float(meta["ref_max_score"]),
        n_episodes=int(ds.total_episodes),
        n_transitions=int(ds.total_steps),
    )


def transitions(ds: minari.MinariDataset) -> ReplayBuffer:
    """All transitions of ``ds`` in a buffer, actions mapped to ``[-1, 1]``.

    ``terminals`` holds *terminations only*: an episode cut by the time limit
    (truncation) still bootstraps from its last next-observation.
    """
    space = ds.spec.action_space
    if not isinstance(space, gym.spaces.Box):
        raise DatasetError(f"dataset {ds.spec.dataset_id!r}: only Box action spaces are supported")
    parts: dict[str, list[np.ndarray]] = {
        k: [] for k in ("obs", "actions", "rewards", "next_obs", "terminals")
    }
    for ep in ds.iterate_episodes():
        obs = np.asarray(ep.observations, np.float32)
        parts["obs"].append(obs[:-1])
        parts["next_obs"].append(obs[1:])
        parts["actions"].append(from_env_action(np.asarray(ep.actions), space))
        parts["rewards"].append(np.asarray(ep.rewards, np.float32))
        parts["terminals"].append(np.asarray(ep.terminations, np.float32))
    return ReplayBuffer.from_arrays(**{k: np.concatenate(v) for k, v in parts.items()})


def episode_returns(ds: minari.MinariDataset) -> np.ndarray:
    """Undiscounted return of every episode, shape ``[n_episodes]``."""
    return np.array([float(np.sum(ep.rewards)) for ep in ds.iterate_episodes()])
