"""Soft Actor-Critic (Haarnoja et al., 2018) with automatic entropy tuning.

Used to train the behaviour policies of the dataset factory.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from sftlib.agents.base import Agent, AgentConfig
from sftlib.buffer import Batch
from sftlib.networks import EnsembleQ, GaussianActor, soft_update


@dataclass
class SACConfig(AgentConfig):
    """SAC hyper-parameters."""

    init_alpha: float = 1.0
    """Initial entropy temperature."""


class SAC(Agent):
    name = "sac"
    config_cls = SACConfig
    config: SACConfig

    def _build(self) -> None:
        c = self.config
        self.actor = GaussianActor(
            self.obs_dim, self.act_dim, c.hidden, squash=True, state_dependent_std=True
        )
        self.critic = EnsembleQ(self.obs_dim, self.act_dim, c.hidden, c.n_critics)
        self.log_alpha = nn.Parameter(torch.tensor(float(c.init_alpha)).log().to(self.device))
        self.target_entropy = -float(self.act_dim)

    def _make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        opts = super()._make_optimizers()
        opts["alpha"] = torch.optim.Adam([self.log_alpha], lr=self.config.lr)
        return opts

    def _policy(self, nobs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        return self.actor.deterministic(nobs) if deterministic else self.actor.sample(nobs)[0]

    def update(self, batch: Batch, online: bool = True) -> dict[str, float]:
        c = self.config
        b = batch.to(self.device)
        obs, next_obs = self.norm(b.obs), self.norm(b.next_obs)
        alpha = self.log_alpha.exp().detach()

        with torch.no_grad():
            next_a, next_logp = self.actor.sample(next_obs)
            next_q = self.targets["critic"](next_obs, next_a).min(0).values - alpha * next_logp
            target = b.rewards + c.discount * (1.0 - b.terminals) * next_q
        q = self.critic(obs, b.actions)
        critic_loss = F.mse_loss(q, target.expand_as(q), reduction="none").mean(1).sum()
        self.optimizers["critic"].zero_grad()
        critic_loss.backward()
        self.optimizers["critic"].step()

        a, logp = self.actor.sample(obs)
        q_pi = self.critic(obs, a).min(0).values
        actor_loss = (alpha * logp - q_pi).mean()
        self.optimizers["actor"].zero_grad()
        actor_loss.backward()
        self.optimizers["actor"].step()

        alpha_loss = -(self.log_alpha * (logp.detach() + self.target_entropy)).mean()
        self.optimizers["alpha"].zero_grad()
        alpha_loss.backward()
        self.optimizers["alpha"].step()

        soft_update(self.targets["critic"], self.critic, c.tau)
        self.num_updates += 1
        return {
            "train/critic_loss": critic_loss.item(),
            "train/actor_loss": actor_loss.item(),
            "train/alpha": alpha.item(),
            "train/q": q.mean().item(),
        }

    def _extra_state(self) -> dict:
        return {"log_alpha": self.log_alpha.detach().clone()}

    def _load_extra_state(self, state: dict) -> None:
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
