"""The SFT mechanisms, each a small named piece: action selection by a selector critic,
stability of the learner's critic, comprehensive policy evaluation (with FQE) and the
pessimistic aggregate. The loop that drives them is :mod:`sftlib.training.finetune`.

Policy names used throughout: ``"anchor"`` (frozen snapshot, starts as the offline pair)
and ``"learner"`` (trained online).
"""

from __future__ import annotations

import copy
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from sftlib.agents import Agent
from sftlib.agents.base import adam
from sftlib.agents.networks import EnsembleQ, soft_update
from sftlib.agents.seeds import bind_slice, slice_tree, stack_trees
from sftlib.data.buffer import Batch, Normalizer, ReplayBuffer

POLICIES = ("anchor", "learner")
EPS = 1e-6


# --- action selection -----------------------------------------------------------------
@torch.no_grad()
def select_action(
    obs: torch.Tensor,
    candidates: torch.Tensor,
    selector: Agent,
    rule: str = "argmax",
    beta: float = 1.0,
    incumbent_margin: float = 0.0,
    lcb_k: float = 1.0,
    allowed: torch.Tensor | None = None,
) -> tuple[torch.Tensor, int, torch.Tensor]:
    """Score ``candidates`` (``[K, act_dim]``, candidate 0 the anchor's) at one raw
    observation ``obs`` (``[obs_dim]``) with the selector critic and pick one.

    ``argmax`` takes the best by the minimum over the ensemble; ``softmax`` samples with
    probabilities ``softmax(beta * Q)`` (torch's RNG); ``lcb`` takes another candidate than
    the anchor's only if the lower confidence bound of its advantage over the anchor's
    candidate is positive: ``mean_i(d_i) - lcb_k * std_i(d_i) > 0`` with ``d_i = Q_i(s, a) -
    Q_i(s, a_0)`` per ensemble member ``i`` (a paired comparison: the same member scores
    both), then the one with the largest bound. ``incumbent_margin`` (``argmax``/``softmax``)
    raises the anchor's score by ``incumbent_margin * |Q_0|`` first. ``allowed`` (``[K]``
    bools; the anchor's candidate always is) excludes candidates, e.g. outside the anchor's
    support (:func:`in_support`). Returns ``(action [act_dim], index, scores [K])`` with the
    critic's unmodified scores (ensemble minimum).
    """
    k = candidates.shape[0]
    members = selector.q_values(obs.expand(k, -1), candidates).cpu()  # [n, K]
    scores = members.min(0).values
    excluded = torch.zeros(k, dtype=torch.bool) if allowed is None else ~allowed.cpu()
    excluded[0] = False
    if rule == "lcb":
        advantage = members[:, 1:] - members[:, :1]  # [n, K - 1]
        lower = advantage.mean(0) - lcb_k * advantage.std(0, unbiased=False)
        lower[excluded[1:]] = -torch.inf
        best = int(torch.argmax(lower))
        idx = best + 1 if float(lower[best]) > 0.0 else 0
        return candidates[idx], idx, scores
    biased = scores.clone()
    biased[0] += incumbent_margin * scores[0].abs()
    biased[excluded] = -torch.inf
    if rule == "argmax":
        idx = int(torch.argmax(biased))
    elif rule == "softmax":
        idx = int(torch.multinomial(F.softmax(beta * (biased - biased.max()), 0), 1))
    else:
        raise ValueError(f"selection must be 'argmax', 'softmax' or 'lcb', got {rule!r}")
    return candidates[idx], idx, scores


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
    z = (action.cpu() - anchor_action.cpu()) / spread
    return float(z.pow(2).mean().sqrt()) <= k


# --- stability of the learner's critic --------------------------------------------------
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


# --- comprehensive policy evaluation -----------------------------------------------------
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
class Episode:
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

    def combine(self, estimator: str, kappa: float) -> dict[str, float]:
        """``J(pi)`` per policy. ``q``/``fqe``: pessimistic over their members; ``mc``: the
        Monte-Carlo estimate (``-inf`` where none); ``cpe``: bias-corrected ``q`` and
        ``fqe`` values plus ``mc``, aggregated pessimistically."""
        out: dict[str, float] = {}
        for p in self.q:
            if estimator == "q":
                out[p] = pessimistic(self.q[p], kappa)
            elif estimator == "fqe":
                out[p] = pessimistic(self.fqe[p], kappa)
            elif estimator == "mc":
                out[p] = -np.inf if self.mc.get(p) is None else float(self.mc[p])
            elif estimator == "cpe":
                out[p] = pessimistic(self._cpe_values()[p], kappa)
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
            parts = [q[p]] + ([fqe[p]] if fqe else [])
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


class ComprehensiveEvaluator:
    """Keeps the recent online episodes and computes every estimator of ``J(pi)``.

    Decisions see only training data: the episodes the agent itself collected.
    """

    def __init__(self, window: int, discount: float) -> None:
        self.episodes: deque[Episode] = deque(maxlen=window)
        self.discount = discount

    def add_episode(self, start_obs: np.ndarray, rewards: list[float], executed: list[str]) -> None:
        g = float(np.sum(np.asarray(rewards) * self.discount ** np.arange(len(rewards))))
        steps = {p: executed.count(p) for p in POLICIES}
        self.episodes.append(Episode(np.asarray(start_obs, np.float32), g, steps))

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
    ) -> Estimates:
        s0 = self.start_states(current_start)
        q, f = {}, {}
        for name, pi in policies.items():
            a0 = pi.policy_action(s0, deterministic=True)
            # Cross-evaluation: every critic (anchor's and learner's), every member.
            q[name] = torch.cat([c.q_values(s0, a0).mean(1) for c in critics]).cpu().numpy()
            if fqe:
                f[name] = fqe[name].values(s0, a0).mean(1).cpu().numpy()
        est = Estimates(q=q, fqe=f)
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
        return {"episodes": list(self.episodes)}

    def load_state_dict(self, s: dict) -> None:
        self.episodes.clear()
        self.episodes.extend(s["episodes"])


# --- Fitted Q Evaluation ------------------------------------------------------------------
class FQE:
    """Fitted Q Evaluation of a fixed policy: a separate critic regressed on
    ``r + gamma (1 - d) Q_target(s', pi(s'))`` per member, with no maximisation, so it
    does not inherit the actor's own overestimation. Warm-started from a given critic.

    Several FQE critics (a batched run's seeds and policies) can train as one
    :class:`StackedFQE`; each stays usable as itself (values, state, :meth:`assign`).
    """

    def __init__(
        self,
        init_critic: EnsembleQ,
        normalizer: Normalizer,
        discount: float,
        tau: float,
        lr: float,
        device: torch.device | str = "cpu",
    ) -> None:
        self.critic = copy.deepcopy(init_critic).to(device).requires_grad_(True)
        self.target = copy.deepcopy(self.critic).requires_grad_(False)
        self.normalizer, self.discount, self.tau, self.lr = normalizer, discount, tau, lr
        self.device = torch.device(device)
        self.optimizer = adam(list(self.critic.parameters()), lr)
        self.stack: StackedFQE | None = None
        """The stack this critic trains in (set by :class:`StackedFQE`), else ``None``."""
        self.slot = 0
        """This critic's entry in :attr:`stack`."""

    def update(self, batch: Batch, policy: Agent) -> torch.Tensor:
        """One regression step towards ``policy``'s values; returns the loss (detached, ``[1]``)."""
        if self.stack is not None:
            raise RuntimeError(
                "this FQE critic trains in a StackedFQE: update it through the stack"
            )
        batch = policy.stacked(batch)
        with torch.no_grad():
            next_action = policy.policy_action(batch.next_obs, deterministic=True)
        return _regress(self, batch, next_action)

    @torch.no_grad()
    def values(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """``[members, B]`` values of raw observations and actions ``[B, ...]``."""
        obs, actions = obs.to(self.device).unsqueeze(0), actions.to(self.device).unsqueeze(0)
        return self.critic(self.normalizer(obs), actions)[0]

    def assign(self, other: FQE) -> None:
        """Take ``other``'s critic, target and Adam state, in place (at an anchor update the
        anchor's FQE critic continues from the learner's)."""
        if self.stack is not None and self.stack is other.stack:
            self.stack.copy_slot(other.slot, self.slot)
        else:
            self.load_state_dict(other.state_dict())

    def state_dict(self) -> dict:
        """Copies of the critic's, the target's and Adam's state (from the stack's slot when
        stacked): the state of this critic alone."""
        if self.stack is None:
            optimizer = self.optimizer.state_dict()
        else:
            optimizer = self.stack.optimizer_state(self.slot)
        return {
            "critic": {k: v.clone() for k, v in self.critic.state_dict().items()},
            "target": {k: v.clone() for k, v in self.target.state_dict().items()},
            "optimizer": optimizer,
        }

    def load_state_dict(self, s: dict) -> None:
        if self.stack is not None:
            raise RuntimeError("load an FQE critic's state before it joins a StackedFQE")
        self.critic.load_state_dict(s["critic"])
        self.target.load_state_dict(s["target"])
        self.optimizer.load_state_dict(s["optimizer"])


def fqe_critics(learner: Agent, lr: float) -> dict[str, FQE]:
    """One FQE critic per policy (:data:`POLICIES`), each warm-started from ``learner``'s
    critic, with its normaliser, discount and ``tau``."""
    c = learner.config
    return {
        name: FQE(learner.critic, learner.normalizer, c.discount, c.tau, lr, learner.device)
        for name in POLICIES
    }


class StackedFQE:
    """Several FQE critics trained as one stack: one forward pass, backward pass and Adam step
    for all of them, instead of one each (a batched run's seeds times its two policies).

    Every member's numbers are those it would have trained to alone (stacked layers compute
    each entry as alone, the losses are summed, Adam is elementwise). The members stay the
    objects the runs hold: their critics and targets become views of their slices of the
    stack, so :meth:`FQE.values`, :meth:`FQE.state_dict` and :meth:`FQE.assign` work as
    before; their own optimisers are no longer used. Members must be alike (architecture,
    normaliser, discount, ``tau``, learning rate, device) and at the same Adam step.
    """

    def __init__(self, members: Sequence[FQE]) -> None:
        self.members = list(members)
        first = self.members[0]
        c = first.critic
        shape = (c.obs_dim, c.act_dim, c.hidden, c.n, c.seeds)
        for m in self.members:
            mc = m.critic
            alike = (
                (mc.obs_dim, mc.act_dim, mc.hidden, mc.n, mc.seeds) == shape
                and (m.discount, m.tau, m.lr, m.device)
                == (first.discount, first.tau, first.lr, first.device)
                and np.array_equal(m.normalizer.mean, first.normalizer.mean)
                and np.array_equal(m.normalizer.std, first.normalizer.std)
            )
            if not alike or m.stack is not None:
                raise ValueError(
                    "StackedFQE stacks FQE critics not yet in a stack and alike in everything "
                    "but their weights (architecture, normaliser, discount, tau, lr, device)"
                )
        count = len(self.members)
        self.normalizer, self.discount, self.tau = first.normalizer, first.discount, first.tau
        self.device = first.device
        with torch.device("meta"):  # no initialisation: it would draw from torch's generator
            critic = EnsembleQ(c.obs_dim, c.act_dim, c.hidden, c.n, count * c.seeds)
        self.critic = critic.to_empty(device=self.device)
        self.target = copy.deepcopy(self.critic).requires_grad_(False)
        self.critic.load_state_dict(stack_trees([m.critic.state_dict() for m in self.members]))
        self.target.load_state_dict(stack_trees([m.target.state_dict() for m in self.members]))
        self.optimizer = adam(list(self.critic.parameters()), first.lr)
        states = [m.optimizer.state_dict() for m in self.members]
        steps = {tuple(float(p["step"]) for p in s["state"].values()) for s in states}
        if len(steps) != 1:
            raise ValueError("the FQE critics of one stack must be at the same Adam step")
        self.optimizer.load_state_dict(stack_trees(states))
        for slot, member in enumerate(self.members):
            bind_slice(member.critic, self.critic, slot, count)
            bind_slice(member.target, self.target, slot, count)
            member.stack, member.slot = self, slot

    def _rows(self, slot: int) -> slice:
        size = self.critic.net.num // len(self.members)
        return slice(slot * size, (slot + 1) * size)

    def update(self, batches: Sequence[Batch], policies: Sequence[Agent]) -> torch.Tensor:
        """One regression step of every member, member ``i`` on ``batches[i]`` towards
        ``policies[i]``'s values; returns the losses (detached, ``[members]``)."""
        if len(batches) != len(self.members) or len(policies) != len(self.members):
            raise ValueError(
                "StackedFQE.update needs one batch and one policy per member "
                f"({len(self.members)}), got {len(batches)} and {len(policies)}"
            )
        batch = Batch.stack(list(batches)).to(self.device)
        with torch.no_grad():
            next_action = torch.cat(
                [
                    pi.policy_action(batch.next_obs[i : i + 1], deterministic=True)
                    for i, pi in enumerate(policies)
                ]
            )
        return _regress(self, batch, next_action)

    def optimizer_state(self, slot: int) -> dict:
        """Adam's state of member ``slot`` alone, in the layout of its own optimiser."""
        return slice_tree(self.optimizer.state_dict(), slot, len(self.members))

    @torch.no_grad()
    def copy_slot(self, source: int, dest: int) -> None:
        """Member ``dest`` takes member ``source``'s critic, target and Adam moments (the
        step count is the stack's)."""
        src, dst = self._rows(source), self._rows(dest)
        tensors = [*self.critic.parameters(), *self.target.parameters()]
        for state in self.optimizer.state.values():
            tensors += [state["exp_avg"], state["exp_avg_sq"]]
        for t in tensors:
            t[dst] = t[src]


def _regress(fqe: FQE | StackedFQE, batch: Batch, next_action: torch.Tensor) -> torch.Tensor:
    """One FQE regression step of ``fqe``'s critic (one or several stacked) on ``batch``
    (``[entries, B, ...]``) with the policies' next actions; the losses, ``[entries]``."""
    with torch.no_grad():
        next_q = fqe.target(fqe.normalizer(batch.next_obs), next_action)
        target = (
            batch.rewards.unsqueeze(1)
            + fqe.discount * (1.0 - batch.terminals.unsqueeze(1)) * next_q
        )
    q = fqe.critic(fqe.normalizer(batch.obs), batch.actions)
    loss = (q - target).pow(2).mean((1, 2))
    fqe.optimizer.zero_grad(set_to_none=True)
    loss.sum().backward()
    fqe.optimizer.step()
    soft_update(fqe.target, fqe.critic, fqe.tau)
    return loss.detach()


def passes(j_learner: float, j_anchor: float, margin: float) -> bool:
    """The evaluation verdict: ``J(L) >= J(A) - margin * |J(A)|``."""
    if not np.isfinite(j_learner):
        return False
    if not np.isfinite(j_anchor):
        return True
    return j_learner >= j_anchor - margin * abs(j_anchor)


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


def improves(j_learner: float, j_anchor: float, margin: float) -> bool:
    """The anchor-update verdict: ``J(L) > J(A) + margin * |J(A)|`` (clearly better)."""
    if not np.isfinite(j_learner):
        return False
    if not np.isfinite(j_anchor):
        return True
    return j_learner > j_anchor + margin * abs(j_anchor)
