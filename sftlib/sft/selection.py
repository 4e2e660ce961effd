"""Action selection: the selector critic scores the anchor's and the learner's candidate
actions at a state and one of them is executed (spec: "Action selection"), with the support
check that keeps the anchor's critic from judging actions outside its data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from sftlib.agents import Agent
from sftlib.config import SELECTIONS
from sftlib.data.buffer import ReplayBuffer


@dataclass(frozen=True)
class Selection:
    """How the selector critic picks among candidates (:func:`select_action`)."""

    rule: str = "argmax"
    """``argmax``, ``softmax`` or ``lcb``."""
    beta: float = 1.0
    """Inverse temperature of ``softmax``."""
    incumbent_margin: float = 0.0
    """``argmax``/``softmax``: the anchor's score is raised by this fraction of ``|Q_0|``."""
    lcb_k: float = 1.0
    """``lcb``: width of the lower confidence bound, in ensemble standard deviations."""

    def __post_init__(self) -> None:
        if self.rule not in SELECTIONS:
            raise ValueError(f"selection must be one of {list(SELECTIONS)}, got {self.rule!r}")


@torch.no_grad()
def select_action(
    obs: torch.Tensor,
    candidates: torch.Tensor,
    selector: Agent,
    selection: Selection,
    allowed: torch.Tensor | None = None,
) -> tuple[torch.Tensor, int, torch.Tensor]:
    """Score ``candidates`` (``[K, act_dim]``, candidate 0 the anchor's) at one raw
    observation ``obs`` (``[obs_dim]``) with the selector critic and pick one: one state of
    :func:`select_actions`. Returns ``(action [act_dim], index, scores [K])``."""
    mask = None if allowed is None else allowed[None]
    actions, index, scores = select_actions(obs[None], candidates[None], selector, selection, mask)
    return actions[0], int(index[0]), scores[0]


@torch.no_grad()
def select_actions(
    obs: torch.Tensor,
    candidates: torch.Tensor,
    selector: Agent,
    selection: Selection,
    allowed: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Score ``candidates`` (``[B, K, act_dim]``, candidate 0 the anchor's) at raw
    observations ``obs`` (``[B, obs_dim]``) with the selector critic and pick one per state,
    in one critic call for all states.

    ``argmax`` takes the best by the minimum over the ensemble; ``softmax`` samples with
    probabilities ``softmax(beta * Q)`` (torch's RNG, state after state); ``lcb`` takes another
    candidate than the anchor's only if the lower confidence bound of its advantage over the
    anchor's candidate is positive: ``mean_i(d_i) - lcb_k * std_i(d_i) > 0`` with ``d_i =
    Q_i(s, a) - Q_i(s, a_0)`` per ensemble member ``i`` (a paired comparison: the same member
    scores both), then the one with the largest bound. ``incumbent_margin``
    (``argmax``/``softmax``) raises the anchor's score by ``incumbent_margin * |Q_0|`` first.
    ``allowed`` (``[B, K]`` bools; the anchor's candidate always is) excludes candidates, e.g.
    outside the anchor's support (:func:`in_support`). Returns ``(actions [B, act_dim],
    indices [B], scores [B, K])`` with the critic's unmodified scores (ensemble minimum).
    """
    b, k = candidates.shape[:2]
    members = selector.q_values(obs.repeat_interleave(k, 0), candidates.reshape(b * k, -1))
    return pick(members.cpu().reshape(-1, b, k), candidates, selection, allowed)


def pick(
    members: torch.Tensor,
    candidates: torch.Tensor,
    selection: Selection,
    allowed: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The choice of :func:`select_actions` from the critic's scores already computed:
    ``members`` (``[n_critics, B, K]``, on the CPU) score ``candidates`` (``[B, K,
    act_dim]``). Batched runs score every seed's candidates in one critic call, then each
    seed picks in its own random state."""
    b, k = candidates.shape[:2]
    scores = members.min(0).values
    excluded = torch.zeros(b, k, dtype=torch.bool) if allowed is None else ~allowed.cpu()
    excluded[:, 0] = False
    if selection.rule == "lcb":
        advantage = members[..., 1:] - members[..., :1]  # [n, B, K - 1]
        lower = advantage.mean(0) - selection.lcb_k * advantage.std(0, unbiased=False)
        lower[excluded[:, 1:]] = -torch.inf
        best = torch.argmax(lower, -1)
        clear = lower.gather(1, best[:, None])[:, 0] > 0.0
        index = torch.where(clear, best + 1, 0)
    else:
        biased = scores.clone()
        biased[:, 0] += selection.incumbent_margin * scores[:, 0].abs()
        biased[excluded] = -torch.inf
        if selection.rule == "argmax":
            index = torch.argmax(biased, -1)
        else:
            top = biased.max(-1, keepdim=True).values
            probabilities = F.softmax(selection.beta * (biased - top), -1)
            index = torch.stack([torch.multinomial(row, 1)[0] for row in probabilities])
    rows = torch.arange(b, device=candidates.device)
    return candidates[rows, index.to(candidates.device)], index, scores


def action_spread(policy: Agent, offline: ReplayBuffer, n_states: int = 10_000) -> torch.Tensor:
    """Per action dimension, the standard deviation of the dataset's actions around
    ``policy``'s deterministic actions: how wide the data are where ``policy`` acts, ``[act_dim]``.

    Computed on ``n_states`` evenly spaced offline transitions (no random draw); floored at
    1e-3 so that a dimension the data never vary does not divide by zero.
    """
    rows = np.linspace(0, len(offline) - 1, min(n_states, len(offline))).astype(np.int64)
    obs = torch.as_tensor(offline.obs[rows])
    residual = torch.as_tensor(offline.actions[rows]) - policy.policy_action(obs, True).cpu()
    return residual.std(0).clamp_min(1e-3)


def in_support(
    action: torch.Tensor, anchor_action: torch.Tensor, spread: torch.Tensor, k: float
) -> bool:
    """Whether ``action`` lies within ``k`` of ``anchor_action``: the root mean square over
    dimensions of ``(action - anchor_action) / spread`` is at most ``k``."""
    return bool(within_support(action[None], anchor_action[None], spread, k)[0])


def within_support(
    actions: torch.Tensor, anchor_actions: torch.Tensor, spread: torch.Tensor, k: float
) -> torch.Tensor:
    """:func:`in_support` for a batch, ``[B, act_dim]`` each: ``[B]`` bools."""
    z = (actions.cpu() - anchor_actions.cpu()) / spread
    return z.pow(2).mean(-1).sqrt() <= k
