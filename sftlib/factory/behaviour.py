"""Behaviour policies for the dataset factory: SAC trained online, with snapshots.

D4RL's recipe: ``expert`` is a fully trained SAC policy, ``medium`` a policy of the same
run at about a third of the expert's return, ``medium-replay`` the data seen while
training up to ``medium``. Here training keeps actor snapshots along the way; the
factory replays them (see :mod:`sftlib.factory`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from torch.distributions import Normal
from tqdm.auto import tqdm

from sftlib.agents import SAC, SACConfig
from sftlib.agents.networks import LOG_STD_MAX, LOG_STD_MIN, GaussianActor
from sftlib.data.buffer import ReplayBuffer
from sftlib.data.envs import gym_make
from sftlib.data.rollouts import evaluate_policy, from_env_action, to_env_action
from sftlib.utils import seed_everything

BehaviourRecord = dict[str, Any]
"""``{env_id, obs_dim, act_dim, hidden, random_return, snapshots: [{step, return, actor}]}``."""


def train_behaviour(
    env_id: str,
    total_steps: int = 300_000,
    seed: int = 0,
    snapshot_every: int = 10_000,
    start_steps: int = 5_000,
    eval_episodes: int = 5,
    hidden: tuple[int, ...] = (256, 256),
    progress: bool = True,
) -> BehaviourRecord:
    """Train SAC on ``env_id`` for ``total_steps`` environment steps (one update each),
    evaluating and snapshotting the actor every ``snapshot_every`` steps."""
    if total_steps <= 0 or snapshot_every <= 0:
        raise ValueError("total_steps and snapshot_every must be positive")
    rng = seed_everything(seed)
    env = gym_make(env_id)
    env.action_space.seed(seed)
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    agent = SAC(obs_dim, act_dim, SACConfig(hidden=hidden))
    buf = ReplayBuffer(obs_dim, act_dim, total_steps)
    record: BehaviourRecord = {
        "env_id": env_id,
        "obs_dim": obs_dim,
        "act_dim": act_dim,
        "hidden": list(hidden),
        "random_return": float(random_return(env_id, 10, seed=10_000 + seed)),
        "snapshots": [],
    }
    obs, _ = env.reset(seed=seed)
    bar = tqdm(range(1, total_steps + 1), desc=f"SAC {env_id}", disable=not progress)
    for step in bar:
        if step <= start_steps:
            action = from_env_action(env.action_space.sample(), env.action_space)
        else:
            action = agent.act(obs, deterministic=False)
        next_obs, r, term, trunc, _ = env.step(to_env_action(action, env.action_space))
        buf.add(obs, action, r, next_obs, term)
        obs = next_obs
        if term or trunc:
            obs, _ = env.reset()
        if step > start_steps:
            agent.update(buf.sample(agent.config.batch_size, rng))
        if step % snapshot_every == 0:
            ret = evaluate_policy(
                lambda o: agent.act(o, deterministic=True), env_id, eval_episodes, 20_000 + seed
            ).mean()
            record["snapshots"].append(
                {"step": step, "return": float(ret), "actor": asset_state(agent.actor)}
            )
            bar.set_postfix(ret=f"{ret:.0f}")
    env.close()
    return record


def random_return(env_id: str, n_episodes: int, seed: int) -> float:
    """Mean return of the uniform random policy (the ``ref_min_score``)."""
    space = gym_make(env_id).action_space
    space.seed(seed)
    return float(
        evaluate_policy(
            lambda o: from_env_action(space.sample(), space), env_id, n_episodes, seed
        ).mean()
    )


def choose_levels(record: BehaviourRecord) -> dict[str, int]:
    """Indices of the ``expert`` snapshot (best return) and the ``medium`` one (the earlier
    snapshot whose return is closest to a third of the way from random to expert)."""
    snaps = record["snapshots"]
    if not snaps:
        raise ValueError(f"behaviour record for {record['env_id']} holds no snapshot")
    expert = int(np.argmax([s["return"] for s in snaps]))
    lo = record["random_return"]
    goal = lo + (snaps[expert]["return"] - lo) / 3.0
    medium = min(range(expert + 1), key=lambda i: abs(snaps[i]["return"] - goal))
    return {"medium": medium, "expert": expert}


def prune(record: BehaviourRecord) -> BehaviourRecord:
    """Keep only the snapshots the factory uses: those up to ``medium`` and ``expert``."""
    lv = choose_levels(record)
    keep = list(range(lv["medium"] + 1)) + ([lv["expert"]] if lv["expert"] > lv["medium"] else [])
    return {**record, "snapshots": [record["snapshots"][i] for i in keep]}


class BehaviourActor(nn.Module):
    """SAC's squashed Gaussian actor in the layout of the shipped assets: an ``nn.Sequential``
    of ``nn.Linear`` layers (``net.0``, ``net.2``, ...) whose output is ``[mean, log_std]``.

    The assets keep this layout whatever the training networks look like, so the datasets
    made from them stay the same; :func:`asset_state` converts a trained actor to it.
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        last = obs_dim
        for width in hidden:
            layers += [nn.Linear(last, width), nn.ReLU()]
            last = width
        layers.append(nn.Linear(last, 2 * act_dim))
        self.net = nn.Sequential(*layers)

    def _distribution(self, obs: torch.Tensor) -> Normal:
        mean, log_std = self.net(obs).chunk(2, dim=-1)
        return Normal(mean, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX).exp())

    def sample(self, obs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """``tanh`` of a sample of the Gaussian drawn with ``generator``, ``[B, act_dim]``."""
        distribution = self._distribution(obs)
        noise = torch.randn(distribution.mean.shape, generator=generator)
        return torch.tanh(distribution.mean + distribution.stddev * noise)

    def deterministic(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self._distribution(obs).mean)


def asset_state(actor: GaussianActor) -> dict[str, torch.Tensor]:
    """A one-seed training actor's weights in the :class:`BehaviourActor` layout."""
    state = {}
    for index, layer in enumerate(actor.net.layers):
        state[f"net.{2 * index}.weight"] = layer.weight[0].detach().t().clone()
        state[f"net.{2 * index}.bias"] = layer.bias[0, 0].detach().clone()
    return state


def snapshot_actor(record: BehaviourRecord, index: int) -> BehaviourActor:
    """The actor of snapshot ``index`` (SAC's squashed Gaussian, raw observations)."""
    actor = BehaviourActor(record["obs_dim"], record["act_dim"], tuple(record["hidden"]))
    actor.load_state_dict(record["snapshots"][index]["actor"])
    actor.requires_grad_(False)
    return actor


def snapshot_policy(record: BehaviourRecord, index: int, deterministic: bool, seed: int = 0):
    """A numpy policy ``obs -> action in [-1, 1]`` from snapshot ``index``; a stochastic one
    draws its noise from its own generator seeded with ``seed``, so the data it makes
    depends on nothing else that ran in the process."""
    actor = snapshot_actor(record, index)
    generator = torch.Generator().manual_seed(seed)

    @torch.no_grad()
    def policy(obs: np.ndarray) -> np.ndarray:
        o = torch.as_tensor(obs, dtype=torch.float32).unsqueeze(0)
        a = actor.deterministic(o) if deterministic else actor.sample(o, generator)
        return a[0].numpy()

    return policy
