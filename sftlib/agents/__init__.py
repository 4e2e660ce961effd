"""Base algorithms behind one interface (:class:`~sftlib.agents.base.Agent`)."""

from __future__ import annotations

import copy
from typing import Any

import torch

from sftlib.agents.base import RESET_SCOPES, Agent, AgentConfig
from sftlib.agents.calql import CalQL, CalQLConfig
from sftlib.agents.iql import IQL, IQLConfig, expectile_loss
from sftlib.agents.sac import SAC, SACConfig
from sftlib.agents.td3bc import TD3BC, TD3BCConfig
from sftlib.data.buffer import Normalizer

AGENTS: dict[str, type[Agent]] = {cls.name: cls for cls in (IQL, TD3BC, CalQL, SAC)}
"""Known base algorithms by name."""


def agent_class(algo: str) -> type[Agent]:
    """The agent class called ``algo``; a clear error lists the known names."""
    try:
        return AGENTS[algo]
    except KeyError:
        raise ValueError(f"unknown algorithm {algo!r}; known: {sorted(AGENTS)}") from None


def make_agent(
    algo: str, obs_dim: int, act_dim: int, config: dict | AgentConfig | None = None, **kwargs
) -> Agent:
    """Build an agent by name; ``config`` may be a dict of its config fields."""
    cls = agent_class(algo)
    if isinstance(config, dict):
        config = build_config(cls.config_cls, config)
    return cls(obs_dim, act_dim, config, **kwargs)


def build_config(cls: type[AgentConfig], values: dict) -> AgentConfig:
    """``cls(**values)`` with a clear error for unknown fields."""
    known = set(cls.__dataclass_fields__)
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} field(s) {unknown}; known: {sorted(known)}")
    return cls(**values)


def agent_from_state(agent_state: dict[str, Any], device: torch.device | str = "cpu") -> Agent:
    """The agent an ``Agent.state_dict()`` describes, ready to train on (optimisers included)."""
    cls = agent_class(agent_state["algo"])
    agent = cls(
        agent_state["obs_dim"],
        agent_state["act_dim"],
        build_config(cls.config_cls, agent_state["config"]),
        Normalizer.from_state_dict(agent_state["normalizer"]),
        device,
    )
    # A copy: optimiser state loaded on CPU shares tensors with the dict it came from.
    agent.load_state_dict(copy.deepcopy(agent_state))
    return agent


__all__ = [
    "AGENTS",
    "RESET_SCOPES",
    "Agent",
    "AgentConfig",
    "CalQL",
    "CalQLConfig",
    "IQL",
    "IQLConfig",
    "SAC",
    "SACConfig",
    "TD3BC",
    "TD3BCConfig",
    "agent_class",
    "agent_from_state",
    "build_config",
    "expectile_loss",
    "make_agent",
]
