"""Plain ``nn.Module`` networks shared by every agent.

Every network works on *normalised* observations; normalisation is the agent's job.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.distributions import Normal

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


def mlp(in_dim: int, hidden: tuple[int, ...], out_dim: int) -> nn.Sequential:
    """ReLU MLP ``in_dim -> hidden... -> out_dim`` with a linear output layer."""
    layers: list[nn.Module] = []
    last = in_dim
    for h in hidden:
        layers += [nn.Linear(last, h), nn.ReLU()]
        last = h
    layers.append(nn.Linear(last, out_dim))
    return nn.Sequential(*layers)


def last_linear(module: nn.Module) -> nn.Linear:
    """The output layer of a network built by :func:`mlp` (the layer a ``last`` reset touches)."""
    linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
    return linears[-1]


class GaussianActor(nn.Module):
    """Gaussian policy with a state-dependent mean and either a state-dependent (SAC)
    or a state-independent (IQL) log-std. Actions in ``[-1, 1]``.

    ``squash=True`` applies tanh to samples (SAC, with the change-of-variables
    correction); ``squash=False`` applies tanh to the mean only (IQL's AWR actor).
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden: tuple[int, ...],
        squash: bool,
        state_dependent_std: bool,
    ) -> None:
        super().__init__()
        self.squash = squash
        self.state_dependent_std = state_dependent_std
        self.act_dim = act_dim
        out = 2 * act_dim if state_dependent_std else act_dim
        self.net = mlp(obs_dim, hidden, out)
        if not state_dependent_std:
            self.log_std = nn.Parameter(torch.zeros(act_dim))

    def _mean_log_std(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.net(obs)
        if self.state_dependent_std:
            mean, log_std = out.chunk(2, dim=-1)
        else:
            mean, log_std = out, self.log_std.expand_as(out)
        log_std = log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)
        if not self.squash:
            mean = torch.tanh(mean)
        return mean, log_std

    def distribution(self, obs: torch.Tensor) -> Normal:
        mean, log_std = self._mean_log_std(obs)
        return Normal(mean, log_std.exp())

    def sample(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterised sample and its log-probability, shapes ``[B, act_dim]``, ``[B]``."""
        dist = self.distribution(obs)
        raw = dist.rsample()
        if not self.squash:
            action = raw.clamp(-1.0, 1.0)
            return action, dist.log_prob(raw).sum(-1)
        action = torch.tanh(raw)
        # log|d tanh(u)/du| = 2 (log 2 - u - softplus(-2u)), numerically stable form.
        correction = 2.0 * (math.log(2.0) - raw - nn.functional.softplus(-2.0 * raw))
        return action, (dist.log_prob(raw) - correction).sum(-1)

    def log_prob(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Log-probability of dataset actions (unsquashed actors only), shape ``[B]``."""
        if self.squash:
            raise NotImplementedError("log_prob of squashed actions is not needed here")
        return self.distribution(obs).log_prob(action).sum(-1)

    def deterministic(self, obs: torch.Tensor) -> torch.Tensor:
        mean, _ = self._mean_log_std(obs)
        return torch.tanh(mean) if self.squash else mean


class DeterministicActor(nn.Module):
    """TD3-style deterministic policy, ``tanh`` output in ``[-1, 1]``."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...]) -> None:
        super().__init__()
        self.act_dim = act_dim
        self.net = mlp(obs_dim, hidden, act_dim)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(obs))

    def deterministic(self, obs: torch.Tensor) -> torch.Tensor:
        return self(obs)


class EnsembleQ(nn.Module):
    """``n`` independent Q-networks; ``forward`` returns ``[n, B]``."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...], n: int = 2) -> None:
        super().__init__()
        self.members = nn.ModuleList(mlp(obs_dim + act_dim, hidden, 1) for _ in range(n))

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        x = torch.cat([obs, action], dim=-1)
        return torch.stack([m(x).squeeze(-1) for m in self.members], dim=0)


class ValueNet(nn.Module):
    """State-value network ``V(s)``, output ``[B]``."""

    def __init__(self, obs_dim: int, hidden: tuple[int, ...]) -> None:
        super().__init__()
        self.net = mlp(obs_dim, hidden, 1)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs).squeeze(-1)


@torch.no_grad()
def soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """Polyak averaging ``target <- (1 - tau) target + tau source``."""
    for t, s in zip(target.parameters(), source.parameters(), strict=True):
        t.lerp_(s, tau)
