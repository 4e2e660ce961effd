"""Calibrated Q-Learning, Cal-QL (Nakamoto et al., 2023): CQL (Kumar et al., 2020) whose
conservative penalty cannot push the values of the policy's actions below the behaviour
data's Monte-Carlo return-to-go. The same update runs offline and online.

With the critic ensemble ``Q_i`` (targets ``Q'``), the tanh-Gaussian actor ``pi`` and the
entropy temperature ``alpha``, one update on ``(s, a, r, s', d, G)`` (``G``: the discounted
return-to-go of ``(s, a)`` in its episode):

- critic: ``L_Q = sum_i E[(Q_i(s, a) - r - gamma (1 - d) min_j Q'_j(s', a'))^2]
  + cql_alpha * sum_i E[ logsumexp_k(Q~_i(s, a_k) - log p(a_k)) - Q_i(s, a) ]``,
  ``a' ~ pi(s')``. The ``a_k`` are ``n`` uniform actions (``p = 0.5^act_dim``), ``n`` actions
  of ``pi(s)`` and ``n`` of ``pi(s')`` (with their log-probabilities: importance sampling);
  **calibration**: ``Q~_i(s, a_k) = max(Q_i(s, a_k), G)`` for the policy's actions, ``Q_i`` for
  the uniform ones;
- actor (SAC): ``L_pi = E[alpha log pi(a~|s) - min_i Q_i(s, a~)]``, ``a~ ~ pi(s)``;
- temperature: ``L_alpha = -E[log alpha (log pi(a~|s) + H_target)]``, ``H_target = -act_dim``.

Every term is computed from the parameters before the step, as the reference updates them
(the sampled actions and ``log p`` are constants of the critic's loss; the critic is a
constant of the actor's), so the losses are summed and taken in one backward pass and one
Adam step. ``G`` comes with every batch (:meth:`sftlib.data.buffer.ReplayBuffer.fill_returns_to_go`).
Defaults follow the reference implementation for MuJoCo locomotion (CORL ``cal_ql.py``):
conservative weight 5, 10 sampled actions, temperature 1, no entropy term in the backup,
actor learning rate below the critic's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from sftlib.agents.base import adam
from sftlib.agents.networks import soft_update
from sftlib.agents.sac import SAC, SACConfig
from sftlib.data.buffer import Batch


@dataclass
class CalQLConfig(SACConfig):
    """Cal-QL hyper-parameters (``lr`` is the critic's learning rate; ``init_alpha`` the
    initial entropy temperature)."""

    cql_alpha: float = 5.0
    """Weight of the conservative penalty (CQL's alpha)."""
    cql_n_actions: int = 10
    """Actions sampled per state from each source (uniform, pi(s), pi(s')) for the penalty."""
    calibrate: bool = True
    """Lower-bound the policy actions' values in the penalty by the return-to-go (False: CQL)."""
    cql_temperature: float = 1.0
    """Temperature of the log-sum-exp over sampled actions."""
    actor_lr: float = 1e-4
    """Learning rate of the actor and of the entropy temperature."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.cql_alpha < 0:
            raise ValueError(f"cql_alpha must be >= 0, got {self.cql_alpha}")
        if self.cql_n_actions < 1:
            raise ValueError(f"cql_n_actions must be >= 1, got {self.cql_n_actions}")
        for name in ("cql_temperature", "actor_lr", "init_alpha"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")


class CalQL(SAC):
    """SAC's actor, critic ensemble and temperature (built by :class:`SAC`), with CQL's
    calibrated conservative penalty in the critic's loss and one step for everything."""

    name = "calql"
    config_cls = CalQLConfig
    config: CalQLConfig
    needs_returns_to_go = True

    def _make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        c = self.config
        groups = [
            {"params": list(self.critic.parameters()), "lr": c.lr},
            {"params": list(self.actor.parameters()), "lr": c.actor_lr},
            {"params": [self.log_alpha], "lr": c.actor_lr},
        ]
        return {"all": adam(groups, c.lr)}

    def update(self, batch: Batch, online: bool = False) -> dict[str, torch.Tensor]:
        config = self.config
        batch = self.stacked(batch)
        if batch.returns_to_go is None and config.calibrate:
            raise ValueError("Cal-QL's calibration needs returns_to_go in every batch")
        returns_to_go = batch.returns_to_go
        if returns_to_go is None:
            returns_to_go = torch.zeros_like(batch.rewards)
        size, act_dim = batch.actions.shape[1:]
        sampled = (size * config.cql_n_actions, act_dim)
        total, metrics = self._loss(
            "losses",
            self._losses,
            batch.obs,
            batch.actions,
            batch.rewards,
            batch.next_obs,
            batch.terminals,
            returns_to_go,
            self.noise((size, act_dim)),
            self.noise((size, act_dim)),
            self.uniform(sampled),
            self.noise(sampled),
            self.noise(sampled),
        )
        optimizer = self.optimizers["all"]
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        soft_update(self.targets["critic"], self.critic, config.tau)
        self.num_updates += 1
        return metrics

    def _losses(
        self,
        obs: torch.Tensor,
        actions: torch.Tensor,
        rewards: torch.Tensor,
        next_obs: torch.Tensor,
        terminals: torch.Tensor,
        returns_to_go: torch.Tensor,
        actor_noise: torch.Tensor,
        next_noise: torch.Tensor,
        uniform: torch.Tensor,
        current_noise: torch.Tensor,
        following_noise: torch.Tensor,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Critic, actor and temperature losses summed, and the per-seed metrics. The noise
        arguments are standard normal (uniform in [-1, 1) for ``uniform``) draws of the
        shapes the samples need: ``[seeds, B, act_dim]`` and ``[seeds, B * n, act_dim]``."""
        config = self.config
        obs, next_obs = self.norm(obs), self.norm(next_obs)
        alpha = self.log_alpha.exp().detach().unsqueeze(-1)

        # Actor and temperature (SAC), the critic a constant.
        action, log_prob = self.actor.sample(obs, actor_noise)
        q_action = self.critic(obs, action, detach=True).min(1).values
        actor_loss = (alpha * log_prob - q_action).mean(-1)
        alpha_loss = -(self.log_alpha.unsqueeze(-1) * (log_prob.detach() + self.target_entropy))
        alpha_loss = alpha_loss.mean(-1)

        # Critic: TD towards the target critics at the policy's next action.
        with torch.no_grad():
            next_action, _ = self.actor.sample(next_obs, next_noise)
            next_q = self.targets["critic"](next_obs, next_action).min(1).values
            td_target = rewards + config.discount * (1.0 - terminals) * next_q
        q_data = self.critic(obs, actions)  # [seeds, n, B]
        td_loss = (q_data - td_target.unsqueeze(1)).pow(2).mean(-1).sum(1)

        cql_gap = self._cql_gap(
            obs, next_obs, q_data, returns_to_go, uniform, current_noise, following_noise
        )
        critic_loss = td_loss + config.cql_alpha * cql_gap
        metrics = {
            "train/critic_loss": td_loss.detach(),
            "train/cql_gap": cql_gap.detach(),
            "train/actor_loss": actor_loss.detach(),
            "train/alpha": alpha.squeeze(-1),
            "train/q": q_data.detach().mean((1, 2)),
        }
        return (critic_loss + actor_loss + alpha_loss).sum(), metrics

    def _cql_gap(
        self,
        obs: torch.Tensor,
        next_obs: torch.Tensor,
        q_data: torch.Tensor,
        returns_to_go: torch.Tensor,
        uniform: torch.Tensor,
        current_noise: torch.Tensor,
        following_noise: torch.Tensor,
    ) -> torch.Tensor:
        """Cal-QL's conservative penalty per seed, ``[seeds]``: the soft maximum over sampled
        actions (uniform, and the policy's at the current and next states, each calibrated by
        the return-to-go) minus the data's values. ``obs``/``next_obs`` are normalised."""
        config = self.config
        seeds, size, act_dim = q_data.shape[0], q_data.shape[-1], uniform.shape[-1]
        n_actions = config.cql_n_actions
        with torch.no_grad():
            obs_rep = obs.repeat_interleave(n_actions, dim=1)  # [seeds, B * n_actions, obs]
            next_rep = next_obs.repeat_interleave(n_actions, dim=1)
            current, current_log_prob = self.actor.sample(obs_rep, current_noise)
            following, following_log_prob = self.actor.sample(next_rep, following_noise)

        def penalty_q(sampled: torch.Tensor) -> torch.Tensor:
            return self.critic(obs_rep, sampled).view(seeds, -1, size, n_actions)

        q_uniform, q_current, q_following = (
            penalty_q(uniform),
            penalty_q(current),
            penalty_q(following),
        )
        if config.calibrate:
            bound = returns_to_go.view(seeds, 1, size, 1)
            q_current = torch.maximum(q_current, bound)
            q_following = torch.maximum(q_following, bound)
        log_uniform = act_dim * math.log(0.5)
        candidates = torch.cat(
            [
                q_uniform - log_uniform,
                q_following - following_log_prob.view(seeds, 1, size, n_actions),
                q_current - current_log_prob.view(seeds, 1, size, n_actions),
            ],
            dim=-1,
        )
        temperature = config.cql_temperature
        soft_max = torch.logsumexp(candidates / temperature, dim=-1) * temperature
        cql_gap = (soft_max - q_data).mean(-1).sum(1)
        return cql_gap
