"""SFT's per-state selection (``control: state``), the control of ``sft`` and its ablations.

At every state the selector critic chooses between the anchor's and the learner's candidate
actions (:mod:`sftlib.sft.selection`); the selector is the anchor's critic until the switch
finds the learner stable (:mod:`sftlib.sft.switch`), judged by the comprehensive policy
evaluation (:mod:`sftlib.sft.policy_evaluation`, with FQE: :mod:`sftlib.sft.fqe`) and the
Monte-Carlo veto; periodic resets update the anchor and re-initialise the learner
(:mod:`sftlib.sft.reset`). Before the switch every ``probe_every``-th training episode is a
probe, driven by the learner alone, so its Monte-Carlo return is measured.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from sftlib.agents import Agent, agent_from_state
from sftlib.config import SFTConfig
from sftlib.data.buffer import ReplayBuffer
from sftlib.sft.control import Journal, PolicyExpansion, RunParts
from sftlib.sft.fqe import FQE, fqe_critics
from sftlib.sft.policy_evaluation import (
    POLICIES,
    ComprehensiveEvaluator,
    Estimates,
    mc_promotes,
    mc_vetoes,
)
from sftlib.sft.reset import improves, reset_due
from sftlib.sft.selection import action_spread, within_support
from sftlib.sft.switch import Switch, passes


class StateSelection(PolicyExpansion):
    """Anchor and learner compete per state; the switch, the comprehensive evaluation and
    periodic reset decide whose critic selects and which snapshot is the anchor.

    ``offline``/``online``: the run's buffers (the support width and the probe set are drawn
    from them, the probe set with the run's generator ``rng``); ``offline_state``: the
    pretrained agent's state (``reset_scope: offline``); ``online_steps``: the run's length.
    """

    def __init__(
        self,
        learner: Agent,
        config: SFTConfig,
        offline: ReplayBuffer,
        online: ReplayBuffer,
        rng: np.random.Generator,
        offline_state: dict[str, Any],
        online_steps: int,
    ) -> None:
        super().__init__(learner, config)
        self.variant = config.spec
        self.offline, self.online, self.rng = offline, online, rng
        self.offline_state, self.online_steps = offline_state, online_steps
        self.evaluator = ComprehensiveEvaluator(config.mc_episodes, learner.config.discount)
        self.switch = Switch(config.drift_tol, config.patience, config.probe_size)
        self.fqe: dict[str, FQE] = {}
        if self.variant.ope and config.estimator in ("fqe", "cpe"):
            self.fqe = fqe_critics(learner, config.fqe_lr, POLICIES)
        self.episodes = 0
        """Training episodes finished (probes are counted in episodes)."""
        self.support_spread: torch.Tensor | None = None
        self.refresh_support()

    @classmethod
    def for_run(cls, learner: Agent, run: RunParts) -> StateSelection:
        return cls(
            learner, run.config.sft, run.offline, run.online, run.rng, run.offline_state,
            run.config.online_steps,
        )  # fmt: skip

    # --- who acts ----------------------------------------------------------------------------
    @property
    def selector(self) -> Agent:
        """The anchor until the learner is stable (``switch`` variants), then the learner."""
        if self.variant.switch and not self.switch.stable:
            return self.anchor
        return self.learner

    @property
    def probing(self) -> bool:
        """Whether the running training episode is a probe: before the switch, every
        ``probe_every``-th episode the learner acts alone."""
        every = self.config.probe_every
        return (
            every > 0
            and self.variant.switch
            and not self.switch.stable
            and self.episodes % every == every - 1
        )

    def act(self, obs: np.ndarray, deterministic: bool) -> tuple[np.ndarray, str]:
        """Training actions of a probe episode are the learner's alone; evaluation never
        probes."""
        if not deterministic and self.probing:
            observation = torch.as_tensor(obs, dtype=torch.float32)
            action = self.learner.policy_action(observation[None], deterministic)[0]
            return action.cpu().numpy(), "learner"
        return super().act(obs, deterministic)

    def allowed(self, candidates: torch.Tensor) -> torch.Tensor | None:
        """The support check, while the anchor's critic selects."""
        if self.support_spread is None or self.selector is not self.anchor:
            return None
        inside = within_support(
            candidates[:, 1], candidates[:, 0], self.support_spread, self.config.support_k
        )
        return torch.stack([torch.ones_like(inside), inside], 1)

    def refresh_support(self) -> None:
        """The anchor's support width (:func:`action_spread`) when ``support_k`` is on."""
        self.support_spread = None
        if self.config.support_k > 0:
            self.support_spread = action_spread(self.anchor, self.offline)

    # --- comprehensive evaluation ------------------------------------------------------------
    def evaluate_policies(self, current_start: np.ndarray) -> tuple[dict[str, float], Estimates]:
        """The comprehensive evaluation of anchor and learner: ``(J per policy, Estimates)``."""
        estimates = self.evaluator.estimate(
            self.policies, [self.anchor, self.learner], current_start, self.fqe or None,
            within_observed=self.config.mc_promote,
        )  # fmt: skip
        return estimates.combine(self.config.estimator, self.config.kappa), estimates

    def _mc_evidence(self, estimates: Estimates) -> tuple:
        """The Monte-Carlo evidence of ``estimates`` as :func:`mc_vetoes` and
        :func:`mc_promotes` take it."""
        mc = estimates.mc
        learner_share = estimates.exec_share.get("learner", 0.0)
        return (
            mc.get("learner"),
            mc.get("anchor"),
            self.config.margin,
            learner_share,
            self.config.mc_min_share,
        )

    def vetoed(self, estimates: Estimates) -> bool:
        """Whether the Monte-Carlo veto (``mc_veto``) refuses what the critics favour."""
        return self.config.mc_veto and mc_vetoes(*self._mc_evidence(estimates))

    def mc_favours(self, estimates: Estimates) -> bool:
        """Whether Monte-Carlo evidence promotes the learner (``mc_promote``)."""
        return self.config.mc_promote and mc_promotes(*self._mc_evidence(estimates))

    def fqe_critics(self) -> dict[str, FQE]:
        return self.fqe

    def fqe_policies(self) -> dict[str, Agent]:
        return self.policies

    def fqe_due(self, step: int) -> bool:
        return bool(self.fqe) and step % self.config.fqe_every == 0

    # --- switch and reset --------------------------------------------------------------------
    def review(self, step: int, episode_start: np.ndarray, journal: Journal) -> None:
        config = self.config
        if self.variant.switch and not self.switch.stable and step % config.check_every == 0:
            self.stability_check(step, episode_start, journal)
        if self.variant.reset and reset_due(
            step, config.reset_every, config.reset_start, self.online_steps
        ):
            self.reset(episode_start, journal)

    def stability_check(self, step: int, episode_start: np.ndarray, journal: Journal) -> None:
        """One check of the switch; on a ``stable`` verdict the learner's critic selects."""

        def judge() -> tuple[str, float, float]:
            values, estimates = self.evaluate_policies(episode_start)
            evidence = self.mc_favours(estimates)
            if not (evidence or passes(values["learner"], values["anchor"], self.config.margin)):
                verdict = "worse"
            elif not evidence and self.vetoed(estimates):
                verdict = "mc_veto"
            else:
                verdict = "stable"
                journal.add_event(
                    "switch", f"J(L)={values['learner']:.2f} J(A)={values['anchor']:.2f}"
                )
            return verdict, values["anchor"], values["learner"]

        probe = self.switch.probe_values(self.learner, self.offline, self.online, self.rng)
        journal.add_check(self.switch.check(step, probe, judge))

    def reset(self, current_start: np.ndarray, journal: Journal) -> None:
        """Anchor <- the better of anchor and learner snapshot (:func:`improves`, unless the
        Monte-Carlo veto objects); reset the learner; restart the stability clock."""
        config = self.config
        values, estimates = self.evaluate_policies(current_start)
        evidence = self.mc_favours(estimates)
        better = evidence or improves(values["learner"], values["anchor"], config.margin)
        if better and not evidence and self.vetoed(estimates):
            journal.add_event("mc_veto", f"J(L)={values['learner']:.2f} favoured")
        elif better:
            self.anchor = self.learner.snapshot()
            self.refresh_support()
            if self.fqe:
                self.fqe["anchor"].assign(self.fqe["learner"])
            journal.add_event(
                "anchor_update", f"J(L)={values['learner']:.2f} > J(A)={values['anchor']:.2f}"
            )
        self.learner.reset_networks(config.reset_scope, config.shrink_alpha, self.offline_state)
        # The recent episodes describe the learner before its reset (and maybe the old
        # anchor): Monte-Carlo estimates start afresh with the new pair.
        self.evaluator.episodes.clear()
        self.switch.restart()
        journal.add_event("reset", config.reset_scope)

    # --- what the loop tells ------------------------------------------------------------------
    def train_metrics(self, episode_start: np.ndarray) -> dict[str, float]:
        row = {"sft/stable": float(self.switch.stable)}
        if self.variant.ope is not None:
            values, estimates = self.evaluate_policies(episode_start)
            row.update(
                {
                    "ope/J_anchor": values["anchor"],
                    "ope/J_learner": values["learner"],
                    **estimates.flat(),
                }
            )
        return row

    def episode_ended(
        self, start: np.ndarray, rewards: list[float], actors: list[str], journal: Journal
    ) -> None:
        self.episodes += 1
        self.evaluator.add_episode(start, rewards, actors)

    def state_dict(self) -> dict[str, Any]:
        return {
            "anchor": self.anchor.state_dict(),
            "fqe": {name: fqe.state_dict() for name, fqe in self.fqe.items()},
            "switch": self.switch.state_dict(),
            "evaluator": self.evaluator.state_dict(),
            "episodes": self.episodes,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.anchor = agent_from_state(state["anchor"], self.learner.device).snapshot()
        self.refresh_support()
        for name, fqe in self.fqe.items():
            fqe.load_state_dict(state["fqe"][name])
        self.switch.load_state_dict(state["switch"])
        self.evaluator.load_state_dict(state["evaluator"])
        self.episodes = state["episodes"]
