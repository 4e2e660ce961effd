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

BatchPolicy = Callable[[np.ndarray], np.ndarray]
"""Maps observations ``[B, obs_dim]`` to actions ``[B, act_dim]`` in ``[-1, 1]``."""


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


@torch.no_grad()
def evaluate_side_by_side(
    policy: BatchPolicy, env_id: EnvSource, n_episodes: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`evaluate_policy_with_success` with all ``n_episodes`` episodes advancing together:
    one call of ``policy`` per step, on the observations of the episodes still running.

    Episode ``i`` is reset with seed ``seed + i``, as there. The returns are those of the same
    episodes played one after another up to float rounding: a batched matrix product need not
    round a row as the one-row product does (about 1e-7 relative), and a long episode can
    amplify that. They are exactly reproducible: the same policy and seed give the same
    numbers, and a seed's slice of a stacked policy the numbers of the one-seed policy.
    """
    envs = [make_env(env_id) for _ in range(n_episodes)]
    key = success_key(env_id_of(env_id))
    returns = np.zeros(n_episodes)
    successes = np.full(n_episodes, np.nan if key is None else 0.0)
    try:
        obs = np.stack([env.reset(seed=seed + i)[0] for i, env in enumerate(envs)])
        running = np.ones(n_episodes, bool)
        while running.any():
            playing = np.flatnonzero(running)
            for i, action in zip(playing, policy(obs[playing]), strict=True):
                obs[i], reward, reached, done = _step(envs[i], action, key)
                returns[i] += reward
                if reached:
                    successes[i] = 1.0
                running[i] = not done
    finally:
        for env in envs:
            env.close()
    return returns, successes


@torch.no_grad()
def evaluate_seeds(
    act: Callable[[np.ndarray], np.ndarray],
    env_id: EnvSource,
    n_episodes: int,
    seeds: Sequence[int],
) -> tuple[np.ndarray, np.ndarray]:
    """Returns and successes ``[len(seeds), n_episodes]`` of one policy per seed, stepped side
    by side (one batched forward pass per step for all seeds).

    ``act`` maps one observation per seed ``[K, obs_dim]`` to one action per seed ``[K,
    act_dim]``. Episode ``i`` of policy ``k`` is reset with seed ``seeds[k] + i``, as
    :func:`evaluate_policy_with_success` does for one policy, so a seed's numbers are those
    of its own evaluation. Successes are NaN where the task defines no success.
    """
    envs = [make_env(env_id) for _ in seeds]
    key = success_key(env_id_of(env_id))
    returns = np.zeros((len(seeds), n_episodes))
    successes = np.full((len(seeds), n_episodes), np.nan if key is None else 0.0)
    try:
        for episode in range(n_episodes):
            obs = np.stack(
                [env.reset(seed=s + episode)[0] for env, s in zip(envs, seeds, strict=True)]
            )
            running = np.ones(len(seeds), bool)
            while running.any():
                actions = act(obs)
                for k in np.flatnonzero(running):
                    obs[k], reward, reached, done = _step(envs[k], actions[k], key)
                    returns[k, episode] += reward
                    if reached:
                        successes[k, episode] = 1.0
                    running[k] = not done
    finally:
        for env in envs:
            env.close()
    return returns, successes
