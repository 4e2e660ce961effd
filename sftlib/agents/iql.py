"""Implicit Q-Learning (Kostrikov et al., 2022): expectile value regression, TD critic on
``V(s')``, advantage-weighted actor. The same update serves offline and online fine-tuning.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from sftlib.agents.base import Agent, AgentConfig
from sftlib.buffer import Batch
from sftlib.networks import EnsembleQ, GaussianActor, ValueNet, soft_update

EXP_ADV_MAX = 100.0


def expectile_loss(diff: torch.Tensor, expectile: float) -> torch.Tensor:
    """Asymmetric L2 ``mean(|expectile - 1[diff < 0]| * diff^2)`` with ``diff = Q - V``."""
    weight = torch.where(diff < 0, 1.0 - expectile, expectile)
    return (weight * diff.pow(2)).mean()


@dataclass
class IQLConfig(AgentConfig):
    """IQL hyper-parameters (defaults: the paper's MuJoCo locomotion settings)."""

    expectile: float = 0.7
    """Expectile tau of the value regression, in (0, 1)."""
    temperature: float = 3.0
    """Inverse temperature beta of the advantage-weighted actor."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 < self.expectile < 1.0:
            raise ValueError(f"expectile must be in (0, 1), got {self.expectile}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")


class IQL(Agent):
    name = "iql"
    config_cls = IQLConfig
    config: IQLConfig

    def _build(self) -> None:
        c = self.config
        self.actor = GaussianActor(
            self.obs_dim, self.act_dim, c.hidden, squash=False, state_dependent_std=False
        )
        self.critic = EnsembleQ(self.obs_dim, self.act_dim, c.hidden, c.n_critics)
        self.vf = ValueNet(self.obs_dim, c.hidden)

    def modules(self) -> dict[str, nn.Module]:
        return {"actor": self.actor, "critic": self.critic, "vf": self.vf}

    def _policy(self, nobs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        return self.actor.deterministic(nobs) if deterministic else self.actor.sample(nobs)[0]

    def update(self, batch: Batch, online: bool = False) -> dict[str, float]:
        c = self.config
        b = batch.to(self.device)
        obs, next_obs = self.norm(b.obs), self.norm(b.next_obs)

        with torch.no_grad():
            target_q = self.targets["critic"](obs, b.actions).min(0).values
        v = self.vf(obs)
        adv = target_q - v
        value_loss = expectile_loss(adv, c.expectile)
        self.optimizers["vf"].zero_grad()
        value_loss.backward()
        self.optimizers["vf"].step()

        with torch.no_grad():
            target = b.rewards + c.discount * (1.0 - b.terminals) * self.vf(next_obs)
        q = self.critic(obs, b.actions)
        critic_loss = F.mse_loss(q, target.expand_as(q), reduction="none").mean(1).sum()
        self.optimizers["critic"].zero_grad()
        critic_loss.backward()
        self.optimizers["critic"].step()

        exp_adv = torch.exp(c.temperature * adv.detach()).clamp(max=EXP_ADV_MAX)
        actor_loss = -(exp_adv * self.actor.log_prob(obs, b.actions)).mean()
        self.optimizers["actor"].zero_grad()
        actor_loss.backward()
        self.optimizers["actor"].step()

        soft_update(self.targets["critic"], self.critic, c.tau)
        self.num_updates += 1
        return {
            "train/value_loss": value_loss.item(),
            "train/critic_loss": critic_loss.item(),
            "train/actor_loss": actor_loss.item(),
            "train/q": q.mean().item(),
            "train/v": v.mean().item(),
        }
