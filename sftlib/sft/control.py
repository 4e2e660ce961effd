"""Who acts during fine-tuning: one object per variant, behind one small protocol.

The fine-tuning loop (:mod:`sftlib.training.finetune`) asks a control which action to execute
(:meth:`Control.act`) and tells it what happened: the updates of a step are done
(:meth:`Control.review`), a training episode ended (:meth:`Control.episode_ended`). Each
control owns its decisions, its state and its checkpoint state; the loop holds no variant
checks. Implementations: :class:`LearnerAlone` (``direct``), :class:`Warmup` (``warmup``),
:class:`PolicyExpansion` (``pex``), and SFT's two controls: per-state selection
(:class:`sftlib.sft.state_control.StateSelection`) and one policy per training episode
(:class:`sftlib.sft.episode_control.EpisodeSelection`). Adding a way of choosing who acts is
one class here (or beside), its entry in ``CONTROL_CLASSES``
(:mod:`sftlib.training.seed_run`) and the variants table (:mod:`sftlib.variants`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from sftlib.agents import Agent, agent_from_state
from sftlib.agents.seeds import bind_seed, bound_seeds, stack_agents
from sftlib.config import FinetuneConfig, SFTConfig
from sftlib.data.buffer import ReplayBuffer
from sftlib.data.rollouts import StackedPolicy
from sftlib.sft.fqe import FQE
from sftlib.sft.policy_evaluation import POLICIES as ACTORS
from sftlib.sft.selection import Selection, pick, select_actions


class Journal(Protocol):
    """Where a control records what it decided (the run's event and check logs)."""

    def add_event(self, event: str, detail: str) -> None: ...

    def add_check(self, row: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class RunParts:
    """What a control may use of its fine-tuning run."""

    config: FinetuneConfig
    offline: ReplayBuffer
    """The offline transitions."""
    online: ReplayBuffer
    """The online replay buffer (filled as the run explores)."""
    rng: np.random.Generator
    """The run's generator (its batches, the probe set)."""
    offline_state: dict[str, Any]
    """The pretrained agent's state."""


class Control:
    """Who acts. The default answers are those of a learner acting alone."""

    def __init__(self, learner: Agent) -> None:
        self.learner = learner
        """The learner (in a batched run, bound to its seed's slice of the stacked learner)."""

    @classmethod
    def for_run(cls, learner: Agent, run: RunParts) -> Control:
        """The control of a fine-tuning run whose parts are ``run``."""
        return cls(learner)

    def act(self, obs: np.ndarray, deterministic: bool) -> tuple[np.ndarray, str]:
        """The action to execute at raw observation ``obs`` and the name of the policy that
        proposed it (``"anchor"`` or ``"learner"``)."""
        raise NotImplementedError

    @classmethod
    def act_side_by_side(
        cls,
        controls: Sequence[Control],
        stack: Agent,
        obs: Sequence[np.ndarray],
        own: Callable[[int], AbstractContextManager[None]],
    ) -> list[tuple[np.ndarray, str]]:
        """The training actions of several seeds' controls of this class at one step;
        ``stack`` is their stacked learner, ``own(slot)`` puts seed ``slot``'s global random
        state in place. By default each control acts alone, in its own random state."""
        actions = []
        for slot, (control, observation) in enumerate(zip(controls, obs, strict=True)):
            with own(slot):
                actions.append(control.act(observation, deterministic=False))
        return actions

    @classmethod
    def executed_side_by_side(
        cls, controls: Sequence[Control], stack: Agent
    ) -> StackedPolicy | None:
        """The executed policies of several seeds' controls of this class, as they are now,
        as one deterministic policy: its evaluation is their executed scores. ``stack`` is
        their stacked learner (for one seed, its learner). ``None``: every seed's executed
        policy is its learner (the default)."""
        return None

    def anchor_agent(self) -> Agent | None:
        """The frozen anchor, evaluated alone to judge the control's decisions (``None``:
        the variant has none)."""
        return getattr(self, "anchor", None)

    def fqe_critics(self) -> dict[str, FQE]:
        """FQE critics by policy name, trained by the loop (none by default)."""
        return {}

    def fqe_policies(self) -> dict[str, Agent]:
        """The policy each FQE critic evaluates, by name."""
        return {}

    def fqe_due(self, step: int) -> bool:
        """Whether the FQE critics take a gradient step at ``step``."""
        return False

    def learns_at(self, step: int) -> bool:
        """Whether the learner takes its gradient updates at ``step`` (every step by default)."""
        return True

    def review(self, step: int, episode_start: np.ndarray, journal: Journal) -> None:
        """After the updates of step ``step``: checks, switches, resets, as scheduled.
        ``episode_start`` is the running episode's first observation."""

    def train_metrics(self, episode_start: np.ndarray) -> dict[str, float]:
        """The control's metrics for the training log at an evaluation."""
        return {"sft/stable": 0.0}

    def episode_ended(
        self, start: np.ndarray, rewards: list[float], actors: list[str], journal: Journal
    ) -> None:
        """A training episode ended: its first observation, rewards and acting policies."""

    def state_dict(self) -> dict[str, Any]:
        """Everything the control needs to continue bit for bit."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""


def stacked_anchors(controls: Sequence[Control]) -> Agent:
    """The anchors of ``controls`` (the seeds of one batched run, in order) as one frozen
    stacked agent, each anchor bound to its slice (weights and generator, as the stacked
    learner binds the seeds' learners). Kept on the first control; built again when an anchor
    was replaced (an anchor update, a restored checkpoint)."""
    anchors = [control.anchor for control in controls]
    cached = getattr(controls[0], "_anchor_stack", None)
    if cached is not None and all(a is b for a, b in zip(cached[0], anchors, strict=True)):
        if all(bound_seeds(anchors, cached[1])):
            return cached[1]
    with torch.random.fork_rng(devices=[]):  # building draws initial weights: no seed's draws
        stack = stack_agents(anchors)
    for module in [*stack.modules().values(), *stack.targets.values()]:
        module.requires_grad_(False)
    stack.optimizers = {}
    for slot, anchor in enumerate(anchors):
        bind_seed(anchor, stack, slot)
    controls[0]._anchor_stack = (anchors, stack)
    return stack


def anchors_side_by_side(controls: Sequence[Control]) -> Agent:
    """What calls every seed's anchor at once: the one anchor of one seed, or
    :func:`stacked_anchors`."""
    return controls[0].anchor if len(controls) == 1 else stacked_anchors(controls)


def critic_scores(
    critics: set[str],
    anchors: Agent,
    stack: Agent,
    observation: torch.Tensor,
    candidates: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """The scores ``[S, n_critics, B * 2]`` (on the CPU) of every seed's two candidates
    ``[S, B, 2, act_dim]`` at its raw observations ``[S, B, obs_dim]`` by each of ``critics``
    (``"anchor"``: the anchors' critics, ``"learner"``: the learners'): one call of each
    stacked critic for every seed, the candidates of a state side by side."""
    states = observation.repeat_interleave(2, 1)  # [S, B * 2, obs_dim]: one per candidate
    actions = candidates.flatten(1, 2)
    return {
        critic: agent.q_values(states, actions).cpu()
        for critic, agent in zip(ACTORS, (anchors, stack), strict=True)
        if critic in critics
    }


class LearnerAlone(Control):
    """``direct``: plain fine-tuning of the base algorithm; the learner acts alone."""

    def act(self, obs: np.ndarray, deterministic: bool) -> tuple[np.ndarray, str]:
        observation = torch.as_tensor(obs, dtype=torch.float32)
        action = self.learner.policy_action(observation[None], deterministic)[0]
        return action.cpu().numpy(), "learner"

    @classmethod
    def act_side_by_side(cls, controls, stack, obs, own) -> list[tuple[np.ndarray, str]]:
        """One call of the stacked policy for every seed (each seed's noise is its own)."""
        actions = stack.act_per_seed(np.stack(obs), deterministic=False)
        return [(action, "learner") for action in actions]


class Warmup(LearnerAlone):
    """``warmup`` (WSRL, Zhou et al.): the frozen offline policy collects the first
    ``warmup_steps`` with no update, then the learner fine-tunes (on online data alone: the
    variant's ``online_data``). Until the first update the learner is the offline policy, so
    it acts throughout; the warm-up's steps are labelled ``anchor`` (the frozen policy)."""

    def __init__(self, learner: Agent, warmup_steps: int) -> None:
        super().__init__(learner)
        self.warmup_steps = warmup_steps
        self.reviewed = 0
        """The last step whose updates are done (:meth:`review`)."""

    @classmethod
    def for_run(cls, learner: Agent, run: RunParts) -> Warmup:
        return cls(learner, run.config.sft.warmup_steps)

    @property
    def warming_up(self) -> bool:
        """Whether the step being taken is one of the warm-up's."""
        return self.reviewed < self.warmup_steps

    def act(self, obs: np.ndarray, deterministic: bool) -> tuple[np.ndarray, str]:
        action, _ = super().act(obs, deterministic)
        return action, "anchor" if self.warming_up else "learner"

    @classmethod
    def act_side_by_side(cls, controls, stack, obs, own) -> list[tuple[np.ndarray, str]]:
        actor = "anchor" if controls[0].warming_up else "learner"
        return [
            (action, actor) for action, _ in super().act_side_by_side(controls, stack, obs, own)
        ]

    def learns_at(self, step: int) -> bool:
        return step > self.warmup_steps

    def review(self, step: int, episode_start: np.ndarray, journal: Journal) -> None:
        if step == self.warmup_steps:
            journal.add_event("warmup_end", f"{step} steps by the offline policy")
        self.reviewed = step

    def state_dict(self) -> dict[str, Any]:
        return {"reviewed": self.reviewed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.reviewed = state["reviewed"]


class PolicyExpansion(Control):
    """``pex``: the frozen offline policy joins the learner; at every state the selector
    critic (the learner's) chooses between the two policies' candidate actions."""

    def __init__(self, learner: Agent, config: SFTConfig) -> None:
        super().__init__(learner)
        self.config = config
        self.anchor = learner.snapshot()
        """The frozen policy (and critic) beside the learner."""

    @classmethod
    def for_run(cls, learner: Agent, run: RunParts) -> PolicyExpansion:
        return cls(learner, run.config.sft)

    @property
    def selector(self) -> Agent:
        """The agent whose critic chooses the executed action."""
        return self.learner

    @property
    def policies(self) -> dict[str, Agent]:
        """Anchor and learner by name."""
        return {"anchor": self.anchor, "learner": self.learner}

    def selection(self, deterministic: bool) -> Selection:
        config = self.config
        return Selection(
            config.rule_for(deterministic), config.beta, config.incumbent_margin, config.lcb_k
        )

    def allowed(self, candidates: torch.Tensor) -> torch.Tensor | None:
        """Which of ``candidates`` (``[B, 2, act_dim]``) the selector may choose, ``[B, 2]``
        (``None``: all)."""
        return None

    def choose(self, obs: np.ndarray, deterministic: bool) -> tuple[np.ndarray, np.ndarray]:
        """The selected actions ``[B, act_dim]`` at raw observations ``[B, obs_dim]`` and who
        proposed each (``[B]``: 0 the anchor, 1 the learner), in one call of each policy and
        of the selector critic."""
        observation = torch.as_tensor(obs, dtype=torch.float32)
        candidates = torch.stack(
            [
                self.anchor.policy_action(observation, deterministic),
                self.learner.policy_action(observation, deterministic),
            ],
            1,
        )
        actions, index, _ = select_actions(
            observation,
            candidates,
            self.selector,
            self.selection(deterministic),
            self.allowed(candidates),
        )
        return actions.cpu().numpy(), index.numpy()

    def act(self, obs: np.ndarray, deterministic: bool) -> tuple[np.ndarray, str]:
        actions, index = self.choose(obs[None], deterministic)
        return actions[0], ACTORS[int(index[0])]

    @property
    def probing(self) -> bool:
        """Whether the learner acts alone in the running training episode (never here)."""
        return False

    @classmethod
    def act_side_by_side(cls, controls, stack, obs, own) -> list[tuple[np.ndarray, str]]:
        """Every seed's training action from one call of the stacked anchors, one of the
        stacked learner and one of each stacked critic that selects for some seed; then each
        seed picks from its scores in its own random state. A probing seed takes its learner's
        action, and its anchor draws no noise: each seed's draws are those of its own run."""
        if len(controls) == 1:
            return super().act_side_by_side(controls, stack, obs, own)
        anchors = stacked_anchors(controls)
        probing = [control.probing for control in controls]
        kept = [
            g.get_state() if p else None for g, p in zip(anchors.generators, probing, strict=True)
        ]
        observation = torch.as_tensor(np.stack(obs), dtype=torch.float32)[:, None]  # [S, 1, o]
        candidates = torch.stack(
            [anchors.policy_action(observation, False), stack.policy_action(observation, False)],
            2,
        ).cpu()  # [S, 1, 2, act_dim]: one copy to the host for every seed
        for generator, state in zip(anchors.generators, kept, strict=True):
            if state is not None:
                generator.set_state(state)
        # Whose critic selects for each seed that selects (a probing seed does not).
        critics = [
            None if p else ACTORS[c.selector is not c.anchor]
            for c, p in zip(controls, probing, strict=True)
        ]
        scores = critic_scores(set(critics), anchors, stack, observation, candidates)
        actions = []
        for slot, control in enumerate(controls):
            if probing[slot]:
                actions.append((candidates[slot, 0, 1].numpy(), "learner"))
                continue
            mine = candidates[slot]
            with own(slot):
                action, index, _ = pick(
                    scores[critics[slot]][slot].unflatten(-1, mine.shape[:2]), mine,
                    control.selection(False), control.allowed(mine),
                )  # fmt: skip
            actions.append((action[0].numpy(), ACTORS[int(index[0])]))
        return actions

    @classmethod
    def executed_side_by_side(cls, controls, stack) -> StackedPolicy:
        """Every seed's deterministic selection (by its selecting critic, within its support
        check) from one call of the stacked anchors, one of the stacked learner and one of each
        stacked critic that selects for some seed, per step."""
        anchors = anchors_side_by_side(controls)
        critics = [ACTORS[c.selector is not c.anchor] for c in controls]

        def act(obs: np.ndarray) -> np.ndarray:
            observation = torch.as_tensor(obs, dtype=torch.float32)  # [S, B, obs_dim]
            candidates = torch.stack(
                [anchors.policy_action(observation, True), stack.policy_action(observation, True)],
                2,
            ).cpu()  # [S, B, 2, act_dim]
            scores = critic_scores(set(critics), anchors, stack, observation, candidates)
            actions = []
            for slot, control in enumerate(controls):
                mine = candidates[slot]
                action, _, _ = pick(
                    scores[critics[slot]][slot].unflatten(-1, mine.shape[:2]), mine,
                    control.selection(True), control.allowed(mine),
                )  # fmt: skip
                actions.append(action)
            return torch.stack(actions).numpy()

        return act

    def state_dict(self) -> dict[str, Any]:
        return {"anchor": self.anchor.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.anchor = agent_from_state(state["anchor"], self.learner.device).snapshot()
