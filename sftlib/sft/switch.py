"""The switch: the anchor's critic selects until the learner's critic is stable (spec:
"Stability of the new evaluation network"). Every ``check_every`` steps the learner critic's
relative drift on a fixed probe set is measured; after ``patience`` calm checks the
comprehensive evaluation must also say the learner is not worse, and the Monte-Carlo veto
must not object: then the selector critic switches to the learner's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from sftlib.agents import Agent
from sftlib.data.buffer import ReplayBuffer

EPS = 1e-6


def relative_drift(q_now: torch.Tensor, q_prev: torch.Tensor) -> float:
    """``mean|Q^k - Q^(k-1)| / (mean|Q^k| + eps)`` over the probe set."""
    return float((q_now - q_prev).abs().mean() / (q_now.abs().mean() + EPS))


@dataclass
class StabilityMonitor:
    """Counts consecutive checks whose critic drift is below ``drift_tol``."""

    drift_tol: float
    patience: int
    prev: torch.Tensor | None = None
    calm: int = 0

    def check(self, q_now: torch.Tensor) -> float | None:
        """Record the probe values of this check; returns the drift (``None`` on the first
        check after a (re)start, which has nothing to compare with)."""
        drift = None if self.prev is None else relative_drift(q_now, self.prev)
        self.calm = self.calm + 1 if drift is not None and drift < self.drift_tol else 0
        self.prev = q_now.detach().clone()
        return drift

    @property
    def calm_enough(self) -> bool:
        return self.calm >= self.patience

    def restart(self) -> None:
        """The stability clock restarts (after a reset)."""
        self.prev, self.calm = None, 0

    def state_dict(self) -> dict:
        return {"prev": self.prev, "calm": self.calm}

    def load_state_dict(self, s: dict) -> None:
        self.prev, self.calm = s["prev"], s["calm"]


def passes(j_learner: float, j_anchor: float, margin: float) -> bool:
    """The evaluation verdict: ``J(L) >= J(A) - margin * |J(A)|``."""
    if not np.isfinite(j_learner):
        return False
    if not np.isfinite(j_anchor):
        return True
    return j_learner >= j_anchor - margin * abs(j_anchor)


class Switch:
    """The switch's state: the stability monitor, the fixed probe set and whether the learner
    has been judged stable (its critic then selects)."""

    def __init__(self, drift_tol: float, patience: int, probe_size: int) -> None:
        self.monitor = StabilityMonitor(drift_tol, patience)
        self.probe_size = probe_size
        self.probe: tuple[torch.Tensor, torch.Tensor] | None = None
        """Probe observations ``[P, obs_dim]`` and the learner's actions there when drawn."""
        self.stable = False

    def probe_values(
        self, learner: Agent, offline: ReplayBuffer, online: ReplayBuffer, rng: np.random.Generator
    ) -> torch.Tensor:
        """The learner critic's values on the probe set (mean over members), ``[P]``. The set
        is drawn at the first check, half offline and half online states (with ``rng``),
        with the learner's deterministic actions there, and kept."""
        if self.probe is None:
            n_offline = self.probe_size // 2
            n_online = min(self.probe_size - n_offline, len(online))
            states = [offline.obs[offline.indices(n_offline, rng)]]
            if n_online:
                states.append(online.obs[online.indices(n_online, rng)])
            probe_obs = torch.as_tensor(np.concatenate(states))
            self.probe = (probe_obs, learner.policy_action(probe_obs, deterministic=True))
        return learner.q_values(*self.probe).mean(0).cpu()

    def check(
        self, step: int, probe_values: torch.Tensor, judge: Callable[[], tuple[str, float, float]]
    ) -> dict[str, Any]:
        """One stability check at ``step``: the drift of ``probe_values``; once calm for
        ``patience`` checks, ``judge()`` gives the evaluation's ``(verdict, J(A), J(L))``
        and a ``stable`` verdict switches. Returns the check's row (``checks.csv``)."""
        drift = self.monitor.check(probe_values)
        row = {
            "step": step,
            "drift": drift,
            "calm": self.monitor.calm,
            "j_anchor": None,
            "j_learner": None,
            "verdict": "unstable",
        }
        if self.monitor.calm_enough:
            verdict, j_anchor, j_learner = judge()
            row.update(j_anchor=j_anchor, j_learner=j_learner, verdict=verdict)
            self.stable = verdict == "stable"
        return row

    def restart(self) -> None:
        """The stability clock restarts (after a reset): the anchor's critic selects again."""
        self.monitor.restart()
        self.stable = False

    def state_dict(self) -> dict[str, Any]:
        return {"monitor": self.monitor.state_dict(), "probe": self.probe, "stable": self.stable}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.monitor.load_state_dict(state["monitor"])
        self.probe, self.stable = state["probe"], state["stable"]
