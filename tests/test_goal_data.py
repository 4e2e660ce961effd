"""Goal-reaching datasets (PointMaze, AntMaze): the observation rule, reward conventions,
success rates, the local PointMaze factory, and one clear error for each unsupported input.

The network is unreachable here, so the loader is tested on local fixtures written with
``minari.create_dataset_from_buffers`` in the format of Minari's remote ``D4RL/pointmaze``
and ``D4RL/antmaze`` datasets.
"""

from __future__ import annotations

import json
import sys
import warnings
from dataclasses import replace

import gymnasium as gym
import minari
import numpy as np
import pytest
from minari.data_collector import EpisodeBuffer

from sftlib.data.datasets import (
    DatasetError,
    check_dataset,
    dataset_info,
    load_dataset,
    transitions,
)
from sftlib.data.envs import EnvPackageError, make_env
from sftlib.data.goals import (
    GOAL_INPUT_KEYS,
    REWARD_CONVENTIONS,
    flatten_goal_obs,
    shape_reward,
    success_rate,
)
from sftlib.data.rollouts import evaluate_policy, evaluate_policy_with_success, to_env_action
from sftlib.factory.maze import (
    EVAL_MAPS,
    TEST_REF_EPISODES,
    TEST_STEPS,
    eval_env_spec,
    expert_policy,
    make_pointmaze_dataset,
    next_cells,
)

POINTMAZE_ID = "local/pointmaze/umaze-tiny-v0"
ANTMAZE_ID = "local/antmaze/umaze-tiny-v0"
ANTMAZE_ENV = "AntMaze_UMaze-v4"  # the env of Minari's D4RL/antmaze/*-v1
ANTMAZE_EVAL_MAP = [
    [1, 1, 1, 1, 1],
    [1, 0, 0, 0, 1],
    [1, 1, 1, 0, 1],
    [1, "g", 0, 0, 1],
    [1, 1, 1, 1, 1],
]


# --- fixtures ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pointmaze(minari_store) -> minari.MinariDataset:
    """The PointMaze factory's U-maze dataset at test size (2,000 steps, 3+3 ref episodes)."""
    return make_pointmaze_dataset(
        "umaze",
        n_steps=TEST_STEPS,
        ref_episodes=TEST_REF_EPISODES,
        dataset_id=POINTMAZE_ID,
        progress=False,
    )


def stack(samples: list) -> np.ndarray | dict:
    """Per-step samples of a space -> the arrays Minari stores (``[T, ...]``, per Dict key)."""
    if isinstance(samples[0], dict):
        return {key: np.stack([s[key] for s in samples]) for key in samples[0]}
    return np.stack(samples)


@pytest.fixture(scope="module")
def antmaze(minari_store) -> minari.MinariDataset:
    """An AntMaze-shaped dataset in the format of ``D4RL/antmaze/umaze-v1``: two short
    random-action episodes of ``AntMaze_UMaze-v4`` (continuing task, goal kept), with a
    single-goal evaluation env; the reference scores 0 and 1 are fixture values."""
    if ANTMAZE_ID in minari.list_local_datasets():
        return minari.load_dataset(ANTMAZE_ID)
    make_env(ANTMAZE_ENV).close()  # registers gymnasium-robotics' ids
    registered = gym.spec(ANTMAZE_ENV)
    data_spec = replace(
        registered,
        kwargs={**registered.kwargs, "continuing_task": True, "reset_target": False},
        max_episode_steps=1000,
    )
    eval_spec = replace(
        data_spec, kwargs={**data_spec.kwargs, "maze_map": ANTMAZE_EVAL_MAP}, max_episode_steps=700
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # AntMaze-v4 is "out of date"; it is what D4RL uses
        env = gym.make(data_spec)
        env.action_space.seed(0)
        episodes = []
        for episode in range(2):
            obs, info = env.reset(seed=episode)
            observations, actions, infos = [obs], [], [info["success"]]
            for _ in range(15):
                actions.append(env.action_space.sample())
                obs, _, _, _, info = env.step(actions[-1])
                observations.append(obs)
                infos.append(info["success"])
            episodes.append(
                EpisodeBuffer(
                    id=episode,
                    seed=episode,
                    observations=stack(observations),
                    actions=np.asarray(actions, np.float32),
                    rewards=np.zeros(15),
                    terminations=np.zeros(15, bool),
                    truncations=np.arange(15) == 14,
                    infos={"success": np.asarray(infos)},
                )
            )
        env.close()
        return minari.create_dataset_from_buffers(
            dataset_id=ANTMAZE_ID,
            buffer=episodes,
            env=data_spec,
            eval_env=eval_spec,
            ref_min_score=0.0,
            ref_max_score=1.0,
            algorithm_name="random actions (test fixture)",
            author="sftlib tests",
            description="AntMaze-shaped test fixture",
        )


def flat_expert(info_or_maze: str = "umaze"):
    """The planner-controller acting on the *flat* policy input ``concat(observation [4],
    desired_goal [2])``: it reaches the goal only if positions 4:6 really hold the goal."""
    controller = expert_policy(eval_env_spec(info_or_maze))

    def policy(flat: np.ndarray) -> np.ndarray:
        obs = {"observation": flat[:4], "achieved_goal": flat[:2], "desired_goal": flat[4:6]}
        return controller(obs)

    return policy


def random_policy(seed: int):
    rng = np.random.default_rng(seed)
    return lambda obs: rng.uniform(-1.0, 1.0, size=2)


# --- the observation rule ---------------------------------------------------------------------
def test_goal_input_is_observation_then_desired_goal_by_hand():
    obs = {
        "observation": np.array([1.0, 2.0, 3.0, 4.0]),
        "achieved_goal": np.array([1.0, 2.0]),
        "desired_goal": np.array([7.0, 8.0]),
    }
    assert GOAL_INPUT_KEYS == ("observation", "desired_goal")
    np.testing.assert_array_equal(flatten_goal_obs(obs), [1, 2, 3, 4, 7, 8])
    stacked = {key: np.stack([value, value + 10]) for key, value in obs.items()}
    np.testing.assert_array_equal(
        flatten_goal_obs(stacked), [[1, 2, 3, 4, 7, 8], [11, 12, 13, 14, 17, 18]]
    )


def test_online_env_gives_the_rule_applied_to_the_raw_observation():
    env = make_env("PointMaze_UMaze-v3")  # registers gymnasium-robotics' ids first
    raw_env = gym.make("PointMaze_UMaze-v3")
    raw, _ = raw_env.reset(seed=3)
    flat, _ = env.reset(seed=3)
    np.testing.assert_array_equal(flat, np.concatenate([raw["observation"], raw["desired_goal"]]))
    assert env.observation_space.shape == (6,)
    action = np.array([0.3, -0.2], np.float32)
    raw, *_ = raw_env.step(action)
    flat, *_ = env.step(action)
    np.testing.assert_array_equal(flat, flatten_goal_obs(raw))
    raw_env.close(), env.close()


def test_box_env_is_plain_gym_make_to_the_bit():
    """A MuJoCo/Box task evaluates exactly as before: ``gym.make(env_id)`` and the same loop."""
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, size=(1000, 1))
    step = iter(range(10**6))

    def policy(obs):
        return actions[next(step) % 1000]

    returns = evaluate_policy(policy, "Pendulum-v1", 2, seed=5)
    step = iter(range(10**6))
    env, expected = gym.make("Pendulum-v1"), np.zeros(2)
    for episode in range(2):
        obs, _ = env.reset(seed=5 + episode)
        done = False
        while not done:
            obs, reward, term, trunc, _ = env.step(to_env_action(policy(obs), env.action_space))
            expected[episode] += reward
            done = term or trunc
    assert returns.tobytes() == expected.tobytes()
    assert type(make_env("Pendulum-v1").unwrapped) is type(env.unwrapped)
    assert make_env("Pendulum-v1").observation_space == env.observation_space


# --- reward conventions -----------------------------------------------------------------------
def test_reward_conventions_by_hand():
    rewards = np.array([0.0, 1.0, -0.0], np.float32)
    assert shape_reward(rewards, "raw") is rewards  # untouched, -0.0 included
    np.testing.assert_array_equal(shape_reward(rewards, "minus_one"), [-1.0, 0.0, -1.0])
    np.testing.assert_array_equal(shape_reward(rewards, "calql"), [-5.0, 5.0, -5.0])
    assert shape_reward(rewards, "minus_one").dtype == np.float32
    assert shape_reward(1.0, "minus_one") == 0.0 and shape_reward(0.0, "calql") == -5.0
    with pytest.raises(ValueError, match=r"reward_convention must be one of \['raw', 'minus_one'"):
        shape_reward(rewards, "plus_one")


def test_transitions_apply_the_convention_to_every_reward(pointmaze):
    raw = transitions(pointmaze)
    assert (
        raw.rewards.tobytes() == transitions(pointmaze, reward_convention="raw").rewards.tobytes()
    )
    assert set(np.unique(raw.rewards)) <= {0.0, 1.0} and raw.rewards.max() == 1.0
    for convention, (scale, bias) in REWARD_CONVENTIONS.items():
        shaped = transitions(pointmaze, reward_convention=convention)
        np.testing.assert_array_equal(shaped.rewards, scale * raw.rewards + bias)
        np.testing.assert_array_equal(shaped.obs, raw.obs)
    with pytest.raises(ValueError, match="reward_convention"):
        transitions(pointmaze, reward_convention="nope")


# --- the PointMaze factory ----------------------------------------------------------------------
def test_planner_gives_shortest_paths_around_the_wall():
    umaze = EVAL_MAPS["umaze"]
    plan = next_cells(umaze, (1, 1))
    path, cell = [(3, 1)], (3, 1)
    while cell != (1, 1):
        cell = plan[cell]
        path.append(cell)
    # Bottom-left to top-left goes all the way round the U: 6 moves, never through a wall.
    assert path == [(3, 1), (3, 2), (3, 3), (2, 3), (1, 3), (1, 2), (1, 1)]
    assert plan[(1, 1)] == (1, 1)


def test_collection_is_deterministic_per_seed():
    from sftlib.factory.maze import collect, data_env_spec

    spec = data_env_spec("umaze")
    first, again, other = (
        collect(spec, 300, seed=1),
        collect(spec, 300, seed=1),
        collect(spec, 300, seed=2),
    )
    for key in ("observation", "desired_goal"):
        np.testing.assert_array_equal(
            np.concatenate([ep.observations[key] for ep in first]),
            np.concatenate([ep.observations[key] for ep in again]),
        )
    assert not np.array_equal(first[0].actions, other[0].actions)
    assert sum(len(ep.rewards) for ep in first) == 300


def test_pointmaze_dataset_has_the_remote_format(pointmaze):
    spec = pointmaze.spec
    space = spec.observation_space
    assert isinstance(space, gym.spaces.Dict)
    assert {key: sub.shape for key, sub in space.spaces.items()} == {
        "achieved_goal": (2,),
        "desired_goal": (2,),
        "observation": (4,),
    }
    assert all(sub.dtype == np.float64 for sub in space.spaces.values())
    assert spec.action_space == gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    assert spec.env_spec.id == "PointMaze_UMaze-v3"
    assert spec.env_spec.max_episode_steps == 1_000_000
    assert spec.env_spec.kwargs["continuing_task"] and spec.env_spec.kwargs["reset_target"]
    assert spec.env_spec.kwargs["reward_type"] == "sparse"
    meta = pointmaze.storage.metadata
    evaluation = json.loads(meta["eval_env_spec"])
    assert evaluation["id"] == "PointMaze_UMaze-v3" and evaluation["max_episode_steps"] == 300
    assert evaluation["kwargs"]["maze_map"] == EVAL_MAPS["umaze"]
    assert evaluation["kwargs"]["continuing_task"] and not evaluation["kwargs"]["reset_target"]
    assert meta["num_episodes_average_score"] == TEST_REF_EPISODES
    assert meta["ref_max_score"] > meta["ref_min_score"]
    assert pointmaze.total_steps == TEST_STEPS

    episodes = list(pointmaze.iterate_episodes())
    assert len(episodes) > 5, "the controller should reach many goals in 2,000 steps"
    previous_end = None
    for episode in episodes:
        assert not episode.terminations.any()  # a continuing task never terminates
        assert episode.truncations[-1] and not episode.truncations[:-1].any()
        assert set(episode.infos) >= {"success", "qpos", "qvel", "goal"}
        if previous_end is not None:  # no reset: each episode starts where the last ended
            np.testing.assert_array_equal(episode.observations["observation"][0], previous_end)
        previous_end = episode.observations["observation"][-1]
    for episode in episodes[:-1]:  # cut at the goal: the only rewarded step is the last
        assert episode.rewards[-1] == 1.0 and episode.rewards[:-1].sum() == 0.0
        assert episode.infos["success"][-1]


def test_pointmaze_dataset_loads_through_sftlib(pointmaze):
    ds = load_dataset(POINTMAZE_ID)
    info = dataset_info(ds)
    assert (info.obs_dim, info.act_dim) == (6, 2)
    assert info.goal_conditioned and info.success_key == "success"
    assert info.env_id == "PointMaze_UMaze-v3" and info.eval_env_spec is not None
    assert info.n_transitions == TEST_STEPS
    buffer = transitions(ds)
    assert buffer.obs.shape == buffer.next_obs.shape == (TEST_STEPS, 6)
    assert buffer.obs.dtype == np.float32 and buffer.terminals.sum() == 0
    first = next(ds.iterate_episodes())
    length = len(first.rewards)
    np.testing.assert_array_equal(
        buffer.obs[:length, :4], first.observations["observation"][:-1].astype(np.float32)
    )
    np.testing.assert_array_equal(
        buffer.next_obs[:length, 4:], first.observations["desired_goal"][1:].astype(np.float32)
    )


def test_evaluation_uses_the_eval_env_and_reports_success(pointmaze):
    info = dataset_info(pointmaze)
    env = make_env(info)
    assert env.spec.kwargs["maze_map"] == EVAL_MAPS["umaze"] and env.spec.max_episode_steps == 300
    env.close()
    returns, successes = evaluate_policy_with_success(flat_expert(), info, 3, seed=0)
    assert returns.shape == successes.shape == (3,)
    assert success_rate(successes) == 100.0
    assert info.normalize(returns).mean() > 70.0
    random_returns, random_successes = evaluate_policy_with_success(
        random_policy(0), info, 3, seed=0
    )
    assert info.normalize(random_returns).mean() < 30.0
    assert success_rate(random_successes) < 100.0
    np.testing.assert_array_equal(evaluate_policy(flat_expert(), info, 3, seed=0), returns)


def test_evaluate_policy_by_env_id_flattens_goal_observations():
    seen = []

    def policy(obs):
        seen.append(obs)
        return np.zeros(2)

    returns = evaluate_policy(policy, "PointMaze_UMaze-v3", 1, seed=0)
    assert returns.shape == (1,) and all(obs.shape == (6,) for obs in seen)
    assert len(seen) == 300  # the registered 300-step limit


def test_tasks_without_success_report_nan(pendulum_dataset):
    returns, successes = evaluate_policy_with_success(lambda obs: np.zeros(1), "Pendulum-v1", 2, 0)
    assert returns.shape == (2,) and np.isnan(successes).all()
    assert dataset_info(pendulum_dataset).success_key is None
    assert not dataset_info(pendulum_dataset).goal_conditioned


def test_antmaze_shaped_dataset_loads(antmaze):
    info = dataset_info(load_dataset(ANTMAZE_ID))
    assert (info.obs_dim, info.act_dim) == (27 + 2, 8)
    assert info.goal_conditioned and info.success_key == "success"
    buffer = transitions(antmaze)
    assert buffer.obs.shape == (30, 29)
    episode = next(antmaze.iterate_episodes())
    np.testing.assert_array_equal(
        buffer.obs[:15], flatten_goal_obs(episode.observations)[:-1].astype(np.float32)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        env = make_env(info)
        obs, _ = env.reset(seed=0)
    assert obs.shape == (29,) and env.spec.kwargs["maze_map"] == ANTMAZE_EVAL_MAP
    env.close()


def test_box_dataset_transitions_are_unchanged_to_the_bit(pendulum_dataset):
    """MuJoCo-style Box datasets load exactly as before the goal rule existed."""
    buffer = transitions(pendulum_dataset)
    space = pendulum_dataset.spec.action_space
    episodes = list(pendulum_dataset.iterate_episodes())
    obs = [np.asarray(ep.observations, np.float32) for ep in episodes]
    expected = {
        "obs": np.concatenate([o[:-1] for o in obs]),
        "next_obs": np.concatenate([o[1:] for o in obs]),
        "actions": np.concatenate(
            [
                np.clip(2.0 * (ep.actions - space.low) / (space.high - space.low) - 1.0, -1, 1)
                for ep in episodes
            ]
        ).astype(np.float32),
        "rewards": np.concatenate([np.asarray(ep.rewards, np.float32) for ep in episodes]),
        "terminals": np.concatenate([np.asarray(ep.terminations, np.float32) for ep in episodes]),
    }
    for field, values in expected.items():
        assert getattr(buffer, field)[: buffer.size].tobytes() == values.tobytes(), field


def test_factory_command_line_makes_and_reports_a_dataset(minari_store, capsys):
    from sftlib.factory.maze import main

    main(
        ["open", "--steps", "300", "--ref-episodes", "1", "--quiet"]
        + ["--dataset-id", "local/pointmaze/open-tiny-v0"]
    )
    out = capsys.readouterr().out
    assert "local/pointmaze/open-tiny-v0: 300 steps" in out and "ref_max_score" in out
    ds = load_dataset("local/pointmaze/open-tiny-v0")
    assert ds.spec.env_spec.id == "PointMaze_Open-v3"
    assert (
        json.loads(ds.storage.metadata["eval_env_spec"])["kwargs"]["maze_map"] == EVAL_MAPS["open"]
    )


def test_ensure_makes_only_missing_default_pointmaze_ids(minari_store, monkeypatch, capsys):
    import sftlib.factory.maze as maze

    made = []
    monkeypatch.setattr(maze, "make_pointmaze_dataset", lambda *a, **kw: made.append((a, kw)))
    maze.ensure_pointmaze_dataset("local/pointmaze/medium-dense-v0")
    assert made == [(("medium",), {"dense": True, "dataset_id": "local/pointmaze/medium-dense-v0"})]
    assert "medium-dense-v0: not in the Minari store, making it locally" in capsys.readouterr().out
    with pytest.raises(DatasetError, match=r"unknown maze 'huge'.*\['open', 'umaze'"):
        maze.ensure_pointmaze_dataset("local/pointmaze/huge-v0")
    with pytest.raises(
        DatasetError, match=r"'local/pointmaze/umaze-v3'.*python -m sftlib.factory.maze"
    ):
        maze.ensure_pointmaze_dataset("local/pointmaze/umaze-v3")  # only v0 is the recipe
    assert len(made) == 1


# --- bad input: one clear DatasetError, before any compute -------------------------------------------
def test_bad_factory_arguments_fail_before_any_data(minari_store):
    before = set(minari.list_local_datasets())
    with pytest.raises(
        ValueError, match=r"maze must be one of \['open', 'umaze', 'medium', 'large'\]"
    ):
        make_pointmaze_dataset("huge", progress=False)
    with pytest.raises(ValueError, match="n_steps"):
        make_pointmaze_dataset("umaze", n_steps=0, progress=False)
    with pytest.raises(ValueError, match="ref_episodes"):
        make_pointmaze_dataset("umaze", ref_episodes=0, progress=False)
    assert set(minari.list_local_datasets()) == before


def tiny_dataset(dataset_id: str, observation_space: gym.Space, action_space: gym.Space):
    """A 3-step dataset with these spaces (no environment), made once."""
    if dataset_id in minari.list_local_datasets():
        return minari.load_dataset(dataset_id)
    observation_space.seed(0), action_space.seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no env, no author, ... in a fixture
        return minari.create_dataset_from_buffers(
            dataset_id=dataset_id,
            buffer=[
                EpisodeBuffer(
                    id=0,
                    observations=stack([observation_space.sample() for _ in range(4)]),
                    actions=stack([action_space.sample() for _ in range(3)]),
                    rewards=np.zeros(3),
                    terminations=np.zeros(3, bool),
                    truncations=np.array([False, False, True]),
                )
            ],
            observation_space=observation_space,
            action_space=action_space,
        )


BOX_ACTIONS = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
VECTOR = gym.spaces.Box(-np.inf, np.inf, (4,), np.float64)
IMAGE = gym.spaces.Box(0, 255, (8, 8, 3), np.uint8)


@pytest.mark.parametrize(
    ("name", "observations", "actions", "match"),
    [
        ("image", IMAGE, BOX_ACTIONS, r"image \(Box of shape \(8, 8, 3\), dtype uint8\)"),
        (
            "dict-image",
            gym.spaces.Dict({"observation": IMAGE, "desired_goal": VECTOR}),
            BOX_ACTIONS,
            r"its 'observation' entry is an image",
        ),
        (
            "dict-no-goal",
            gym.spaces.Dict({"observation": VECTOR, "achieved_goal": VECTOR}),
            BOX_ACTIONS,
            r"Dict observations without \['desired_goal'\]",
        ),
        ("discrete", VECTOR, gym.spaces.Discrete(3), r"Discrete actions .* need Box actions"),
    ],
)
def test_unsupported_dataset_is_one_clear_error(name, observations, actions, match, minari_store):
    dataset_id = f"local/bad/{name}-v0"
    ds = load_dataset(tiny_dataset(dataset_id, observations, actions).spec.dataset_id)
    for check in (check_dataset, dataset_info, transitions):
        with pytest.raises(DatasetError, match=rf"'{dataset_id}': .*{match}.*(Use|use) a"):
            check(ds)


def test_missing_env_package_names_it_and_how_to_install(pointmaze, monkeypatch):
    ds = load_dataset(POINTMAZE_ID)  # loading reads metadata only: it works without the package
    monkeypatch.setitem(sys.modules, "gymnasium_robotics", None)  # `import` now fails
    expected = (
        rf"'{POINTMAZE_ID}': environment 'PointMaze_UMaze-v3' needs the package "
        r"'gymnasium_robotics'.*pip install 'gymnasium-robotics>=1.4.2,<1.5'"
    )
    for check in (dataset_info, transitions):
        with pytest.raises(DatasetError, match=expected):
            check(ds)
    with pytest.raises(EnvPackageError, match=r"'AntMaze_UMaze-v4' needs .*gymnasium-robotics"):
        make_env("AntMaze_UMaze-v4")
    with pytest.raises(EnvPackageError, match="gymnasium_robotics"):
        evaluate_policy(lambda obs: np.zeros(2), "PointMaze_UMaze-v3", 1, 0)


def test_unsupported_dataset_stops_pretraining_before_compute(minari_store, tmp_path, monkeypatch):
    from sftlib.config import PretrainConfig
    from sftlib.training.pretrain import pretrain

    def forbidden(*args, **kwargs):
        raise AssertionError("an environment was made before the bad input was reported")

    tiny_dataset("local/bad/image-v0", IMAGE, BOX_ACTIONS)
    monkeypatch.setattr("sftlib.data.rollouts.make_env", forbidden)
    with pytest.raises(DatasetError, match="'local/bad/image-v0': .*image"):
        pretrain(PretrainConfig(dataset_id="local/bad/image-v0", offline_steps=5), tmp_path)
    assert not any(tmp_path.iterdir())


def test_goal_task_pretrains_and_finetunes_with_shaped_rewards_and_success(pointmaze, tmp_path):
    """End to end on the PointMaze fixture: r - 1 offline and online, success reported."""
    import torch

    from sftlib.config import PretrainConfig, finetune_config
    from sftlib.training.finetune import run_side_by_side
    from sftlib.training.pretrain import pretrain
    from sftlib.training.seed_run import FineTuner

    pre = tmp_path / "pretrain"
    result = pretrain(
        PretrainConfig(
            dataset_id=POINTMAZE_ID,
            algo="iql",
            offline_steps=50,
            eval_every=50,
            eval_episodes=1,
            hidden=(16, 16),
            batch_size=32,
            reward_convention="minus_one",
        ),
        pre,
        progress=False,
    )
    assert "success_rate" in result.curve.columns
    tuner = FineTuner(
        finetune_config(
            dict(
                pretrain_dir=str(pre),
                variant="sft",
                online_steps=120,
                eval_every=120,
                eval_episodes=1,
                check_every=50,
                patience=1,
                reset_every=100,
                reset_start=100,
                probe_size=16,
                mc_episodes=2,
            )
        ),
        tmp_path / "sft",
    )
    run = run_side_by_side([tuner], [None], [torch.get_rng_state()], progress=False)[0]
    assert tuner.reward_convention == "minus_one"
    online = tuner.online.rewards[: len(tuner.online)]
    assert np.all(online <= 0.0) and np.all(online >= -1.0)  # sparse 0/1 shaped to -1/0
    assert {"executed_success", "learner_success"} <= set(run.curve.columns)
    assert 0.0 <= run.summary["success_final"] <= 100.0


def test_known_native_noise_is_dropped_and_the_rest_kept(capfd):
    """MuJoCo prints a deprecation line at every HalfCheetah compile; only that line goes."""
    import os

    from sftlib.data.envs import KNOWN_NATIVE_NOISE, dropping_native_noise, gym_make

    with dropping_native_noise():
        os.write(2, f"WARNING: {KNOWN_NATIVE_NOISE[0]} (test)\n".encode())
        os.write(2, b"a line that matters\n")
    assert capfd.readouterr().err == "a line that matters\n"
    gym_make("HalfCheetah-v5").close()
    assert "settotalmass" not in capfd.readouterr().err
