"""Transition storage, offline/online sampling and observation normalisation.

Data containers only: nothing here imports an algorithm. A buffer keeps every transition as
one row of a single float32 array (``obs | action | reward | next_obs | terminal``), so a
batch is one gather of rows, shared with torch without a copy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

FIELDS = ("obs", "actions", "rewards", "next_obs", "terminals")
"""The fields of a transition every algorithm reads."""
COLUMNS = (*FIELDS, "returns_to_go")
"""The columns of a buffer row: the fields and the discounted Monte-Carlo return-to-go of the
transition in its episode (what Cal-QL calibrates with; 0 until filled)."""
ONLINE_DATA = ("mix", "append", "online")
"""How online transitions enter the learner's batches: ``mix`` draws a fixed share
``offline_ratio`` from the offline data and the rest from the online buffer (RLPD, Cal-QL);
``append`` draws uniformly from the offline data with the online data appended, so the
online share grows with the online buffer (the natural ratio of the IQL and CORL
fine-tuning code); ``online`` draws from the online buffer alone, keeping no offline data
(WSRL)."""


@dataclass
class Batch:
    """A batch of transitions as float32 tensors.

    ``obs``/``next_obs``: ``[B, obs_dim]`` (raw, unnormalised); ``actions``: ``[B, act_dim]``
    in ``[-1, 1]``; ``rewards``/``terminals``: ``[B]``. A batched run stacks one batch per
    seed in front: ``[seeds, B, ...]``. ``terminals`` is 1 only for true termination:
    time-limit truncation is *not* termination and keeps bootstrapping.
    """

    obs: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    next_obs: torch.Tensor
    terminals: torch.Tensor
    returns_to_go: torch.Tensor | None = None
    """``[B]``: discounted return-to-go of each transition in its episode (buffers fill it;
    batches built by hand may leave it out)."""

    def _map(self, fn) -> Batch:
        return Batch(
            *(fn(getattr(self, f)) for f in FIELDS),
            None if self.returns_to_go is None else fn(self.returns_to_go),
        )

    def to(self, device: torch.device | str) -> Batch:
        if self.obs.device == torch.device(device):
            return self
        return self._map(lambda t: t.to(device))

    def contiguous(self) -> Batch:
        return self._map(lambda t: t.contiguous())

    def unsqueeze_seed(self) -> Batch:
        """The batch of a one-seed run with the leading seed dimension ``[1, B, ...]``."""
        return self._map(lambda t: t.unsqueeze(0))

    def seed(self, index: int) -> Batch:
        """The batch of seed ``index`` of a stacked batch."""
        return self._map(lambda t: t[index])

    @staticmethod
    def stack(batches: Sequence[Batch]) -> Batch:
        """One batch per seed as the batch of a batched run, ``[seeds, B, ...]``."""
        with_returns = all(b.returns_to_go is not None for b in batches)
        return Batch(
            *(torch.stack([getattr(b, f) for b in batches]) for f in FIELDS),
            torch.stack([b.returns_to_go for b in batches]) if with_returns else None,
        )


class ReplayBuffer:
    """Fixed-capacity FIFO ring buffer of transitions, one float32 row each.

    ``obs``, ``actions``, ``rewards``, ``next_obs`` and ``terminals`` are numpy views of the
    columns of the row storage.
    """

    def __init__(self, obs_dim: int, act_dim: int, capacity: int) -> None:
        if capacity <= 0:
            raise ValueError(f"capacity must be positive, got {capacity}")
        self.capacity = capacity
        self.obs_dim, self.act_dim = obs_dim, act_dim
        widths = (obs_dim, act_dim, 1, obs_dim, 1, 1)
        self.rows = np.zeros((capacity, sum(widths)), np.float32)
        self._rows_t = torch.from_numpy(self.rows)  # shares memory: no copy per batch
        edges = np.cumsum((0, *widths))
        self.columns = {
            f: (int(a), int(b)) for f, a, b in zip(COLUMNS, edges[:-1], edges[1:], strict=True)
        }
        for f, (a, b) in self.columns.items():
            view = self.rows[:, a:b]
            setattr(self, f, view if f in ("obs", "actions", "next_obs") else view[:, 0])
        self.episode_ends = np.zeros(capacity, bool)
        """True at the last stored transition of every episode (terminated or cut)."""
        self.size = 0
        self.ptr = 0

    def __len__(self) -> int:
        return self.size

    def add(self, obs, action, reward: float, next_obs, terminal: bool) -> int:
        """Store one transition; returns its row index."""
        i = self.ptr
        self.obs[i], self.actions[i], self.rewards[i] = obs, action, reward
        self.next_obs[i], self.terminals[i] = next_obs, float(terminal)
        self.returns_to_go[i], self.episode_ends[i] = 0.0, False
        self.ptr = (self.ptr + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)
        return i

    def end_episode(self, rows: np.ndarray, discount: float) -> None:
        """Mark ``rows`` (the transitions of one finished episode, in order) as an episode and
        fill their returns-to-go (see :func:`returns_to_go`)."""
        self.episode_ends[rows[-1]] = True
        self.returns_to_go[rows] = returns_to_go(
            self.rewards[rows], self.terminals[rows], np.zeros(len(rows), bool), discount
        )

    def fill_returns_to_go(self, discount: float) -> None:
        """Returns-to-go of every stored transition, episode by episode (``episode_ends``)."""
        n = self.size
        self.returns_to_go[:n] = returns_to_go(
            self.rewards[:n], self.terminals[:n], self.episode_ends[:n], discount
        )

    @classmethod
    def from_arrays(
        cls, episode_ends: np.ndarray | None = None, **arrays: np.ndarray
    ) -> ReplayBuffer:
        """A full buffer holding exactly the given transition arrays (keys: :data:`FIELDS`),
        with the episode boundaries ``episode_ends`` if given."""
        n = len(arrays["obs"])
        buf = cls(arrays["obs"].shape[1], arrays["actions"].shape[1], max(n, 1))
        for f in FIELDS:
            getattr(buf, f)[:n] = arrays[f]
        if episode_ends is not None:
            buf.episode_ends[:n] = episode_ends
        buf.size, buf.ptr = n, n % buf.capacity
        return buf

    def indices(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.integers(0, self.size, size=n)

    def take(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        return {f: getattr(self, f)[idx] for f in FIELDS}

    def gather(self, idx: np.ndarray) -> torch.Tensor:
        """Rows ``idx`` (any shape) as one tensor ``[*idx.shape, row_width]``."""
        flat = torch.from_numpy(np.ascontiguousarray(idx, dtype=np.int64).reshape(-1))
        return self._rows_t.index_select(0, flat).view(*idx.shape, -1)

    def batch(self, rows: torch.Tensor) -> Batch:
        """Split gathered rows ``[..., row_width]`` into a :class:`Batch` (column views)."""
        parts = {f: rows[..., a:b] for f, (a, b) in self.columns.items()}
        for f in ("rewards", "terminals", "returns_to_go"):
            parts[f] = parts[f][..., 0]
        return Batch(**parts)

    def sample(self, n: int, rng: np.random.Generator) -> Batch:
        """``n`` transitions drawn uniformly with replacement."""
        if self.size == 0:
            raise ValueError("cannot sample from an empty buffer")
        return self.batch(self.gather(self.indices(n, rng)))

    def sample_per_seed(self, n: int, rngs: Sequence[np.random.Generator]) -> Batch:
        """``n`` transitions for each seed, each drawn with that seed's generator:
        a stacked batch ``[len(rngs), n, ...]``."""
        if self.size == 0:
            raise ValueError("cannot sample from an empty buffer")
        return self.batch(self.gather(np.stack([self.indices(n, rng) for rng in rngs])))

    def state_dict(self) -> dict:
        return {
            "capacity": self.capacity,
            "size": self.size,
            "ptr": self.ptr,
            "episode_ends": self.episode_ends[: self.size].copy(),
            **{f: getattr(self, f)[: self.size].copy() for f in COLUMNS},
        }

    def load_state_dict(self, state: dict) -> None:
        if state["capacity"] != self.capacity:
            raise ValueError(
                f"buffer capacity mismatch: checkpoint {state['capacity']}, here {self.capacity}"
            )
        self.size, self.ptr = state["size"], state["ptr"]
        self.episode_ends[: self.size] = state["episode_ends"]
        for f in COLUMNS:
            getattr(self, f)[: self.size] = state[f]


def returns_to_go(
    rewards: np.ndarray, terminals: np.ndarray, episode_ends: np.ndarray, discount: float
) -> np.ndarray:
    """Discounted return-to-go ``G_t = r_t + gamma (1 - d_t) G_{t+1}`` within each episode.

    An episode ends at a termination or where ``episode_ends`` is set (a time-limit cut, or
    the last stored transition). A cut episode is *not* bootstrapped beyond its last reward:
    its returns-to-go are lower bounds of the true values, as in Cal-QL's reference
    (``get_return_to_go``), which is what a calibration bound needs.
    """
    out = np.zeros(len(rewards), np.float64)
    following = 0.0
    for t in range(len(rewards) - 1, -1, -1):
        if episode_ends[t] or terminals[t] or t == len(rewards) - 1:
            following = 0.0
        following = float(rewards[t]) + discount * following
        out[t] = following
    return out.astype(np.float32)


@dataclass(frozen=True)
class Draw:
    """The rows of one fine-tuning batch, drawn but not yet gathered: at each of its ``B``
    positions an offline row (``offline``, ``[B]``) or, where ``online`` (``[B]`` bools) is
    set, the next of the online rows ``online_rows``. :func:`gather_draws` gathers the
    draws of several seeds in one go."""

    offline: np.ndarray
    online: np.ndarray
    online_rows: np.ndarray


def draw_mixed(
    offline: ReplayBuffer,
    online: ReplayBuffer,
    batch_size: int,
    offline_ratio: float,
    rng: np.random.Generator,
) -> Draw:
    """``mix``: ``round(batch_size * offline_ratio)`` offline transitions, the rest online.

    While the online buffer is empty, the whole batch is offline.
    """
    n_off = batch_size if len(online) == 0 else int(round(batch_size * offline_ratio))
    off = offline.indices(n_off, rng) if n_off else np.zeros(0, np.int64)
    on = online.indices(batch_size - n_off, rng) if n_off < batch_size else np.zeros(0, np.int64)
    is_online = np.arange(batch_size) >= n_off
    return Draw(np.concatenate([off, np.zeros(len(on), np.int64)]), is_online, on)


def draw_appended(
    offline: ReplayBuffer, online: ReplayBuffer, batch_size: int, rng: np.random.Generator
) -> Draw:
    """``append``: ``batch_size`` transitions drawn uniformly from the offline data with the
    online data appended (an index below ``len(offline)`` is offline, the rest online), so the
    online share is ``len(online) / (len(offline) + len(online))``."""
    idx = rng.integers(0, len(offline) + len(online), size=batch_size)
    is_online = idx >= len(offline)
    return Draw(np.where(is_online, 0, idx), is_online, idx[is_online] - len(offline))


def draw_online_data(
    offline: ReplayBuffer,
    online: ReplayBuffer,
    batch_size: int,
    online_data: str,
    offline_ratio: float,
    rng: np.random.Generator,
) -> Draw:
    """The rows of a fine-tuning batch by the rule ``online_data`` (see :data:`ONLINE_DATA`)."""
    if online_data == "mix":
        return draw_mixed(offline, online, batch_size, offline_ratio, rng)
    if online_data == "append":
        return draw_appended(offline, online, batch_size, rng)
    if online_data == "online":
        if len(online) == 0:
            raise ValueError("cannot sample from an empty buffer")
        rows = online.indices(batch_size, rng)
        return Draw(np.zeros(batch_size, np.int64), np.ones(batch_size, bool), rows)
    raise ValueError(f"online_data must be one of {list(ONLINE_DATA)}, got {online_data!r}")


def gather_draws(
    offlines: Sequence[ReplayBuffer], onlines: Sequence[ReplayBuffer], draws: Sequence[Draw]
) -> Batch:
    """The batches of ``draws`` (draw ``k`` from ``offlines[k]`` and ``onlines[k]``) as one
    stacked batch ``[len(draws), B, ...]``: the offline rows of every draw in one gather when
    the offline buffer is shared (the seeds of one study point), then each draw's online
    rows. Row for row the batches of the draws gathered one by one; each field contiguous
    (a compiled update specialises on the layout, and rounds by it)."""
    if all(offline is offlines[0] for offline in offlines):
        rows = offlines[0].gather(np.stack([draw.offline for draw in draws]))  # a new tensor
    else:
        rows = torch.stack([o.gather(d.offline) for o, d in zip(offlines, draws, strict=True)])
    for k, (online, draw) in enumerate(zip(onlines, draws, strict=True)):
        if len(draw.online_rows):
            rows[k, torch.from_numpy(draw.online)] = online.gather(draw.online_rows)
    return offlines[0].batch(rows).contiguous()


def sample_online_data(
    offline: ReplayBuffer,
    online: ReplayBuffer,
    batch_size: int,
    online_data: str,
    offline_ratio: float,
    rng: np.random.Generator,
) -> Batch:
    """One fine-tuning batch by the rule ``online_data`` (see :data:`ONLINE_DATA`)."""
    draw = draw_online_data(offline, online, batch_size, online_data, offline_ratio, rng)
    return gather_draws([offline], [online], [draw]).seed(0)


def sample_mixed(
    offline: ReplayBuffer,
    online: ReplayBuffer,
    batch_size: int,
    offline_ratio: float,
    rng: np.random.Generator,
) -> Batch:
    """One batch of :func:`draw_mixed`."""
    return sample_online_data(offline, online, batch_size, "mix", offline_ratio, rng)


def sample_appended(
    offline: ReplayBuffer, online: ReplayBuffer, batch_size: int, rng: np.random.Generator
) -> Batch:
    """One batch of :func:`draw_appended`."""
    return sample_online_data(offline, online, batch_size, "append", 0.0, rng)


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
