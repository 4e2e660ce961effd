"""Learning sanity: offline IQL on a small expert dataset of a fast env beats random clearly."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from sftlib.config import PretrainConfig
from sftlib.data.datasets import dataset_info, load_dataset
from sftlib.data.envs import make_env
from sftlib.data.rollouts import (
    EnvPool,
    evaluate_policy,
    evaluate_policy_with_success,
    evaluate_stacked,
    from_env_action,
)
from sftlib.training.pretrain import pretrain
from sftlib.utils import eval_seed

from conftest import PENDULUM, PENDULUM_ID


@pytest.mark.slow
def test_iql_on_expert_pendulum_data_beats_random_by_a_clear_margin(pendulum_dataset, tmp_path):
    info = dataset_info(load_dataset(PENDULUM_ID))
    space = gym.make(PENDULUM).action_space
    space.seed(0)
    random_score = info.normalize(
        evaluate_policy(lambda o: from_env_action(space.sample(), space), PENDULUM, 5, eval_seed(0))
    ).mean()
    result = pretrain(
        PretrainConfig(
            dataset_id=PENDULUM_ID,
            algo="iql",
            offline_steps=3000,
            eval_every=3000,
            eval_episodes=5,
            hidden=(64, 64),
            batch_size=256,
        ),
        tmp_path,
        progress=False,
    )
    # Each Pendulum episode either swings up (about 100) or not (about 0), so a 5-episode mean
    # is coarse; 25 points over random is two more successful swing-ups than chance gives.
    assert result.score_final > random_score + 25.0, (result.score_final, random_score)


def test_evaluation_episodes_of_every_seed_side_by_side_are_the_episodes_played_alone():
    """Every episode of every seed advances together, each with its own reset seed; each call
    sees all of them, ended ones included, so its shape never changes. The policy here acts
    row by row, so the returns must equal sequential play exactly."""
    w = np.random.default_rng(1).normal(0.0, 0.2, (2, 3, 11))  # episodes of 35-58 steps

    def one(k):
        return lambda obs: np.tanh(w[k] @ obs).astype(np.float32)

    shapes = []

    def rows(obs):
        shapes.append(obs.shape)
        return np.stack([[one(k)(o) for o in seed_obs] for k, seed_obs in enumerate(obs)])

    seeds = [7, 30]
    returns, successes = evaluate_stacked(rows, "Hopper-v5", 4, seeds)
    for k, seed in enumerate(seeds):
        sequential, _ = evaluate_policy_with_success(one(k), "Hopper-v5", 4, seed=seed)
        np.testing.assert_array_equal(returns[k], sequential)
        assert len(set(sequential.tolist())) == 4
    assert np.isnan(successes).all() and successes.shape == (2, 4)
    assert set(shapes) == {(2, 4, 11)}
    assert len(shapes) > 10  # many steps, and no call with another shape


@pytest.mark.parametrize("env_id", ["Hopper-v5", "PointMaze_UMaze-v3"])
def test_environments_kept_between_evaluations_play_as_new_ones(env_id):
    """An evaluation in a pool's environments, after another evaluation has used them, gives
    what fresh environments give: a reset with a seed starts a kept environment anew."""
    space = make_env(env_id).action_space
    rng = np.random.default_rng(0)
    w = rng.normal(0.0, 0.3, (space.shape[0], make_env(env_id).observation_space.shape[0]))

    def act(obs):
        return np.tanh(obs @ w.T).astype(np.float32)

    fresh = evaluate_stacked(act, env_id, 3, [4, 9])
    pool = EnvPool(env_id)
    other = evaluate_stacked(lambda obs: -act(obs), env_id, 3, [100, 200], pool)
    kept = evaluate_stacked(act, env_id, 3, [4, 9], pool)
    pool.close()
    np.testing.assert_array_equal(kept[0], fresh[0])
    np.testing.assert_array_equal(kept[1], fresh[1])
    assert not np.array_equal(other[0], fresh[0])
