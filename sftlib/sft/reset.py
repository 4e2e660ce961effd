"""Periodic reset and anchor update (spec: "Periodic reset"). Every ``reset_every`` steps
from ``reset_start``: the anchor becomes the better, by the comprehensive evaluation, of the
current anchor and a frozen copy of the learner; the learner's networks are re-initialised
(:meth:`sftlib.agents.base.Agent.reset_networks`: ``last`` layers, ``full`` networks or the
``offline`` weights, with shrink-and-perturb), its optimiser state and targets with them;
and the stability clock restarts, so the anchor's critic selects again until the learner
has recovered. :class:`sftlib.sft.state_control.StateSelection` carries these steps out.
"""

from __future__ import annotations

import numpy as np


def reset_due(step: int, every: int, start: int, online_steps: int) -> bool:
    """Whether the learner resets after step ``step``: every ``every`` steps from ``start``,
    never at the last step (a reset at the end would leave the learner untrained)."""
    return step >= start and step % every == 0 and step < online_steps


def improves(j_learner: float, j_anchor: float, margin: float) -> bool:
    """The anchor-update verdict: ``J(L) > J(A) + margin * |J(A)|`` (clearly better).

    The learner replaces the anchor only when clearly better: its own critic tends to
    overrate its own policy, and a worse anchor would reach the executed policy.
    """
    if not np.isfinite(j_learner):
        return False
    if not np.isfinite(j_anchor):
        return True
    return j_learner > j_anchor + margin * abs(j_anchor)
