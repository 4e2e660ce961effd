"""Transition storage, mixed offline/online sampling and observation normalisation.

Data containers only: nothing here imports an algorithm.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

FIELDS = ("obs", "actions", "rewards", "next_obs", "terminals")


@dataclass
class Batch:
    """A batch of transitions as float32 tensors.

    ``obs``/``next_obs``: ``[B, obs_dim]`` (raw, unnormalised); ``actions``: ``[B, act_dim]``
    in ``[-1, 1]``; ``rewards``/``terminals``: ``[B]``. ``terminals`` is 1 only for true
    termination: time-limit truncation is *not* termination and keeps bootstrapping.
    """

    obs: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    next_obs: torch.Tensor
    terminals: torch.Tensor

    def to(self, device: torch.device | str) -> Batch:
        return Batch(*(getattr(self, f).to(device) for f in FIELDS))


class ReplayBuffer:
    """Fixed-capacity FIFO ring buffer of transitions (numpy, float32)."""

    def __init__(self, obs_dim: int, act_dim: int, capacity: int) -> None:
        if capacity <= 0:
            raise ValueError(f"capacity must be positive, got {capacity}")
        self.capacity = capacity
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.obs = np.zeros((capacity, obs_dim), np.float32)
        self.actions = np.zeros((capacity, act_dim), np.float32)
        self.rewards = np.zeros(capacity, np.float32)
        self.next_obs = np.zeros((capacity, obs_dim), np.float32)
        self.terminals = np.zeros(capacity, np.float32)
        self.size = 0
        self.ptr = 0

    def __len__(self) -> int:
        return self.size

    def add(self, obs, action, reward: float, next_obs, terminal: bool) -> None:
        i = self.ptr
        self.obs[i], self.actions[i], self.rewards[i] = obs, action, reward
        self.next_obs[i], self.terminals[i] = next_obs, float(terminal)
        self.ptr = (self.ptr + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    @classmethod
    def from_arrays(cls, **arrays: np.ndarray) -> ReplayBuffer:
        """A full buffer holding exactly the given transition arrays (keys: :data:`FIELDS`)."""
        n = len(arrays["obs"])
        buf = cls(arrays["obs"].shape[1], arrays["actions"].shape[1], max(n, 1))
        for f in FIELDS:
            getattr(buf, f)[:n] = arrays[f]
        buf.size, buf.ptr = n, n % buf.capacity
        return buf

    def indices(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.integers(0, self.size, size=n)

    def take(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        return {f: getattr(self, f)[idx] for f in FIELDS}

    def sample(self, n: int, rng: np.random.Generator) -> Batch:
        """``n`` transitions drawn uniformly with replacement."""
        if self.size == 0:
            raise ValueError("cannot sample from an empty buffer")
        return to_batch(self.take(self.indices(n, rng)))

    def state_dict(self) -> dict:
        return {
            "capacity": self.capacity,
            "size": self.size,
            "ptr": self.ptr,
            **{f: getattr(self, f)[: self.size].copy() for f in FIELDS},
        }

    def load_state_dict(self, state: dict) -> None:
        if state["capacity"] != self.capacity:
            raise ValueError(
                f"buffer capacity mismatch: checkpoint {state['capacity']}, here {self.capacity}"
            )
        self.size, self.ptr = state["size"], state["ptr"]
        for f in FIELDS:
            getattr(self, f)[: self.size] = state[f]


def to_batch(arrays: dict[str, np.ndarray]) -> Batch:
    return Batch(*(torch.as_tensor(arrays[f], dtype=torch.float32) for f in FIELDS))


def sample_mixed(
    offline: ReplayBuffer,
    online: ReplayBuffer,
    batch_size: int,
    offline_ratio: float,
    rng: np.random.Generator,
) -> Batch:
    """A batch with ``round(batch_size * offline_ratio)`` offline transitions, the rest online.

    While the online buffer is empty, the whole batch is offline.
    """
    n_off = batch_size if len(online) == 0 else int(round(batch_size * offline_ratio))
    n_on = batch_size - n_off
    parts = []
    if n_off:
        parts.append(offline.take(offline.indices(n_off, rng)))
    if n_on:
        parts.append(online.take(online.indices(n_on, rng)))
    return to_batch({f: np.concatenate([p[f] for p in parts]) for f in FIELDS})


class Normalizer:
    """Observation normaliser ``(x - mean) / std``: fit once on the offline data, then frozen.

    It is saved with every checkpoint and applied identically offline, online and in
    evaluation.
    """

    def __init__(self, mean: np.ndarray, std: np.ndarray) -> None:
        self.mean = np.asarray(mean, np.float32)
        self.std = np.asarray(std, np.float32)
        self._mean_t = torch.as_tensor(self.mean)
        self._std_t = torch.as_tensor(self.std)

    @classmethod
    def fit(cls, obs: np.ndarray, eps: float = 1e-3) -> Normalizer:
        """Per-dimension mean and std of ``obs`` (``[N, obs_dim]``); std floored at ``eps``."""
        return cls(obs.mean(0), np.maximum(obs.std(0), eps))

    @classmethod
    def identity(cls, obs_dim: int) -> Normalizer:
        return cls(np.zeros(obs_dim), np.ones(obs_dim))

    def __call__(self, obs: torch.Tensor) -> torch.Tensor:
        if self._mean_t.device != obs.device:
            self._mean_t, self._std_t = self._mean_t.to(obs.device), self._std_t.to(obs.device)
        return (obs - self._mean_t) / self._std_t

    def state_dict(self) -> dict:
        return {"mean": self.mean.copy(), "std": self.std.copy()}

    @classmethod
    def from_state_dict(cls, state: dict) -> Normalizer:
        return cls(state["mean"], state["std"])
