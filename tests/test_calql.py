"""Cal-QL: the conservative penalty, its calibration by the return-to-go, the returns-to-go."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sftlib.agents import make_agent
from sftlib.config import PretrainConfig, finetune_config
from sftlib.data.buffer import Batch, ReplayBuffer, returns_to_go
from sftlib.data.datasets import load_dataset, transitions
from sftlib.training.finetune import finetune
from sftlib.training.pretrain import pretrain

from conftest import PENDULUM_ID


def test_returns_to_go_by_hand():
    rewards = np.array([1, 1, 1, 2, 2, 4], np.float32)
    terminals = np.array([0, 0, 0, 0, 1, 0], np.float32)
    ends = np.array([0, 0, 1, 0, 1, 0], bool)  # a cut episode, a terminated one, a running one
    got = returns_to_go(rewards, terminals, ends, discount=0.5)
    np.testing.assert_allclose(got, [1.75, 1.5, 1.0, 3.0, 2.0, 4.0])


def test_a_cut_episode_is_not_bootstrapped_past_its_end():
    """Truncation is no termination for TD targets, but the return-to-go of a cut episode
    stops at its last reward (a lower bound), as in Cal-QL's reference."""
    got = returns_to_go(np.ones(3, np.float32), np.zeros(3), np.array([0, 0, 1], bool), 0.9)
    np.testing.assert_allclose(got, [1 + 0.9 + 0.81, 1.9, 1.0], rtol=1e-6)


def test_dataset_buffers_mark_episode_ends(pendulum_dataset):
    buffer = transitions(load_dataset(PENDULUM_ID))
    ends = np.flatnonzero(buffer.episode_ends[: buffer.size])
    lengths = np.diff(np.concatenate([[-1], ends]))
    assert ends[-1] == buffer.size - 1 and np.all(lengths == 200)  # Pendulum: 200-step cuts
    buffer.fill_returns_to_go(0.99)
    start = ends[0] + 1
    expected = sum(0.99**t * buffer.rewards[start + t] for t in range(200))
    assert buffer.returns_to_go[start] == pytest.approx(expected, rel=1e-4)


def agent(**config):
    torch.manual_seed(0)
    base = {"hidden": (32, 32), "batch_size": 32, "cql_n_actions": 4}
    return make_agent("calql", 3, 1, {**base, **config})


def batch(returns_to_go: float | None, seed: int = 0) -> Batch:
    rng = np.random.default_rng(seed)

    def t(x):
        return torch.as_tensor(x, dtype=torch.float32)

    return Batch(
        t(rng.standard_normal((32, 3))),
        t(rng.uniform(-1, 1, (32, 1))),
        t(rng.standard_normal(32)),
        t(rng.standard_normal((32, 3))),
        t(np.zeros(32)),
        None if returns_to_go is None else t(np.full(32, returns_to_go)),
    )


def test_calibration_lifts_the_penalty_to_the_return_to_go():
    """With a return-to-go far above the critic's values, the calibrated penalty is set by
    the bound; without calibration (plain CQL) it is not; a bound far below changes
    nothing."""
    high = batch(returns_to_go=500.0)
    calibrated = agent().update(high)["train/cql_gap"].item()
    plain = agent(calibrate=False).update(high)["train/cql_gap"].item()
    assert calibrated > 400.0 and abs(plain) < 50.0
    low = batch(returns_to_go=-500.0)
    assert agent().update(low)["train/cql_gap"].item() == pytest.approx(
        agent(calibrate=False).update(low)["train/cql_gap"].item(), rel=1e-6
    )


def test_calibration_needs_returns_to_go():
    with pytest.raises(ValueError, match="returns_to_go"):
        agent().update(batch(returns_to_go=None))
    agent(calibrate=False).update(batch(returns_to_go=None))  # plain CQL does not


def test_the_conservative_penalty_pushes_unseen_actions_down(pendulum_dataset):
    """Trained on the same data, a critic with the penalty rates uniform actions further
    below the dataset's actions than one without it."""
    buffer = transitions(load_dataset(PENDULUM_ID))
    buffer.fill_returns_to_go(0.99)
    gaps = {}
    for cql_alpha in (0.0, 5.0):
        learner = agent(cql_alpha=cql_alpha, calibrate=False, lr=1e-3)
        rng = np.random.default_rng(0)
        for _ in range(300):
            learner.update(buffer.sample(32, rng))
        probe = buffer.sample(512, np.random.default_rng(1))
        uniform = torch.rand(512, 1, generator=torch.Generator().manual_seed(0)) * 2 - 1
        q_data = learner.q_values(probe.obs, probe.actions).mean()
        q_uniform = learner.q_values(probe.obs, uniform).mean()
        gaps[cql_alpha] = float(q_data - q_uniform)
    assert gaps[5.0] > gaps[0.0] + 0.5, gaps


def test_online_episodes_get_their_returns_to_go():
    online = ReplayBuffer(1, 1, 10)
    rows = [online.add(np.zeros(1), np.zeros(1), r, np.zeros(1), False) for r in (1.0, 2.0)]
    online.end_episode(np.asarray(rows), discount=0.5)
    np.testing.assert_allclose(online.returns_to_go[:2], [2.0, 2.0])
    assert online.episode_ends[:2].tolist() == [False, True]


@pytest.mark.parametrize("variant", ["direct", "pex", "sft"])
def test_calql_pretrains_and_finetunes_every_variant(pendulum_dataset, tmp_path, variant):
    pre = tmp_path / "pretrain"
    pretrain(
        PretrainConfig(
            dataset_id=PENDULUM_ID,
            algo="calql",
            offline_steps=60,
            eval_every=60,
            eval_episodes=1,
            hidden=(16, 16),
            batch_size=32,
            agent={"cql_n_actions": 2},
        ),
        pre,
        progress=False,
    )
    result = finetune(
        finetune_config(
            dict(
                pretrain_dir=str(pre),
                variant=variant,
                online_steps=220,
                eval_every=220,
                eval_episodes=1,
                check_every=50,
                patience=1,
                reset_every=200,
                reset_start=200,
                probe_size=16,
                mc_episodes=2,
            )
        ),
        tmp_path / variant,
        progress=False,
    )
    assert result.summary["algo"] == "calql" and result.summary["online_data"] == "mix"
    assert np.isfinite(result.curve["executed_score"]).all()
