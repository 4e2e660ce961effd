"""D4RL-style PointMaze datasets made locally, in the format of Minari's ``D4RL/pointmaze``.

The recipe is the one Farama used for ``D4RL/pointmaze/*-v2`` (Minari docs, "PointMaze
D4RL dataset" tutorial; ``minari-dataset-generation-scripts/scripts/pointmaze``), itself
D4RL's maze2d recipe (Fu et al. 2020). No training is involved:

1. **Planner.** The maze grid is a graph of free cells with 4-neighbour moves. The next
   cell towards the goal cell is taken from a breadth-first search from the goal, which
   gives the same shortest paths as Farama's Q-iteration (reward 1 on entering the goal
   cell, discount 0.99; ties broken in the same move order), without its 50-iteration cap.
2. **Waypoint controller.** A PD controller steers the ball to the centre of the next cell
   on the path (``a = 10 (waypoint - xy) - 1 * velocity``), switching waypoint within 0.1 of
   it; intermediate waypoints are jittered by ``-U(0, 0.2)`` per axis, and the last
   waypoint is the goal itself. Actions are clipped to ``[-1, 1]``.
3. **Noise and continuing goals.** Each action gets ``N(0, 0.5^2)`` noise (then clipped).
   The environment is a continuing task (``continuing_task=True, reset_target=True``):
   when the ball reaches the goal (``info["success"]``), the episode is cut there
   (*truncation*, not termination) and a new random goal is drawn without resetting the
   ball, so the next episode starts where the last one ended. The first observation of
   such an episode still shows the previous goal, as in Minari's data.

Stored format, as ``D4RL/pointmaze/umaze-v2``: ``Dict`` observations ``observation`` (4),
``achieved_goal`` (2), ``desired_goal`` (2), float64; ``Box(-1, 1, (2,), float32)`` actions;
sparse rewards (1 within 0.45 of the goal); no terminations; infos ``success``, ``qpos``,
``qvel``, ``goal``; env spec ``PointMaze_UMaze-v3`` with ``continuing_task=True,
reset_target=True`` and a 1,000,000-step limit; evaluation env spec ``PointMaze_UMaze-v3``
on the single-goal evaluation map (:data:`EVAL_MAPS`) with ``continuing_task=True,
reset_target=False`` and the registered limit (300 steps for the U-maze).

Reference scores are computed as Minari computes them when a dataset is created with an
``expert_policy`` (:func:`minari.create_dataset_from_buffers`): the mean return over
``num_episodes_average_score`` (default 100) episodes in the evaluation environment,
reset with seed 123 once and then unseeded, of a uniform random policy (action space
seeded with 123) for ``ref_min_score`` and of the noise-free planner-controller for
``ref_max_score``. The numbers are this factory's, not Farama's.
"""

from __future__ import annotations

import argparse
import re
import warnings
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import gymnasium as gym
import minari
import numpy as np
from gymnasium.envs.registration import EnvSpec
from minari.data_collector import EpisodeBuffer
from tqdm.auto import tqdm

from sftlib.data.datasets import DatasetError, announce_first_use, load_dataset
from sftlib.data.envs import import_env_package
from sftlib.data.goals import ACHIEVED_GOAL_KEY, DESIRED_GOAL_KEY, OBSERVATION_KEY, SUCCESS_INFO_KEY

if TYPE_CHECKING:  # gymnasium-robotics is imported only when an env is made (sftlib.data.envs)
    from gymnasium_robotics.envs.maze.maze_v4 import Maze

GOAL, RESET = "g", "r"
MAZES = ("open", "umaze", "medium", "large")
ENV_IDS = {
    "open": "PointMaze_Open-v3",
    "umaze": "PointMaze_UMaze-v3",
    "medium": "PointMaze_Medium-v3",
    "large": "PointMaze_Large-v3",
}
"""Sparse-reward env id of each maze; the dense ones add ``Dense`` before ``-v3``."""
EVAL_MAPS: dict[str, list[list[int | str]]] = {
    "open": [
        [1, 1, 1, 1, 1, 1, 1],
        [1, 0, 0, 0, 0, 0, 1],
        [1, 0, 0, GOAL, 0, 0, 1],
        [1, 0, 0, 0, 0, 0, 1],
        [1, 1, 1, 1, 1, 1, 1],
    ],
    "umaze": [
        [1, 1, 1, 1, 1],
        [1, GOAL, 0, 0, 1],
        [1, 1, 1, 0, 1],
        [1, 0, 0, 0, 1],
        [1, 1, 1, 1, 1],
    ],
    "medium": [
        [1, 1, 1, 1, 1, 1, 1, 1],
        [1, 0, 0, 1, 1, 0, 0, 1],
        [1, 0, 0, 1, 0, 0, 0, 1],
        [1, 1, 0, 0, 0, 1, 1, 1],
        [1, 0, 0, 1, 0, 0, 0, 1],
        [1, 0, 1, 0, 0, 1, 0, 1],
        [1, 0, 0, 0, 1, 0, GOAL, 1],
        [1, 1, 1, 1, 1, 1, 1, 1],
    ],
    "large": [
        [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
        [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1],
        [1, 0, 1, 1, 0, 1, 0, 1, 0, 1, 0, 1],
        [1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1],
        [1, 0, 1, 1, 1, 1, 0, 1, 1, 1, 0, 1],
        [1, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 1],
        [1, 1, 0, 1, 0, 1, 0, 1, 0, 1, 1, 1],
        [1, 0, 0, 1, 0, 0, 0, 1, 0, GOAL, 0, 1],
        [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
    ],
}
"""Single-goal evaluation maps of Farama's generation script: one goal cell ``g``, the ball
reset in any other free cell."""

DEFAULT_STEPS = 100_000
"""Transitions of a default local dataset (Minari's remote ones hold 1,000,000)."""
TEST_STEPS = 2_000
"""A small size for tests (with ``ref_episodes=TEST_REF_EPISODES``)."""
TEST_REF_EPISODES = 3
DATA_MAX_EPISODE_STEPS = 1_000_000
"""Time limit recorded in the data env spec, as Minari's (the task never ends by itself)."""
REF_EPISODES = 100
"""Episodes averaged for each reference score (Minari's ``num_episodes_average_score``)."""
REF_SEED = 123
"""Seed of Minari's reference-score runs (first reset and the random policy's actions)."""
ACTION_NOISE = 0.5
"""Std of the Gaussian noise added to each controller action while collecting data."""
LOCAL_ID = re.compile(r"local/pointmaze/(?P<maze>[a-z]+)(?P<dense>-dense)?-v(?P<version>\d+)")


@dataclass(frozen=True)
class ControllerGains:
    """The waypoint controller's constants (D4RL's ``waypoint_controller.py``)."""

    proportional: float = 10.0
    derivative: float = -1.0
    waypoint_threshold: float = 0.1
    """Distance (maze units) at which the next waypoint is taken."""
    waypoint_jitter: float = 0.2
    """Intermediate waypoints are cell centres minus ``U(0, jitter)`` per axis."""


# --------------------------------------------------------------------------- planning
MOVES = ((0, 1), (0, -1), (-1, 0), (1, 0))
"""Cell moves ``(d_row, d_col)`` in the order Farama's Q-iteration breaks ties."""


def free_cells(maze_map: list[list[int | str]]) -> set[tuple[int, int]]:
    """Every ``(row, col)`` that is not a wall (``1``)."""
    return {
        (row, col)
        for row, cells in enumerate(maze_map)
        for col, cell in enumerate(cells)
        if cell != 1
    }


def next_cells(
    maze_map: list[list[int | str]], goal_cell: tuple[int, int]
) -> dict[tuple[int, int], tuple[int, int]]:
    """``{cell: next cell on a shortest path to goal_cell}`` for every free cell that can
    reach it (the goal maps to itself), by breadth-first search from the goal."""
    cells = free_cells(maze_map)
    distance = {goal_cell: 0}
    frontier = deque([goal_cell])
    while frontier:
        cell = frontier.popleft()
        for d_row, d_col in MOVES:
            neighbour = (cell[0] + d_row, cell[1] + d_col)
            if neighbour in cells and neighbour not in distance:
                distance[neighbour] = distance[cell] + 1
                frontier.append(neighbour)
    plan = {goal_cell: goal_cell}
    for cell, steps in distance.items():
        if cell == goal_cell:
            continue
        for d_row, d_col in MOVES:  # the first neighbour one step closer, in MOVES order
            neighbour = (cell[0] + d_row, cell[1] + d_col)
            if distance.get(neighbour) == steps - 1:
                plan[cell] = neighbour
                break
    return plan


class WaypointController:
    """Planner + PD waypoint controller for a PointMaze ``maze`` (``env.unwrapped.maze``).

    Call it with a goal ``Dict`` observation; it returns an action in ``[-1, 1]^2`` (no
    exploration noise: add it outside). It re-plans whenever ``desired_goal`` changes.
    ``rng`` draws the waypoint jitter.
    """

    def __init__(
        self, maze: Maze, rng: np.random.Generator, gains: ControllerGains = ControllerGains()
    ) -> None:
        self.maze, self.rng, self.gains = maze, rng, gains
        self.goal_xy: np.ndarray | None = None
        self.plan: dict[tuple[int, int], tuple[int, int]] = {}
        self.goal_cell: tuple[int, int] = (0, 0)
        self.target_cell: tuple[int, int] = (0, 0)
        self.target_xy = np.zeros(2)

    def cell_of(self, xy: np.ndarray) -> tuple[int, int]:
        row, col = self.maze.cell_xy_to_rowcol(xy)
        return int(row), int(col)

    def _aim_at(self, cell: tuple[int, int], jitter: bool) -> None:
        self.target_cell = cell
        if cell == self.goal_cell:
            self.target_xy = np.array(self.goal_xy, dtype=np.float64)
        else:
            centre = self.maze.cell_rowcol_to_xy(np.array(cell))
            offset = self.rng.uniform(size=2) * self.gains.waypoint_jitter if jitter else 0.0
            self.target_xy = centre - offset

    def _replan(self, position: np.ndarray, goal: np.ndarray) -> None:
        self.goal_xy = np.array(goal, dtype=np.float64)
        self.goal_cell = self.cell_of(goal)
        self.plan = next_cells(self.maze.maze_map, self.goal_cell)
        here = self.cell_of(position)
        # Farama's controller aims at the next cell's exact centre first, jitter afterwards.
        self._aim_at(self.plan.get(here, self.goal_cell), jitter=False)

    def __call__(self, obs: Mapping[str, np.ndarray]) -> np.ndarray:
        position, goal = obs[ACHIEVED_GOAL_KEY], obs[DESIRED_GOAL_KEY]
        if self.goal_xy is None or np.linalg.norm(self.goal_xy - goal) > 1e-3:
            self._replan(position, goal)
        close = np.linalg.norm(self.target_xy - position) <= self.gains.waypoint_threshold
        if close and self.target_cell != self.goal_cell:
            self._aim_at(self.plan.get(self.target_cell, self.goal_cell), jitter=True)
        velocity = obs[OBSERVATION_KEY][2:]
        action = (
            self.gains.proportional * (self.target_xy - position) + self.gains.derivative * velocity
        )
        return np.clip(action, -1.0, 1.0).astype(np.float32)


# --------------------------------------------------------------------------- environments
def env_id_for(maze: str, dense: bool = False) -> str:
    """``umaze`` -> ``PointMaze_UMaze-v3`` (``PointMaze_UMazeDense-v3`` if ``dense``)."""
    if maze not in MAZES:
        raise ValueError(f"maze must be one of {list(MAZES)}, got {maze!r}")
    return ENV_IDS[maze].replace("-v3", "Dense-v3") if dense else ENV_IDS[maze]


def dataset_id_for(maze: str, dense: bool = False, version: int = 0) -> str:
    """``umaze`` -> ``local/pointmaze/umaze-v0`` (``umaze-dense-v0`` if ``dense``), the local
    twin of Minari's ``D4RL/pointmaze/umaze-v2``."""
    env_id_for(maze)  # validates the name
    return f"local/pointmaze/{maze}{'-dense' if dense else ''}-v{version}"


def data_env_spec(maze: str, dense: bool = False) -> EnvSpec:
    """The data-collection env spec: continuing task, new goal at each success, 10^6 steps."""
    env_id = env_id_for(maze, dense)
    import_env_package(env_id)
    registered = gym.spec(env_id)
    kwargs = {**registered.kwargs, "continuing_task": True, "reset_target": True}
    return replace(registered, kwargs=kwargs, max_episode_steps=DATA_MAX_EPISODE_STEPS)


def eval_env_spec(maze: str, dense: bool = False) -> EnvSpec:
    """The evaluation env spec: the single-goal map, goal kept after success, registered
    time limit (Farama's ``eval_env`` for ``D4RL/pointmaze``)."""
    env_id = env_id_for(maze, dense)
    import_env_package(env_id)
    registered = gym.spec(env_id)
    kwargs = {
        **registered.kwargs,
        "maze_map": EVAL_MAPS[maze],
        "continuing_task": True,
        "reset_target": False,
    }
    return replace(registered, kwargs=kwargs)


# --------------------------------------------------------------------------- collection
def collect(spec: EnvSpec, n_steps: int, seed: int, progress: bool = False) -> list[EpisodeBuffer]:
    """Episodes of the noisy planner-controller totalling exactly ``n_steps`` transitions.

    The environment is reset once (seed ``seed``); an episode ends at each success
    (truncation) and the next starts from the same state with the new goal. The last
    episode is cut (truncated) at the budget.
    """
    if n_steps <= 0:
        raise ValueError(f"n_steps must be positive, got {n_steps}")
    rng = np.random.default_rng(seed)
    env = gym.make(spec)
    controller = WaypointController(env.unwrapped.maze, rng)
    obs, info = env.reset(seed=seed)
    episodes: list[EpisodeBuffer] = []
    episode = _Episode(obs, info)
    for step in tqdm(range(1, n_steps + 1), desc="pointmaze data", disable=not progress):
        action = controller(obs) + rng.normal(0.0, ACTION_NOISE, size=2)
        action = np.clip(action, -1.0, 1.0).astype(np.float32)
        obs, reward, terminated, truncated, info = env.step(action)
        # Minari's PointMaze step callback: an episode ends where the goal is reached.
        truncated = bool(truncated or info[SUCCESS_INFO_KEY] or step == n_steps)
        episode.add(obs, action, reward, terminated, truncated, info)
        if terminated or truncated:
            episodes.append(episode.buffer(len(episodes), seed if not episodes else None))
            if terminated:  # never with continuing_task=True; kept for other specs
                obs, info = env.reset()
            episode = _Episode(obs, info)
    env.close()
    return episodes


def _step_info(obs: Mapping[str, np.ndarray], info: Mapping) -> dict:
    """The infos Minari's PointMaze datasets record: success, ball state and goal."""
    observation = obs[OBSERVATION_KEY]
    return {
        SUCCESS_INFO_KEY: bool(info.get(SUCCESS_INFO_KEY, False)),
        "qpos": observation[:2].copy(),
        "qvel": observation[2:].copy(),
        "goal": np.asarray(obs[DESIRED_GOAL_KEY]).copy(),
    }


class _Episode:
    """Accumulates one episode's steps, then becomes a Minari ``EpisodeBuffer``."""

    def __init__(self, obs: Mapping[str, np.ndarray], info: Mapping) -> None:
        self.observations = {key: [np.asarray(value)] for key, value in obs.items()}
        self.infos = {key: [value] for key, value in _step_info(obs, info).items()}
        self.actions: list[np.ndarray] = []
        self.rewards: list[float] = []
        self.terminations: list[bool] = []
        self.truncations: list[bool] = []

    def add(self, obs, action, reward, terminated, truncated, info) -> None:
        for key, value in obs.items():
            self.observations[key].append(np.asarray(value))
        for key, value in _step_info(obs, info).items():
            self.infos[key].append(value)
        self.actions.append(action)
        self.rewards.append(float(reward))
        self.terminations.append(bool(terminated))
        self.truncations.append(bool(truncated))

    def buffer(self, episode_id: int, seed: int | None) -> EpisodeBuffer:
        return EpisodeBuffer(
            id=episode_id,
            seed=seed,
            observations={key: np.asarray(values) for key, values in self.observations.items()},
            actions=np.asarray(self.actions, dtype=np.float32),
            rewards=np.asarray(self.rewards, dtype=np.float64),
            terminations=np.asarray(self.terminations),
            truncations=np.asarray(self.truncations),
            infos={key: np.asarray(values) for key, values in self.infos.items()},
        )


def expert_policy(spec: EnvSpec, seed: int = REF_SEED):
    """The noise-free planner-controller as a Minari ``expert_policy`` for ``spec``'s maze
    (the maze geometry comes from a throw-away instance of ``spec``)."""
    env = gym.make(spec)
    controller = WaypointController(env.unwrapped.maze, np.random.default_rng(seed))
    env.close()
    return controller


# --------------------------------------------------------------------------- datasets
def make_pointmaze_dataset(
    maze: str = "umaze",
    n_steps: int = DEFAULT_STEPS,
    seed: int = 0,
    dataset_id: str | None = None,
    dense: bool = False,
    ref_episodes: int = REF_EPISODES,
    progress: bool = True,
) -> minari.MinariDataset:
    """Make (or load, if it exists) the local PointMaze dataset of ``maze``.

    ``n_steps`` transitions of the noisy planner-controller (module docstring), stored in
    the format of Minari's ``D4RL/pointmaze/<maze>-v2`` with reference scores averaged over
    ``ref_episodes`` evaluation episodes each. Existing ids are never overwritten.
    The default (100k steps, 2 x 100 reference episodes) takes about 15 s on one CPU core;
    for tests use :data:`TEST_STEPS` and :data:`TEST_REF_EPISODES`.
    """
    if n_steps <= 0:
        raise ValueError(f"n_steps must be positive, got {n_steps}")
    if ref_episodes <= 0:
        raise ValueError(f"ref_episodes must be positive, got {ref_episodes}")
    dataset_id = dataset_id or dataset_id_for(maze, dense)
    if dataset_id in minari.list_local_datasets():
        return load_dataset(dataset_id)
    spec, evaluation = data_env_spec(maze, dense), eval_env_spec(maze, dense)
    episodes = collect(spec, n_steps, seed, progress=progress)
    with warnings.catch_warnings():
        # Minari nags about optional provenance fields (author email, permalink).
        warnings.filterwarnings("ignore", message=r"`(code_permalink|author|author_email)`")
        return minari.create_dataset_from_buffers(
            dataset_id=dataset_id,
            buffer=episodes,
            env=spec,
            eval_env=evaluation,
            algorithm_name="BFS planner + waypoint PD controller (sftlib.factory.maze)",
            author="sftlib PointMaze factory",
            expert_policy=expert_policy(evaluation),
            num_episodes_average_score=ref_episodes,
            description=(
                f"D4RL-style PointMaze '{maze}' dataset made by sftlib.factory.maze with a BFS planner "
                f"and a noisy waypoint PD controller ({n_steps} transitions, seed {seed}), in "
                f"the format of Minari's D4RL/pointmaze/{maze}-v2. Not Farama's data."
            ),
        )


def ensure_pointmaze_dataset(dataset_id: str) -> minari.MinariDataset:
    """Load ``dataset_id``, making it first if it is a missing ``local/pointmaze/<maze>-v0``
    (only version 0 corresponds to the default recipe)."""
    match = LOCAL_ID.fullmatch(dataset_id)
    if dataset_id not in minari.list_local_datasets() and match and match["version"] == "0":
        if match["maze"] not in MAZES:
            raise DatasetError(
                f"dataset {dataset_id!r}: unknown maze {match['maze']!r}; "
                f"sftlib.factory.maze knows {list(MAZES)}"
            )
        with announce_first_use(dataset_id):
            return make_pointmaze_dataset(
                match["maze"], dense=bool(match["dense"]), dataset_id=dataset_id
            )
    return load_dataset(dataset_id)


def main(argv: list[str] | None = None) -> None:
    """``python -m sftlib.factory.maze umaze [--steps N] [--dense]``: make a local PointMaze dataset
    (or load it, if it exists) and print its size and reference scores."""
    parser = argparse.ArgumentParser(prog="python -m sftlib.factory.maze", description=__doc__)
    parser.add_argument("maze", choices=MAZES)
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dense", action="store_true")
    parser.add_argument("--ref-episodes", type=int, default=REF_EPISODES)
    parser.add_argument("--dataset-id", default=None, help="default: local/pointmaze/<maze>-v0")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    ds = make_pointmaze_dataset(
        args.maze,
        n_steps=args.steps,
        seed=args.seed,
        dataset_id=args.dataset_id,
        dense=args.dense,
        ref_episodes=args.ref_episodes,
        progress=not args.quiet,
    )
    meta = ds.storage.metadata
    print(
        f"{ds.spec.dataset_id}: {ds.total_steps} steps, {ds.total_episodes} episodes, "
        f"ref_min_score {meta['ref_min_score']:.2f}, ref_max_score {meta['ref_max_score']:.2f}"
    )


if __name__ == "__main__":
    main()


__all__ = [
    "DEFAULT_STEPS",
    "ENV_IDS",
    "EVAL_MAPS",
    "MAZES",
    "TEST_REF_EPISODES",
    "TEST_STEPS",
    "ControllerGains",
    "WaypointController",
    "collect",
    "data_env_spec",
    "dataset_id_for",
    "ensure_pointmaze_dataset",
    "env_id_for",
    "eval_env_spec",
    "expert_policy",
    "make_pointmaze_dataset",
    "next_cells",
]
