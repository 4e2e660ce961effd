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

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from sftlib.agents import Agent
from sftlib.analysis.metrics import stability_metrics
from sftlib.config import FinetuneConfig, compile_update
from sftlib.data.buffer import Batch, ReplayBuffer, sample_online_data
from sftlib.data.datasets import DatasetInfo, dataset_info, load_dataset, transitions
from sftlib.data.envs import make_env
from sftlib.data.goals import shape_reward, success_rate
from sftlib.data.rollouts import evaluate_policy_with_success, to_env_action
from sftlib.layout import (
    CHECK_COLUMNS,
    CHECKS_CSV,
    EVAL_COLUMNS,
    EVAL_CSV,
    EVENT_COLUMNS,
    EVENTS_CSV,
    STATE,
    SUCCESS_COLUMNS,
    SUMMARY,
    TRAIN_CSV,
)
from sftlib.sft import (
    FQE,
    ComprehensiveEvaluator,
    Estimates,
    StabilityMonitor,
    StackedFQE,
    action_spread,
    fqe_critics,
    improves,
    in_support,
    mc_vetoes,
    passes,
    select_action,
)
from sftlib.training.checkpoint import (
    agent_from_state,
    check_checkpoint_config,
    check_compatible,
    comparable_config,
    completed_summary,
    finetune_checkpoint,
    load_checkpoint,
    load_pretrained,
    restore_finetune_checkpoint,
    write_csv,
)
from sftlib.utils import (
    atomic_torch_save,
    atomic_write_json,
    eval_seed,
    resolve_device,
    seed_everything,
    set_threads,
)


@dataclass
class FinetuneResult:
    """What a fine-tuning run produced."""

    out_dir: Path
    summary: dict[str, Any]
    curve: pd.DataFrame
    events: pd.DataFrame


@dataclass
class RunState:
    """Everything of a run that changes during fine-tuning (and goes into a checkpoint)."""

    step: int = 0
    stable: bool = False
    """Whether the learner has been judged stable (its critic then selects)."""
    next_checkpoint: int = 0
    evals: list[dict] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    checks: list[dict] = field(default_factory=list)
    train: list[dict] = field(default_factory=list)
    sums: dict[str, torch.Tensor] = field(default_factory=dict)
    """Running sums of training metrics since the last evaluation, kept as tensors so the
    hot loop never converts (and their counts)."""
    counts: dict[str, int] = field(default_factory=dict)
    elapsed: float = 0.0
    episodes: int = 0
    """Training episodes finished."""

    def log(self, metrics: dict[str, torch.Tensor]) -> None:
        for key, value in metrics.items():
            total = self.sums.get(key)
            self.sums[key] = value if total is None else total + value
            self.counts[key] = self.counts.get(key, 0) + 1

    def flush(self) -> dict[str, float]:
        means = {key: float(total.sum()) / self.counts[key] for key, total in self.sums.items()}
        self.sums, self.counts = {}, {}
        return means

    def add_event(self, event: str, detail: str) -> None:
        self.events.append({"step": self.step, "event": event, "detail": detail})


@dataclass
class Episode:
    """The running training episode: its first observation, and per step its reward, the
    policy that acted and the online buffer row written."""

    start: np.ndarray
    rewards: list[float] = field(default_factory=list)
    actors: list[str] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)


class FineTuner:
    """One fine-tuning run. Build it, then :meth:`run`. Exposes anchor, learner, selector
    and the mechanisms for tests and notebooks."""

    def __init__(
        self,
        config: FinetuneConfig,
        out_dir: str | Path,
        offline: tuple[DatasetInfo, ReplayBuffer] | None = None,
    ) -> None:
        """``offline``: the dataset's info and transitions, already loaded for this run's
        pretraining checkpoint (runs of one batch share them); loaded here when ``None``."""
        self.config, self.out = config, Path(out_dir)
        self.sft_config = config.sft
        self.variant = config.sft.spec
        pretrain_dir = Path(config.pretrain_dir)
        pretrained = load_pretrained(pretrain_dir)
        # The critic was pretrained on rewards under this convention: keep its scale online.
        self.reward_convention = pretrained["config"].get("reward_convention", "raw")
        if offline is None:
            dataset = load_dataset(pretrained["dataset_id"])
            offline = (
                dataset_info(dataset),
                transitions(dataset, reward_convention=self.reward_convention),
            )
        self.info, self.offline = offline
        check_compatible(pretrained, self.info, pretrain_dir)
        set_threads(config.threads)
        self.rng = seed_everything(config.seed)
        self.device = resolve_device(config.device)
        self.online = ReplayBuffer(
            self.info.obs_dim, self.info.act_dim, min(config.buffer_size, config.online_steps)
        )
        self.offline_state = pretrained["agent"]
        self.learner = agent_from_state(pretrained["agent"], self.device)
        self.online_data = config.online_data_for(self.learner.name)
        if config.reset_optimizer:
            self.learner.reset_optimizers()
        updates = config.online_steps * config.utd_ratio
        if compile_update(config.torch_compile, self.learner.compile_wins, updates):
            self.learner.compile_update()
        if self.learner.needs_returns_to_go:
            self.offline.fill_returns_to_go(self.learner.config.discount)
        self.anchor = self.learner.snapshot() if self.variant.composite else None
        self.estimator = self.sft_config.estimator
        self.evaluator = ComprehensiveEvaluator(
            self.sft_config.mc_episodes, self.learner.config.discount
        )
        self.monitor = StabilityMonitor(self.sft_config.drift_tol, self.sft_config.patience)
        self.fqe: dict[str, FQE] = {}
        if self.variant.composite and self.variant.ope and self.estimator in ("fqe", "cpe"):
            self.fqe = fqe_critics(self.learner, self.sft_config.fqe_lr)
        self.probe: tuple[torch.Tensor, torch.Tensor] | None = None
        self.refresh_support()
        self.env = make_env(self.info)
        self.state = RunState(next_checkpoint=config.checkpoint_every)
        self.episode: Episode | None = None
        """The running training episode (set by :meth:`begin`)."""
        self.clock_start = 0.0
        """``perf_counter`` at which the run would have started without interruptions."""
        self.seeds_in_process = 1
        """How many seeds fine-tuned side by side in this run's process
        (:func:`sftlib.training.loop.finetune_seeds`)."""

    # --- who acts ------------------------------------------------------------------------
    @property
    def selector(self) -> Agent:
        """The selector critic's owner: the anchor until the learner is stable (``switch``
        variants), otherwise the learner."""
        if self.variant.switch and not self.state.stable:
            return self.anchor
        return self.learner

    @property
    def probing(self) -> bool:
        """Whether the running training episode is a probe (``probe_every``): before the
        switch, every ``probe_every``-th episode the learner acts alone."""
        every = self.sft_config.probe_every
        return (
            every > 0
            and self.variant.composite
            and self.variant.switch
            and not self.state.stable
            and self.state.episodes % every == every - 1
        )

    def act(self, obs: np.ndarray, deterministic: bool) -> tuple[np.ndarray, str]:
        """The executed action at ``obs`` and the name of the policy that proposed it
        (training actions of a probe episode are the learner's alone; evaluation never
        probes)."""
        obs_tensor = torch.as_tensor(obs, dtype=torch.float32)
        if not self.variant.composite or (not deterministic and self.probing):
            action = self.learner.policy_action(obs_tensor[None], deterministic)[0]
            return action.cpu().numpy(), "learner"
        candidates = torch.cat(
            [
                self.anchor.policy_action(obs_tensor[None], deterministic),
                self.learner.policy_action(obs_tensor[None], deterministic),
            ]
        )
        allowed = None
        if self.support_spread is not None and self.selector is self.anchor:
            inside = in_support(
                candidates[1], candidates[0], self.support_spread, self.sft_config.support_k
            )
            allowed = torch.tensor([True, inside])
        action, index, _ = select_action(
            obs_tensor,
            candidates,
            self.selector,
            self.sft_config.rule_for(deterministic),
            self.sft_config.beta,
            self.sft_config.incumbent_margin,
            self.sft_config.lcb_k,
            allowed,
        )
        return action.cpu().numpy(), ("anchor", "learner")[index]

    def refresh_support(self) -> None:
        """The anchor's support width (:func:`action_spread`) when ``support_k`` is on."""
        self.support_spread = None
        if self.variant.composite and self.sft_config.support_k > 0:
            self.support_spread = action_spread(self.anchor, self.offline)

    def sample_batch(self) -> Batch:
        """A training batch of offline and online transitions, by the rule ``online_data``
        (``mix``: a fixed ``offline_ratio``; ``append``: the natural ratio)."""
        return sample_online_data(
            self.offline,
            self.online,
            self.learner.config.batch_size,
            self.online_data,
            self.config.offline_ratio,
            self.rng,
        )

    # --- mechanisms ------------------------------------------------------------------------
    @property
    def policies(self) -> dict[str, Agent]:
        """Anchor and learner by name (:data:`sftlib.sft.POLICIES`)."""
        return {"anchor": self.anchor, "learner": self.learner}

    def evaluate_policies(self, current_start: np.ndarray):
        """The comprehensive evaluation of anchor and learner: ``(J per policy, Estimates)``."""
        estimates = self.evaluator.estimate(
            self.policies, [self.anchor, self.learner], current_start, self.fqe or None
        )
        return estimates.combine(self.estimator, self.sft_config.kappa), estimates

    def probe_values(self) -> torch.Tensor:
        """The learner critic's values on the fixed probe set (mean over members), ``[P]``."""
        if self.probe is None:
            n_offline = self.sft_config.probe_size // 2
            n_online = min(self.sft_config.probe_size - n_offline, len(self.online))
            states = [self.offline.obs[self.offline.indices(n_offline, self.rng)]]
            if n_online:
                states.append(self.online.obs[self.online.indices(n_online, self.rng)])
            probe_obs = torch.as_tensor(np.concatenate(states))
            self.probe = (probe_obs, self.learner.policy_action(probe_obs, deterministic=True))
        return self.learner.q_values(*self.probe).mean(0).cpu()

    def stability_check(self, current_start: np.ndarray) -> None:
        drift = self.monitor.check(self.probe_values())
        row = {
            "step": self.state.step,
            "drift": drift,
            "calm": self.monitor.calm,
            "j_anchor": None,
            "j_learner": None,
            "verdict": "unstable",
        }
        if self.monitor.calm_enough:
            values, estimates = self.evaluate_policies(current_start)
            row.update(j_anchor=values["anchor"], j_learner=values["learner"])
            if not passes(values["learner"], values["anchor"], self.sft_config.margin):
                row["verdict"] = "worse"
            elif self.vetoed(estimates):
                row["verdict"] = "mc_veto"
            else:
                row["verdict"] = "stable"
                self.state.stable = True
                self.state.add_event(
                    "switch", f"J(L)={values['learner']:.2f} J(A)={values['anchor']:.2f}"
                )
        self.state.checks.append(row)

    def vetoed(self, estimates: Estimates) -> bool:
        """Whether the Monte-Carlo veto (``mc_veto``) refuses what the critics favour."""
        if not self.sft_config.mc_veto:
            return False
        mc = estimates.mc
        return mc_vetoes(
            mc.get("learner"),
            mc.get("anchor"),
            self.sft_config.margin,
            estimates.exec_share.get("learner", 0.0),
            self.sft_config.mc_min_share,
        )

    def reset(self, current_start: np.ndarray) -> None:
        """Anchor <- the better of anchor and learner snapshot; reset the learner; restart
        the stability clock so the anchor's critic selects again.

        The learner replaces the anchor only when clearly better (by ``margin``): its own
        critic tends to overrate its own policy, and a worse anchor would reach the
        executed policy.
        """
        values, estimates = self.evaluate_policies(current_start)
        better = improves(values["learner"], values["anchor"], self.sft_config.margin)
        if better and self.vetoed(estimates):
            self.state.add_event("mc_veto", f"J(L)={values['learner']:.2f} favoured")
        elif better:
            self.anchor = self.learner.snapshot()
            self.refresh_support()
            if self.fqe:
                self.fqe["anchor"].assign(self.fqe["learner"])
            self.state.add_event(
                "anchor_update", f"J(L)={values['learner']:.2f} > J(A)={values['anchor']:.2f}"
            )
        self.learner.reset_networks(
            self.sft_config.reset_scope, self.sft_config.shrink_alpha, self.offline_state
        )
        # The recent episodes describe the learner before its reset (and maybe the old
        # anchor): Monte-Carlo estimates start afresh with the new pair.
        self.evaluator.episodes.clear()
        self.monitor.restart()
        self.state.stable = False
        self.state.add_event("reset", self.sft_config.reset_scope)

    def evaluate(self) -> dict[str, float]:
        """Executed (composite, deterministic) and learner-alone scores; never used for decisions."""
        seed = eval_seed(self.config.seed)
        n_episodes = self.config.eval_episodes
        learner, learner_success = evaluate_policy_with_success(
            lambda o: self.learner.act(o, True), self.info, n_episodes, seed
        )
        if self.variant.composite:
            executed, executed_success = evaluate_policy_with_success(
                lambda o: self.act(o, True)[0], self.info, n_episodes, seed
            )
        else:
            executed, executed_success = learner, learner_success
        row = {
            "step": self.state.step,
            "executed_score": float(self.info.normalize(executed).mean()),
            "learner_score": float(self.info.normalize(learner).mean()),
            "executed_return": float(executed.mean()),
            "learner_return": float(learner.mean()),
        }
        if self.info.success_key is not None:
            row["executed_success"] = success_rate(executed_success)
            row["learner_success"] = success_rate(learner_success)
        return row

    # --- the loop -------------------------------------------------------------------------------
    def begin(self, checkpoint: dict[str, Any] | None = None) -> np.ndarray:
        """Restore ``checkpoint`` (or ``out_dir/checkpoint.pt``), or start afresh with an
        evaluation of the offline policy; the first observation."""
        if checkpoint is None and (self.out / STATE).exists():
            checkpoint = load_checkpoint(self.out / STATE)
        if checkpoint is not None:
            restore_finetune_checkpoint(self, checkpoint)
            obs, _ = self.env.reset()
        else:
            obs, _ = self.env.reset(seed=self.config.seed)
            self.state.evals.append(self.evaluate())
        self.clock_start = time.perf_counter() - self.state.elapsed
        self.episode = Episode(obs)
        return obs

    def explore(
        self, obs: np.ndarray, action: np.ndarray, actor_name: str
    ) -> tuple[np.ndarray, bool]:
        """Execute ``action`` in the environment and store the transition: ``(next_obs,
        whether the episode ended)``."""
        next_obs, reward, terminated, truncated, _ = self.env.step(
            to_env_action(action, self.env.action_space)
        )
        reward = shape_reward(float(reward), self.reward_convention)
        # Time-limit truncation is not termination: only `terminated` stops bootstrapping.
        episode = self.episode
        episode.rows.append(self.online.add(obs, action, reward, next_obs, terminated))
        episode.rewards.append(reward)
        episode.actors.append(actor_name)
        return next_obs, terminated or truncated

    def evaluates_at(self, step: int) -> bool:
        """Whether step ``step`` ends with an evaluation."""
        return step % self.config.eval_every == 0 or step == self.config.online_steps

    def checkpoint_due(self, step: int) -> bool:
        """Whether an episode ending at ``step`` writes a checkpoint."""
        return self.state.next_checkpoint <= step < self.config.online_steps

    def fqe_due(self, step: int) -> bool:
        """Whether the FQE critics take a gradient step at step ``step`` (:func:`update_fqe`)."""
        return bool(self.fqe) and step % self.sft_config.fqe_every == 0

    def review(self, step: int) -> None:
        """What follows the learner's and the FQE critics' updates at step ``step``:
        stability check, reset and evaluation, as their schedules say."""
        sft_config, variant, state = self.sft_config, self.variant, self.state
        episode_start = self.episode.start
        if (
            variant.composite
            and variant.switch
            and not state.stable
            and step % sft_config.check_every == 0
        ):
            self.stability_check(episode_start)
        if (
            variant.reset
            and step >= sft_config.reset_start
            and step % sft_config.reset_every == 0
            and step < self.config.online_steps  # a reset at the end would leave it untrained
        ):
            self.reset(episode_start)
        if self.evaluates_at(step):
            state.evals.append(self.evaluate())
            row = {"step": step, **state.flush(), "sft/stable": float(state.stable)}
            if variant.composite and variant.ope is not None:
                values, estimates = self.evaluate_policies(episode_start)
                row.update(
                    {
                        "ope/J_anchor": values["anchor"],
                        "ope/J_learner": values["learner"],
                        **estimates.flat(),
                    }
                )
            state.train.append(row)

    def end_episode(self, step: int) -> np.ndarray:
        """Close the running episode (returns-to-go, Monte-Carlo record, checkpoint when
        due) and start the next one; its first observation."""
        state, episode = self.state, self.episode
        state.episodes += 1
        self.online.end_episode(np.asarray(episode.rows), self.learner.config.discount)
        if self.variant.composite:
            self.evaluator.add_episode(episode.start, episode.rewards, episode.actors)
        if self.checkpoint_due(step):
            while state.next_checkpoint <= step:
                state.next_checkpoint += self.config.checkpoint_every
            state.elapsed = time.perf_counter() - self.clock_start
            atomic_torch_save(self.out / STATE, finetune_checkpoint(self))
        obs, _ = self.env.reset()
        self.episode = Episode(obs)
        return obs

    def run(
        self, progress: bool = True, checkpoint: dict[str, Any] | None = None
    ) -> FinetuneResult:
        """Fine-tune to the end; ``checkpoint`` (or ``out_dir/checkpoint.pt``) resumes."""
        config = self.config
        obs = self.begin(checkpoint)
        state = self.state  # a restored checkpoint replaced it
        # The anchor's and the learner's FQE critics train as one stack (after any restore).
        fqe = StackedFQE(list(self.fqe.values())) if self.fqe else None
        bar = tqdm(
            range(state.step + 1, config.online_steps + 1),
            desc=f"finetune {self.sft_config.variant}",
            disable=not progress,
            initial=state.step,
            total=config.online_steps,
        )
        for step in bar:
            state.step = step
            action, actor_name = self.act(obs, deterministic=False)
            next_obs, done = self.explore(obs, action, actor_name)
            for _ in range(config.utd_ratio):
                state.log(self.learner.update(self.sample_batch(), online=True))
            if fqe is not None and self.fqe_due(step):
                update_fqe(fqe, [self])
            self.review(step)
            if self.evaluates_at(step):
                bar.set_postfix(score=f"{state.evals[-1]['executed_score']:.1f}")
            obs = self.end_episode(step) if done else next_obs
        state.elapsed = time.perf_counter() - self.clock_start
        return self.finish()

    def finish(self) -> FinetuneResult:
        """Write the run's CSV files and, last, its summary; remove the checkpoint."""
        state, config = self.state, self.config
        success = SUCCESS_COLUMNS if self.info.success_key is not None else []
        write_csv(self.out / EVAL_CSV, state.evals, EVAL_COLUMNS + success)
        write_csv(self.out / EVENTS_CSV, state.events, EVENT_COLUMNS)
        write_csv(self.out / CHECKS_CSV, state.checks, CHECK_COLUMNS)
        write_csv(self.out / TRAIN_CSV, state.train)
        curve = pd.DataFrame(state.evals)
        switches = [e["step"] for e in state.events if e["event"] == "switch"]
        summary = {
            **stability_metrics(curve["step"].to_numpy(), curve["executed_score"].to_numpy()),
            "learner_score_final": float(curve["learner_score"].iloc[-1]),
            **(
                {"success_final": float(curve["executed_success"].iloc[-1])}
                if self.info.success_key is not None
                else {}
            ),
            "switch_step": switches[0] if switches else None,
            "n_switches": len(switches),
            "n_resets": sum(e["event"] == "reset" for e in state.events),
            "wall_time_s": state.elapsed,
            "seeds_in_process": self.seeds_in_process,
            "online_steps": config.online_steps,
            "online_data": self.online_data,
            "compiled": self.learner.compiled,
            "variant": self.sft_config.variant,
            "algo": self.learner.name,
            "dataset_id": self.info.dataset_id,
            "seed": config.seed,
            "config": comparable_config(config),
        }
        atomic_write_json(self.out / SUMMARY, summary)
        (self.out / STATE).unlink(missing_ok=True)
        return _result(self.out, summary)


def update_fqe(stack: StackedFQE, tuners: Sequence[FineTuner]) -> None:
    """One step of every FQE critic of ``tuners`` as one update of ``stack`` (which holds
    them in that order, each run's in the order of its ``fqe``), each on a batch of its run's,
    drawn in that order; each run logs its own losses."""
    batches, policies = [], []
    for tuner in tuners:
        for name in tuner.fqe:
            batches.append(tuner.sample_batch())
            policies.append(tuner.policies[name])
    losses = iter(stack.update(batches, policies).split(1))
    for tuner in tuners:
        for name in tuner.fqe:
            tuner.state.log({f"fqe/loss_{name}": next(losses)})


def _result(out: Path, summary: dict) -> FinetuneResult:
    return FinetuneResult(out, summary, pd.read_csv(out / EVAL_CSV), pd.read_csv(out / EVENTS_CSV))


def resume_point(out: Path, config: FinetuneConfig) -> tuple[FinetuneResult | None, dict | None]:
    """``(result, None)`` for a complete run in ``out``, ``(None, checkpoint)`` for an
    interrupted one, ``(None, None)`` for one not started; checked against ``config``."""
    if (summary := completed_summary(out, config)) is not None:
        return _result(out, summary), None
    checkpoint = None
    if (out / STATE).exists():
        checkpoint = load_checkpoint(out / STATE)
        check_checkpoint_config(checkpoint, config, out / STATE)
    return None, checkpoint


def finetune(config: FinetuneConfig, out_dir: str | Path, progress: bool = True) -> FinetuneResult:
    """Fine-tune from ``config.pretrain_dir`` into ``out_dir``.

    A complete run (``summary.json`` present) is returned as it is; an interrupted one
    continues from ``checkpoint.pt`` and ends with exactly the numbers of an
    uninterrupted run. Every input is checked before any compute.
    """
    out = Path(out_dir)
    result, checkpoint = resume_point(out, config)
    if result is not None:
        return result
    return FineTuner(config, out).run(progress, checkpoint)
