"""Who acts online, beyond per-state selection: the ``warmup`` baseline, SFT's episode-level
control with Monte-Carlo promotion, Monte-Carlo evidence that promotes under per-state
selection, the training-episode log (online cost) and decisions judged against the truth.
Each test fails if its mechanism were missing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from sftlib.agents import Agent
from sftlib.agents.seeds import bind_seed, stack_agents
from sftlib.analysis.metrics import decision_calls, online_cost
from sftlib.config import finetune_config
from sftlib.data.buffer import ReplayBuffer, sample_online_data
from sftlib.sft.episode_control import EpisodeSelection, mc_verdict
from sftlib.sft.policy_evaluation import Estimates
from sftlib.sft.state_control import StateSelection
from sftlib.training.finetune import finetune, run_side_by_side
from sftlib.training.seed_run import FineTuner, RunState

BASE = dict(
    online_steps=400, eval_every=200, eval_episodes=1, check_every=50, patience=1,
    reset_every=200, reset_start=200, probe_size=32, mc_episodes=4, threads=1, device="cpu",
)  # fmt: skip


def tuner(pretrained_dirs, tmp_path, algo="iql", **params) -> FineTuner:
    config = {**BASE, "pretrain_dir": str(pretrained_dirs[algo]), **params}
    return FineTuner(finetune_config(config), tmp_path)


def run(ft: FineTuner):
    return run_side_by_side([ft], [None], [torch.get_rng_state()], progress=False)[0]


# --- warm-up ------------------------------------------------------------------------------
def test_warmup_collects_with_the_frozen_offline_policy_then_learns_on_online_data(
    pretrained_dirs, tmp_path
):
    ft = tuner(pretrained_dirs, tmp_path, variant="warmup", warmup_steps=150, online_steps=300)
    assert ft.online_data == "online"
    before = {k: v.clone() for k, v in ft.learner.actor.state_dict().items()}
    updates, original = [], ft.learner.update

    def spy(batch, online):
        updates.append(ft.state.step)
        return original(batch, online)

    ft.learner.update = spy
    result = run(ft)
    assert updates == list(range(151, 301)), "no update during the warm-up, one per step after"
    changed = any(not torch.equal(before[k], v) for k, v in ft.learner.actor.state_dict().items())
    assert changed
    episodes = pd.read_csv(tmp_path / "episodes.csv")
    warm = episodes[episodes["start_step"] <= 150]
    assert (warm["share_anchor"] > 0).all() and (episodes["share_learner"] <= 1).all()
    assert "warmup_end" in result.events["event"].tolist()


def test_the_online_rule_keeps_no_offline_data():
    offline, online = ReplayBuffer(1, 1, 10), ReplayBuffer(1, 1, 10)
    for i in range(5):
        offline.add(np.array([-1.0]), np.zeros(1), 0.0, np.array([-1.0]), False)
        online.add(np.array([float(i)]), np.zeros(1), 0.0, np.array([0.0]), False)
    batch = sample_online_data(offline, online, 64, "online", 0.5, np.random.default_rng(0))
    assert (batch.obs >= 0).all()
    mixed = sample_online_data(offline, online, 64, "mix", 0.5, np.random.default_rng(0))
    assert (mixed.obs < 0).any()


# --- episode-level control ----------------------------------------------------------------
def test_mc_verdict_by_hand():
    assert mc_verdict([10, 12, 11], [5, 6, 4], k=1.0, margin=0.0, min_episodes=3) == "better"
    assert mc_verdict([5, 6, 4], [10, 12, 11], k=1.0, margin=0.0, min_episodes=3) == "worse"
    assert mc_verdict([10, 12], [5, 6], k=1.0, margin=0.0, min_episodes=3) == "unsure"
    # Means 11 and 10: se = sqrt(1/3 + 1/3) = 0.816; 1 - 0.816 > 0 but 1 - 2 * 0.816 < 0.
    assert mc_verdict([10, 12, 11], [9, 11, 10], k=1.0, margin=0.0, min_episodes=3) == "better"
    assert mc_verdict([10, 12, 11], [9, 11, 10], k=2.0, margin=0.0, min_episodes=3) == "unsure"
    assert mc_verdict([10, 12, 11], [9, 11, 10], k=1.0, margin=0.1, min_episodes=3) == "unsure"


def _episode(control: EpisodeSelection, journal: RunState, reward: float) -> str:
    driver = control.driver
    control.episode_ended(np.zeros(3), [reward], [driver], journal)
    return driver


def test_one_policy_drives_each_episode_and_mc_returns_promote_and_demote(
    pretrained_dirs, tmp_path
):
    ft = tuner(pretrained_dirs, tmp_path, variant="sft", control="episode", probe_every=2,
               promote_min_episodes=2)  # fmt: skip
    control, journal = ft.control, ft.state
    assert isinstance(control, EpisodeSelection) and not control.promoted
    states = np.random.default_rng(0).normal(size=(1, 4, 3)).astype(np.float32)
    executed = EpisodeSelection.executed_side_by_side([control], control.learner)
    np.testing.assert_array_equal(executed(states), control.anchor.act_per_seed(states, True))
    drivers = [_episode(control, journal, 10.0 if d == "learner" else 1.0)
               for d in [control.driver] for _ in range(1)]  # fmt: skip
    while not control.promoted:
        drivers.append(
            _episode(
                control,
                journal,
                10.0 + len(drivers) % 2 if control.driver == "learner" else 1.0 + len(drivers) % 2,
            )
        )
    assert drivers[:2] == ["anchor", "learner"]  # every second episode is the learner's
    assert [e["event"] for e in journal.events] == ["promote"]
    # The promoted learner is the executed policy: the learner's own evaluation.
    assert EpisodeSelection.executed_side_by_side([control], control.learner) is None
    obs = np.zeros(3, np.float32)
    assert control.act(obs, deterministic=True)[1] == "learner"
    while control.promoted:  # the learner's returns fall below the anchor's
        _episode(
            control, journal, 0.0 if control.driver == "learner" else 1.0 + len(journal.events) % 2
        )
    assert [e["event"] for e in journal.events] == ["promote", "demote"]
    assert control.act(obs, deterministic=True)[1] == "anchor"


def _side_by_side(pretrained_dirs, tmp_path, **params) -> tuple[list[FineTuner], Agent]:
    """Two seeds' runs from one pretraining run and their stacked learner, whose networks are
    moved away from the anchors' (otherwise still the same)."""
    runs = [tuner(pretrained_dirs, tmp_path / f"seed{s}", seed=s, **params) for s in (0, 1)]
    stack = stack_agents([run.learner for run in runs])
    for slot, run in enumerate(runs):
        bind_seed(run.learner, stack, slot)
    with torch.no_grad():
        for module in stack.modules().values():
            for p in module.parameters():
                p.add_(0.3 * torch.randn_like(p))
    return runs, stack


def test_episode_control_evaluates_each_seeds_promoted_policy_side_by_side(
    pretrained_dirs, tmp_path
):
    """Of two seeds in one stack, the promoted one is evaluated through its learner and the
    other through its anchor, in one call for both."""
    runs, stack = _side_by_side(pretrained_dirs, tmp_path, variant="sft", control="episode")
    runs[1].control.promoted = True
    states = torch.randn(2, 5, 3).numpy()
    executed = EpisodeSelection.executed_side_by_side([r.control for r in runs], stack)(states)
    anchor = runs[0].control.anchor.act_per_seed(states[:1], True)[0]
    learner = runs[1].learner.act_per_seed(states[1:], True)[0]
    np.testing.assert_allclose(executed[0], anchor, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(executed[1], learner, rtol=1e-6, atol=1e-6)
    assert not np.allclose(executed[1], runs[1].control.anchor.act_per_seed(states[1:], True)[0])


def test_state_selection_evaluates_each_seeds_own_selection_side_by_side(pretrained_dirs, tmp_path):
    """Of two seeds in one stack, one selects with its anchor's critic within the support
    check and the other, switched, with its learner's: in one call for both, each seed's
    actions are those of its own deterministic selection."""
    runs, stack = _side_by_side(pretrained_dirs, tmp_path, variant="sft", support_k=1.0)
    runs[1].control.switch.stable = True
    controls = [run.control for run in runs]
    assert [c.selector is c.anchor for c in controls] == [True, False]
    states = torch.randn(2, 64, 3).numpy()
    executed = StateSelection.executed_side_by_side(controls, stack)(states)
    for slot, control in enumerate(controls):
        alone, chosen = control.choose(states[slot], True)
        np.testing.assert_allclose(executed[slot], alone, rtol=1e-5, atol=1e-6)
        assert 0 < chosen.sum() < len(chosen)  # both policies' actions are taken somewhere


def test_critic_estimates_never_promote_under_episode_control(pretrained_dirs, tmp_path):
    ft = tuner(pretrained_dirs, tmp_path, variant="sft", control="episode", probe_every=2,
               promote_min_episodes=2)  # fmt: skip
    for _ in range(20):  # equal returns: no Monte-Carlo evidence either way
        _episode(ft.control, ft.state, 5.0)
    assert not ft.control.promoted and not ft.state.events


def test_a_reset_makes_the_promoted_learner_the_anchor(pretrained_dirs, tmp_path):
    ft = tuner(pretrained_dirs, tmp_path, variant="sft", control="episode")
    control = ft.control
    for _ in range(3):
        ft.learner.update(ft.offline.sample(32, ft.rng), online=True)
    control.promoted = True
    control.returns["learner"].extend([7.0, 8.0])
    control.reset(ft.state)
    for name, module in control.anchor.modules().items():  # the anchor is the old learner
        assert not all(
            torch.equal(a, b)
            for a, b in zip(
                module.parameters(), ft.learner.modules()[name].parameters(), strict=True
            )
        )
    assert list(control.returns["anchor"]) == [7.0, 8.0] and not control.returns["learner"]
    assert not control.promoted
    assert [e["event"] for e in ft.state.events] == ["anchor_update", "reset"]


def test_episode_control_runs_and_resumes_to_the_same_numbers(pretrained_dirs, tmp_path):
    params = dict(variant="sft", control="episode", probe_every=2, promote_min_episodes=2,
                  checkpoint_every=100)  # fmt: skip
    whole = run(tuner(pretrained_dirs, tmp_path / "whole", **params))
    episodes = pd.read_csv(tmp_path / "whole" / "episodes.csv")
    assert set(episodes["share_anchor"]) <= {0.0, 1.0}  # whole episodes, one driver each
    assert (episodes["share_learner"] == 1.0).any()
    assert np.isfinite(whole.curve["executed_score"]).all()
    assert "anchor_score" in whole.curve


# --- Monte-Carlo evidence under per-state selection --------------------------------------
def _mc_says_learner_wins(ft) -> None:
    """The critics rate the learner below the anchor; the executed episodes say it wins."""
    for _ in range(2):
        ft.control.evaluator.add_episode(np.zeros(3), [50.0], ["learner"])
        ft.control.evaluator.add_episode(np.zeros(3), [10.0], ["anchor"])
    real = ft.control.evaluate_policies
    ft.control.evaluate_policies = lambda start: (
        {"anchor": 0.0, "learner": -100.0},
        real(start)[1],
    )
    ft.control.switch.probe_values = lambda *_: torch.tensor([50.0, 50.0])


@pytest.mark.parametrize("promote", [True, False])
def test_mc_evidence_switches_and_updates_the_anchor_only_with_mc_promote(
    pretrained_dirs, tmp_path, promote
):
    ft = tuner(pretrained_dirs, tmp_path, variant="sft", mc_promote=promote, mc_min_share=0.2)
    _mc_says_learner_wins(ft)
    start = np.zeros(3, np.float32)
    for _ in range(2):  # the first check has no drift to compare with yet
        ft.control.stability_check(0, start, ft.state)
    assert ft.control.switch.stable is promote
    ft.control.reset(start, ft.state)
    assert ("anchor_update" in [e["event"] for e in ft.state.events]) is promote


def test_estimates_outside_the_observed_returns_are_not_used():
    estimates = Estimates(q={"anchor": np.array([5.0, 6.0]), "learner": np.array([430.0, 7.0])})
    assert estimates.combine("q", 0.0)["learner"] == pytest.approx(218.5)
    estimates.observed = (0.0, 174.0)
    assert estimates.combine("q", 0.0) == {"anchor": 5.5, "learner": 7.0}
    estimates.q["learner"] = np.array([430.0, 450.0])
    assert estimates.combine("q", 0.0)["learner"] == -np.inf


# --- the online cost and the decisions ----------------------------------------------------
def test_online_cost_by_hand():
    cost = online_cost(np.array([100, 300]), np.array([50.0, 90.0]))
    assert cost["online_regret"] == pytest.approx((100 * 50 + 300 * 10) / 400)
    assert cost["worst_training_episode"] == 50.0 and cost["training_episodes"] == 2
    assert online_cost(np.array([]), np.array([]))["online_regret"] is None


def test_decisions_are_judged_by_the_evaluations_that_follow():
    evals = [
        {"step": 0, "executed_score": 30, "learner_score": 30, "anchor_score": 30},
        {"step": 100, "executed_score": 40, "learner_score": 40, "anchor_score": 30},
        {"step": 200, "executed_score": 20, "learner_score": 20, "anchor_score": 45},
    ]
    events = [
        {"step": 50, "event": "switch"},  # next: executed 40 >= anchor 30: right
        {"step": 150, "event": "anchor_update"},  # anchor 45 after >= 30 before: right
        {"step": 180, "event": "promote"},  # executed 20 < anchor 45: wrong
        {"step": 190, "event": "demote"},  # anchor 45 >= learner 20: right
        {"step": 160, "event": "reset"},  # not a decision
        {"step": 250, "event": "switch"},  # nothing after it: not judged
    ]
    assert decision_calls(evals, events) == [True, True, False, True]


def test_training_episodes_are_logged_with_their_cost(pretrained_dirs, tmp_path):
    result = finetune(
        finetune_config({**BASE, "pretrain_dir": str(pretrained_dirs["iql"]), "variant": "sft"}),
        tmp_path,
        progress=False,
    )
    episodes = pd.read_csv(tmp_path / "episodes.csv")
    assert len(episodes) == result.summary["training_episodes"] > 0
    assert episodes["length"].sum() <= 400
    assert np.allclose(episodes["share_anchor"] + episodes["share_learner"], 1.0)
    expected = online_cost(episodes["length"].to_numpy(), episodes["normalized_return"].to_numpy())
    assert result.summary["online_regret"] == pytest.approx(expected["online_regret"])
    starts = episodes["start_step"].to_numpy()
    assert starts[0] == 1 and (np.diff(starts) == episodes["length"].to_numpy()[:-1]).all()
    assert result.summary["decisions"] >= result.summary["right_calls"] >= 0


@pytest.mark.parametrize("variant", ["warmup", "sft-episode"])
def test_new_controls_side_by_side_write_each_seeds_one_seed_run(
    pretrained_dirs, tmp_path, variant
):
    """The one loop serves the new controls too: two seeds side by side write the files each
    writes alone, to the bit (same machine, eager update)."""
    from sftlib.training.finetune import finetune_seeds

    def config(seed: int):
        return finetune_config(
            {**BASE, "pretrain_dir": str(pretrained_dirs["iql"]), "variant": variant,
             "seed": seed, "warmup_steps": 100, "probe_every": 2, "promote_min_episodes": 2,
             "torch_compile": "off"}
        )  # fmt: skip

    for seed in (0, 1):
        finetune(config(seed), tmp_path / "alone" / str(seed), progress=False)
    finetune_seeds([config(0), config(1)], [tmp_path / "side" / "0", tmp_path / "side" / "1"],
                   progress=False)  # fmt: skip
    for seed in ("0", "1"):
        for name in ("eval.csv", "events.csv", "episodes.csv", "train.csv"):
            alone = (tmp_path / "alone" / seed / name).read_bytes()
            assert alone == (tmp_path / "side" / seed / name).read_bytes(), (seed, name)
