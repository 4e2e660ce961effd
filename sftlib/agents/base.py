"""The agent interface every base algorithm implements, and the machinery they share.

An agent owns its networks, target networks, optimisers and the frozen observation
normaliser. Networks see normalised observations; every public method takes raw ones.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from sftlib.agents.networks import output_layers
from sftlib.agents.optim import FlatAdam
from sftlib.data.buffer import Batch, Normalizer
from sftlib.typecheck import check_field_types


def _copied(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A module's state as tensors of their own: a view's storage may hold more (a flat Adam
    buffer, the other seeds of a stack), and ``torch.save`` writes whole storages."""
    return {k: v.clone() for k, v in state.items()}


@dataclass
class AgentConfig:
    """Hyper-parameters shared by every base algorithm."""

    hidden: tuple[int, ...] = (256, 256)
    """Hidden layer widths of every network."""
    lr: float = 3e-4
    """Adam learning rate of every network."""
    batch_size: int = 256
    """Transitions per update."""
    discount: float = 0.99
    """Discount factor gamma."""
    tau: float = 0.005
    """Polyak rate of the target networks."""
    n_critics: int = 2
    """Members of the Q ensemble (clipped double Q uses the minimum)."""

    def __post_init__(self) -> None:
        check_field_types(self)
        self.hidden = tuple(int(h) for h in self.hidden)
        if not self.hidden or any(h <= 0 for h in self.hidden):
            raise ValueError(f"hidden must be a non-empty list of positive ints, got {self.hidden}")
        for name in ("lr", "batch_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not 0.0 < self.discount < 1.0:
            raise ValueError(f"discount must be in (0, 1), got {self.discount}")
        if not 0.0 < self.tau <= 1.0:
            raise ValueError(f"tau must be in (0, 1], got {self.tau}")
        if self.n_critics < 1:
            raise ValueError(f"n_critics must be >= 1, got {self.n_critics}")


RESET_SCOPES = ("last", "full", "offline")


def adam(params: list[nn.Parameter] | list[dict], lr: float) -> FlatAdam:
    """Adam for an agent's networks: torch's multi-tensor (``foreach``) arithmetic on one flat
    buffer per parameter group (:class:`~sftlib.agents.optim.FlatAdam`, a few calls per step
    for all parameters).

    Not torch's ``fused`` kernel: it treats an element differently depending on where its
    tensor's memory starts, so a seed's slice of a stacked parameter would be updated with
    other roundings than the same seed trained alone. The ``foreach`` arithmetic keeps a
    seed's numbers independent of the seeds that share its process.
    """
    return FlatAdam(params, lr)


class Agent:
    """Base class: subclasses build networks in :meth:`_build` and implement :meth:`update`.

    An agent holds ``seeds`` independent copies of its networks, stacked (see
    :mod:`sftlib.agents.networks`): a batched run trains several seeds in one process. Tensors carry
    the seed as a leading dimension ``[seeds, B, ...]``; with ``seeds == 1`` every public
    method also takes and returns tensors without it. Each seed draws its own random numbers
    (exploration and target-smoothing noise, sampled actions) from its own generator, so a
    seed's numbers do not depend on which other seeds share its batch.
    """

    name: ClassVar[str]
    config_cls: ClassVar[type[AgentConfig]]
    needs_returns_to_go: ClassVar[bool] = False
    """Whether batches must carry the Monte-Carlo return-to-go (Cal-QL's calibration)."""
    compile_wins: ClassVar[bool] = False
    """Whether ``torch.compile`` was measured to make this algorithm's update faster on CPU
    (benchmarks/updates_per_second.py --compile)."""

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        config: AgentConfig | None = None,
        normalizer: Normalizer | None = None,
        device: str | torch.device = "cpu",
        seeds: int = 1,
    ) -> None:
        self.obs_dim, self.act_dim, self.seeds = obs_dim, act_dim, seeds
        self.config = config if config is not None else self.config_cls()
        self.normalizer = normalizer if normalizer is not None else Normalizer.identity(obs_dim)
        self.device = torch.device(device)
        self.num_updates = 0
        self._build()
        for module in self.modules().values():
            module.to(self.device)
        self.targets = {k: copy.deepcopy(self.modules()[k]) for k in self.target_keys}
        for target in self.targets.values():
            target.requires_grad_(False)
        self.optimizers = self._make_optimizers()
        # One generator per seed, seeded from the global torch generator (itself seeded by
        # the run's seed): stochastic updates and actions stay reproducible and per seed.
        self.generators = [
            torch.Generator(self.device).manual_seed(int(torch.randint(0, 2**62, (1,))))
            for _ in range(seeds)
        ]
        self.compiled = False
        self.compile_mode = "default"
        self._compiled: dict[str, Any] = {}

    # --- torch.compile -------------------------------------------------------------------
    def compile_update(self, mode: str = "default") -> None:
        """Run the loss computations of :meth:`update` through ``torch.compile`` in ``mode``
        (:func:`sftlib.config.compile_mode`) from now on (compiled on first use, once per loss
        function; optimiser steps stay eager)."""
        self.compiled, self.compile_mode = True, mode

    def _loss(self, name: str, fn: Any, *args: Any) -> Any:
        """``fn(*args)``, compiled once per ``name`` when :meth:`compile_update` was called."""
        if not self.compiled:
            return fn(*args)
        if name not in self._compiled:
            self._compiled[name] = torch.compile(fn, mode=self.compile_mode)
        return self._compiled[name](*args)

    def __getstate__(self) -> dict[str, Any]:
        # Compiled functions are bound to this agent's modules: copies compile their own.
        return {**self.__dict__, "_compiled": {}}

    # --- subclasses -----------------------------------------------------------------
    target_keys: ClassVar[tuple[str, ...]] = ("critic",)
    actor: nn.Module
    critic: nn.Module

    def _build(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def modules(self) -> dict[str, nn.Module]:
        """The trained networks by name (all of them are reset by a ``full`` reset)."""
        return {"actor": self.actor, "critic": self.critic}

    def _make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {k: adam(list(m.parameters()), self.config.lr) for k, m in self.modules().items()}

    def update(self, batch: Batch, online: bool) -> dict[str, torch.Tensor]:  # pragma: no cover
        """One gradient step on ``batch`` (``[seeds, B, ...]``, or ``[B, ...]`` with one seed);
        ``online`` selects the online update rule. Returns detached per-seed metrics
        ``{name: [seeds]}``: no ``.item()`` in the hot loop."""
        raise NotImplementedError

    def _policy(self, nobs: torch.Tensor, deterministic: bool) -> torch.Tensor:  # pragma: no cover
        """Actions ``[seeds, B, act_dim]`` for normalised observations ``[seeds, B, obs_dim]``."""
        raise NotImplementedError

    # --- helpers for subclasses ---------------------------------------------------------
    def noise(self, shape: tuple[int, ...]) -> torch.Tensor:
        """Standard normal noise of ``[seeds, *shape]``, each seed from its own generator."""
        return torch.stack(
            [torch.randn(shape, generator=g, device=self.device) for g in self.generators]
        )

    def uniform(self, shape: tuple[int, ...]) -> torch.Tensor:
        """Uniform noise in ``[-1, 1)`` of ``[seeds, *shape]``, each seed from its own generator."""
        return torch.stack(
            [
                torch.rand(shape, generator=g, device=self.device) * 2.0 - 1.0
                for g in self.generators
            ]
        )

    def stacked(self, batch: Batch) -> Batch:
        """``batch`` on the agent's device with the leading seed dimension."""
        batch = batch.to(self.device)
        return batch.unsqueeze_seed() if batch.obs.ndim == 2 else batch

    def _seed_input(self, x: torch.Tensor) -> tuple[torch.Tensor, bool]:
        """``x`` with a seed dimension, and whether it had none (then the output drops it)."""
        if x.ndim == 2:
            if self.seeds != 1:
                raise ValueError(
                    f"a {self.seeds}-seed agent needs inputs [seeds, B, features], "
                    f"got shape {tuple(x.shape)}"
                )
            return x.unsqueeze(0), True
        return x, False

    # --- public interface -------------------------------------------------------------
    def norm(self, obs: torch.Tensor) -> torch.Tensor:
        return self.normalizer(obs)

    @torch.no_grad()
    def policy_action(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        """Actions in ``[-1, 1]`` for raw observations: ``[B, obs_dim] -> [B, act_dim]`` (one
        seed) or ``[seeds, B, obs_dim] -> [seeds, B, act_dim]``."""
        x, squeeze = self._seed_input(obs.to(self.device))
        actions = self._policy(self.norm(x), deterministic)
        return actions[0] if squeeze else actions

    @torch.no_grad()
    def act(self, obs: np.ndarray, deterministic: bool) -> np.ndarray:
        """Action for one raw observation ``[obs_dim]`` (or a batch ``[B, obs_dim]``) of a
        one-seed agent, as numpy."""
        o = torch.as_tensor(obs, dtype=torch.float32)
        single = o.ndim == 1
        a = self.policy_action(o.unsqueeze(0) if single else o, deterministic).cpu().numpy()
        return a[0] if single else a

    @torch.no_grad()
    def act_per_seed(self, obs: np.ndarray, deterministic: bool) -> np.ndarray:
        """Actions per seed, as numpy: one observation per seed ``[seeds, obs_dim] -> [seeds,
        act_dim]`` (a batched run stepping one environment per seed), or several ``[seeds, B,
        obs_dim] -> [seeds, B, act_dim]`` (:data:`sftlib.data.rollouts.StackedPolicy`)."""
        o = torch.as_tensor(obs, dtype=torch.float32)
        one = o.ndim == 2
        actions = self.policy_action(o.unsqueeze(1) if one else o, deterministic)
        return (actions[:, 0] if one else actions).cpu().numpy()

    @torch.no_grad()
    def q_values(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Every critic member's ``Q(s, a)`` for raw observations: ``[n_critics, B]`` (one
        seed, inputs ``[B, ...]``) or ``[seeds, n_critics, B]``."""
        x, squeeze = self._seed_input(obs.to(self.device))
        a, _ = self._seed_input(actions.to(self.device))
        q = self.critic(self.norm(x), a)
        return q[0] if squeeze else q

    def reset_optimizers(self) -> None:
        """Fresh optimisers: Adam's moments and step counts cleared."""
        self.optimizers = self._make_optimizers()

    def sync_targets(self) -> None:
        for k, t in self.targets.items():
            t.load_state_dict(self.modules()[k].state_dict())

    def snapshot(self) -> Agent:
        """A frozen deep copy (used as the anchor): no gradients, no optimiser state, and
        weights of its own (a seed bound to a stack copies its slice, not the stack)."""
        twin = copy.deepcopy(self)
        for m in list(twin.modules().values()) + list(twin.targets.values()):
            m.requires_grad_(False)
            for p in m.parameters():
                p.data = p.data.clone()
        twin.optimizers = {}
        return twin

    def reset_networks(
        self,
        scope: str,
        alpha: float = 0.0,
        offline_state: dict[str, Any] | None = None,
    ) -> None:
        """Reset the learning networks: ``theta <- alpha * theta + (1 - alpha) * theta_reset``.

        ``scope``: ``last`` re-initialises the output layer of every network (every ensemble
        member, and a state-independent log-std), ``full`` every layer, ``offline`` returns to
        the offline weights in ``offline_state`` (an agent ``state_dict``). Target networks
        are re-synced and optimiser state is cleared.
        """
        if scope not in RESET_SCOPES:
            raise ValueError(f"reset_scope must be one of {RESET_SCOPES}, got {scope!r}")
        if scope == "offline":
            if offline_state is None:
                raise ValueError("reset_scope='offline' needs the offline checkpoint state")
            source = {
                k: self._module_from_state(k, sd) for k, sd in offline_state["modules"].items()
            }
        else:
            fresh = type(self)(
                self.obs_dim, self.act_dim, self.config, self.normalizer, self.device, self.seeds
            )
            source = fresh.modules()
        with torch.no_grad():
            for k, module in self.modules().items():
                if scope == "last":
                    pairs = self._last_layers(module, source[k])
                else:
                    pairs = [(module, source[k])]
                for dst, src in pairs:
                    for p, q in zip(dst.parameters(), src.parameters(), strict=True):
                        p.mul_(alpha).add_((1.0 - alpha) * q.to(p.device))
        self.sync_targets()
        self.reset_optimizers()

    @staticmethod
    def _last_layers(module: nn.Module, source: nn.Module) -> list[tuple[nn.Module, nn.Module]]:
        """Output layers of ``module`` paired with ``source``'s (and a bare log-std)."""
        pairs: list[tuple[nn.Module, nn.Module]] = list(
            zip(output_layers(module), output_layers(source), strict=True)
        )
        if getattr(module, "log_std", None) is not None:
            pairs.append((_ParamHolder(module.log_std), _ParamHolder(source.log_std)))
        return pairs

    def _module_from_state(self, key: str, state: dict) -> nn.Module:
        m = copy.deepcopy(self.modules()[key])
        m.load_state_dict(state)
        return m

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue training bit-for-bit, optimisers included."""
        return {
            "algo": self.name,
            "config": asdict(self.config),
            "obs_dim": self.obs_dim,
            "act_dim": self.act_dim,
            "seeds": self.seeds,
            "normalizer": self.normalizer.state_dict(),
            "modules": {k: _copied(m.state_dict()) for k, m in self.modules().items()},
            "targets": {k: _copied(t.state_dict()) for k, t in self.targets.items()},
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "generators": [g.get_state() for g in self.generators],
            "num_updates": self.num_updates,
            **self._extra_state(),
        }

    def _extra_state(self) -> dict[str, Any]:
        return {}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        pass

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("algo") != self.name:
            raise ValueError(f"checkpoint holds a {state.get('algo')!r} agent, not {self.name!r}")
        if (state["obs_dim"], state["act_dim"]) != (self.obs_dim, self.act_dim):
            raise ValueError(
                f"checkpoint is for observation size {state['obs_dim']} and action size "
                f"{state['act_dim']}, but this environment has {self.obs_dim} and {self.act_dim}"
            )
        if state.get("seeds", 1) != self.seeds:
            raise ValueError(f"checkpoint holds {state.get('seeds', 1)} seeds, not {self.seeds}")
        self.normalizer = Normalizer.from_state_dict(state["normalizer"])
        for k, m in self.modules().items():
            m.load_state_dict(state["modules"][k])
        for k, t in self.targets.items():
            t.load_state_dict(state["targets"][k])
        for k, o in self.optimizers.items():
            if k in state["optimizers"]:
                o.load_state_dict(state["optimizers"][k])
        for g, g_state in zip(self.generators, state["generators"], strict=True):
            g.set_state(g_state)
        self.num_updates = state["num_updates"]
        self._load_extra_state(state)


class _ParamHolder(nn.Module):
    """Wraps a bare parameter (a state-independent log-std) so it resets like a layer."""

    def __init__(self, p: nn.Parameter) -> None:
        super().__init__()
        self.p = p
