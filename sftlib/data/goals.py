"""Goal-reaching tasks: the observation rule, sparse-reward conventions and the success rule.

Pure rules in one place, used by the dataset loader (:mod:`sftlib.data.datasets`), the environment
maker (:mod:`sftlib.data.envs`) and evaluation alike, so that training, evaluation and online
data see identical inputs and rewards.

**Observation rule.** Goal-reaching tasks (Minari's D4RL PointMaze, AntMaze, Kitchen) have
``Dict`` observations ``{"observation", "achieved_goal", "desired_goal"}``. The policy input
is ``observation`` followed by ``desired_goal``, concatenated into one flat vector
(:data:`GOAL_INPUT_KEYS`, :func:`flatten_goal_obs`). ``desired_goal`` is the input because it
is the only thing that tells the agent *where to go*: in these datasets the goal changes
between (and, in PointMaze, within) episodes, so a policy without it cannot tell two tasks
apart. ``achieved_goal`` is left out because it is a function of ``observation`` (the
agent's x-y position, already its first two entries in PointMaze and AntMaze) and adds no
information.

**Reward conventions** (:data:`REWARD_CONVENTIONS`, :func:`shape_reward`): sparse goal
rewards ``r in {0, 1}`` are usually shifted for offline-to-online training; the shift is a
*training* convention, applied to dataset and online transitions alike. Evaluation always
reports the environment's raw return.

**Success rule** (:data:`SUCCESS_INFO_KEY`, :func:`success_key`): a maze episode is a success
when ``info["success"]`` was true at any step, i.e. the agent came within the goal radius
(0.45 in gymnasium-robotics' mazes) at least once.
"""

from __future__ import annotations

from collections.abc import Mapping

import gymnasium as gym
import numpy as np

OBSERVATION_KEY = "observation"
DESIRED_GOAL_KEY = "desired_goal"
ACHIEVED_GOAL_KEY = "achieved_goal"
GOAL_INPUT_KEYS = (OBSERVATION_KEY, DESIRED_GOAL_KEY)
"""The policy input of a goal-reaching task: these entries of the ``Dict`` observation,
concatenated in this order (see the module docstring for why ``desired_goal``)."""


# --------------------------------------------------------------------------- observations
def is_goal_space(space: gym.Space) -> bool:
    """True for a ``Dict`` space holding every key of :data:`GOAL_INPUT_KEYS`."""
    return isinstance(space, gym.spaces.Dict) and all(k in space.spaces for k in GOAL_INPUT_KEYS)


def _box_problem(space: gym.Space, what: str) -> str | None:
    """Why ``space`` cannot be a flat float input, or ``None`` if it can."""
    if not isinstance(space, gym.spaces.Box):
        return f"{what} is a {type(space).__name__} space ({space}), not a Box of floats"
    if len(space.shape) == 3 or space.dtype == np.uint8:
        return f"{what} is an image (Box of shape {space.shape}, dtype {space.dtype})"
    if len(space.shape) != 1:
        return f"{what} is not a flat vector (Box of shape {space.shape})"
    return None


def observation_problem(space: gym.Space) -> str | None:
    """Why observations from ``space`` cannot feed sftlib's agents, or ``None`` if they can.

    Accepted: a 1-D float ``Box``, or a ``Dict`` whose ``observation`` and ``desired_goal``
    are 1-D float ``Box`` es (other keys, such as ``achieved_goal``, are ignored).
    """
    if isinstance(space, gym.spaces.Dict):
        missing = [k for k in GOAL_INPUT_KEYS if k not in space.spaces]
        if missing:
            return (
                f"Dict observations without {missing} (keys: {sorted(space.spaces)}) are not "
                f"supported: the goal rule feeds {list(GOAL_INPUT_KEYS)} to the policy"
            )
        for key in GOAL_INPUT_KEYS:
            problem = _box_problem(space.spaces[key], f"its {key!r} entry")
            if problem:
                return f"Dict observations are supported only with flat vectors: {problem}"
        return None
    problem = _box_problem(space, "the observation")
    return None if problem is None else f"{problem}; only flat vector observations are supported"


def flat_obs_dim(space: gym.Space) -> int:
    """Size of the policy input of ``space``: its Box size, or the goal rule's flat size."""
    if is_goal_space(space):
        return int(sum(np.prod(space.spaces[k].shape) for k in GOAL_INPUT_KEYS))
    return int(np.prod(space.shape))


def flatten_goal_obs(obs: Mapping[str, np.ndarray]) -> np.ndarray:
    """The policy input of a goal observation: ``concat(observation, desired_goal)``.

    Works on one observation (entries ``[d_obs]`` and ``[d_goal]`` -> ``[d_obs + d_goal]``)
    and on a stack of them (``[T, d_obs]`` and ``[T, d_goal]`` -> ``[T, d_obs + d_goal]``).
    The dtype is kept (float64 from the environment).
    """
    return np.concatenate([np.asarray(obs[k]) for k in GOAL_INPUT_KEYS], axis=-1)


def flat_goal_space(space: gym.spaces.Dict) -> gym.spaces.Box:
    """The Box of :func:`flatten_goal_obs`'s outputs for a goal ``Dict`` space."""
    parts = [space.spaces[k] for k in GOAL_INPUT_KEYS]
    return gym.spaces.Box(
        low=np.concatenate([p.low for p in parts]),
        high=np.concatenate([p.high for p in parts]),
        dtype=np.result_type(*(p.dtype for p in parts)),
    )


class GoalObservation(gym.ObservationWrapper):
    """Applies :func:`flatten_goal_obs` to every observation of a goal-reaching environment."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        if not is_goal_space(env.observation_space):
            raise ValueError(
                f"GoalObservation needs a Dict observation space with {list(GOAL_INPUT_KEYS)}, "
                f"got {env.observation_space}"
            )
        self.observation_space = flat_goal_space(env.observation_space)

    def observation(self, observation: Mapping[str, np.ndarray]) -> np.ndarray:
        return flatten_goal_obs(observation)


# --------------------------------------------------------------------------- rewards
REWARD_CONVENTIONS: dict[str, tuple[float, float]] = {
    "raw": (1.0, 0.0),
    "minus_one": (1.0, -1.0),
    "calql": (10.0, -5.0),
}
"""Named sparse-reward conventions ``r' = scale * r + bias`` as ``(scale, bias)``:

- ``raw``: the environment's reward, unchanged (the default; MuJoCo locomotion).
- ``minus_one``: ``r - 1``, so a step is -1 until the goal and 0 at it. IQL's AntMaze
  setting (Kostrikov, Nair & Levine 2022, "Offline RL with Implicit Q-Learning"; its code
  subtracts 1 from AntMaze rewards), reused by IQL-based fine-tuning.
- ``calql``: ``10 r - 5``, i.e. -5 / +5. Cal-QL's AntMaze setting (Nakamoto et al. 2023,
  "Cal-QL", code flags ``--reward_scale 10.0 --reward_bias -5.0``), also used by WSRL.
"""


def check_reward_convention(convention: str) -> None:
    """A clear ``ValueError`` naming ``reward_convention`` unless it is a known name."""
    if convention not in REWARD_CONVENTIONS:
        raise ValueError(
            f"reward_convention must be one of {list(REWARD_CONVENTIONS)}, got {convention!r}"
        )


def shape_reward(reward: np.ndarray | float, convention: str = "raw") -> np.ndarray | float:
    """``reward`` under ``convention`` (see :data:`REWARD_CONVENTIONS`).

    Works on one reward (float) or an array of them (any shape, dtype kept for arrays).
    ``raw`` returns ``reward`` itself, untouched to the bit. Apply it to every dataset
    transition *and* every online transition, never to evaluation returns.
    """
    check_reward_convention(convention)
    if convention == "raw":
        return reward
    scale, bias = REWARD_CONVENTIONS[convention]
    if isinstance(reward, np.ndarray):
        return (reward * scale + bias).astype(reward.dtype)
    return float(reward) * scale + bias


# --------------------------------------------------------------------------- success
SUCCESS_INFO_KEY = "success"
"""The ``info`` entry that says whether the goal is reached (gymnasium-robotics' mazes)."""
SUCCESS_ENV_PREFIXES = ("PointMaze_", "AntMaze_")
"""Env ids (prefixes) whose tasks define success through :data:`SUCCESS_INFO_KEY`."""


def success_key(env_id: str) -> str | None:
    """The ``info`` key that defines success for ``env_id``, or ``None`` if it defines none."""
    return SUCCESS_INFO_KEY if env_id.startswith(SUCCESS_ENV_PREFIXES) else None


def success_rate(successes: np.ndarray) -> float:
    """Percentage of successful episodes, ``100 * mean(successes)``; ``successes``: ``[n]``."""
    return 100.0 * float(np.mean(np.asarray(successes, dtype=np.float64)))


__all__ = [
    "ACHIEVED_GOAL_KEY",
    "DESIRED_GOAL_KEY",
    "GOAL_INPUT_KEYS",
    "OBSERVATION_KEY",
    "REWARD_CONVENTIONS",
    "SUCCESS_ENV_PREFIXES",
    "SUCCESS_INFO_KEY",
    "GoalObservation",
    "check_reward_convention",
    "flat_goal_space",
    "flat_obs_dim",
    "flatten_goal_obs",
    "is_goal_space",
    "observation_problem",
    "shape_reward",
    "success_key",
    "success_rate",
]
