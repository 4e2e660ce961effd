"""Several seeds of one agent as one stacked agent, and back.

A batched run trains ``K`` seeds of the same algorithm and parameters in one process: every
network of the ``K``-seed agent is a stack whose leading dimension holds the seeds (seed-major,
``K * m`` entries for a critic ensemble of ``m`` members). The state of seed ``k`` is the
``k``-th chunk of every stacked tensor; scalars (Adam's step count) and the normaliser are
shared. :func:`stack_states` and :func:`seed_state` convert between the state of a stacked
agent and the states of one-seed agents, which are exactly what a one-seed run writes.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from sftlib.agents.base import Agent

STACKED_KEYS = ("modules", "targets", "optimizers")
"""Parts of an agent state whose tensors are stacked over seeds."""


def _map_tensors(tree: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    if isinstance(tree, torch.Tensor):
        return fn(tree) if tree.ndim >= 1 else tree.clone()
    if isinstance(tree, dict):
        return {k: _map_tensors(v, fn) for k, v in tree.items()}
    if isinstance(tree, list | tuple):
        return type(tree)(_map_tensors(v, fn) for v in tree)
    return copy.deepcopy(tree)


def _zip_tensors(trees: Sequence[Any], fn: Callable[[list[torch.Tensor]], torch.Tensor]) -> Any:
    first = trees[0]
    if isinstance(first, torch.Tensor):
        return fn(list(trees)) if first.ndim >= 1 else first.clone()
    if isinstance(first, dict):
        return {k: _zip_tensors([t[k] for t in trees], fn) for k in first}
    if isinstance(first, list | tuple):
        return type(first)(_zip_tensors([t[i] for t in trees], fn) for i in range(len(first)))
    return copy.deepcopy(first)


def stack_trees(trees: Sequence[Any]) -> Any:
    """Several one-seed states (nested dicts and lists of tensors: modules', optimisers') as
    the state of their stack: every tensor concatenated along its first dimension; scalar
    tensors (Adam's step count) and everything else taken from the first."""
    return _zip_tensors(trees, torch.cat)


def slice_tree(tree: Any, index: int, count: int) -> Any:
    """Entry ``index`` of a stacked state of ``count`` entries (:func:`stack_trees`): the
    ``index``-th of ``count`` equal chunks of every tensor, copied; scalar tensors copied."""

    def chunk(tensor: torch.Tensor) -> torch.Tensor:
        size = tensor.shape[0] // count
        return tensor[index * size : (index + 1) * size].clone()

    return _map_tensors(tree, chunk)


def stack_states(states: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The state of a ``len(states)``-seed agent holding the given one-seed agent states."""
    if any(s.get("seeds", 1) != 1 for s in states):
        raise ValueError("stack_states takes one-seed agent states")
    stacked = copy.deepcopy({k: v for k, v in states[0].items() if k not in STACKED_KEYS})
    for key in STACKED_KEYS:
        stacked[key] = stack_trees([s[key] for s in states])
    stacked["generators"] = [g for s in states for g in s["generators"]]
    if "log_alpha" in states[0]:
        stacked["log_alpha"] = torch.cat([s["log_alpha"] for s in states])
    stacked["seeds"] = len(states)
    return stacked


def seed_state(state: dict[str, Any], index: int) -> dict[str, Any]:
    """The one-seed agent state of seed ``index`` of a stacked agent state."""
    seeds = state.get("seeds", 1)
    if not 0 <= index < seeds:
        raise IndexError(f"seed index {index} out of range for {seeds} seeds")
    single = copy.deepcopy({k: v for k, v in state.items() if k not in STACKED_KEYS})
    for key in STACKED_KEYS:
        single[key] = slice_tree(state[key], index, seeds)
    single["generators"] = [state["generators"][index].clone()]
    if "log_alpha" in state:
        single["log_alpha"] = slice_tree(state["log_alpha"], index, seeds)
    single["seeds"] = 1
    return single


def stack_agents(agents: Sequence[Agent]) -> Agent:
    """One stacked agent holding the given one-seed agents (same class, config, normaliser)."""
    first = agents[0]
    if len(agents) == 1:
        return first
    stacked = type(first)(
        first.obs_dim, first.act_dim, first.config, first.normalizer, first.device, len(agents)
    )
    stacked.load_state_dict(stack_states([a.state_dict() for a in agents]))
    return stacked


def bind_seed(agent: Agent, stacked: Agent, index: int) -> None:
    """Make the one-seed ``agent`` act with seed ``index`` of ``stacked``, as it is now and
    as it trains: its networks and targets become views of that seed's slice of the stacked
    ones, and its generator the seed's generator in the stack (the one the stacked updates
    draw from). What ``agent`` writes into its weights in place (a reset) lands in the stack.
    Its optimiser state is not bound: load it from the stacked state when a checkpoint needs
    it (:func:`seed_state`). The binding ends when either agent rebuilds its optimisers (they
    gather the weights into a buffer of their own): see :func:`is_bound`."""
    if agent.seeds != 1 or type(agent) is not type(stacked) or not 0 <= index < stacked.seeds:
        raise ValueError(f"bind_seed binds a one-seed {type(stacked).__name__} to a stack seed")
    pairs = [(agent.modules(), stacked.modules()), (agent.targets, stacked.targets)]
    for mine, theirs in pairs:
        for key, module in mine.items():
            bind_slice(module, theirs[key], index, stacked.seeds)
    agent.generators = [stacked.generators[index]]


def bind_slice(module: nn.Module, stacked: nn.Module, index: int, count: int) -> None:
    """Make ``module``'s parameters views of entry ``index`` of ``stacked``'s, a stack of
    ``count`` such modules (the ``index``-th of ``count`` equal chunks of every parameter)."""
    for p, q in zip(module.parameters(), stacked.parameters(), strict=True):
        size = q.shape[0] // count
        p.data = q.data[index * size : (index + 1) * size]


def is_bound(agent: Agent, stacked: Agent, index: int) -> bool:
    """Whether ``agent``'s weights are (still) seed ``index`` of ``stacked`` (:func:`bind_seed`)."""
    return _first_parameter(agent).data_ptr() == _seed_addresses(stacked)[index]


def bound_seeds(agents: Sequence[Agent], stacked: Agent) -> list[bool]:
    """For each of ``agents``, whether it is (still) the seed of ``stacked`` at its own index
    (:func:`is_bound` for every seed, the stack's addresses read once)."""
    addresses = _seed_addresses(stacked)
    return [_first_parameter(a).data_ptr() == addresses[i] for i, a in enumerate(agents)]


def seed_slots(stacked: Agent, agents: Sequence[Agent]) -> list[int] | None:
    """For each seed of ``stacked``, in order, the index in ``agents`` of a one-seed agent
    bound to it (:func:`is_bound`; ``stacked`` itself for a stack of one), or ``None`` when
    some seed has none: which of ``agents`` one call of the stack can stand in for."""
    slot_at = {address: seed for seed, address in enumerate(_seed_addresses(stacked))}
    slots: list[int | None] = [None] * stacked.seeds
    for index, agent in enumerate(agents):
        seed = slot_at.get(_first_parameter(agent).data_ptr()) if agent.seeds == 1 else None
        if seed is not None and slots[seed] is None:
            slots[seed] = index
    return None if None in slots else slots  # type: ignore[return-value]


def _first_parameter(agent: Agent) -> torch.Tensor:
    """The first parameter of ``agent``'s first network: where a binding shows."""
    return next(next(iter(agent.modules().values())).parameters())


def _seed_addresses(stacked: Agent) -> list[int]:
    """Where each seed's slice of ``stacked``'s first parameter starts in memory."""
    first = _first_parameter(stacked)
    size = first.shape[0] // stacked.seeds
    return [first[seed * size].data_ptr() for seed in range(stacked.seeds)]
