"""Soft Actor-Critic (Haarnoja et al., 2018) with automatic entropy tuning.

Critic ``L_Q = sum_i E[(Q_i(s,a) - r - gamma (1-d) (min_j Q'_j(s',a') - alpha log pi(a'|s')))^2]``
with ``a' ~ pi(s')``; actor ``L_pi = E[alpha log pi(a|s) - min_j Q_j(s,a)]``, ``a ~ pi(s)``;
temperature ``L_alpha = -E[log alpha (log pi(a|s) + H_target)]``, ``H_target = -act_dim``.
Used to train the behaviour policies of the dataset factory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from sftlib.agents.base import Agent, AgentConfig, adam
from sftlib.agents.networks import EnsembleQ, GaussianActor, soft_update
from sftlib.data.buffer import Batch


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
            self.obs_dim,
            self.act_dim,
            c.hidden,
            squash=True,
            state_dependent_std=True,
            seeds=self.seeds,
        )
        self.critic = EnsembleQ(self.obs_dim, self.act_dim, c.hidden, c.n_critics, self.seeds)
        self.log_alpha = nn.Parameter(
            torch.full((self.seeds,), math.log(c.init_alpha), device=self.device)
        )
        self.target_entropy = -float(self.act_dim)

    def _make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        optimizers = super()._make_optimizers()
        optimizers["alpha"] = adam([self.log_alpha], self.config.lr)
        return optimizers

    def _policy(self, nobs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        if deterministic:
            return self.actor.deterministic(nobs)
        return self.actor.sample(nobs, self.noise((nobs.shape[1], self.act_dim)))[0]

    def update(self, batch: Batch, online: bool = True) -> dict[str, torch.Tensor]:
        config = self.config
        batch = self.stacked(batch)
        obs, next_obs = self.norm(batch.obs), self.norm(batch.next_obs)
        alpha = self.log_alpha.exp().detach().unsqueeze(-1)
        shape = batch.actions.shape[1:]

        with torch.no_grad():
            next_action, next_log_prob = self.actor.sample(next_obs, self.noise(shape))
            next_q = self.targets["critic"](next_obs, next_action).min(1).values
            soft_next = next_q - alpha * next_log_prob
            td_target = batch.rewards + config.discount * (1.0 - batch.terminals) * soft_next
        q = self.critic(obs, batch.actions)
        critic_loss = (q - td_target.unsqueeze(1)).pow(2).mean(-1).sum(1)
        self.optimizers["critic"].zero_grad(set_to_none=True)
        critic_loss.sum().backward()
        self.optimizers["critic"].step()

        action, log_prob = self.actor.sample(obs, self.noise(shape))
        q_action = self.critic(obs, action, detach=True).min(1).values
        actor_loss = (alpha * log_prob - q_action).mean(-1)
        self.optimizers["actor"].zero_grad(set_to_none=True)
        actor_loss.sum().backward()
        self.optimizers["actor"].step()

        alpha_loss = -(self.log_alpha.unsqueeze(-1) * (log_prob.detach() + self.target_entropy))
        self.optimizers["alpha"].zero_grad(set_to_none=True)
        alpha_loss.mean(-1).sum().backward()
        self.optimizers["alpha"].step()

        soft_update(self.targets["critic"], self.critic, config.tau)
        self.num_updates += 1
        return {
            "train/critic_loss": critic_loss.detach(),
            "train/actor_loss": actor_loss.detach(),
            "train/alpha": alpha.squeeze(-1),
            "train/q": q.detach().mean((1, 2)),
        }

    def _extra_state(self) -> dict:
        return {"log_alpha": self.log_alpha.detach().clone()}

    def _load_extra_state(self, state: dict) -> None:
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
