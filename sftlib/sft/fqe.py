"""Fitted Q Evaluation: a separate critic per policy, regressed on the replay data with no
maximisation, part of the comprehensive policy evaluation; several train as one stack."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import torch

from sftlib.agents import Agent
from sftlib.agents.base import adam
from sftlib.agents.networks import EnsembleQ, soft_update
from sftlib.agents.seeds import bind_slice, seed_slots, slice_tree, stack_trees
from sftlib.data.buffer import Batch, Normalizer


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


def fqe_critics(learner: Agent, lr: float, names: Sequence[str]) -> dict[str, FQE]:
    """One FQE critic per policy name, each warm-started from ``learner``'s critic, with its
    normaliser, discount and ``tau``."""
    c = learner.config
    return {
        name: FQE(learner.critic, learner.normalizer, c.discount, c.tau, lr, learner.device)
        for name in names
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

    def update(
        self,
        batches: Batch | Sequence[Batch],
        policies: Sequence[Agent],
        stacks: Sequence[Agent] = (),
    ) -> torch.Tensor:
        """One regression step of every member, member ``i`` on ``batches[i]`` (one batch per
        member, or their stack ``[members, B, ...]``) towards ``policies[i]``'s values;
        returns the losses (detached, ``[members]``).

        ``stacks``: stacked agents whose seeds some of ``policies`` are bound to (the batched
        run's learners, its anchors); the next actions of those members come from one call
        of the stack instead of one call each."""
        batch = batches if isinstance(batches, Batch) else Batch.stack(list(batches))
        if len(batch.obs) != len(self.members) or len(policies) != len(self.members):
            raise ValueError(
                "StackedFQE.update needs one batch and one policy per member "
                f"({len(self.members)}), got {len(batch.obs)} and {len(policies)}"
            )
        batch = batch.to(self.device)
        return _regress(self, batch, next_actions(batch.next_obs, policies, stacks))

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


@torch.no_grad()
def next_actions(
    next_obs: torch.Tensor, policies: Sequence[Agent], stacks: Sequence[Agent] = ()
) -> torch.Tensor:
    """Each member's deterministic action at its next observations, ``[members, B, act]``
    (``next_obs``: ``[members, B, obs]``): one call of each of ``stacks`` for the members
    whose policies are its seeds (:func:`~sftlib.agents.seeds.seed_slots`), one call each
    for the others. The numbers are the same either way: a stacked layer computes each seed
    as alone."""
    actions: list[torch.Tensor | None] = [None] * len(policies)
    for stack in stacks:
        members = seed_slots(stack, policies)
        if members is None:
            continue
        stacked = stack.policy_action(next_obs[members], deterministic=True)
        for member, action in zip(members, stacked, strict=True):
            actions[member] = action
    for member, policy in enumerate(policies):
        if actions[member] is None:
            actions[member] = policy.policy_action(next_obs[member], deterministic=True)
    return torch.stack(actions)  # type: ignore[arg-type]


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
