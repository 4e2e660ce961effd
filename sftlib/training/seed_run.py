"""One seed's fine-tuning run: its data, environment, learner, who acts (a control from
:mod:`sftlib.sft.control`), its logs, checkpoint and files. The loop that drives one or many
runs step by step is :func:`sftlib.training.finetune.finetune_seeds`.

Run directory (``out_dir``):

- ``eval.csv``: ``step, executed_score, learner_score, executed_return, learner_return``
  (step 0 is the offline policy; scores normalised 0-100 with the dataset's references), and
  ``anchor_score, anchor_return`` (the frozen anchor alone) for variants with an anchor;
- ``events.csv``: ``step, event, detail`` for the control's decisions: ``switch``,
  ``promote``, ``demote``, ``mc_veto``, ``anchor_update``, ``reset``, ``warmup_end``;
- ``episodes.csv``: one row per training episode: start step, length, raw and normalised
  return, the share of its steps each policy drove (the online cost);
- ``checks.csv``: every stability check: drift, calm count, ``J(A)``, ``J(L)``, verdict;
- ``train.csv``: mean losses and every estimator's values between evaluations;
- ``checkpoint.pt``: the full resumable state, written at episode ends (removed at the end);
- ``summary.json``: stability metrics, switch step, resets, online regret, decisions judged
  right, device, wall time; written last.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from sftlib.agents import agent_from_state
from sftlib.analysis.metrics import decision_calls, online_cost, stability_metrics
from sftlib.config import FinetuneConfig, compile_mode, compile_update
from sftlib.data.buffer import Draw, ReplayBuffer, draw_online_data
from sftlib.data.datasets import DatasetInfo, dataset_info, load_dataset, transitions
from sftlib.data.envs import make_env
from sftlib.data.goals import shape_reward
from sftlib.data.rollouts import to_env_action
from sftlib.layout import (
    ANCHOR_COLUMNS,
    CHECK_COLUMNS,
    CHECKS_CSV,
    EPISODE_COLUMNS,
    EPISODES_CSV,
    EVAL_COLUMNS,
    EVAL_CSV,
    EVENT_COLUMNS,
    EVENTS_CSV,
    STATE,
    SUCCESS_COLUMNS,
    SUMMARY,
    TRAIN_CSV,
)
from sftlib.sft.control import Control, LearnerAlone, PolicyExpansion, RunParts, Warmup
from sftlib.sft.episode_control import EpisodeSelection
from sftlib.sft.state_control import StateSelection
from sftlib.training.checkpoint import (
    AGENT_FORMAT,
    check_checkpoint_config,
    check_compatible,
    comparable_config,
    completed_summary,
    load_checkpoint,
    load_pretrained,
    write_csv,
)
from sftlib.training.live import make_logger, run_tags
from sftlib.utils import (
    atomic_torch_save,
    atomic_write_json,
    resolve_device,
    rng_state,
    seed_everything,
    set_rng_state,
    set_threads,
    use_tf32,
)

CONTROL_CLASSES: dict[str, type[Control]] = {
    "learner": LearnerAlone,
    "expansion": PolicyExpansion,
    "warmup": Warmup,
    "state": StateSelection,
    "episode": EpisodeSelection,
}
"""Who acts, by the ``control`` of a variant (:data:`sftlib.config.CONTROLS`)."""


@dataclass
class FinetuneResult:
    """What a fine-tuning run produced."""

    out_dir: Path
    summary: dict[str, Any]
    curve: pd.DataFrame
    events: pd.DataFrame


@dataclass
class RunState:
    """Everything of a run's loop and logs that changes during fine-tuning (checkpointed);
    the journal its control records its decisions in."""

    step: int = 0
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
    episode_log: list[dict] = field(default_factory=list)
    """One row per finished training episode (``episodes.csv``)."""

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

    def add_check(self, row: dict[str, Any]) -> None:
        self.checks.append(row)


@dataclass
class TrainingEpisode:
    """The running training episode: its first observation, and per step its reward, the
    policy that acted and the online buffer row written."""

    start: np.ndarray
    start_step: int = 1
    raw_return: float = 0.0
    """The environment's undiscounted return (before any reward shaping)."""
    rewards: list[float] = field(default_factory=list)
    actors: list[str] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)

    def row(self, normalize: Callable[[np.ndarray], np.ndarray]) -> dict[str, Any]:
        """The finished episode's row of ``episodes.csv`` (:data:`EPISODE_COLUMNS`)."""
        length = len(self.rewards)
        return {
            "start_step": self.start_step,
            "length": length,
            "return": self.raw_return,
            "normalized_return": float(normalize(np.array([self.raw_return]))[0]),
            "share_anchor": self.actors.count("anchor") / length,
            "share_learner": self.actors.count("learner") / length,
        }


class FineTuner:
    """One seed's fine-tuning run; :func:`sftlib.training.finetune.finetune_seeds` drives it.
    ``offline``: the dataset's info and transitions, already loaded for this run's pretraining
    checkpoint (runs of one batch share them); loaded here when ``None``. ``seeds``: how many
    seeds run side by side in this process (the device ``auto`` picks depends on it);
    ``pretrained``: the checkpoint of ``pretrain_dir``, when already loaded (only read)."""

    def __init__(
        self,
        config: FinetuneConfig,
        out_dir: str | Path,
        offline: tuple[DatasetInfo, ReplayBuffer] | None = None,
        seeds: int = 1,
        pretrained: dict[str, Any] | None = None,
    ) -> None:
        self.config, self.out = config, Path(out_dir)
        pretrain_dir = Path(config.pretrain_dir)
        if pretrained is None:  # not yet loaded by the batch's checks
            pretrained = load_pretrained(pretrain_dir)
        # The critic was pretrained on rewards under this convention: keep its scale online.
        self.reward_convention = pretrained["config"].get("reward_convention", "raw")
        if offline is None:
            dataset = load_dataset(pretrained["dataset_id"])
            rewards = self.reward_convention
            offline = (dataset_info(dataset), transitions(dataset, reward_convention=rewards))
        self.info, self.offline = offline
        check_compatible(pretrained, self.info, pretrain_dir)
        set_threads(config.threads)
        self.rng = seed_everything(config.seed)
        hidden = pretrained["agent"]["config"].get("hidden", ())
        self.device = resolve_device(config.device, hidden, seeds)
        use_tf32(config.tf32)
        capacity = min(config.buffer_size, config.online_steps)
        self.online = ReplayBuffer(self.info.obs_dim, self.info.act_dim, capacity)
        self.learner = agent_from_state(pretrained["agent"], self.device)
        self.online_data = config.online_data_for(self.learner.name)
        if config.reset_optimizer:
            self.learner.reset_optimizers()
        updates = config.online_steps * config.utd_ratio
        if compile_update(config.torch_compile, self.learner.compile_wins, updates):
            self.learner.compile_update(compile_mode(config.torch_compile))
        if self.learner.needs_returns_to_go:
            self.offline.fill_returns_to_go(self.learner.config.discount)
        self.control = self.make_control(pretrained["agent"])
        self.env = make_env(self.info)
        self.state = RunState(next_checkpoint=config.checkpoint_every)
        self.episode: TrainingEpisode | None = None
        """The running training episode (set by :meth:`begin`)."""
        self.clock_start = 0.0
        """``perf_counter`` at which the run would have started without interruptions."""
        self.seeds_in_process = 1
        """How many seeds fine-tuned side by side in this run's process."""
        tags = run_tags(
            out_dir, self.info.dataset_id, self.learner.name, config.sft.variant, config.seed
        )
        self.live = make_logger(config.logger, out_dir, tags)
        """Live curves (``logger``): evaluations, training means and the control's events."""

    def make_control(self, offline_state: dict[str, Any]) -> Control:
        """Who acts, as the variant says (:data:`sftlib.config.VARIANTS`)."""
        control = CONTROL_CLASSES[self.config.sft.acting]
        parts = RunParts(self.config, self.offline, self.online, self.rng, offline_state)
        return control.for_run(self.learner, parts)

    def draw(self) -> Draw:
        """The rows of a training batch of offline and online transitions, by the rule
        ``online_data`` (``mix``: a fixed ``offline_ratio``; ``append``: the natural ratio),
        drawn with the run's generator (:func:`sftlib.training.finetune.gather_batches`
        gathers them)."""
        return draw_online_data(
            self.offline, self.online, self.learner.config.batch_size, self.online_data,
            self.config.offline_ratio, self.rng,
        )  # fmt: skip

    # --- the steps of the loop ------------------------------------------------------------
    def begin(self, checkpoint: dict[str, Any] | None = None) -> np.ndarray:
        """Restore ``checkpoint`` (or ``out_dir/checkpoint.pt``), or start afresh; the first
        observation."""
        if checkpoint is None and (self.out / STATE).exists():
            checkpoint = load_checkpoint(self.out / STATE)
        if checkpoint is not None:
            self.load_state_dict(checkpoint)
            obs, _ = self.env.reset()
        else:  # the loop evaluates the offline policy first (step 0)
            obs, _ = self.env.reset(seed=self.config.seed)
        self.clock_start = time.perf_counter() - self.state.elapsed
        self.episode = TrainingEpisode(obs, start_step=self.state.step + 1)
        return obs

    def explore(self, obs: np.ndarray, action: np.ndarray, actor: str) -> tuple[np.ndarray, bool]:
        """Execute ``action`` in the environment and store the transition: ``(next_obs,
        whether the episode ended)``."""
        env = self.env
        next_obs, reward, terminated, truncated, _ = env.step(
            to_env_action(action, env.action_space)
        )
        episode = self.episode
        episode.raw_return += float(reward)
        reward = shape_reward(float(reward), self.reward_convention)
        # Time-limit truncation is not termination: only `terminated` stops bootstrapping.
        episode.rows.append(self.online.add(obs, action, reward, next_obs, terminated))
        episode.rewards.append(reward)
        episode.actors.append(actor)
        return next_obs, terminated or truncated

    def evaluates_at(self, step: int) -> bool:
        """Whether step ``step`` ends with an evaluation."""
        return step % self.config.eval_every == 0 or step == self.config.online_steps

    def checkpoint_due(self, step: int) -> bool:
        """Whether an episode ending at ``step`` writes a checkpoint."""
        return self.state.next_checkpoint <= step < self.config.online_steps

    def review(self, step: int) -> None:
        """After the updates of step ``step``: the control's checks, switches and resets."""
        state = self.state
        logged = len(state.events)
        self.control.review(step, self.episode.start, state)
        for event in state.events[logged:]:
            self.live.event(step, event["event"], event["detail"])

    def record(self, row: dict[str, float]) -> None:
        """An evaluation's ``row`` (:class:`sftlib.training.evaluation.SeedEvaluations`) at
        the current step, with the training log since the last one (none at step 0, the
        offline policy's)."""
        state, step = self.state, self.state.step
        state.evals.append(row)
        train: dict[str, Any] = {}
        if step > 0:
            train = {
                "step": step,
                **state.flush(),
                **self.control.train_metrics(self.episode.start),
            }
            state.train.append(train)
        self.watch(step, train)

    def watch(self, step: int, train: dict[str, float]) -> None:
        """The latest evaluation (with the executed policy's dip so far) and ``train`` row
        to the live logger."""
        evals = self.state.evals
        executed = [row["executed_score"] for row in evals]
        values = {f"eval/{k}": v for k, v in evals[-1].items() if k != "step"}
        values["eval/dip"] = max(0.0, executed[0] - min(executed))
        self.live.scalars(step, {**values, **{k: v for k, v in train.items() if k != "step"}})

    def end_episode(self, step: int) -> np.ndarray:
        """Close the running episode (returns-to-go, the control's record, checkpoint when
        due) and start the next one; its first observation."""
        state, episode = self.state, self.episode
        state.episodes += 1
        state.episode_log.append(episode.row(self.info.normalize))
        self.online.end_episode(np.asarray(episode.rows), self.learner.config.discount)
        self.control.episode_ended(episode.start, episode.rewards, episode.actors, state)
        if self.checkpoint_due(step):
            while state.next_checkpoint <= step:
                state.next_checkpoint += self.config.checkpoint_every
            state.elapsed = time.perf_counter() - self.clock_start
            atomic_torch_save(self.out / STATE, self.state_dict())
        obs, _ = self.env.reset()
        self.episode = TrainingEpisode(obs, start_step=step + 1)
        return obs

    # --- checkpoint and files -------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything the run needs to continue bit for bit, taken at an episode end: the
        learner, the control, the online buffer, every random state (the env's included) and
        the loop's own state."""
        return {
            "learner": self.learner.state_dict(),
            "control": self.control.state_dict(),
            "online": self.online.state_dict(),
            "rng": rng_state(self.rng),
            "env_rng": self.env.unwrapped.np_random.bit_generator.state,
            "state": dataclasses.asdict(self.state),
            "config": comparable_config(self.config),
            "format": AGENT_FORMAT,
        }

    def load_state_dict(self, checkpoint: dict[str, Any]) -> None:
        """Put the run back into the state :meth:`state_dict` saved."""
        check_checkpoint_config(checkpoint, self.config, self.out / STATE)
        self.learner.load_state_dict(checkpoint["learner"])
        self.control.load_state_dict(checkpoint["control"])
        self.online.load_state_dict(checkpoint["online"])
        set_rng_state(checkpoint["rng"], self.rng)
        self.env.reset(seed=0)  # create the env's generator, then restore it
        self.env.unwrapped.np_random.bit_generator.state = checkpoint["env_rng"]
        self.state = RunState(**checkpoint["state"])

    def finish(self) -> FinetuneResult:
        """Write the run's CSV files and, last, its summary; remove the checkpoint."""
        state, config, info = self.state, self.config, self.info
        columns = EVAL_COLUMNS + (SUCCESS_COLUMNS if info.success_key is not None else [])
        columns += ANCHOR_COLUMNS if "anchor_score" in state.evals[0] else []
        write_csv(self.out / EVAL_CSV, state.evals, columns)
        write_csv(self.out / EVENTS_CSV, state.events, EVENT_COLUMNS)
        write_csv(self.out / CHECKS_CSV, state.checks, CHECK_COLUMNS)
        write_csv(self.out / TRAIN_CSV, state.train)
        write_csv(self.out / EPISODES_CSV, state.episode_log, EPISODE_COLUMNS)
        summary = {
            **outcome(state.evals, state.events, state.episode_log),
            "wall_time_s": state.elapsed,
            "seeds_in_process": self.seeds_in_process,
            "online_steps": config.online_steps,
            "online_data": self.online_data,
            "compiled": self.learner.compiled,
            "device": str(self.device),
            "variant": config.sft.variant,
            "control": config.sft.acting,
            "algo": self.learner.name,
            "dataset_id": info.dataset_id,
            "seed": config.seed,
            "config": comparable_config(config),
        }
        atomic_write_json(self.out / SUMMARY, summary)
        (self.out / STATE).unlink(missing_ok=True)
        self.live.close()
        return run_result(self.out, summary)


def outcome(evals: list[dict], events: list[dict], episodes: list[dict]) -> dict[str, Any]:
    """A run's summary metrics: stability of the executed policy (:func:`stability_metrics`),
    the learner's final score, the switches (or promotions) and resets, the online cost of
    the training episodes (:func:`online_cost`) and the decisions judged right
    (:func:`decision_calls`)."""
    curve = pd.DataFrame(evals)
    switches = [e["step"] for e in events if e["event"] in ("switch", "promote")]
    calls = decision_calls(evals, events)
    return {
        **stability_metrics(curve["step"].to_numpy(), curve["executed_score"].to_numpy()),
        "learner_score_final": float(curve["learner_score"].iloc[-1]),
        **(
            {"success_final": float(curve["executed_success"].iloc[-1])}
            if "executed_success" in curve
            else {}
        ),
        "switch_step": switches[0] if switches else None,
        "n_switches": len(switches),
        "n_resets": sum(e["event"] == "reset" for e in events),
        **online_cost(
            np.array([e["length"] for e in episodes]),
            np.array([e["normalized_return"] for e in episodes]),
        ),
        "decisions": len(calls),
        "right_calls": sum(calls),
        "right_call_share": sum(calls) / len(calls) if calls else None,
    }


def run_result(out: Path, summary: dict) -> FinetuneResult:
    """The result of the complete run in ``out`` with ``summary``."""
    return FinetuneResult(out, summary, pd.read_csv(out / EVAL_CSV), pd.read_csv(out / EVENTS_CSV))


def resume_point(out: Path, config: FinetuneConfig) -> tuple[FinetuneResult | None, dict | None]:
    """``(result, None)`` for a complete run in ``out``, ``(None, checkpoint)`` for an
    interrupted one, ``(None, None)`` for one not started; checked against ``config``."""
    if (summary := completed_summary(out, config)) is not None:
        return run_result(out, summary), None
    checkpoint = None
    if (out / STATE).exists():
        checkpoint = load_checkpoint(out / STATE)
        check_checkpoint_config(checkpoint, config, out / STATE)
    return None, checkpoint
