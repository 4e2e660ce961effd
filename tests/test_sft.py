"""Behavioural tests of the SFT mechanisms: each fails if its mechanism were missing."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from sftlib.agents import make_agent
from sftlib.agents.networks import EnsembleQ
from sftlib.config import VARIANTS, finetune_config
from sftlib.data.buffer import Normalizer, ReplayBuffer
from sftlib.sft.fqe import FQE, StackedFQE
from sftlib.sft.policy_evaluation import (
    ComprehensiveEvaluator,
    Estimates,
    bias_correct,
    mc_estimate,
    pessimistic,
)
from sftlib.sft.reset import improves
from sftlib.sft.selection import Selection, select_action, select_actions
from sftlib.sft.switch import StabilityMonitor, passes
from sftlib.training.finetune import run_side_by_side
from sftlib.training.seed_run import FineTuner


def run(ft: FineTuner):
    """The fine-tuning loop with ``ft`` as its one seed."""
    return run_side_by_side([ft], [None], [torch.get_rng_state()], progress=False)[0]


def tuner(pretrained_dirs, tmp_path, algo="iql", **params) -> FineTuner:
    base = dict(
        pretrain_dir=str(pretrained_dirs[algo]),
        online_steps=400,
        eval_every=400,
        eval_episodes=1,
        check_every=50,
        patience=1,
        reset_every=200,
        reset_start=200,
        probe_size=32,
        mc_episodes=3,
        threads=1,
    )
    return FineTuner(finetune_config({**base, **params}), tmp_path)


class FixedCritic:
    """Stands in for a selector: ``Q(s, a) = scores[i]`` for the i-th candidate."""

    def __init__(self, scores):
        self.scores = torch.tensor(scores, dtype=torch.float32)

    def q_values(self, obs, actions):
        return torch.stack([self.scores[: len(actions)], self.scores[: len(actions)] + 1.0])


# --- action selection -----------------------------------------------------------------
def test_argmax_selection_takes_the_best_scored_candidate():
    cands = torch.tensor([[0.1], [0.2], [0.3]])
    action, idx, scores = select_action(
        torch.zeros(3), cands, FixedCritic([1.0, 5.0, 2.0]), Selection()
    )
    assert idx == 1 and torch.equal(action, cands[1])
    assert torch.equal(scores, torch.tensor([1.0, 5.0, 2.0]))  # min over the two members


def test_softmax_selection_samples_with_softmax_probabilities():
    torch.manual_seed(0)
    cands = torch.tensor([[0.0], [1.0]])
    critic = FixedCritic([0.0, np.log(3.0)])  # softmax(beta=1) -> [0.25, 0.75]
    picks = [
        select_action(torch.zeros(1), cands, critic, Selection("softmax", beta=1.0))[1]
        for _ in range(4000)
    ]
    assert np.mean(picks) == pytest.approx(0.75, abs=0.03)


class MemberCritic:
    """Stands in for a selector whose ensemble members score the candidates as given:
    ``members[i][j]`` is member ``i``'s value of candidate ``j``."""

    def __init__(self, members):
        self.members = torch.tensor(members, dtype=torch.float32)

    def q_values(self, obs, actions):
        return self.members[:, : len(actions)]


def test_lcb_selection_runs_the_learner_only_when_the_ensemble_agrees():
    cands = torch.tensor([[0.0], [1.0]])  # candidate 0: the anchor's, 1: the learner's
    obs = torch.zeros(1)
    # The members disagree on the direction: the minimum favours the learner (11 > 10),
    # the paired advantages [+1, -0.5] do not.
    split = MemberCritic([[10.0, 11.0], [12.0, 11.5]])
    assert select_action(obs, cands, split, Selection("argmax"))[1] == 1
    assert select_action(obs, cands, split, Selection("lcb", lcb_k=1.0))[1] == 0
    agree = MemberCritic([[10.0, 11.0], [12.0, 13.2]])  # advantages [1.0, 1.2]
    assert select_action(obs, cands, agree, Selection("lcb", lcb_k=1.0))[1] == 1
    assert (
        select_action(obs, cands, agree, Selection("lcb", lcb_k=5.0))[1] == 1
    )  # 1.1 - 5 * 0.1 > 0
    assert (
        select_action(obs, cands, agree, Selection("lcb", lcb_k=20.0))[1] == 0
    )  # the bound is too wide
    action, _, scores = select_action(obs, cands, agree, Selection("lcb"))
    assert torch.equal(scores, torch.tensor([10.0, 11.0])) and torch.equal(action, cands[1])


class LinearMembers:
    """A two-member critic that depends on the state and the action:
    ``Q_i(s, a) = w_i . s + v_i . a``."""

    def __init__(self, seed: int):
        g = torch.Generator().manual_seed(seed)
        self.w, self.v = torch.randn(2, 3, generator=g), torch.randn(2, 2, generator=g)

    def q_values(self, obs, actions):
        return (obs @ self.w.T + actions @ self.v.T).T  # [members, rows]


@pytest.mark.parametrize("rule", ["argmax", "lcb"])
def test_selecting_for_many_states_at_once_picks_what_one_state_at_a_time_picks(rule):
    """The batched selection (one critic call for all states) decides per state as the
    one-state selection does, with the same scores up to rounding, and honours ``allowed``."""
    g = torch.Generator().manual_seed(0)
    obs, cands = torch.randn(64, 3, generator=g), torch.randn(64, 3, 2, generator=g)
    allowed = torch.rand(64, 3, generator=g) > 0.3
    critic, selection = LinearMembers(1), Selection(rule, lcb_k=0.5)
    actions, indices, scores = select_actions(obs, cands, critic, selection, allowed)
    for i in range(64):
        action, index, row = select_action(obs[i], cands[i], critic, selection, allowed[i])
        assert index == int(indices[i]) and torch.equal(action, actions[i])
        torch.testing.assert_close(row, scores[i])
        assert index == 0 or bool(allowed[i, index])
    assert len(set(indices.tolist())) > 1  # the rows do not all make the same call


def _learner_overrated_but_losing(ft) -> None:
    """The critics favour the learner by far; the executed episodes say its steps lose:
    episodes the learner executed returned 10, those the anchor executed 50."""
    for _ in range(2):
        ft.control.evaluator.add_episode(np.zeros(3), [10.0], ["learner"])
        ft.control.evaluator.add_episode(np.zeros(3), [50.0], ["anchor"])
    real = ft.control.evaluate_policies
    ft.control.evaluate_policies = lambda start: (
        {"anchor": -100.0, "learner": 0.0},
        real(start)[1],
    )
    ft.control.switch.probe_values = lambda *_: torch.tensor([50.0, 50.0])  # a calm critic


@pytest.mark.parametrize("veto", [True, False])
def test_mc_veto_keeps_out_a_learner_its_critics_overrate(pretrained_dirs, tmp_path, veto):
    ft = tuner(pretrained_dirs, tmp_path, variant="sft", mc_veto=veto, patience=1, margin=0.05)
    _learner_overrated_but_losing(ft)
    start = np.zeros(3, np.float32)
    ft.control.stability_check(0, start, ft.state)
    ft.control.stability_check(0, start, ft.state)
    assert ft.control.switch.stable is not veto
    assert ft.state.checks[-1]["verdict"] == ("mc_veto" if veto else "stable")
    anchor_before = [p.clone() for p in ft.control.anchor.actor.parameters()]
    for _ in range(3):  # make the learner differ from the anchor
        ft.learner.update(ft.offline.sample(32, ft.rng), online=True)
    ft.control.reset(start, ft.state)
    kept = all(
        torch.equal(p, q)
        for p, q in zip(ft.control.anchor.actor.parameters(), anchor_before, strict=True)
    )
    assert kept is veto
    events = [e["event"] for e in ft.state.events]
    assert ("mc_veto" in events) is veto and ("anchor_update" in events) is not veto


def test_mc_veto_needs_evidence_for_the_learner():
    from sftlib.sft.policy_evaluation import mc_vetoes

    assert mc_vetoes(None, 50.0, 0.05)  # no evidence for the learner
    assert not mc_vetoes(49.0, 50.0, 0.05) and mc_vetoes(47.0, 50.0, 0.05)
    assert not mc_vetoes(10.0, None, 0.05)
    # A learner that drove too few of the recent steps has no say, however well it did.
    assert mc_vetoes(60.0, 50.0, 0.05, learner_share=0.2, min_share=0.5)
    assert not mc_vetoes(60.0, 50.0, 0.05, learner_share=0.6, min_share=0.5)


def test_selection_never_picks_an_excluded_candidate():
    cands = torch.tensor([[0.0], [1.0]])
    critic = MemberCritic([[10.0, 20.0], [10.0, 21.0]])  # every member prefers the learner
    excluded = torch.tensor([True, False])
    for rule in ("argmax", "lcb"):
        assert select_action(torch.zeros(1), cands, critic, Selection(rule))[1] == 1
        assert (
            select_action(torch.zeros(1), cands, critic, Selection(rule), allowed=excluded)[1] == 0
        )


def test_action_spread_and_support_by_hand():
    from sftlib.sft.selection import action_spread, in_support

    class Zero:  # a deterministic policy that always answers 0
        def policy_action(self, obs, deterministic):
            return torch.zeros(len(obs), 2)

    actions = np.array([[0.1, -1.0], [-0.1, 1.0]] * 50, np.float32)
    buffer = ReplayBuffer.from_arrays(
        obs=np.zeros((100, 1), np.float32),
        actions=actions,
        rewards=np.zeros(100, np.float32),
        next_obs=np.zeros((100, 1), np.float32),
        terminals=np.zeros(100, np.float32),
    )
    spread = action_spread(Zero(), buffer)
    torch.testing.assert_close(spread, torch.tensor(actions).std(0))  # ~[0.1, 1.0]
    anchor = torch.zeros(2)
    assert in_support(torch.tensor([0.1, 1.0]), anchor, spread, k=1.01)  # one spread away
    assert not in_support(torch.tensor([0.3, 0.0]), anchor, spread, k=1.0)  # 3 on dim 0


def test_before_the_switch_the_learner_acts_only_in_the_anchors_support(pretrained_dirs, tmp_path):
    """The anchor's critic rates a far-off learner action highest; the support check keeps
    it from running while the anchor's critic selects, and not after the switch."""
    ft = tuner(pretrained_dirs, tmp_path, variant="sft", support_k=1.0)
    assert ft.control.support_spread is not None and ft.control.support_spread.shape == (1,)
    far = ft.control.support_spread * 5.0  # five spreads from the anchor's action
    ft.control.anchor.policy_action = lambda obs, deterministic: torch.zeros(len(obs), 1)
    ft.learner.policy_action = lambda obs, deterministic: far.expand(len(obs), 1)
    prefers_learner = MemberCritic([[0.0, 100.0], [0.0, 100.0]])
    ft.control.anchor.q_values = prefers_learner.q_values
    ft.learner.q_values = prefers_learner.q_values
    obs = np.zeros(3, np.float32)
    assert ft.control.act(obs, deterministic=True)[1] == "anchor"
    ft.control.switch.stable = True  # switched: the learner's critic selects, no support check
    assert ft.control.act(obs, deterministic=True)[1] == "learner"
    plain = tuner(pretrained_dirs, tmp_path / "plain", variant="sft", support_k=0.0)
    assert plain.control.support_spread is None


def test_before_switch_the_anchor_critic_decides_after_it_the_learner_critic(
    pretrained_dirs, tmp_path
):
    ft = tuner(pretrained_dirs, tmp_path, variant="sft")
    # The two critics disagree: the anchor's prefers candidate 0, the learner's candidate 1.
    ft.control.anchor.q_values = FixedCritic([1.0, 0.0]).q_values
    ft.learner.q_values = FixedCritic([0.0, 1.0]).q_values
    obs = np.zeros(3, np.float32)
    assert not ft.control.switch.stable and ft.control.selector is ft.control.anchor
    action, who = ft.control.act(obs, deterministic=True)
    assert who == "anchor"
    anchor_action = ft.control.anchor.act(obs, deterministic=True)
    np.testing.assert_array_equal(action, anchor_action)
    ft.control.switch.stable = True  # the learner has been judged stable: its critic now selects
    assert ft.control.selector is ft.learner
    assert ft.control.act(obs, deterministic=True)[1] == "learner"


def test_noswitch_and_pex_always_select_with_the_learner_critic(pretrained_dirs, tmp_path):
    for variant in ("sft-noswitch", "pex"):
        ft = tuner(pretrained_dirs, tmp_path / variant, variant=variant)
        ft.control.anchor.q_values = FixedCritic([1.0, 0.0]).q_values
        ft.learner.q_values = FixedCritic([0.0, 100.0]).q_values
        assert ft.control.selector is ft.learner
        assert ft.control.act(np.zeros(3, np.float32), deterministic=True)[1] == "learner"
    assert (
        tuner(pretrained_dirs, tmp_path / "pex2", variant="pex").config.sft.selection_rule
        == "softmax"
    )


def test_direct_has_no_anchor_and_the_learner_acts_alone(pretrained_dirs, tmp_path):
    ft = tuner(pretrained_dirs, tmp_path, variant="direct")
    assert not hasattr(ft.control, "anchor") and not ft.control.fqe_critics()
    obs = np.ones(3, np.float32)
    action, who = ft.control.act(obs, deterministic=True)
    assert who == "learner"
    np.testing.assert_array_equal(action, ft.learner.act(obs, deterministic=True))


# --- stability -----------------------------------------------------------------------------
def test_stability_monitor_counts_consecutive_calm_checks_and_restarts():
    m = StabilityMonitor(drift_tol=0.1, patience=2)
    q = torch.tensor([10.0, 10.0])
    assert m.check(q) is None and m.calm == 0
    assert m.check(q * 1.5) == pytest.approx(5.0 / 15.0, rel=1e-5) and m.calm == 0
    assert m.check(q * 1.5) == 0.0 and m.calm == 1 and not m.calm_enough
    m.check(q * 1.5 + 0.1)
    assert m.calm == 2 and m.calm_enough
    m.restart()
    assert m.prev is None and m.calm == 0 and not m.calm_enough


@pytest.mark.parametrize(("j_learner", "expect"), [(-104.0, True), (-106.0, False)])
def test_switch_needs_calm_critic_and_a_passing_evaluation(
    pretrained_dirs, tmp_path, j_learner, expect
):
    # The Monte-Carlo veto has its own test; here the critics' verdict alone decides.
    ft = tuner(pretrained_dirs, tmp_path, variant="sft", margin=0.05, patience=1, mc_veto=False)
    ft.control.evaluate_policies = lambda start: ({"anchor": -100.0, "learner": j_learner}, None)
    ft.control.switch.probe_values = lambda *_: torch.tensor(
        [50.0, 50.0]
    )  # a critic that does not move
    start = np.zeros(3, np.float32)
    ft.control.stability_check(0, start, ft.state)  # first check: nothing to compare with yet
    assert not ft.control.switch.stable and ft.state.checks[-1]["verdict"] == "unstable"
    ft.control.stability_check(0, start, ft.state)
    assert ft.control.switch.stable is expect
    assert ft.state.checks[-1]["verdict"] == ("stable" if expect else "worse")
    assert [e["event"] for e in ft.state.events] == (["switch"] if expect else [])


def test_a_drifting_critic_never_switches_even_if_evaluated_better(pretrained_dirs, tmp_path):
    ft = tuner(pretrained_dirs, tmp_path, variant="sft", drift_tol=0.05, patience=1)
    ft.control.evaluate_policies = lambda start: ({"anchor": -100.0, "learner": 0.0}, None)
    values = iter([torch.tensor([10.0]), torch.tensor([20.0]), torch.tensor([40.0])])
    ft.control.switch.probe_values = lambda *_: next(values)
    for _ in range(3):
        ft.control.stability_check(0, np.zeros(3, np.float32), ft.state)
    assert not ft.control.switch.stable


# --- reset -------------------------------------------------------------------------------------
def _params(module):
    return [p.detach().clone() for p in module.parameters()]


@pytest.mark.parametrize("learner_better", [True, False])
def test_reset_reinitialises_the_scope_and_keeps_the_better_anchor(
    pretrained_dirs, tmp_path, learner_better
):
    ft = tuner(pretrained_dirs, tmp_path, variant="sft", reset_scope="last", mc_veto=False)
    # Train the learner a little so that it differs from the anchor and has optimiser state.
    for _ in range(5):
        ft.learner.update(ft.offline.sample(32, ft.rng), online=True)
    learner_before = {k: _params(m) for k, m in ft.learner.modules().items()}
    anchor_before = {k: _params(m) for k, m in ft.control.anchor.modules().items()}
    ft.control.switch.stable = True
    ft.control.switch.monitor.calm = 3
    # margin 0.05: the learner must beat the anchor by 5% of |J(A)| to replace it.
    j = {"anchor": -100.0, "learner": -94.0 if learner_better else -96.0}
    ft.control.evaluate_policies = lambda start: (j, None)
    ft.control.reset(np.zeros(3, np.float32), ft.state)

    expected_anchor = learner_before if learner_better else anchor_before
    for k, m in ft.control.anchor.modules().items():
        for p, q in zip(m.parameters(), expected_anchor[k], strict=True):
            assert torch.equal(p, q)
    for k, m in ft.learner.modules().items():
        ps = list(m.parameters())
        last_ids = {id(p) for dst, _ in ft.learner._last_layers(m, m) for p in dst.parameters()}
        for p, q in zip(ps, learner_before[k], strict=True):
            if id(p) in last_ids:
                assert not torch.equal(p, q), f"{k}: output layer was not re-initialised"
            else:
                assert torch.equal(p, q), f"{k}: a hidden layer changed under scope 'last'"
    for opt in ft.learner.optimizers.values():
        assert len(opt.state) == 0
    for k, t in ft.learner.targets.items():
        for p, q in zip(t.parameters(), ft.learner.modules()[k].parameters(), strict=True):
            assert torch.equal(p, q)
    assert (
        not ft.control.switch.stable
        and ft.control.switch.monitor.calm == 0
        and ft.control.selector is ft.control.anchor
    )
    events = [e["event"] for e in ft.state.events]
    assert events == (["anchor_update", "reset"] if learner_better else ["reset"])


def test_noreset_variant_never_resets_and_sft_does(pretrained_dirs, tmp_path):
    counts = {}
    for variant in ("sft", "sft-noreset"):
        ft = tuner(pretrained_dirs, tmp_path / variant, variant=variant, online_steps=400)
        res = run(ft)
        counts[variant] = res.summary["n_resets"]
    # Resets at 200, not at 400: a reset at the last step would end the run on an untrained
    # learner.
    assert counts == {"sft": 1, "sft-noreset": 0}


# --- comprehensive evaluation ----------------------------------------------------------------
def test_pessimistic_aggregate_is_mean_minus_kappa_std():
    assert pessimistic([1.0, 2.0, 3.0], kappa=1.0) == pytest.approx(2.0 - np.sqrt(2.0 / 3.0))
    assert pessimistic([4.0], kappa=5.0) == 4.0


def test_mc_estimate_weights_episodes_by_executed_share():
    assert mc_estimate(np.array([10.0, 20.0]), np.array([0.5, 1.5])) == pytest.approx(17.5)
    assert mc_estimate(np.array([10.0, 20.0]), np.array([0.0, 0.0])) is None


def test_bias_correction_matches_hand_computation():
    est = {"anchor": np.array([10.0, 20.0]), "learner": np.array([12.0, 18.0])}
    out = bias_correct(est, {"anchor": 0.25, "learner": 0.75}, mc_acting=5.0)
    # acting = .25*[10,20] + .75*[12,18] = [11.5, 18.5]; bias = [6.5, 13.5]
    np.testing.assert_allclose(out["anchor"], [3.5, 6.5])
    np.testing.assert_allclose(out["learner"], [5.5, 4.5])


def test_combined_estimate_matches_hand_computation():
    est = Estimates(
        q={"anchor": np.array([10.0, 20.0]), "learner": np.array([12.0, 18.0])},
        fqe={"anchor": np.array([8.0]), "learner": np.array([6.0])},
        mc={"anchor": 4.0, "learner": 6.0},
        mc_acting=5.0,
        exec_share={"anchor": 0.25, "learner": 0.75},
    )
    # q corrected as above; fqe acting = .25*8 + .75*6 = 6.5, bias 1.5 -> A 6.5, L 4.5.
    a, learner = [3.5, 6.5, 6.5, 4.0], [5.5, 4.5, 4.5, 6.0]
    j = est.combine("cpe", kappa=0.5)
    assert j["anchor"] == pytest.approx(np.mean(a) - 0.5 * np.std(a))
    assert j["learner"] == pytest.approx(np.mean(learner) - 0.5 * np.std(learner))
    assert est.combine("q", 0.0) == {"anchor": 15.0, "learner": 15.0}
    assert est.combine("fqe", 0.0) == {"anchor": 8.0, "learner": 6.0}
    assert est.combine("mc", 0.0) == {"anchor": 4.0, "learner": 6.0}
    no_mc = Estimates(q=est.q, mc={"anchor": 3.0, "learner": None})
    assert no_mc.combine("mc", 0.0)["learner"] == -np.inf


def test_evaluation_verdict_margin():
    assert passes(-104.0, -100.0, 0.05) and not passes(-106.0, -100.0, 0.05)
    assert not passes(-np.inf, -100.0, 0.05) and passes(1.0, -np.inf, 0.0)
    # Replacing the anchor needs the learner clearly better, not merely within tolerance.
    assert improves(-94.0, -100.0, 0.05) and not improves(-96.0, -100.0, 0.05)
    assert not improves(-np.inf, -100.0, 0.0) and improves(1.0, -np.inf, 0.0)


def test_evaluator_discounts_returns_and_counts_who_acted():
    ev = ComprehensiveEvaluator(window=2, discount=0.5)
    ev.add_episode(np.zeros(2), [1.0, 1.0, 1.0], ["anchor", "learner", "learner"])
    ep = ev.episodes[0]
    assert ep.discounted_return == pytest.approx(1.75)
    assert ep.steps == {"anchor": 1, "learner": 2}
    for _ in range(2):
        ev.add_episode(np.ones(2), [0.0], ["anchor"])
    assert len(ev.episodes) == 2  # a window of recent episodes
    assert ev.start_states(np.full(2, 7.0)).shape == (3, 2)


def test_mc_only_evaluation_never_prefers_a_policy_that_never_acted(pretrained_dirs, tmp_path):
    ft = tuner(pretrained_dirs, tmp_path, variant="sft-mc")
    ft.control.evaluator.add_episode(np.zeros(3), [-1.0, -1.0], ["anchor", "anchor"])
    j, est = ft.control.evaluate_policies(np.zeros(3, np.float32))
    assert est.mc["learner"] is None and j["learner"] == -np.inf and np.isfinite(j["anchor"])


def test_fqe_converges_to_the_value_of_a_tiny_mdp():
    """Two states: s=0 -> s=1 with reward 0, s=1 -> end with reward 1; gamma 0.9.
    The value of any policy: Q(0, .) = 0.9, Q(1, .) = 1."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    n = 256
    s = rng.integers(0, 2, n).astype(np.float32)
    buf = ReplayBuffer.from_arrays(
        obs=s[:, None],
        actions=rng.uniform(-1, 1, (n, 1)).astype(np.float32),
        rewards=s.copy(),
        next_obs=np.ones((n, 1), np.float32),
        terminals=s.copy(),
    )
    policy = make_agent("td3bc", 1, 1, {"hidden": (16, 16)})
    fqe = FQE(EnsembleQ(1, 1, (32, 32), 2), Normalizer.identity(1), discount=0.9, tau=0.05, lr=3e-3)
    for _ in range(1500):
        fqe.update(buf.sample(64, rng), policy)
    obs = torch.tensor([[0.0], [1.0]])
    v = fqe.values(obs, torch.zeros(2, 1))
    np.testing.assert_allclose(v.numpy(), [[0.9, 1.0], [0.9, 1.0]], atol=0.05)


def _fqe_critics(count: int) -> tuple[list[FQE], list, list]:
    """``count`` FQE critics from different initial critics, each with its own policy, and
    batches of random transitions (obs 3, action 2)."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    norm = Normalizer(np.array([0.5, -1.0, 0.0]), np.array([2.0, 1.0, 0.5]))
    critics = [FQE(EnsembleQ(3, 2, (16, 16), 2), norm, 0.9, 0.05, 3e-3) for _ in range(count)]
    policies = [make_agent("td3bc", 3, 2, {"hidden": (8, 8)}) for _ in range(count)]
    buf = ReplayBuffer.from_arrays(
        obs=rng.standard_normal((500, 3)).astype(np.float32),
        actions=rng.uniform(-1, 1, (500, 2)).astype(np.float32),
        rewards=rng.standard_normal(500).astype(np.float32),
        next_obs=rng.standard_normal((500, 3)).astype(np.float32),
        terminals=(rng.random(500) < 0.1).astype(np.float32),
    )
    batches = [[buf.sample(32, rng) for _ in range(count)] for _ in range(6)]
    return critics, policies, batches


def _same_state(a: dict, b: dict) -> None:
    for part in ("critic", "target"):
        assert a[part].keys() == b[part].keys()
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), (part, key)
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert sa.keys() == sb.keys() and sa
    for i in sa:
        for key in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(sa[i][key], sb[i][key]), (i, key)


def test_stacked_fqe_critics_train_each_as_alone_and_copy_within_the_stack():
    """A batched run trains every seed's FQE critics as one stack: each member ends with the
    bits (weights, target, Adam moments) of its critic trained alone, before and after an
    anchor update copies one member into another."""
    alone, policies, batches = _fqe_critics(3)
    members = [copy.deepcopy(f) for f in alone]
    rng_before = torch.get_rng_state()
    stack = StackedFQE(members)
    assert torch.equal(torch.get_rng_state(), rng_before)  # a seed's random state is its own
    for i, step in enumerate(batches):
        if i == 3:  # an anchor update: critic 0 continues from critic 2
            alone[0].assign(alone[2])
            members[0].assign(members[2])
        losses = [f.update(b, pi) for f, b, pi in zip(alone, step, policies, strict=True)]
        assert torch.equal(stack.update(step, policies), torch.cat(losses))
    for a, m in zip(alone, members, strict=True):
        _same_state(a.state_dict(), m.state_dict())
        obs, act = batches[0][0].obs, batches[0][0].actions
        assert torch.equal(a.values(obs, act), m.values(obs, act))
    # After the copy, critics 0 and 2 trained on different batches: no longer equal.
    assert not torch.equal(members[0].values(obs, act), members[2].values(obs, act))


def test_a_stacked_fqe_critic_refuses_to_train_or_load_alone():
    critics, policies, batches = _fqe_critics(2)
    StackedFQE(critics)
    with pytest.raises(RuntimeError, match="update it through the stack"):
        critics[0].update(batches[0][0], policies[0])
    with pytest.raises(RuntimeError, match="before it joins a StackedFQE"):
        critics[0].load_state_dict(critics[1].state_dict())
    with pytest.raises(ValueError, match="alike"):
        StackedFQE(critics)  # already stacked
    other, _, _ = _fqe_critics(1)
    other[0].update(batches[0][0], policies[0])
    fresh, _, _ = _fqe_critics(1)
    with pytest.raises(ValueError, match="same Adam step"):
        StackedFQE([other[0], fresh[0]])


def test_fqe_is_trained_only_when_the_estimator_needs_it(pretrained_dirs, tmp_path):
    assert set(tuner(pretrained_dirs, tmp_path / "a", variant="sft").control.fqe_critics()) == {
        "anchor",
        "learner",
    }
    assert tuner(pretrained_dirs, tmp_path / "b", variant="sft-q").control.fqe_critics() == {}
    assert tuner(pretrained_dirs, tmp_path / "c", variant="pex").control.fqe_critics() == {}


def test_every_variant_runs_end_to_end(pretrained_dirs, tmp_path):
    for variant in VARIANTS:
        ft = tuner(
            pretrained_dirs,
            tmp_path / variant,
            variant=variant,
            online_steps=200,
            eval_every=100,
            reset_every=100,
            reset_start=100,
        )
        res = run(ft)
        assert list(res.curve["step"]) == [0, 100, 200]
        assert np.isfinite(res.curve["executed_score"]).all()


def test_batches_mix_offline_and_online_data(pretrained_dirs, tmp_path):
    ft = tuner(pretrained_dirs, tmp_path, variant="direct", online_data="mix", offline_ratio=0.25)
    seen = []
    original = ft.learner.update

    def spy(batch, online):
        seen.append(batch)
        return original(batch, online)

    ft.learner.update = spy
    ft.config.online_steps = 5
    run(ft)
    online_obs = {tuple(o) for o in ft.online.obs[: len(ft.online)].round(5)}
    last = seen[-1].obs.numpy().reshape(-1, 3).round(5)  # [1 seed, batch, obs]
    n_online = sum(tuple(o) in online_obs for o in last)
    bs = ft.learner.config.batch_size
    assert n_online == bs - round(bs * 0.25)


def test_incumbent_margin_keeps_the_anchor_unless_the_learner_is_clearly_better():
    cands = torch.tensor([[0.0], [1.0]])
    critic = FixedCritic([100.0, 103.0])  # the learner's candidate scores 3% higher
    assert select_action(torch.zeros(1), cands, critic, Selection())[1] == 1
    assert select_action(torch.zeros(1), cands, critic, Selection(incumbent_margin=0.02))[1] == 1
    action, idx, scores = select_action(
        torch.zeros(1), cands, critic, Selection(incumbent_margin=0.05)
    )
    assert idx == 0 and torch.equal(action, cands[0])
    assert torch.equal(scores, torch.tensor([100.0, 103.0]))  # reported scores are the critic's


def test_probe_episodes_let_the_learner_act_alone_in_training_only(pretrained_dirs, tmp_path):
    ft = tuner(pretrained_dirs, tmp_path, variant="sft", probe_every=3)
    prefers_anchor = MemberCritic([[100.0, 0.0], [100.0, 0.0]])
    ft.control.anchor.q_values = prefers_anchor.q_values
    obs = np.zeros(3, np.float32)
    probes = []
    for episode in range(6):
        ft.control.episodes = episode
        probes.append(ft.control.probing)
        assert ft.control.act(obs, deterministic=False)[1] == (
            "learner" if ft.control.probing else "anchor"
        )
        assert ft.control.act(obs, deterministic=True)[1] == "anchor"  # evaluation never probes
    assert probes == [False, False, True, False, False, True]
    ft.control.switch.stable = True  # after the switch: no probes
    ft.control.episodes = 2
    assert not ft.control.probing
    assert not tuner(
        pretrained_dirs, tmp_path / "none", variant="sft"
    ).control.probing  # probe_every 0


def test_a_reset_starts_the_monte_carlo_evidence_afresh(pretrained_dirs, tmp_path):
    ft = tuner(pretrained_dirs, tmp_path, variant="sft")
    ft.control.evaluator.add_episode(np.zeros(3), [1.0], ["learner"])
    ft.control.reset(np.zeros(3, np.float32), ft.state)
    assert len(ft.control.evaluator.episodes) == 0


@pytest.mark.parametrize("reset", [True, False])
def test_reset_optimizer_starts_fine_tuning_with_fresh_adam_moments(
    pretrained_dirs, tmp_path, reset
):
    """TD3+BC -> TD3 can clear the Adam moments it pretrained with (``reset_optimizer``)."""
    ft = tuner(pretrained_dirs, tmp_path, algo="td3bc", variant="direct", reset_optimizer=reset)
    states = [len(opt.state) for opt in ft.learner.optimizers.values()]
    assert all(n == 0 for n in states) is reset, states
