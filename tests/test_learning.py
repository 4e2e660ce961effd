"""Learning sanity: offline IQL on a small expert dataset of a fast env beats random clearly."""

from __future__ import annotations

import gymnasium as gym
import pytest

from sftlib.config import PretrainConfig
from sftlib.data.datasets import dataset_info, load_dataset
from sftlib.data.rollouts import evaluate_policy, from_env_action
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
