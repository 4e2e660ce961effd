"""TD3+BC (Fujimoto & Gu, 2021) offline, plain TD3 (Fujimoto et al., 2018) online.

Online, the behaviour-cloning term is dropped: the classic case where direct
fine-tuning first collapses, because the actor now climbs a critic fit only offline.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from sftlib.agents.base import Agent, AgentConfig
from sftlib.buffer import Batch
from sftlib.networks import DeterministicActor, EnsembleQ, soft_update


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
        self.actor = DeterministicActor(self.obs_dim, self.act_dim, c.hidden)
        self.critic = EnsembleQ(self.obs_dim, self.act_dim, c.hidden, c.n_critics)

    def _policy(self, nobs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        a = self.actor(nobs)
        if deterministic:
            return a
        return (a + self.config.expl_noise * torch.randn_like(a)).clamp(-1.0, 1.0)

    def update(self, batch: Batch, online: bool = False) -> dict[str, float]:
        c = self.config
        b = batch.to(self.device)
        obs, next_obs = self.norm(b.obs), self.norm(b.next_obs)

        with torch.no_grad():
            noise = (torch.randn_like(b.actions) * c.policy_noise).clamp(
                -c.noise_clip, c.noise_clip
            )
            next_a = (self.targets["actor"](next_obs) + noise).clamp(-1.0, 1.0)
            next_q = self.targets["critic"](next_obs, next_a).min(0).values
            target = b.rewards + c.discount * (1.0 - b.terminals) * next_q
        q = self.critic(obs, b.actions)
        critic_loss = F.mse_loss(q, target.expand_as(q), reduction="none").mean(1).sum()
        self.optimizers["critic"].zero_grad()
        critic_loss.backward()
        self.optimizers["critic"].step()

        metrics = {"train/critic_loss": critic_loss.item(), "train/q": q.mean().item()}
        self.num_updates += 1
        if self.num_updates % c.policy_freq == 0:
            pi = self.actor(obs)
            q_pi = self.critic(obs, pi)[0]
            if online:
                actor_loss = -q_pi.mean()
            else:
                lmbda = c.alpha / q_pi.abs().mean().detach()
                actor_loss = -lmbda * q_pi.mean() + F.mse_loss(pi, b.actions)
            self.optimizers["actor"].zero_grad()
            actor_loss.backward()
            self.optimizers["actor"].step()
            soft_update(self.targets["actor"], self.actor, c.tau)
            soft_update(self.targets["critic"], self.critic, c.tau)
            metrics["train/actor_loss"] = actor_loss.item()
        return metrics
