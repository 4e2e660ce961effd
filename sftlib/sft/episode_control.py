"""SFT's episode-level control (``control: episode``): one policy, the anchor or the learner,
drives each whole training episode, so that neither walks in a per-state mixture of the two.

While the learner is not the executed policy it drives every ``probe_every``-th training
episode (its evidence); the anchor drives the others. The learner is *promoted* to executed
policy when the Monte-Carlo returns of the episodes it drove beat the anchor's with a
confidence bound (:func:`mc_verdict`), and *demoted* when they fall below; once promoted, the
anchor drives every ``probe_every``-th episode so the comparison stays current. Critic
estimates never promote. Evaluation scores the promoted policy. Periodic reset keeps its
role (:mod:`sftlib.sft.reset`): a promoted learner's snapshot becomes the anchor, then the
learner is re-initialised and must earn its promotion again.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import numpy as np
import torch

from sftlib.agents import Agent, agent_from_state
from sftlib.config import SFTConfig
from sftlib.data.rollouts import StackedPolicy
from sftlib.sft.control import Control, Journal, RunParts, anchors_side_by_side
from sftlib.sft.policy_evaluation import POLICIES
from sftlib.sft.reset import reset_due


def mc_verdict(
    learner: list[float], anchor: list[float], k: float, margin: float, min_episodes: int
) -> str:
    """``better``, ``worse`` or ``unsure``: the learner's episode returns against the
    anchor's. With means ``m_L, m_A`` and standard error ``se = sqrt(var_L / n_L + var_A /
    n_A)`` (sample variances), ``better`` when ``m_L - m_A - k se > margin |m_A|``, ``worse``
    when ``m_L - m_A + k se < -margin |m_A|``; ``unsure`` with fewer than ``min_episodes``
    (at least 2) returns of either policy."""
    n_l, n_a = len(learner), len(anchor)
    if min(n_l, n_a) < max(min_episodes, 2):
        return "unsure"
    mean_l, mean_a = float(np.mean(learner)), float(np.mean(anchor))
    se = math.sqrt(np.var(learner, ddof=1) / n_l + np.var(anchor, ddof=1) / n_a)
    tolerance = margin * abs(mean_a)
    if mean_l - mean_a - k * se > tolerance:
        return "better"
    if mean_l - mean_a + k * se < -tolerance:
        return "worse"
    return "unsure"


class EpisodeSelection(Control):
    """One policy per training episode; Monte-Carlo returns promote and demote the learner."""

    def __init__(
        self, learner: Agent, config: SFTConfig, offline_state: dict[str, Any], online_steps: int
    ) -> None:
        super().__init__(learner)
        self.config, self.variant = config, config.spec
        self.offline_state, self.online_steps = offline_state, online_steps
        self.anchor = learner.snapshot()
        self.promoted = not self.variant.switch
        """Whether the learner is the executed policy (from the start without the switch)."""
        self.returns: dict[str, deque[float]] = {
            p: deque(maxlen=config.mc_episodes) for p in POLICIES
        }
        """The undiscounted returns of the recent training episodes each policy drove."""
        self.episodes = 0
        self.driver = self.next_driver()

    @classmethod
    def for_run(cls, learner: Agent, run: RunParts) -> EpisodeSelection:
        return cls(learner, run.config.sft, run.offline_state, run.config.online_steps)

    @property
    def policies(self) -> dict[str, Agent]:
        return {"anchor": self.anchor, "learner": self.learner}

    def next_driver(self) -> str:
        """Who drives the next training episode: the executed policy, except every
        ``probe_every``-th episode, driven by the other one."""
        every = self.config.probe_every
        executed, other = ("learner", "anchor") if self.promoted else ("anchor", "learner")
        turn = every > 0 and self.episodes % every == every - 1
        return other if turn else executed

    def act(self, obs: np.ndarray, deterministic: bool) -> tuple[np.ndarray, str]:
        name = ("learner" if self.promoted else "anchor") if deterministic else self.driver
        observation = torch.as_tensor(obs, dtype=torch.float32)
        action = self.policies[name].policy_action(observation[None], deterministic)[0]
        return action.cpu().numpy(), name

    @classmethod
    def executed_side_by_side(cls, controls, stack) -> StackedPolicy | None:
        """Each seed's promoted policy: its learner (``None`` when every seed's is: the
        learners' own evaluation) or its anchor, from one call of each stack."""
        promoted = torch.tensor([control.promoted for control in controls])
        if promoted.all():
            return None
        anchors = anchors_side_by_side(controls)

        def act(obs: np.ndarray) -> np.ndarray:
            observation = torch.as_tensor(obs, dtype=torch.float32)  # [S, B, obs_dim]
            actions = anchors.policy_action(observation, True).cpu()
            if promoted.any():
                learners = stack.policy_action(observation, True).cpu()
                actions = torch.where(promoted[:, None, None], learners, actions)
            return actions.numpy()

        return act

    def episode_ended(
        self, start: np.ndarray, rewards: list[float], actors: list[str], journal: Journal
    ) -> None:
        self.returns[self.driver].append(float(np.sum(rewards)))
        self.episodes += 1
        verdict = mc_verdict(
            list(self.returns["learner"]), list(self.returns["anchor"]), self.config.promote_k,
            self.config.margin, self.config.promote_min_episodes,
        )  # fmt: skip
        means = {p: np.mean(r) if r else np.nan for p, r in self.returns.items()}
        detail = f"MC(L)={means['learner']:.2f} MC(A)={means['anchor']:.2f}"
        if self.variant.switch and not self.promoted and verdict == "better":
            self.promoted = True
            journal.add_event("promote", detail)
        elif self.variant.switch and self.promoted and verdict == "worse":
            self.promoted = False
            journal.add_event("demote", detail)
        self.driver = self.next_driver()

    def review(self, step: int, episode_start: np.ndarray, journal: Journal) -> None:
        config = self.config
        if self.variant.reset and reset_due(
            step, config.reset_every, config.reset_start, self.online_steps
        ):
            self.reset(journal)

    def reset(self, journal: Journal) -> None:
        """A promoted learner's snapshot becomes the anchor (its returns the anchor's); the
        learner is re-initialised and its evidence starts afresh."""
        config = self.config
        if self.promoted and self.variant.switch:
            self.anchor = self.learner.snapshot()
            self.returns["anchor"] = deque(self.returns["learner"], maxlen=config.mc_episodes)
            journal.add_event("anchor_update", "the promoted learner")
            self.promoted = False
        self.learner.reset_networks(config.reset_scope, config.shrink_alpha, self.offline_state)
        self.returns["learner"].clear()
        journal.add_event("reset", config.reset_scope)

    def train_metrics(self, episode_start: np.ndarray) -> dict[str, float]:
        row = {"sft/stable": float(self.promoted)}
        for name, returns in self.returns.items():
            row[f"mc/return_{name}"] = float(np.mean(returns)) if returns else float("nan")
        return row

    def state_dict(self) -> dict[str, Any]:
        return {
            "anchor": self.anchor.state_dict(),
            "promoted": self.promoted,
            "returns": {name: list(r) for name, r in self.returns.items()},
            "episodes": self.episodes,
            "driver": self.driver,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.anchor = agent_from_state(state["anchor"], self.learner.device).snapshot()
        self.promoted, self.episodes, self.driver = (
            state["promoted"], state["episodes"], state["driver"],
        )  # fmt: skip
        for name, returns in state["returns"].items():
            self.returns[name] = deque(returns, maxlen=self.config.mc_episodes)
