"""Pure policy evaluation: own environments, own seeds, returns arrays; the caller logs."""

from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym
import numpy as np
import torch

Policy = Callable[[np.ndarray], np.ndarray]
"""Maps one raw observation ``[obs_dim]`` to one action ``[act_dim]`` in ``[-1, 1]``."""


def to_env_action(action: np.ndarray, space: gym.spaces.Box) -> np.ndarray:
    """Map an action in ``[-1, 1]`` to the environment's box."""
    low, high = space.low, space.high
    return low + (np.clip(action, -1.0, 1.0) + 1.0) * 0.5 * (high - low)


def from_env_action(action: np.ndarray, space: gym.spaces.Box) -> np.ndarray:
    """Map an environment action to ``[-1, 1]`` (inverse of :func:`to_env_action`)."""
    low, high = space.low, space.high
    return np.clip(2.0 * (action - low) / (high - low) - 1.0, -1.0, 1.0).astype(np.float32)


@torch.no_grad()
def evaluate_policy(policy: Policy, env_id: str, n_episodes: int, seed: int) -> np.ndarray:
    """Undiscounted returns of ``n_episodes`` episodes, shape ``[n_episodes]``.

    Episode ``i`` is reset with seed ``seed + i``, so the same policy and seed give the
    same returns whatever ran before. Global random states are left untouched.
    """
    env = gym.make(env_id)
    returns = np.zeros(n_episodes)
    try:
        for i in range(n_episodes):
            obs, _ = env.reset(seed=seed + i)
            done = False
            while not done:
                obs, r, term, trunc, _ = env.step(to_env_action(policy(obs), env.action_space))
                returns[i] += r
                done = term or trunc
    finally:
        env.close()
    return returns
