"""Tier-1 unit tests: tiny shapes, numbers computed by hand.

Every agent test runs on ``obs_dim=3, act_dim=2`` with ``hidden=(16, 16)`` and a batch of 8
random transitions, so the whole file takes a few seconds.
"""

from __future__ import annotations

import io

import gymnasium as gym
import minari
import numpy as np
import pytest
import torch

from sftlib.agents import make_agent
from sftlib.agents.iql import expectile_loss
from sftlib.analysis.metrics import METRICS, stability_metrics
from sftlib.data.buffer import (
    FIELDS,
    ONLINE_DATA,
    Batch,
    Normalizer,
    ReplayBuffer,
    draw_online_data,
    gather_draws,
    sample_appended,
    sample_mixed,
    sample_online_data,
)
from sftlib.data.datasets import DatasetInfo, dataset_info, transitions
from sftlib.data.rollouts import from_env_action, to_env_action

OBS_DIM, ACT_DIM, BATCH = 3, 2, 8
HIDDEN = (16, 16)
ALGOS = ("iql", "td3bc", "sac")
# With two hidden layers a network's layers are 0, 1 and 2: the output layer is layer 2 (of
# every ensemble member: the members are one stack). Written out by hand, independent of
# sftlib.agents.networks.output_layers.
OUTPUT = {"net.layers.2.weight", "net.layers.2.bias"}
OUTPUT_PARAMS = {
    "iql": {"actor": OUTPUT | {"log_std"}, "critic": OUTPUT, "vf": OUTPUT},
    "td3bc": {"actor": OUTPUT, "critic": OUTPUT},
    "sac": {"actor": OUTPUT, "critic": OUTPUT},
}


# --- helpers ------------------------------------------------------------------------------
def agent(algo: str, seed: int = 0, **cfg):
    torch.manual_seed(seed)
    return make_agent(algo, OBS_DIM, ACT_DIM, {"hidden": HIDDEN, "batch_size": BATCH, **cfg})


def random_batch(seed: int = 0, n: int = BATCH) -> Batch:
    rng = np.random.default_rng(seed)
    return Batch(
        obs=torch.as_tensor(rng.standard_normal((n, OBS_DIM)), dtype=torch.float32),
        actions=torch.as_tensor(rng.uniform(-1, 1, (n, ACT_DIM)), dtype=torch.float32),
        rewards=torch.as_tensor(rng.standard_normal(n), dtype=torch.float32),
        next_obs=torch.as_tensor(rng.standard_normal((n, OBS_DIM)), dtype=torch.float32),
        terminals=torch.as_tensor(rng.random(n) < 0.2, dtype=torch.float32),
    )


def params(a) -> dict[str, dict[str, torch.Tensor]]:
    """Detached copies of every trained parameter, by module and parameter name."""
    return {
        k: {n: p.detach().clone() for n, p in m.named_parameters()} for k, m in a.modules().items()
    }


def perturb(a, by: float = 0.5) -> None:
    """Move every parameter away from any initialisation (log_std starts at exactly 0)."""
    with torch.no_grad():
        for m in a.modules().values():
            for p in m.parameters():
                p.add_(by)


def checkpoint_roundtrip(state: dict) -> dict:
    """What a save to disk and a load give back (no tensor shared with ``state``)."""
    f = io.BytesIO()
    torch.save(state, f)
    f.seek(0)
    return torch.load(f, weights_only=False)


def rows(n: int, value: float, obs_dim: int = 2, act_dim: int = 1) -> dict[str, np.ndarray]:
    """``n`` transitions whose every field equals ``value`` (rewards too)."""
    return {
        "obs": np.full((n, obs_dim), value, np.float32),
        "actions": np.full((n, act_dim), value, np.float32),
        "rewards": np.full(n, value, np.float32),
        "next_obs": np.full((n, obs_dim), value, np.float32),
        "terminals": np.zeros(n, np.float32),
    }


# --- expectile loss -------------------------------------------------------------------------
def test_expectile_loss_by_hand():
    # diff -1 is below zero: weight 1 - 0.7 = 0.3; diff 2 is above: weight 0.7.
    loss = expectile_loss(torch.tensor([-1.0, 2.0]), 0.7)
    assert loss.item() == pytest.approx((0.3 * 1.0 + 0.7 * 4.0) / 2)


def test_expectile_loss_half_is_half_mse():
    d = torch.tensor([-3.0, 0.5, 1.0])
    assert expectile_loss(d, 0.5).item() == pytest.approx(0.5 * (9 + 0.25 + 1) / 3)


# --- replay buffer ----------------------------------------------------------------------------
def test_buffer_ring_wraps_and_keeps_the_last_rows():
    buf = ReplayBuffer(obs_dim=2, act_dim=1, capacity=3)
    for i in range(5):
        buf.add([i, i], [i / 10], float(i), [i + 1, i + 1], terminal=(i == 4))
    assert len(buf) == 3 and buf.ptr == 5 % 3
    # Rows 0..4 were written at slots 0,1,2,0,1: slots hold 3, 4, 2.
    assert buf.rewards.tolist() == [3.0, 4.0, 2.0]
    assert sorted(buf.obs[:, 0].tolist()) == [2.0, 3.0, 4.0]
    np.testing.assert_array_equal(buf.next_obs[:, 0], buf.obs[:, 0] + 1)
    assert buf.terminals.tolist() == [0.0, 1.0, 0.0]
    np.testing.assert_allclose(buf.actions[:, 0], [0.3, 0.4, 0.2], rtol=1e-6)


def test_buffer_rejects_non_positive_capacity():
    with pytest.raises(ValueError, match="capacity"):
        ReplayBuffer(2, 1, 0)


def test_buffer_from_arrays_holds_exactly_the_arrays():
    arrays = rows(4, 0.0)
    arrays["rewards"] = np.arange(4, dtype=np.float32)
    buf = ReplayBuffer.from_arrays(**arrays)
    assert len(buf) == 4 and buf.capacity == 4 and (buf.obs_dim, buf.act_dim) == (2, 1)
    for f in FIELDS:
        np.testing.assert_array_equal(getattr(buf, f), arrays[f])


def test_buffer_state_dict_round_trip():
    buf = ReplayBuffer(2, 1, capacity=4)
    for i in range(6):  # wrapped
        buf.add([i, -i], [0.1 * i], i, [i, i], i % 2 == 0)
    twin = ReplayBuffer(2, 1, capacity=4)
    twin.load_state_dict(checkpoint_roundtrip(buf.state_dict()))
    assert (len(twin), twin.ptr) == (len(buf), buf.ptr)
    for f in FIELDS:
        np.testing.assert_array_equal(getattr(twin, f), getattr(buf, f))
    # The next write lands in the same slot in both.
    buf.add([9, 9], [0.9], 9, [9, 9], False)
    twin.add([9, 9], [0.9], 9, [9, 9], False)
    np.testing.assert_array_equal(twin.rewards, buf.rewards)
    with pytest.raises(ValueError, match="capacity"):
        ReplayBuffer(2, 1, capacity=5).load_state_dict(buf.state_dict())


def test_buffer_samples_only_stored_rows():
    buf = ReplayBuffer(2, 1, capacity=10)
    for i in range(1, 5):  # rows 1..4; the 6 empty slots hold zeros
        buf.add([i, i], [i / 10], float(i), [i, i], False)
    b = buf.sample(500, np.random.default_rng(0))
    assert b.obs.shape == (500, 2) and b.actions.shape == (500, 1) and b.rewards.shape == (500,)
    assert set(b.rewards.tolist()) == {1.0, 2.0, 3.0, 4.0}  # all four seen, no empty slot
    np.testing.assert_array_equal(b.obs[:, 0].numpy(), b.rewards.numpy())  # rows stay whole
    with pytest.raises(ValueError, match="empty"):
        ReplayBuffer(2, 1, 3).sample(1, np.random.default_rng(0))


@pytest.mark.parametrize(
    ("batch_size", "ratio", "n_offline"),
    [
        (10, 0.3, 3),
        (8, 0.3, 2),
        (7, 0.5, 4),
        (10, 0.0, 0),
        (10, 1.0, 10),
    ],
)
def test_sample_mixed_offline_share(batch_size, ratio, n_offline):
    offline = ReplayBuffer.from_arrays(**rows(5, 1.0))  # offline rows: reward 1
    online = ReplayBuffer.from_arrays(**rows(5, 0.0))  # online rows: reward 0
    b = sample_mixed(offline, online, batch_size, ratio, np.random.default_rng(0))
    assert b.rewards.shape == (batch_size,)
    assert int(b.rewards.sum()) == n_offline
    assert b.obs.shape == (batch_size, 2) and b.terminals.shape == (batch_size,)


def test_sample_appended_draws_online_rows_at_the_natural_ratio():
    """``append``: one buffer of offline then online rows, sampled uniformly."""
    offline = ReplayBuffer.from_arrays(**rows(100, 1.0))
    online = ReplayBuffer.from_arrays(**rows(300, 0.0))
    b = sample_appended(offline, online, 20_000, np.random.default_rng(0))
    share = float((b.rewards == 0.0).float().mean())
    assert share == pytest.approx(0.75, abs=0.01)
    assert set(b.rewards.unique().tolist()) == {0.0, 1.0}
    empty = ReplayBuffer(2, 1, 10)
    assert torch.all(sample_appended(offline, empty, 50, np.random.default_rng(0)).rewards == 1)


def numbered(n: int, start: float) -> ReplayBuffer:
    """``n`` transitions whose every field holds the transition's number, from ``start``."""
    value = np.arange(start, start + n, dtype=np.float32)
    fields = {
        k: np.repeat(value[:, None], v.shape[1], 1) for k, v in rows(n, 0.0).items() if v.ndim == 2
    }
    return ReplayBuffer.from_arrays(**fields, rewards=value, terminals=np.zeros(n, np.float32))


@pytest.mark.parametrize("rule", ONLINE_DATA)
@pytest.mark.parametrize("shared", [True, False])
def test_draws_of_several_seeds_gathered_at_once_are_their_rows(rule, shared):
    """Each seed's batch of a stacked gather holds, position by position, the offline or
    online row its draw names, from its own buffers, whether or not the seeds share the
    offline buffer; each seed's generator draws what its own batch draws."""
    offlines = [numbered(50, 0.0)] * 3 if shared else [numbered(50, 100.0 * k) for k in range(3)]
    onlines = [numbered(20, 1000.0), numbered(7, 2000.0), numbered(30, 3000.0)]
    draws = [
        draw_online_data(off, on, 16, rule, 0.25, np.random.default_rng(k))
        for k, (off, on) in enumerate(zip(offlines, onlines, strict=True))
    ]
    batch = gather_draws(offlines, onlines, draws)
    assert batch.obs.shape == (3, 16, 2) and batch.rewards.is_contiguous()
    for k, (off, on, draw) in enumerate(zip(offlines, onlines, draws, strict=True)):
        expected = off.rewards[draw.offline].copy()
        expected[draw.online] = on.rewards[draw.online_rows]
        np.testing.assert_array_equal(batch.rewards[k].numpy(), expected)
        np.testing.assert_array_equal(batch.obs[k, :, 1].numpy(), expected)
        assert draw.online.any() and (rule == "online" or not draw.online.all())
        alone = sample_online_data(off, on, 16, rule, 0.25, np.random.default_rng(k))
        np.testing.assert_array_equal(alone.rewards.numpy(), expected)


def test_online_data_auto_is_each_algorithms_reference_recipe():
    from sftlib.config import REFERENCE_ONLINE_DATA, FinetuneConfig

    assert FinetuneConfig().online_data == "auto"
    assert {a: FinetuneConfig().online_data_for(a) for a in ("iql", "td3bc", "calql")} == (
        REFERENCE_ONLINE_DATA
    )
    assert FinetuneConfig(online_data="mix").online_data_for("iql") == "mix"
    with pytest.raises(ValueError, match="online_data"):
        FinetuneConfig(online_data="concat")


def test_sample_mixed_all_offline_while_online_empty():
    offline = ReplayBuffer.from_arrays(**rows(5, 1.0))
    online = ReplayBuffer(2, 1, capacity=10)
    for ratio in (0.0, 0.5):
        b = sample_mixed(offline, online, 6, ratio, np.random.default_rng(0))
        assert b.rewards.tolist() == [1.0] * 6


# --- normaliser ---------------------------------------------------------------------------------
def test_normalizer_fit_floor_call_and_state():
    obs = np.array([[1.0, 5.0], [3.0, 5.0]], np.float32)
    norm = Normalizer.fit(obs, eps=1e-3)
    np.testing.assert_allclose(norm.mean, [2.0, 5.0])
    np.testing.assert_allclose(norm.std, [1.0, 1e-3])  # population std; constant dim floored
    out = norm(torch.tensor([[4.0, 5.002]]))
    np.testing.assert_allclose(out.numpy(), [[2.0, 2.0]], rtol=1e-3)
    twin = Normalizer.from_state_dict(checkpoint_roundtrip(norm.state_dict()))
    np.testing.assert_array_equal(twin.mean, norm.mean)
    np.testing.assert_array_equal(twin.std, norm.std)
    x = torch.randn(4, 2)
    assert torch.equal(twin(x), norm(x))
    ident = Normalizer.identity(2)
    assert torch.equal(ident(x), x)


# --- datasets -------------------------------------------------------------------------------------
def test_dataset_info_normalize_by_hand():
    info = DatasetInfo(
        "local/x/y-v0",
        "X-v0",
        3,
        1,
        ref_min_score=-200.0,
        ref_max_score=300.0,
        n_episodes=1,
        n_transitions=1,
    )
    # 100 * (R - min) / (max - min) with max - min = 500.
    np.testing.assert_allclose(
        info.normalize(np.array([-200.0, 50.0, 300.0, 550.0])), [0.0, 50.0, 100.0, 150.0]
    )
    assert float(info.normalize(-100.0)) == pytest.approx(20.0)


def test_dataset_info_matches_minari_normalized_score(pendulum_dataset):
    ds = pendulum_dataset
    info = dataset_info(ds)
    assert (info.env_id, info.obs_dim, info.act_dim) == ("Pendulum-v1", 3, 1)
    assert (info.n_transitions, info.n_episodes) == (ds.total_steps, ds.total_episodes)
    assert info.ref_min_score == -1230.0
    r = np.array([-1230.0, -700.0, -300.0, info.ref_max_score])
    np.testing.assert_allclose(info.normalize(r), 100.0 * minari.get_normalized_score(ds, r))
    np.testing.assert_allclose(info.normalize(r)[[0, -1]], [0.0, 100.0])


def test_transitions_of_pendulum(pendulum_dataset):
    ds = pendulum_dataset
    buf = transitions(ds)
    episodes = list(ds.iterate_episodes())
    assert len(buf) == ds.total_steps == sum(len(ep.actions) for ep in episodes)
    # Pendulum never terminates; its episodes end by truncation, which is not termination.
    assert sum(int(np.sum(ep.truncations)) for ep in episodes) == len(episodes)
    assert not buf.terminals[: len(buf)].any()
    start = 0
    for ep in episodes:
        end = start + len(ep.actions)
        np.testing.assert_array_equal(buf.obs[start:end], ep.observations[:-1].astype(np.float32))
        # Inside an episode the next observation is the following row's observation.
        np.testing.assert_array_equal(buf.next_obs[start : end - 1], buf.obs[start + 1 : end])
        np.testing.assert_array_equal(buf.rewards[start:end], ep.rewards.astype(np.float32))
        # Pendulum's box is [-2, 2]: the stored action is the env action / 2.
        np.testing.assert_allclose(buf.actions[start:end], ep.actions / 2.0, rtol=1e-6)
        start = end
    acts = buf.actions[: len(buf)]
    assert acts.min() >= -1.0 and acts.max() <= 1.0


def test_env_action_round_trip_asymmetric_box():
    space = gym.spaces.Box(
        low=np.array([-1.0, 0.0, -10.0], np.float32), high=np.array([3.0, 10.0, -2.0], np.float32)
    )
    a = np.array([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0], [0.0, 0.5, -0.25]], np.float32)
    env_a = np.stack([to_env_action(x, space) for x in a])
    np.testing.assert_allclose(env_a, [[-1, 0, -10], [3, 10, -2], [1, 7.5, -7]], rtol=1e-6)
    np.testing.assert_allclose(np.stack([from_env_action(x, space) for x in env_a]), a, atol=1e-6)
    # Out-of-range inputs are clipped into the box / into [-1, 1].
    np.testing.assert_allclose(to_env_action(np.array([2.0, -3.0, 0.0]), space), [3, 0, -6])
    np.testing.assert_allclose(from_env_action(np.array([5.0, -1.0, -6.0]), space), [1, -1, 0])


# --- agents ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("algo", ALGOS)
def test_act_shapes_and_bounds(algo):
    a = agent(algo)
    obs = np.random.default_rng(0).standard_normal((5, OBS_DIM)).astype(np.float32) * 10
    for det in (True, False):
        single = a.act(obs[0], deterministic=det)
        batch = a.act(obs, deterministic=det)
        assert single.shape == (ACT_DIM,) and batch.shape == (5, ACT_DIM)
        assert np.all(np.abs(batch) <= 1.0) and np.all(np.abs(single) <= 1.0)
    np.testing.assert_array_equal(a.act(obs, True), a.act(obs, True))
    np.testing.assert_allclose(a.act(obs[0], True), a.act(obs, True)[0], rtol=1e-6)
    assert a.q_values(torch.as_tensor(obs), torch.zeros(5, ACT_DIM)).shape == (2, 5)


@pytest.mark.parametrize(
    ("algo", "online"),
    [
        ("iql", False),
        ("iql", True),
        ("td3bc", False),
        ("td3bc", True),
        ("sac", True),
    ],
)  # SAC has only an online update
def test_update_returns_finite_floats_and_trains_every_network(algo, online):
    a = agent(algo)
    before = params(a)
    for i in range(2):  # TD3+BC steps its actor every policy_freq=2 updates
        metrics = a.update(random_batch(i), online=online)
        assert metrics and all(
            v.shape == (1,) and torch.isfinite(v).all() for v in metrics.values()
        )
        assert not any(v.requires_grad for v in metrics.values())
        assert all(k.startswith("train/") for k in metrics)
    assert a.num_updates == 2
    after = params(a)
    for k in before:
        for n in before[k]:
            assert not torch.equal(before[k][n], after[k][n]), f"{algo} {k}.{n} did not change"


def test_iql_value_loss_is_the_expectile_loss_of_the_target_advantage():
    a = agent("iql", expectile=0.8)
    b = random_batch(3)
    with torch.no_grad():
        obs = a.norm(b.obs)
        diff = a.targets["critic"](obs[None], b.actions[None]).min(1).values - a.vf(obs[None])
        expected = (torch.where(diff < 0, 0.2, 0.8) * diff**2).mean().item()
    assert a.update(b)["train/value_loss"].item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("algo", ALGOS)
def test_state_dict_round_trip_continues_identically(algo):
    a = agent(algo, seed=0)
    for i in range(3):  # odd count: TD3+BC's next actor step depends on num_updates
        a.update(random_batch(i), online=True)
    b = agent(algo, seed=1)  # different initial weights, fresh optimisers
    b.load_state_dict(checkpoint_roundtrip(a.state_dict()))
    for k, opt in a.optimizers.items():  # optimiser moments came along
        assert len(b.optimizers[k].state) == len(opt.state) > 0
    for i in range(3, 6):
        batch = random_batch(i)
        torch.manual_seed(100 + i)
        ma = a.update(batch, online=True)
        torch.manual_seed(100 + i)
        mb = b.update(batch, online=True)
        assert ma.keys() == mb.keys() and all(torch.equal(ma[k], mb[k]) for k in ma)
    pa, pb = params(a), params(b)
    for k in pa:
        for n in pa[k]:
            assert torch.equal(pa[k][n], pb[k][n]), f"{k}.{n}"
    for k in a.targets:
        for (n, p), q in zip(
            a.targets[k].named_parameters(), b.targets[k].parameters(), strict=True
        ):
            assert torch.equal(p, q), f"target {k}.{n}"


def test_state_dict_round_trip_needs_the_optimiser_state():
    """Control for the test above: the same weights with fresh Adam moments diverge."""
    a = agent("iql", seed=0)
    for i in range(3):
        a.update(random_batch(i))
    state = checkpoint_roundtrip(a.state_dict())
    state["optimizers"] = {}
    b = agent("iql", seed=1)
    b.load_state_dict(state)
    torch.manual_seed(0)
    ma = a.update(random_batch(9))
    torch.manual_seed(0)
    mb = b.update(random_batch(9))
    assert torch.equal(ma["train/value_loss"], mb["train/value_loss"])  # same weights before
    assert not torch.equal(a.vf.net.layers[0].weight, b.vf.net.layers[0].weight)  # other step


def _td3bc_frozen_critic(alpha: float = 2.5, lr: float = 3e-4):
    """TD3+BC stepping its actor on every update, with a critic that does not move (lr 0),
    so the actor step depends on nothing but the actor loss."""
    a = agent("td3bc", seed=0, policy_freq=1, alpha=alpha, lr=lr)
    a.optimizers["critic"] = torch.optim.SGD(a.critic.parameters(), lr=0.0)
    return a


@pytest.mark.parametrize("online", [False, True])
def test_td3bc_actor_loss_by_hand(online):
    a = _td3bc_frozen_critic(alpha=2.5)
    b = random_batch(4)
    with torch.no_grad():
        obs = a.norm(b.obs)[None]
        pi = a.actor(obs)
        q = a.critic(obs, pi)[0, 0]
        if online:  # plain TD3: no behaviour cloning, no Q normalisation
            expected = -q.mean()
        else:
            expected = -(2.5 / q.abs().mean()) * q.mean() + ((pi[0] - b.actions) ** 2).mean()
    assert a.update(b, online=online)["train/actor_loss"].item() == pytest.approx(
        expected.item(), rel=1e-5
    )


def test_td3bc_online_actor_step_ignores_dataset_actions():
    b1 = random_batch(5)
    b2 = Batch(b1.obs, -b1.actions.sign(), b1.rewards, b1.next_obs, b1.terminals)  # far apart
    actors = {}
    for online in (False, True):
        for name, batch in (("b1", b1), ("b2", b2)):
            a = _td3bc_frozen_critic(alpha=2.5)
            torch.manual_seed(0)
            a.update(batch, online=online)
            actors[online, name] = params(a)["actor"]
    for n in actors[True, "b1"]:
        assert torch.equal(actors[True, "b1"][n], actors[True, "b2"][n]), n
    assert any(
        not torch.equal(actors[False, "b1"][n], actors[False, "b2"][n]) for n in actors[False, "b1"]
    )


def test_td3bc_offline_actor_moves_toward_dataset_actions():
    a = _td3bc_frozen_critic(alpha=0.0, lr=1e-2)  # pure behaviour cloning offline
    b = random_batch(6)
    target = torch.full_like(b.actions, 0.9)
    b = Batch(b.obs, target, b.rewards, b.next_obs, b.terminals)
    with torch.no_grad():
        before = ((a.actor(a.norm(b.obs)[None])[0] - target) ** 2).mean().item()
    for _ in range(20):
        a.update(b, online=False)
    with torch.no_grad():
        after = ((a.actor(a.norm(b.obs)[None])[0] - target) ** 2).mean().item()
    assert after < 0.5 * before


# --- reset --------------------------------------------------------------------------------------------
def _trained(algo: str):
    a = agent(algo, seed=0)
    a.update(random_batch(0), online=True)
    a.update(random_batch(1), online=True)
    perturb(a)
    return a


@pytest.mark.parametrize("algo", ALGOS)
def test_reset_last_changes_exactly_the_output_layers(algo):
    a = _trained(algo)
    assert all(len(o.state) for o in a.optimizers.values())
    before = params(a)
    torch.manual_seed(1)
    a.reset_networks("last")
    after = params(a)
    assert set(after) == set(OUTPUT_PARAMS[algo])
    for k, names in OUTPUT_PARAMS[algo].items():
        assert names <= set(after[k])
        for n in after[k]:
            same = torch.equal(before[k][n], after[k][n])
            if n in names:
                assert not same, f"{k}.{n} (output layer) was not reset"
            else:
                assert same, f"{k}.{n} (hidden layer) changed"
    _assert_targets_synced_and_optimisers_fresh(a)


@pytest.mark.parametrize("algo", ALGOS)
def test_reset_full_changes_every_layer(algo):
    a = _trained(algo)
    before = params(a)
    a.reset_networks("full")
    after = params(a)
    for k in before:
        for n in before[k]:
            assert not torch.equal(before[k][n], after[k][n]), f"{k}.{n}"
    _assert_targets_synced_and_optimisers_fresh(a)


@pytest.mark.parametrize("algo", ALGOS)
def test_reset_offline_restores_the_given_state(algo):
    a = agent(algo, seed=0)
    a.update(random_batch(0), online=False)
    offline = checkpoint_roundtrip(a.state_dict())
    for i in range(1, 4):
        a.update(random_batch(i), online=True)
    perturb(a)
    a.reset_networks("offline", offline_state=offline)
    for k, m in a.modules().items():
        for n, p in m.state_dict().items():
            assert torch.equal(p, offline["modules"][k][n]), f"{k}.{n}"
    _assert_targets_synced_and_optimisers_fresh(a)
    with pytest.raises(ValueError, match="offline"):
        a.reset_networks("offline")
    with pytest.raises(ValueError, match="reset_scope"):
        a.reset_networks("some")


@pytest.mark.parametrize("algo", ("iql", "td3bc"))
def test_shrink_and_perturb_half_is_the_midpoint(algo):
    a = agent(algo, seed=0)
    offline = checkpoint_roundtrip(a.state_dict())
    a.update(random_batch(0), online=True)
    perturb(a, 0.25)
    before = params(a)
    a.reset_networks("offline", alpha=0.5, offline_state=offline)
    for k, m in a.modules().items():
        for n, p in m.named_parameters():
            mid = (before[k][n] + offline["modules"][k][n]) / 2
            assert torch.equal(p.detach(), mid), f"{k}.{n}"
    _assert_targets_synced_and_optimisers_fresh(a)


def _assert_targets_synced_and_optimisers_fresh(a) -> None:
    assert a.targets, "every agent keeps target networks"
    for k, t in a.targets.items():
        for (n, p), q in zip(t.named_parameters(), a.modules()[k].parameters(), strict=True):
            assert torch.equal(p, q), f"target {k}.{n} differs from the online network"
    for k, opt in a.optimizers.items():
        assert len(opt.state) == 0, f"optimiser {k} kept its state"
    # The new optimisers step the agent's own (reset) parameters, every one of them.
    opt_params = {
        id(p) for opt in a.optimizers.values() for g in opt.param_groups for p in g["params"]
    }
    module_params = {id(p) for m in a.modules().values() for p in m.parameters()}
    assert module_params <= opt_params
    metrics = a.update(random_batch(7), online=True)
    assert all(torch.isfinite(v).all() for v in metrics.values())


# --- stability metrics ------------------------------------------------------------------------------
def test_stability_metrics_dip_and_recovery():
    m = stability_metrics(np.array([0, 10, 20, 30, 40]), np.array([50.0, 30.0, 40.0, 55.0, 45.0]))
    assert set(m) == set(METRICS)
    assert m["score_offline"] == 50.0
    assert m["score_final"] == 45.0
    assert m["score_max"] == 55.0
    assert m["auc"] == pytest.approx((30 + 40 + 55 + 45) / 4)
    assert m["dip"] == pytest.approx(20.0)
    assert m["steps_to_recover"] == 30
    assert m["regret"] == pytest.approx((70 + 60 + 45 + 55) / 4)


def test_stability_metrics_never_recovers_and_no_dip():
    m = stability_metrics([0, 5, 10], [50.0, 40.0, 49.0])
    assert m["steps_to_recover"] is None
    assert m["dip"] == pytest.approx(10.0)
    m = stability_metrics([0, 5, 10, 15], [50.0, 20.0, 50.0, 40.0])  # equal counts as back
    assert m["dip"] == 30.0 and m["steps_to_recover"] == 10
    m = stability_metrics([0, 5, 10], [50.0, 50.0, 80.0])
    assert m["dip"] == 0.0 and m["regret"] == pytest.approx(35.0) and m["score_max"] == 80.0


@pytest.mark.parametrize(
    ("scores", "expected"),
    [
        ([50.0, 60.0, 30.0, 55.0], 30),  # above at 10, dips at 20, back at 30
        ([50.0, 60.0, 70.0, 80.0], 0),  # never dipped
    ],
)
def test_steps_to_recover_counts_from_the_dip(scores, expected):
    steps = np.array([0, 10, 20, 30])
    assert stability_metrics(steps, np.array(scores))["steps_to_recover"] == expected


@pytest.mark.parametrize(
    ("steps", "scores"),
    [
        ([0], [50.0]),  # no online evaluation
        ([0, 10], [50.0]),  # lengths differ
        ([5, 10], [50.0, 60.0]),  # does not start at step 0
        ([[0, 10]], [[50.0, 60.0]]),  # not 1-D
    ],
)
def test_stability_metrics_bad_input_raises(steps, scores):
    with pytest.raises(ValueError, match="step 0"):
        stability_metrics(np.array(steps), np.array(scores))


def test_auto_device_keeps_small_networks_on_the_cpu_and_big_stacks_on_the_gpu(monkeypatch):
    import torch

    from sftlib.utils import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto", (64, 64), seeds=4).type == "cpu"  # the demo's runs
    assert resolve_device("auto", (64, 64), seeds=8).type == "cuda"
    assert resolve_device("auto", (128, 128), seeds=1).type == "cpu"
    assert resolve_device("auto", (128, 128), seeds=2).type == "cuda"
    assert resolve_device("auto", (256, 256), seeds=1).type == "cuda"
    assert resolve_device("cpu", (1024,), seeds=64).type == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto", (256, 256), seeds=64).type == "cpu"


def test_a_run_records_the_device_it_used(pretrained_dirs, tmp_path):
    from sftlib.config import finetune_config
    from sftlib.training.finetune import finetune

    config = finetune_config(
        dict(pretrain_dir=str(pretrained_dirs["iql"]), variant="direct", online_steps=50,
             eval_every=50, eval_episodes=1)
    )  # fmt: skip
    assert finetune(config, tmp_path, progress=False).summary["device"] == "cpu"
