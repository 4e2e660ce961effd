"""Online fine-tuning: ``finetune(config, out_dir)`` runs any variant (``direct``, ``pex``,
``sft`` and its ablations) from a pretraining run, resumable from its own checkpoint.

Run directory (``out_dir``):

- ``eval.csv``: ``step, executed_score, learner_score, executed_return, learner_return``
  (step 0 is the offline policy; scores normalised 0-100 with the dataset's references);
- ``events.csv``: ``step, event, detail`` for ``switch``, ``reset``, ``anchor_update``;
- ``checks.csv``: every stability check: drift, calm count, ``J(A)``, ``J(L)``, verdict;
- ``train.csv``: mean losses and every estimator's values between evaluations;
- ``checkpoint.pt``: the full resumable state, written at episode ends (removed at the end);
- ``summary.json``: stability metrics, switch step, resets, wall time; written last.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from sftlib.agents import Agent, agent_class, build_config
from sftlib.buffer import Batch, Normalizer, ReplayBuffer, sample_mixed
from sftlib.checkpoint import (
    STATE,
    SUMMARY,
    CheckpointError,
    check_checkpoint_config,
    comparable_config,
    completed_summary,
    load_checkpoint,
    load_pretrained,
    write_csv,
)
from sftlib.config import FinetuneConfig
from sftlib.data import DatasetInfo, dataset_info, load_dataset, transitions
from sftlib.evaluation import evaluate_policy, to_env_action
from sftlib.metrics import stability_metrics
from sftlib.pretrain import eval_seed
from sftlib.sft import (
    FQE,
    ComprehensiveEvaluator,
    StabilityMonitor,
    improves,
    passes,
    select_action,
)
from sftlib.utils import (
    atomic_torch_save,
    atomic_write_json,
    resolve_device,
    rng_state,
    seed_everything,
    set_rng_state,
    set_threads,
)

EVAL_COLUMNS = ["step", "executed_score", "learner_score", "executed_return", "learner_return"]
EVENT_COLUMNS = ["step", "event", "detail"]
CHECK_COLUMNS = ["step", "drift", "calm", "j_anchor", "j_learner", "verdict"]


@dataclass
class FinetuneResult:
    """What a fine-tuning run produced."""

    out_dir: Path
    summary: dict[str, Any]
    curve: pd.DataFrame
    events: pd.DataFrame


def load_learner(pretrained: dict[str, Any], device: torch.device) -> Agent:
    """The agent saved by pretraining, ready to train on (optimiser state included)."""
    state = pretrained["agent"]
    cls = agent_class(state["algo"])
    agent = cls(
        state["obs_dim"],
        state["act_dim"],
        build_config(cls.config_cls, state["config"]),
        Normalizer.from_state_dict(state["normalizer"]),
        device,
    )
    # A copy: optimiser state loaded on CPU shares tensors with the dict it came from.
    agent.load_state_dict(copy.deepcopy(state))
    return agent


def check_compatible(pretrained: dict[str, Any], info: DatasetInfo, where: Path) -> None:
    """A checkpoint trained for another environment is refused before any compute."""
    s = pretrained["agent"]
    if (s["obs_dim"], s["act_dim"]) != (info.obs_dim, info.act_dim):
        raise CheckpointError(
            f"pretraining checkpoint in {where} is for observation size {s['obs_dim']} and "
            f"action size {s['act_dim']}, but {info.env_id} (dataset {info.dataset_id!r}) has "
            f"{info.obs_dim} and {info.act_dim}; pretrain on this dataset first"
        )


@dataclass
class _State:
    """Everything of a run that changes during fine-tuning (and goes into a checkpoint)."""

    step: int = 0
    stable: bool = False
    next_checkpoint: int = 0
    evals: list[dict] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    checks: list[dict] = field(default_factory=list)
    train: list[dict] = field(default_factory=list)
    sums: dict[str, float] = field(default_factory=dict)
    """Running sums of training metrics since the last evaluation (and their counts)."""
    counts: dict[str, int] = field(default_factory=dict)
    elapsed: float = 0.0

    def log(self, metrics: dict[str, float]) -> None:
        for k, v in metrics.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
            self.counts[k] = self.counts.get(k, 0) + 1

    def flush(self) -> dict[str, float]:
        means = {k: v / self.counts[k] for k, v in self.sums.items()}
        self.sums, self.counts = {}, {}
        return means


class FineTuner:
    """One fine-tuning run. Build it, then :meth:`run`. Exposes anchor, learner, selector
    and the mechanisms for tests and notebooks."""

    def __init__(self, config: FinetuneConfig, out_dir: str | Path) -> None:
        self.config, self.out = config, Path(out_dir)
        self.sft, self.variant = config.sft, config.sft.spec
        pretrain_dir = Path(config.pretrain_dir)
        pretrained = load_pretrained(pretrain_dir)
        ds = load_dataset(pretrained["dataset_id"])
        self.info = dataset_info(ds)
        check_compatible(pretrained, self.info, pretrain_dir)
        set_threads(config.threads)
        self.rng = seed_everything(config.seed)
        self.device = resolve_device(config.device)
        self.offline = transitions(ds)
        self.online = ReplayBuffer(
            self.info.obs_dim, self.info.act_dim, min(config.buffer_size, config.online_steps)
        )
        self.offline_state = pretrained["agent"]
        self.learner = load_learner(pretrained, self.device)
        self.anchor = self.learner.snapshot() if self.variant.composite else None
        self.estimator = self.sft.estimator
        self.evaluator = ComprehensiveEvaluator(self.sft.mc_episodes, self.learner.config.discount)
        self.monitor = StabilityMonitor(self.sft.drift_tol, self.sft.patience)
        self.fqe: dict[str, FQE] = {}
        if (
            self.variant.composite
            and self.variant.ope is not None
            and self.estimator in ("fqe", "cpe")
        ):
            self.fqe = {
                p: FQE(
                    self.learner.critic,
                    self.learner.normalizer,
                    self.learner.config.discount,
                    self.learner.config.tau,
                    self.sft.fqe_lr,
                    self.device,
                )
                for p in ("anchor", "learner")
            }
        self.probe: tuple[torch.Tensor, torch.Tensor] | None = None
        self.env = gym.make(self.info.env_id)
        self.s = _State(next_checkpoint=config.checkpoint_every)

    # --- who acts ------------------------------------------------------------------------
    @property
    def selector(self) -> Agent:
        """The selector critic's owner: the anchor until the learner is stable (``switch``
        variants), otherwise the learner."""
        if self.variant.switch and not self.s.stable:
            return self.anchor
        return self.learner

    def act(self, obs: np.ndarray, deterministic: bool) -> tuple[np.ndarray, str]:
        """The executed action at ``obs`` and the name of the policy that proposed it."""
        o = torch.as_tensor(obs, dtype=torch.float32)
        if not self.variant.composite:
            return self.learner.policy_action(o[None], deterministic)[0].cpu().numpy(), "learner"
        cands = torch.cat(
            [
                self.anchor.policy_action(o[None], deterministic),
                self.learner.policy_action(o[None], deterministic),
            ]
        )
        rule = "argmax" if deterministic else self.sft.selection_rule
        action, idx, _ = select_action(
            o, cands, self.selector, rule, self.sft.beta, self.sft.incumbent_margin
        )
        return action.cpu().numpy(), ("anchor", "learner")[idx]

    def sample_batch(self) -> Batch:
        """A training batch mixing offline and online transitions (``offline_ratio``)."""
        return sample_mixed(
            self.offline,
            self.online,
            self.learner.config.batch_size,
            self.config.offline_ratio,
            self.rng,
        )

    # --- mechanisms ------------------------------------------------------------------------
    def evaluate_policies(self, current_start: np.ndarray):
        """The comprehensive evaluation of anchor and learner: ``(J per policy, Estimates)``."""
        est = self.evaluator.estimate(
            {"anchor": self.anchor, "learner": self.learner},
            [self.anchor, self.learner],
            current_start,
            self.fqe or None,
        )
        return est.combine(self.estimator, self.sft.kappa), est

    def probe_values(self) -> torch.Tensor:
        """The learner critic's values on the fixed probe set (mean over members), ``[P]``."""
        if self.probe is None:
            n_off = self.sft.probe_size // 2
            n_on = min(self.sft.probe_size - n_off, len(self.online))
            obs = [self.offline.obs[self.offline.indices(n_off, self.rng)]]
            if n_on:
                obs.append(self.online.obs[self.online.indices(n_on, self.rng)])
            o = torch.as_tensor(np.concatenate(obs))
            self.probe = (o, self.learner.policy_action(o, deterministic=True))
        return self.learner.q_values(*self.probe).mean(0).cpu()

    def stability_check(self, current_start: np.ndarray) -> None:
        drift = self.monitor.check(self.probe_values())
        row = {
            "step": self.s.step,
            "drift": drift,
            "calm": self.monitor.calm,
            "j_anchor": None,
            "j_learner": None,
            "verdict": "unstable",
        }
        if self.monitor.calm_enough:
            j, _ = self.evaluate_policies(current_start)
            row.update(j_anchor=j["anchor"], j_learner=j["learner"])
            if passes(j["learner"], j["anchor"], self.sft.margin):
                row["verdict"] = "stable"
                self.s.stable = True
                self.s.events.append(
                    {
                        "step": self.s.step,
                        "event": "switch",
                        "detail": f"J(L)={j['learner']:.2f} J(A)={j['anchor']:.2f}",
                    }
                )
            else:
                row["verdict"] = "worse"
        self.s.checks.append(row)

    def reset(self, current_start: np.ndarray) -> None:
        """Anchor <- the better of anchor and learner snapshot; reset the learner; restart
        the stability clock so the anchor's critic selects again.

        The learner replaces the anchor only when clearly better (by ``margin``): its own
        critic tends to overrate its own policy, and a worse anchor would reach the
        executed policy.
        """
        j, _ = self.evaluate_policies(current_start)
        if improves(j["learner"], j["anchor"], self.sft.margin):
            self.anchor = self.learner.snapshot()
            if self.fqe:
                self.fqe["anchor"] = self.fqe["learner"].copy()
            self.s.events.append(
                {
                    "step": self.s.step,
                    "event": "anchor_update",
                    "detail": f"J(L)={j['learner']:.2f} > J(A)={j['anchor']:.2f}",
                }
            )
        self.learner.reset_networks(self.sft.reset_scope, self.sft.shrink_alpha, self.offline_state)
        self.monitor.restart()
        self.s.stable = False
        self.s.events.append(
            {"step": self.s.step, "event": "reset", "detail": self.sft.reset_scope}
        )

    def evaluate(self) -> dict[str, float]:
        """Executed (composite, deterministic) and learner-alone scores; never used for decisions."""
        seed = eval_seed(self.config.seed)
        n = self.config.eval_episodes
        learner = evaluate_policy(lambda o: self.learner.act(o, True), self.info.env_id, n, seed)
        if self.variant.composite:
            executed = evaluate_policy(lambda o: self.act(o, True)[0], self.info.env_id, n, seed)
        else:
            executed = learner
        return {
            "step": self.s.step,
            "executed_score": float(self.info.normalize(executed).mean()),
            "learner_score": float(self.info.normalize(learner).mean()),
            "executed_return": float(executed.mean()),
            "learner_return": float(learner.mean()),
        }

    # --- checkpoints --------------------------------------------------------------------------
    def _state_dict(self) -> dict[str, Any]:
        return {
            "learner": self.learner.state_dict(),
            "anchor": None if self.anchor is None else self.anchor.state_dict(),
            "fqe": {k: f.state_dict() for k, f in self.fqe.items()},
            "monitor": self.monitor.state_dict(),
            "evaluator": self.evaluator.state_dict(),
            "probe": self.probe,
            "online": self.online.state_dict(),
            "rng": rng_state(self.rng),
            "env_rng": self.env.unwrapped.np_random.bit_generator.state,
            "state": asdict(self.s),
            "config": comparable_config(self.config),
        }

    def _load(self, ckpt: dict[str, Any]) -> None:
        check_checkpoint_config(ckpt, self.config, self.out / STATE)
        self.learner.load_state_dict(ckpt["learner"])
        if ckpt["anchor"] is not None:
            self.anchor = load_learner({"agent": ckpt["anchor"]}, self.device).snapshot()
        for k, f in self.fqe.items():
            f.load_state_dict(ckpt["fqe"][k])
        self.monitor.load_state_dict(ckpt["monitor"])
        self.evaluator.load_state_dict(ckpt["evaluator"])
        self.probe = ckpt["probe"]
        self.online.load_state_dict(ckpt["online"])
        set_rng_state(ckpt["rng"], self.rng)
        self.env.reset(seed=0)  # create the env's generator, then restore it
        self.env.unwrapped.np_random.bit_generator.state = ckpt["env_rng"]
        self.s = _State(**ckpt["state"])

    # --- the loop -------------------------------------------------------------------------------
    def run(
        self, progress: bool = True, checkpoint: dict[str, Any] | None = None
    ) -> FinetuneResult:
        """Fine-tune to the end; ``checkpoint`` (or ``out_dir/checkpoint.pt``) resumes."""
        cfg, sft, v = self.config, self.sft, self.variant
        if checkpoint is None and (self.out / STATE).exists():
            checkpoint = load_checkpoint(self.out / STATE)
        if checkpoint is not None:
            self._load(checkpoint)
            obs, _ = self.env.reset()
        else:
            obs, _ = self.env.reset(seed=cfg.seed)
            self.s.evals.append(self.evaluate())
        t0 = time.perf_counter() - self.s.elapsed
        ep_start, ep_rewards, ep_who = obs, [], []
        bar = tqdm(
            range(self.s.step + 1, cfg.online_steps + 1),
            desc=f"finetune {sft.variant}",
            disable=not progress,
            initial=self.s.step,
            total=cfg.online_steps,
        )
        for step in bar:
            self.s.step = step
            action, who = self.act(obs, deterministic=False)
            next_obs, reward, term, trunc, _ = self.env.step(
                to_env_action(action, self.env.action_space)
            )
            # Time-limit truncation is not termination: only `term` stops bootstrapping.
            self.online.add(obs, action, reward, next_obs, term)
            ep_rewards.append(float(reward))
            ep_who.append(who)

            for _ in range(cfg.utd_ratio):
                self.s.log(self.learner.update(self.sample_batch(), online=True))
            if self.fqe and step % sft.fqe_every == 0:
                for name, policy in (("anchor", self.anchor), ("learner", self.learner)):
                    loss = self.fqe[name].update(self.sample_batch(), policy)
                    self.s.log({f"fqe/loss_{name}": loss})
            if v.composite and v.switch and not self.s.stable and step % sft.check_every == 0:
                self.stability_check(ep_start)
            if v.reset and step >= sft.reset_start and step % sft.reset_every == 0:
                self.reset(ep_start)
            if step % cfg.eval_every == 0 or step == cfg.online_steps:
                self.s.evals.append(self.evaluate())
                row = {"step": step, **self.s.flush(), "sft/stable": float(self.s.stable)}
                if v.composite and v.ope is not None:
                    j, est = self.evaluate_policies(ep_start)
                    row.update(
                        {"ope/J_anchor": j["anchor"], "ope/J_learner": j["learner"], **est.flat()}
                    )
                self.s.train.append(row)
                bar.set_postfix(score=f"{self.s.evals[-1]['executed_score']:.1f}")

            if term or trunc:
                if v.composite:
                    self.evaluator.add_episode(ep_start, ep_rewards, ep_who)
                if step >= self.s.next_checkpoint and step < cfg.online_steps:
                    while self.s.next_checkpoint <= step:
                        self.s.next_checkpoint += cfg.checkpoint_every
                    self.s.elapsed = time.perf_counter() - t0
                    atomic_torch_save(self.out / STATE, self._state_dict())
                obs, _ = self.env.reset()
                ep_start, ep_rewards, ep_who = obs, [], []
            else:
                obs = next_obs
        self.s.elapsed = time.perf_counter() - t0
        return self._finish()

    def _finish(self) -> FinetuneResult:
        s, cfg = self.s, self.config
        write_csv(self.out / "eval.csv", s.evals, EVAL_COLUMNS)
        write_csv(self.out / "events.csv", s.events, EVENT_COLUMNS)
        write_csv(self.out / "checks.csv", s.checks, CHECK_COLUMNS)
        write_csv(self.out / "train.csv", s.train)
        curve = pd.DataFrame(s.evals)
        switch = [e["step"] for e in s.events if e["event"] == "switch"]
        summary = {
            **stability_metrics(curve["step"].to_numpy(), curve["executed_score"].to_numpy()),
            "learner_score_final": float(curve["learner_score"].iloc[-1]),
            "switch_step": switch[0] if switch else None,
            "n_switches": len(switch),
            "n_resets": sum(e["event"] == "reset" for e in s.events),
            "wall_time_s": s.elapsed,
            "online_steps": cfg.online_steps,
            "variant": self.sft.variant,
            "algo": self.learner.name,
            "dataset_id": self.info.dataset_id,
            "seed": cfg.seed,
            "config": comparable_config(cfg),
        }
        atomic_write_json(self.out / SUMMARY, summary)
        (self.out / STATE).unlink(missing_ok=True)
        return _result(self.out, summary)


def _result(out: Path, summary: dict) -> FinetuneResult:
    return FinetuneResult(
        out, summary, pd.read_csv(out / "eval.csv"), pd.read_csv(out / "events.csv")
    )


def finetune(config: FinetuneConfig, out_dir: str | Path, progress: bool = True) -> FinetuneResult:
    """Fine-tune from ``config.pretrain_dir`` into ``out_dir``.

    A complete run (``summary.json`` present) is returned as it is; an interrupted one
    continues from ``checkpoint.pt`` and ends with exactly the numbers of an
    uninterrupted run. Every input is checked before any compute.
    """
    out = Path(out_dir)
    if (summary := completed_summary(out, config)) is not None:
        return _result(out, summary)
    checkpoint = None
    if (out / STATE).exists():
        checkpoint = load_checkpoint(out / STATE)
        check_checkpoint_config(checkpoint, config, out / STATE)
    return FineTuner(config, out).run(progress, checkpoint)
