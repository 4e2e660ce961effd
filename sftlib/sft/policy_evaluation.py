"""Comprehensive policy evaluation: every estimate of ``J(pi)`` for anchor and learner
(Monte-Carlo returns of the executed training episodes, cross-evaluated critic values, Fitted
Q Evaluation), the bias correction against Monte-Carlo returns, the pessimistic aggregate
(spec: "Comprehensive policy evaluation") and the Monte-Carlo veto.

Decisions see only training data: the episodes the agent itself collected.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np
import torch

from sftlib.agents import Agent
from sftlib.sft.fqe import FQE

POLICIES = ("anchor", "learner")
"""Policy names used throughout: the frozen anchor and the learner trained online."""


def pessimistic(values: np.ndarray | list[float], kappa: float) -> float:
    """``mean - kappa * std`` (population std) of a set of estimates."""
    v = np.asarray(values, dtype=np.float64)
    return float(v.mean() - kappa * v.std())


def mc_estimate(returns: np.ndarray, shares: np.ndarray) -> float | None:
    """Monte-Carlo estimate for one policy: episode returns weighted by the share of each
    episode's steps that executed the policy's action; ``None`` if it executed none."""
    w = np.asarray(shares, np.float64)
    if w.sum() <= 0:
        return None
    return float(np.dot(w, returns) / w.sum())


def bias_correct(
    estimates: dict[str, np.ndarray], exec_share: dict[str, float], mc_acting: float
) -> dict[str, np.ndarray]:
    """Subtract each estimator's bias measured on the acting policy.

    ``estimates[pi]``: one value per estimator (aligned across policies), ``exec_share[pi]``
    the share of recent steps whose executed action was ``pi``'s. The acting policy's
    estimate is the share-weighted mix ``sum_pi w_pi est[pi]``, its bias that minus the
    Monte-Carlo return of the acting policy ``mc_acting``.
    """
    acting = sum(exec_share[p] * estimates[p] for p in estimates)
    bias = acting - mc_acting
    return {p: estimates[p] - bias for p in estimates}


@dataclass
class FinishedEpisode:
    """A finished online training episode, as the evaluation needs it."""

    start_obs: np.ndarray
    discounted_return: float
    steps: dict[str, int]
    """Executed steps per policy name."""


@dataclass
class Estimates:
    """Every estimator's values for every policy at one evaluation."""

    q: dict[str, np.ndarray]
    """Per policy: ``Q(s0, pi(s0))`` under each critic and member, ``[n_critics * members]``."""
    fqe: dict[str, np.ndarray] = field(default_factory=dict)
    """Per policy: its FQE critic's members' values ``[members]``."""
    mc: dict[str, float | None] = field(default_factory=dict)
    mc_acting: float | None = None
    exec_share: dict[str, float] = field(default_factory=dict)
    observed: tuple[float, float] | None = None
    """When set, the range of discounted returns observed so far: critic and FQE values
    outside it are not used (``mc_promote``)."""

    def inside(self, values: np.ndarray) -> np.ndarray:
        """Which of ``values`` lie in the observed range (all when none is set)."""
        if self.observed is None:
            return np.ones(len(values), dtype=bool)
        low, high = self.observed
        return (values >= low) & (values <= high)

    def combine(self, estimator: str, kappa: float) -> dict[str, float]:
        """``J(pi)`` per policy. ``q``/``fqe``: pessimistic over their members; ``mc``: the
        Monte-Carlo estimate (``-inf`` where none); ``cpe``: bias-corrected ``q`` and
        ``fqe`` values plus ``mc``, aggregated pessimistically. Values outside the observed
        range (:attr:`observed`) are left out; a policy left with none gets ``-inf``."""
        out: dict[str, float] = {}
        for p in self.q:
            if estimator == "q":
                out[p] = _pessimistic_or_none(self.q[p][self.inside(self.q[p])], kappa)
            elif estimator == "fqe":
                out[p] = _pessimistic_or_none(self.fqe[p][self.inside(self.fqe[p])], kappa)
            elif estimator == "mc":
                out[p] = -np.inf if self.mc.get(p) is None else float(self.mc[p])
            elif estimator == "cpe":
                out[p] = _pessimistic_or_none(self._cpe_values()[p], kappa)
            else:
                raise ValueError(f"unknown estimator {estimator!r}")
        return out

    def _cpe_values(self) -> dict[str, np.ndarray]:
        q, fqe = self.q, self.fqe
        if self.mc_acting is not None:
            q = bias_correct(q, self.exec_share, self.mc_acting)
            if fqe:
                fqe = bias_correct(fqe, self.exec_share, self.mc_acting)
        out = {}
        for p in self.q:
            parts = [q[p][self.inside(self.q[p])]]
            if fqe:
                parts.append(fqe[p][self.inside(self.fqe[p])])
            if self.mc.get(p) is not None:
                parts.append(np.array([self.mc[p]]))
            out[p] = np.concatenate(parts)
        return out

    def flat(self) -> dict[str, float]:
        """Every estimator's mean value per policy, as metric keys ``ope/<est>_<policy>``."""
        m: dict[str, float] = {}
        for p in self.q:
            m[f"ope/q_{p}"] = float(np.mean(self.q[p]))
            if self.fqe:
                m[f"ope/fqe_{p}"] = float(np.mean(self.fqe[p]))
            m[f"ope/mc_{p}"] = np.nan if self.mc.get(p) is None else float(self.mc[p])
        return m


def _pessimistic_or_none(values: np.ndarray, kappa: float) -> float:
    return pessimistic(values, kappa) if len(values) else -np.inf


class ComprehensiveEvaluator:
    """Keeps the recent online episodes and computes every estimator of ``J(pi)``.

    Decisions see only training data: the episodes the agent itself collected.
    """

    def __init__(self, window: int, discount: float) -> None:
        self.episodes: deque[FinishedEpisode] = deque(maxlen=window)
        self.discount = discount
        self.observed: tuple[float, float] | None = None
        """The range of the discounted returns of every episode seen (kept across resets)."""

    def add_episode(self, start_obs: np.ndarray, rewards: list[float], executed: list[str]) -> None:
        g = float(np.sum(np.asarray(rewards) * self.discount ** np.arange(len(rewards))))
        steps = {p: executed.count(p) for p in POLICIES}
        self.episodes.append(FinishedEpisode(np.asarray(start_obs, np.float32), g, steps))
        low, high = self.observed or (g, g)
        self.observed = (min(low, g), max(high, g))

    def start_states(self, current_start: np.ndarray) -> torch.Tensor:
        """Start states of the recent episodes and of the running one, ``[S, obs_dim]``."""
        starts = [e.start_obs for e in self.episodes] + [np.asarray(current_start, np.float32)]
        return torch.as_tensor(np.stack(starts))

    @torch.no_grad()
    def estimate(
        self,
        policies: dict[str, Agent],
        critics: list[Agent],
        current_start: np.ndarray,
        fqe: dict[str, FQE] | None = None,
        within_observed: bool = False,
    ) -> Estimates:
        """Every estimate for ``policies``; with ``within_observed``, critic and FQE values
        outside the range of returns observed so far are left out of the decisions."""
        s0 = self.start_states(current_start)
        q, f = {}, {}
        for name, pi in policies.items():
            a0 = pi.policy_action(s0, deterministic=True)
            # Cross-evaluation: every critic (anchor's and learner's), every member.
            q[name] = torch.cat([c.q_values(s0, a0).mean(1) for c in critics]).cpu().numpy()
            if fqe:
                f[name] = fqe[name].values(s0, a0).mean(1).cpu().numpy()
        est = Estimates(q=q, fqe=f, observed=self.observed if within_observed else None)
        if self.episodes:
            returns = np.array([e.discounted_return for e in self.episodes])
            totals = np.array([sum(e.steps.values()) for e in self.episodes], np.float64)
            for name in policies:
                shares = np.array([e.steps.get(name, 0) for e in self.episodes]) / totals
                est.mc[name] = mc_estimate(returns, shares)
            est.mc_acting = float(returns.mean())
            total = totals.sum()
            est.exec_share = {
                name: sum(e.steps.get(name, 0) for e in self.episodes) / total for name in policies
            }
        return est

    def state_dict(self) -> dict:
        return {"episodes": list(self.episodes), "observed": self.observed}

    def load_state_dict(self, s: dict) -> None:
        self.episodes.clear()
        self.episodes.extend(s["episodes"])
        self.observed = s["observed"]


def mc_vetoes(
    mc_learner: float | None,
    mc_anchor: float | None,
    margin: float,
    learner_share: float = 1.0,
    min_share: float = 0.0,
) -> bool:
    """The Monte-Carlo veto: executed episodes contradict a learner the critics favour.

    True when the learner has too little evidence (no Monte-Carlo estimate, or it executed
    less than ``min_share`` of the recent steps: ``learner_share``) or ``mc_learner <
    mc_anchor - margin * |mc_anchor|``.
    """
    if mc_learner is None or learner_share < min_share:
        return True
    if mc_anchor is None:
        return False
    return mc_learner < mc_anchor - margin * abs(mc_anchor)


def mc_promotes(
    mc_learner: float | None,
    mc_anchor: float | None,
    margin: float,
    learner_share: float,
    min_share: float,
) -> bool:
    """Monte-Carlo promotion: the executed episodes show the learner clearly better,
    ``mc_learner > mc_anchor + margin * |mc_anchor|``, with the learner executing at least
    ``min_share`` of the recent steps (``learner_share``) and both estimates present."""
    if mc_learner is None or mc_anchor is None or learner_share < min_share:
        return False
    return mc_learner > mc_anchor + margin * abs(mc_anchor)
