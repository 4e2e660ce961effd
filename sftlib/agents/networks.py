"""Plain ``nn.Module`` networks shared by every agent, stacked for speed.

Every network here is a *stack* of independent networks evaluated as one batched matmul
(``torch.baddbmm``) per layer: the members of a critic ensemble, and the seeds of a batched
run (several seeds of one study trained in one process). Inputs and outputs carry the
stack as a leading dimension: ``[S, B, features]``. A critic ensemble of ``n`` members for
``K`` seeds is one stack of ``K * n`` networks, seed-major.

Every network works on *normalised* observations; normalisation is the agent's job.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.distributions import Normal

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


class StackedLinear(nn.Module):
    """``num`` independent linear layers: ``x [num, B, in] -> [num, B, out]``.

    Weights are stored ``[num, in, out]`` (so the forward pass is one ``baddbmm`` with no
    transpose) and initialised as ``nn.Linear`` does: ``U(-1/sqrt(in), 1/sqrt(in))`` for
    weights and biases.
    """

    def __init__(self, num: int, in_features: int, out_features: int) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(in_features)
        self.weight = nn.Parameter(torch.empty(num, in_features, out_features))
        self.bias = nn.Parameter(torch.empty(num, 1, out_features))
        with torch.no_grad():
            self.weight.uniform_(-bound, bound)
            self.bias.uniform_(-bound, bound)

    def forward(self, x: torch.Tensor, detach: bool = False) -> torch.Tensor:
        weight, bias = self.weight, self.bias
        if detach:
            weight, bias = weight.detach(), bias.detach()
        if weight.shape[-1] == 1:
            # A single output is a matrix-vector product, which torch computes on another
            # path for one network than for several; the elementwise form gives every network
            # of a stack the same numbers whatever the stack's size (a seed's run does not
            # depend on which seeds share its process).
            return (x * weight.transpose(1, 2)).sum(-1, keepdim=True) + bias
        return torch.baddbmm(bias, x, weight)


class StackedMLP(nn.Module):
    """ReLU MLP ``in_dim -> hidden... -> out_dim`` for each of ``num`` stacked networks,
    with a linear output layer: ``[num, B, in_dim] -> [num, B, out_dim]``.

    ``detach=True`` evaluates with detached weights: gradients flow to the input only (an
    actor's loss through a critic that must not be trained by it).
    """

    def __init__(self, num: int, in_dim: int, hidden: tuple[int, ...], out_dim: int) -> None:
        super().__init__()
        dims = (in_dim, *hidden, out_dim)
        self.num = num
        self.layers = nn.ModuleList(
            StackedLinear(num, a, b) for a, b in zip(dims[:-1], dims[1:], strict=True)
        )

    def forward(self, x: torch.Tensor, detach: bool = False) -> torch.Tensor:
        # Unpacked rather than sliced: slicing a ModuleList builds a new one on every call.
        *hidden, output = self.layers
        for layer in hidden:
            x = torch.relu(layer(x, detach))
        return output(x, detach)

    @property
    def output_layer(self) -> StackedLinear:
        """The layer a ``last`` reset re-initialises."""
        return self.layers[-1]


class GaussianActor(nn.Module):
    """Gaussian policy with a state-dependent mean and either a state-dependent (SAC) or a
    state-independent (IQL) log-std, for ``seeds`` stacked policies. Actions in ``[-1, 1]``.

    Observations ``[seeds, B, obs_dim]``, actions ``[seeds, B, act_dim]``. ``squash=True``
    applies tanh to samples (SAC, with the change-of-variables correction); ``squash=False``
    applies tanh to the mean only (IQL's AWR actor).
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden: tuple[int, ...],
        squash: bool,
        state_dependent_std: bool,
        seeds: int = 1,
    ) -> None:
        super().__init__()
        self.squash = squash
        self.state_dependent_std = state_dependent_std
        self.act_dim = act_dim
        out = 2 * act_dim if state_dependent_std else act_dim
        self.net = StackedMLP(seeds, obs_dim, hidden, out)
        if not state_dependent_std:
            self.log_std = nn.Parameter(torch.zeros(seeds, 1, act_dim))

    def mean_log_std(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
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
        mean, log_std = self.mean_log_std(obs)
        return Normal(mean, log_std.exp())

    def sample(self, obs: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterised sample from standard normal ``noise`` (shape of the actions) and its
        log-probability: ``[seeds, B, act_dim]``, ``[seeds, B]``."""
        mean, log_std = self.mean_log_std(obs)
        std = log_std.exp()
        raw = mean + std * noise
        log_prob = (-0.5 * noise.pow(2) - log_std - 0.5 * math.log(2.0 * math.pi)).sum(-1)
        if not self.squash:
            return raw.clamp(-1.0, 1.0), log_prob
        action = torch.tanh(raw)
        # log|d tanh(u)/du| = 2 (log 2 - u - softplus(-2u)), numerically stable form.
        correction = 2.0 * (math.log(2.0) - raw - nn.functional.softplus(-2.0 * raw))
        return action, log_prob - correction.sum(-1)

    def log_prob(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Log-probability of dataset actions (unsquashed actors only), ``[seeds, B]``."""
        if self.squash:
            raise NotImplementedError("log_prob of squashed actions is not needed here")
        mean, log_std = self.mean_log_std(obs)
        z = (action - mean) * torch.exp(-log_std)
        return (-0.5 * z.pow(2) - log_std - 0.5 * math.log(2.0 * math.pi)).sum(-1)

    def deterministic(self, obs: torch.Tensor) -> torch.Tensor:
        mean, _ = self.mean_log_std(obs)
        return torch.tanh(mean) if self.squash else mean


class DeterministicActor(nn.Module):
    """TD3-style deterministic policy for ``seeds`` stacked policies, ``tanh`` output in
    ``[-1, 1]``: ``[seeds, B, obs_dim] -> [seeds, B, act_dim]``."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...], seeds: int = 1) -> None:
        super().__init__()
        self.act_dim = act_dim
        self.net = StackedMLP(seeds, obs_dim, hidden, act_dim)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(obs))

    def deterministic(self, obs: torch.Tensor) -> torch.Tensor:
        return self(obs)


class EnsembleQ(nn.Module):
    """``n`` independent Q-networks per seed, all in one stack of ``seeds * n`` networks.

    ``forward(obs [seeds, B, obs_dim], action [seeds, B, act_dim]) -> [seeds, n, B]``.
    """

    def __init__(
        self, obs_dim: int, act_dim: int, hidden: tuple[int, ...], n: int = 2, seeds: int = 1
    ) -> None:
        super().__init__()
        self.obs_dim, self.act_dim, self.hidden = obs_dim, act_dim, tuple(hidden)
        self.n, self.seeds = n, seeds
        self.net = StackedMLP(seeds * n, obs_dim + act_dim, hidden, 1)

    def forward(
        self, obs: torch.Tensor, action: torch.Tensor, detach: bool = False
    ) -> torch.Tensor:
        x = torch.cat([obs, action], dim=-1)
        seeds, batch = x.shape[0], x.shape[1]
        x = (
            x.unsqueeze(1)
            .expand(seeds, self.n, batch, x.shape[-1])
            .reshape(seeds * self.n, batch, -1)
        )
        return self.net(x, detach).view(seeds, self.n, batch)


class ValueNet(nn.Module):
    """State-value network ``V(s)`` for ``seeds`` stacked networks: ``[seeds, B, obs_dim] ->
    [seeds, B]``."""

    def __init__(self, obs_dim: int, hidden: tuple[int, ...], seeds: int = 1) -> None:
        super().__init__()
        self.net = StackedMLP(seeds, obs_dim, hidden, 1)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs).squeeze(-1)


def output_layers(module: nn.Module) -> list[StackedLinear]:
    """The output layer of every :class:`StackedMLP` inside ``module``."""
    return [m.output_layer for m in module.modules() if isinstance(m, StackedMLP)]


@torch.no_grad()
def soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """Polyak averaging ``target <- (1 - tau) target + tau source`` (one fused call)."""
    torch._foreach_lerp_(list(target.parameters()), list(source.parameters()), tau)
