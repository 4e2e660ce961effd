"""The evaluations of fine-tuning: every seed of one stack at once, all their episodes side by
side (:func:`sftlib.data.rollouts.evaluate_stacked`), in environments kept from one evaluation
to the next. Deterministic policies on fixed reset seeds; the scores are never used for
decisions. A seed's rows are those of its one-seed run (same machine).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from sftlib.agents import Agent
from sftlib.data.goals import success_rate
from sftlib.data.rollouts import EnvPool, evaluate_stacked
from sftlib.utils import eval_seed

if TYPE_CHECKING:
    from sftlib.training.seed_run import FineTuner


class SeedEvaluations:
    """The evaluation rows of the seeds ``runs`` (one stack, one step), in one pass: the
    learners alone, then the executed policies where they are not the learners (one stacked
    policy: :meth:`sftlib.sft.control.Control.executed_side_by_side`). ``learner``: their
    stacked learner (for one seed, its learner). Each seed's frozen anchor is scored alone,
    once per anchor: a frozen deterministic policy on fixed seeds scores the same every time."""

    def __init__(self, runs: list[FineTuner], learner: Agent) -> None:
        self.runs, self.learner = runs, learner
        self.info = runs[0].info
        self.episodes = runs[0].config.eval_episodes
        self.seeds = [eval_seed(run.config.seed) for run in runs]
        self.envs = EnvPool(self.info)
        self.anchor_scores: list[tuple[Agent, dict[str, float]] | None] = [None] * len(runs)

    def rows(self) -> list[dict[str, float]]:
        """One evaluation row per seed (``eval.csv``), at the runs' current step."""
        learner = self._evaluate(lambda obs: self.learner.act_per_seed(obs, True), self.seeds)
        executed = learner
        controls = [run.control for run in self.runs]
        if (policy := type(controls[0]).executed_side_by_side(controls, self.learner)) is not None:
            executed = self._evaluate(policy, self.seeds)
        return [self._row(slot, learner, executed) for slot in range(len(self.runs))]

    def close(self) -> None:
        self.envs.close()

    def _evaluate(self, act, seeds: list[int]) -> tuple[np.ndarray, np.ndarray]:
        return evaluate_stacked(act, self.info, self.episodes, seeds, self.envs)

    def _row(self, slot: int, learner: tuple, executed: tuple) -> dict[str, float]:
        normalize, run = self.info.normalize, self.runs[slot]
        row = {
            "step": run.state.step,
            "executed_score": float(normalize(executed[0][slot]).mean()),
            "learner_score": float(normalize(learner[0][slot]).mean()),
            "executed_return": float(executed[0][slot].mean()),
            "learner_return": float(learner[0][slot].mean()),
        }
        if self.info.success_key is not None:
            row["executed_success"] = success_rate(executed[1][slot])
            row["learner_success"] = success_rate(learner[1][slot])
        if (anchor := run.control.anchor_agent()) is not None:
            row.update(self._anchor(slot, anchor))
        return row

    def _anchor(self, slot: int, anchor: Agent) -> dict[str, float]:
        cached = self.anchor_scores[slot]
        if cached is None or cached[0] is not anchor:
            returns, _ = self._evaluate(
                lambda obs: anchor.act_per_seed(obs, True), [self.seeds[slot]]
            )
            returns = returns[0]
            scores = {
                "anchor_score": float(self.info.normalize(returns).mean()),
                "anchor_return": float(returns.mean()),
            }
            cached = self.anchor_scores[slot] = (anchor, scores)
        return cached[1]


__all__ = ["SeedEvaluations"]
