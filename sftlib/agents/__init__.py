"""Base algorithms behind one interface (:class:`~sftlib.agents.base.Agent`)."""

from __future__ import annotations

from sftlib.agents.base import RESET_SCOPES, Agent, AgentConfig
from sftlib.agents.calql import CalQL, CalQLConfig
from sftlib.agents.iql import IQL, IQLConfig, expectile_loss
from sftlib.agents.sac import SAC, SACConfig
from sftlib.agents.td3bc import TD3BC, TD3BCConfig

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
    "build_config",
    "expectile_loss",
    "make_agent",
]
