"""Pure policy evaluation: own environments, own seeds, returns arrays; the caller logs.

Environments come from :func:`sftlib.data.envs.make_env`, so a goal-reaching task is evaluated
on the same flat inputs (``observation`` + ``desired_goal``) it was trained on. Returns are
always the environment's *raw* undiscounted returns (no reward convention): they are what
the D4RL normalised score is defined on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import gymnasium as gym
import numpy as np
import torch

from sftlib.data.envs import EnvSource, env_id_of, make_env
from sftlib.data.goals import success_key

Policy = Callable[[np.ndarray], np.ndarray]
"""Maps one observation ``[obs_dim]`` to one action ``[act_dim]`` in ``[-1, 1]``. For a
goal-reaching task the observation is the flat ``concat(observation, desired_goal)``."""


def to_env_action(action: np.ndarray, space: gym.spaces.Box) -> np.ndarray:
    """Map an action in ``[-1, 1]`` to the environment's box."""
    low, high = space.low, space.high
    return low + (np.clip(action, -1.0, 1.0) + 1.0) * 0.5 * (high - low)


def from_env_action(action: np.ndarray, space: gym.spaces.Box) -> np.ndarray:
    """Map an environment action to ``[-1, 1]`` (inverse of :func:`to_env_action`)."""
    low, high = space.low, space.high
    return np.clip(2.0 * (action - low) / (high - low) - 1.0, -1.0, 1.0).astype(np.float32)


def _step(
    env: gym.Env, action: np.ndarray, key: str | None
) -> tuple[np.ndarray, float, bool, bool]:
    """One step of ``env`` with ``action`` in ``[-1, 1]``: ``(next observation, reward,
    whether the goal was reached (``key``: the task's success key, or None), done)``."""
    obs, reward, term, trunc, info = env.step(to_env_action(action, env.action_space))
    return obs, reward, key is not None and bool(info.get(key, False)), term or trunc


@torch.no_grad()
def evaluate_policy_with_success(
    policy: Policy, env_id: EnvSource, n_episodes: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Undiscounted returns and successes of ``n_episodes`` episodes, each shape ``[n_episodes]``.

    ``env_id`` is an env id or a dataset's ``DatasetInfo`` (see :func:`sftlib.data.envs.make_env`).
    Episode ``i`` is reset with seed ``seed + i``, so the same policy and seed give the
    same numbers whatever ran before. Global random states are left untouched.

    ``successes[i]`` is 1.0 if ``info["success"]`` was true at any step of episode ``i``
    (the agent reached the goal at least once), else 0.0; it is NaN for every episode of a
    task that defines no success (:func:`sftlib.data.goals.success_key`), e.g. MuJoCo locomotion.
    """
    env = make_env(env_id)
    key = success_key(env_id_of(env_id))
    returns = np.zeros(n_episodes)
    successes = np.zeros(n_episodes) if key is not None else np.full(n_episodes, np.nan)
    try:
        for episode in range(n_episodes):
            obs, _ = env.reset(seed=seed + episode)
            done = reached = False
            while not done:
                obs, reward, reached_now, done = _step(env, policy(obs), key)
                returns[episode] += reward
                reached = reached or reached_now
            if key is not None:
                successes[episode] = float(reached)
    finally:
        env.close()
    return returns, successes


@torch.no_grad()
def evaluate_policy(policy: Policy, env_id: EnvSource, n_episodes: int, seed: int) -> np.ndarray:
    """Undiscounted returns of ``n_episodes`` episodes, shape ``[n_episodes]``.

    Episode ``i`` is reset with seed ``seed + i``, so the same policy and seed give the
    same returns whatever ran before. Global random states are left untouched. ``env_id``
    may also be a dataset's ``DatasetInfo``; :func:`evaluate_policy_with_success` also
    returns per-episode successes.
    """
    return evaluate_policy_with_success(policy, env_id, n_episodes, seed)[0]


StackedPolicy = Callable[[np.ndarray], np.ndarray]
"""One deterministic policy per seed, called once for all of them: raw observations ``[K, B,
obs_dim]`` (``B`` per seed) to actions ``[K, B, act_dim]`` in ``[-1, 1]``."""


class EnvPool:
    """Evaluation environments kept from one evaluation to the next (making a MuJoCo
    environment costs about 9 ms, a hundred steps). :func:`evaluate_stacked` resets each
    with its episode's seed, from which a kept environment plays exactly as a new one."""

    def __init__(self, env_id: EnvSource) -> None:
        self.env_id = env_id
        self.envs: list[gym.Env] = []

    def take(self, count: int) -> list[gym.Env]:
        """``count`` environments, the missing ones made now."""
        while len(self.envs) < count:
            self.envs.append(make_env(self.env_id))
        return self.envs[:count]

    def close(self) -> None:
        for env in self.envs:
            env.close()
        self.envs.clear()


@torch.no_grad()
def evaluate_stacked(
    act: StackedPolicy,
    env_id: EnvSource,
    n_episodes: int,
    seeds: Sequence[int],
    envs: EnvPool | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Returns and successes ``[len(seeds), n_episodes]`` of one deterministic policy per seed,
    every episode of every seed advancing together: one call of ``act`` per step.

    Episode ``i`` of seed ``k`` is reset with seed ``seeds[k] + i``, as
    :func:`evaluate_policy_with_success` does for one policy. ``act`` always receives the
    observations of all ``K x n_episodes`` episodes; an episode that has ended keeps its last
    observation and its action is dropped. So every call has the same shape whatever has
    ended, and a seed's numbers never depend on the other seeds': seed ``k`` of a stacked
    policy scores exactly as the one-seed policy evaluated alone (same machine). The returns
    are those of the episodes played one after another up to float rounding (a batched
    matrix product need not round a row as a one-row product does). ``envs``: environments
    to reuse (made, and closed, here when ``None``). Successes are NaN where the task
    defines no success (:func:`sftlib.data.goals.success_key`).
    """
    pool = EnvPool(env_id) if envs is None else envs
    shape, key = (len(seeds), n_episodes), success_key(env_id_of(env_id))
    grid = pool.take(len(seeds) * n_episodes)  # episode i of seed k at k * n_episodes + i
    returns = np.zeros(len(grid))
    successes = np.full(len(grid), np.nan if key is None else 0.0)
    try:
        obs = np.stack(
            [
                env.reset(seed=seeds[j // n_episodes] + j % n_episodes)[0]
                for j, env in enumerate(grid)
            ]
        )
        running = np.ones(len(grid), bool)
        while running.any():
            actions = act(obs.reshape(*shape, -1)).reshape(len(grid), -1)
            for j in np.flatnonzero(running):
                obs[j], reward, reached, done = _step(grid[j], actions[j], key)
                returns[j] += reward
                if reached:
                    successes[j] = 1.0
                running[j] = not done
    finally:
        if envs is None:
            pool.close()
    return returns.reshape(shape), successes.reshape(shape)
