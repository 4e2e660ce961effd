"""TD3+BC (Fujimoto & Gu, 2021) offline, plain TD3 (Fujimoto et al., 2018) online.

With the critic ensemble ``Q`` (target copies ``Q'``, ``pi'``), one update on ``(s, a, r, s', d)``:

- critic, clipped double Q with target smoothing:
  ``L_Q = sum_i E[(Q_i(s, a) - r - gamma (1 - d) min_j Q'_j(s', clip(pi'(s') + eps)))^2]``,
  ``eps ~ clip(N(0, sigma), -c, c)``;
- every ``policy_freq`` updates, the actor (after the critic's step):
  offline ``L_pi = -lambda E[Q_1(s, pi(s))] + E[(pi(s) - a)^2]``, ``lambda = alpha / E|Q_1|``;
  online (TD3) ``L_pi = -E[Q_1(s, pi(s))]``; then the targets are Polyak-averaged.

Online, the behaviour-cloning term is dropped: the classic case where direct fine-tuning
first collapses, because the actor now climbs a critic fit only offline.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sftlib.agents.base import Agent, AgentConfig
from sftlib.agents.networks import DeterministicActor, EnsembleQ, soft_update
from sftlib.data.buffer import Batch


@dataclass
class TD3BCConfig(AgentConfig):
    """TD3+BC / TD3 hyper-parameters (defaults: the papers' MuJoCo settings)."""

    alpha: float = 2.5
    """BC trade-off: actor loss ``-alpha/mean|Q| * Q + (pi - a)^2`` offline."""
    policy_noise: float = 0.2
    """Std of the target-policy smoothing noise."""
    noise_clip: float = 0.5
    """Clip of the target-policy smoothing noise."""
    policy_freq: int = 2
    """Critic updates per actor (and target) update."""
    expl_noise: float = 0.1
    """Std of the Gaussian exploration noise online."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.policy_freq < 1:
            raise ValueError(f"policy_freq must be >= 1, got {self.policy_freq}")
        for name in ("alpha", "policy_noise", "noise_clip", "expl_noise"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")


class TD3BC(Agent):
    name = "td3bc"
    config_cls = TD3BCConfig
    config: TD3BCConfig
    target_keys = ("actor", "critic")

    def _build(self) -> None:
        c = self.config
        self.actor = DeterministicActor(self.obs_dim, self.act_dim, c.hidden, self.seeds)
        self.critic = EnsembleQ(self.obs_dim, self.act_dim, c.hidden, c.n_critics, self.seeds)

    def _policy(self, nobs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        action = self.actor(nobs)
        if deterministic:
            return action
        noise = self.noise((nobs.shape[1], self.act_dim))
        return (action + self.config.expl_noise * noise).clamp(-1.0, 1.0)

    def update(self, batch: Batch, online: bool = False) -> dict[str, torch.Tensor]:
        config = self.config
        batch = self.stacked(batch)
        noise = self.noise(batch.actions.shape[1:])
        critic_loss, metrics = self._loss(
            "critic",
            self._critic_losses,
            batch.obs,
            batch.actions,
            batch.rewards,
            batch.next_obs,
            batch.terminals,
            noise,
        )
        self.optimizers["critic"].zero_grad(set_to_none=True)
        critic_loss.backward()
        self.optimizers["critic"].step()
        self.num_updates += 1
        if self.num_updates % config.policy_freq == 0:
            name = "actor_online" if online else "actor_offline"
            actor_loss, actor_metrics = self._loss(
                name, self._actor_losses, batch.obs, batch.actions, online
            )
            self.optimizers["actor"].zero_grad(set_to_none=True)
            actor_loss.backward()
            self.optimizers["actor"].step()
            soft_update(self.targets["actor"], self.actor, config.tau)
            soft_update(self.targets["critic"], self.critic, config.tau)
            metrics = {**metrics, **actor_metrics}
        return metrics

    def _critic_losses(
        self,
        obs: torch.Tensor,
        actions: torch.Tensor,
        rewards: torch.Tensor,
        next_obs: torch.Tensor,
        terminals: torch.Tensor,
        noise: torch.Tensor,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        config = self.config
        obs, next_obs = self.norm(obs), self.norm(next_obs)
        with torch.no_grad():
            smoothing = (noise * config.policy_noise).clamp(-config.noise_clip, config.noise_clip)
            next_action = (self.targets["actor"](next_obs) + smoothing).clamp(-1.0, 1.0)
            next_q = self.targets["critic"](next_obs, next_action).min(1).values
            td_target = rewards + config.discount * (1.0 - terminals) * next_q
        q = self.critic(obs, actions)
        critic_loss = (q - td_target.unsqueeze(1)).pow(2).mean(-1).sum(1)
        metrics = {"train/critic_loss": critic_loss.detach(), "train/q": q.detach().mean((1, 2))}
        return critic_loss.sum(), metrics

    def _actor_losses(
        self, obs: torch.Tensor, actions: torch.Tensor, online: bool
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        obs = self.norm(obs)
        action = self.actor(obs)
        # The critic is a constant of the actor's loss: no gradient into its weights.
        q_action = self.critic(obs, action, detach=True)[:, 0]
        if online:
            actor_loss = -q_action.mean(-1)
        else:
            lmbda = self.config.alpha / q_action.abs().mean(-1).detach()
            actor_loss = -lmbda * q_action.mean(-1) + (action - actions).pow(2).mean((1, 2))
        return actor_loss.sum(), {"train/actor_loss": actor_loss.detach()}
