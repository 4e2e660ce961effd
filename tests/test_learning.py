"""Learning sanity: offline IQL on a small expert dataset of a fast env beats random clearly."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from sftlib.config import PretrainConfig
from sftlib.data.datasets import dataset_info, load_dataset
from sftlib.data.rollouts import (
    evaluate_policy,
    evaluate_policy_with_success,
    evaluate_side_by_side,
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


def test_evaluation_episodes_side_by_side_are_the_episodes_played_one_after_another():
    """All episodes advance together, each with its own reset seed, and an episode that ends
    leaves the batch; the policy here acts row by row, so the returns must be equal exactly."""
    w = np.random.default_rng(1).normal(0.0, 0.2, (3, 11))  # episodes of 56-58 steps

    def one(obs):
        return np.tanh(w @ obs).astype(np.float32)

    batch_sizes = []

    def rows(obs):
        batch_sizes.append(len(obs))
        return np.stack([one(o) for o in obs])

    sequential, _ = evaluate_policy_with_success(one, "Hopper-v5", 4, seed=7)
    side_by_side, successes = evaluate_side_by_side(rows, "Hopper-v5", 4, seed=7)
    np.testing.assert_array_equal(side_by_side, sequential)
    assert np.isnan(successes).all()
    assert batch_sizes[0] == 4 and batch_sizes[-1] < 4  # the episodes end at different steps
    assert batch_sizes == sorted(batch_sizes, reverse=True)
    assert len(set(sequential.tolist())) == 4
