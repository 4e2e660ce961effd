"""Offline pretraining: ``pretrain(config, out_dir)``, resumable from its own checkpoint, and
``pretrain_seeds(configs, out_dirs)``: several seeds in one process as one stacked model.

Run directory (``out_dir``), one per seed:

- ``agent.pt``: final agent (networks, optimisers, frozen normaliser) + dataset id and config;
- ``eval.csv``: ``step, score, return`` (normalised score 0-100, undiscounted return), and
  ``success_rate`` (percent) for tasks that define success;
- ``train.csv``: mean training losses between evaluations;
- ``checkpoint.pt``: the resumable state while training runs (removed at the end);
- ``tensorboard/`` or ``wandb/`` with ``logger`` set: every evaluation and the training
  losses as they happen (:mod:`sftlib.training.live`);
- ``summary.json``: written last; the run is complete iff it exists.

A seed trained in a batch writes exactly the files it would write alone, with the same
numbers on the same machine: every seed draws its initial weights, its batches and its noise
from its own generators, and every operation on the stacked networks treats a seed's slice
as it would treat the seed alone (see :mod:`sftlib.agents.networks`, :func:`sftlib.agents.base.adam`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from sftlib.agents import Agent, agent_class, make_agent
from sftlib.agents.seeds import seed_state, stack_agents, stack_states
from sftlib.config import PretrainConfig, compile_mode, compile_update
from sftlib.data.buffer import Normalizer, ReplayBuffer
from sftlib.data.datasets import DatasetInfo, dataset_info, load_dataset, transitions
from sftlib.data.goals import success_rate
from sftlib.data.rollouts import EnvPool, evaluate_stacked
from sftlib.layout import (
    AGENT,
    EVAL_CSV,
    PRETRAIN_DIRNAME,
    PRETRAIN_EVAL_COLUMNS,
    STATE,
    SUMMARY,
    TRAIN_CSV,
)
from sftlib.training.checkpoint import (
    AGENT_FORMAT,
    check_checkpoint_config,
    comparable_config,
    completed_summary,
    load_checkpoint,
    write_csv,
)
from sftlib.training.live import RunLogger, make_logger, run_tags
from sftlib.utils import (
    MetricSums,
    atomic_torch_save,
    atomic_write_json,
    eval_seed,
    resolve_device,
    seed_everything,
    set_threads,
    use_tf32,
)


@dataclass
class PretrainResult:
    """What a pretraining run produced."""

    out_dir: Path
    score_final: float
    curve: pd.DataFrame
    wall_time_s: float


def pretrain(config: PretrainConfig, out_dir: str | Path, progress: bool = True) -> PretrainResult:
    """Train ``config.algo`` offline on ``config.dataset_id``; write the run into ``out_dir``.

    A complete run (``summary.json`` present) is returned as it is, never recomputed; an
    interrupted one continues from ``checkpoint.pt`` and ends with the same numbers as an
    uninterrupted run.
    """
    return pretrain_seeds([config], [out_dir], progress)[0]


def pretrain_seeds(
    configs: Sequence[PretrainConfig],
    out_dirs: Sequence[str | Path],
    progress: bool = True,
) -> list[PretrainResult]:
    """Pretrain several seeds of one study point in one process, as one stacked model.

    ``configs`` must differ only in ``seed``; ``out_dirs[k]`` is seed ``k``'s run directory.
    Complete runs are returned as they are; the others train together (seeds whose
    checkpoints stopped at different steps train in one batch per step). Each seed's files
    are those of its one-seed run. Every input is checked before any compute.
    """
    configs, dirs = list(configs), [Path(d) for d in out_dirs]
    _check_batch(configs, dirs)
    results: list[PretrainResult | None] = [None] * len(configs)
    pending: dict[int, list[tuple[int, dict | None]]] = {}
    for index, (config, out) in enumerate(zip(configs, dirs, strict=True)):
        if (summary := completed_summary(out, config)) is not None:
            results[index] = _result(out, summary)
            continue
        state = None
        if (out / STATE).exists():
            state = load_checkpoint(out / STATE)
            check_checkpoint_config(state, config, out / STATE)
        pending.setdefault(0 if state is None else state["step"], []).append((index, state))
    if pending:
        dataset = load_dataset(configs[0].dataset_id)  # dataset problems surface before compute
        info = dataset_info(dataset)
        buffer = transitions(dataset, reward_convention=configs[0].reward_convention)
        if agent_class(configs[0].algo).needs_returns_to_go:
            buffer.fill_returns_to_go(configs[0].agent_config().discount)
        for members in pending.values():
            indices = [index for index, _ in members]
            trained = _train(
                [configs[i] for i in indices],
                [dirs[i] for i in indices],
                [state for _, state in members],
                buffer,
                info,
                progress,
            )
            for index, result in zip(indices, trained, strict=True):
                results[index] = result
    return results  # type: ignore[return-value]


def _check_batch(configs: list[PretrainConfig], dirs: list[Path]) -> None:
    if not configs or len(configs) != len(dirs):
        raise ValueError("pretrain_seeds needs one out_dir per config, and at least one config")
    reference = {k: v for k, v in comparable_config(configs[0]).items() if k != "seed"}
    for config in configs[1:]:
        other = {k: v for k, v in comparable_config(config).items() if k != "seed"}
        if other != reference:
            differing = sorted(k for k in reference if reference[k] != other.get(k))
            raise ValueError(
                f"seeds of one batch must share every parameter; differing: {differing}"
            )
    seeds = [c.seed for c in configs]
    if len(set(seeds)) != len(seeds) or len(set(dirs)) != len(dirs):
        raise ValueError(f"seeds and out_dirs of one batch must be distinct, got seeds {seeds}")


def _train(
    configs: list[PretrainConfig],
    dirs: list[Path],
    states: list[dict | None],
    buffer: ReplayBuffer,
    info: DatasetInfo,
    progress: bool,
) -> list[PretrainResult]:
    """Train the seeds of ``configs`` together from the step their checkpoints hold."""
    config = configs[0]
    set_threads(config.threads)
    agent, rngs = _stacked_agent(configs, info, Normalizer.fit(buffer.obs[: buffer.size]))
    start, elapsed, evals, train_rows = _resume(agent, rngs, states)
    clock_start = time.perf_counter() - elapsed
    sums = MetricSums()
    loggers = [_live(c, out) for c, out in zip(configs, dirs, strict=True)]
    envs = EnvPool(info)
    seeds = ",".join(str(c.seed) for c in configs)
    bar = tqdm(
        range(start + 1, config.offline_steps + 1),
        desc=f"pretrain {config.algo} seed {seeds}",
        disable=not progress,
        initial=start,
        total=config.offline_steps,
    )
    try:
        if start == 0:
            _record_evals(evals, agent, info, envs, configs, 0)
            _log(loggers, evals, train_rows, 0)
        for step in bar:
            sums.add(agent.update(buffer.sample_per_seed(config.batch_size, rngs), online=False))
            if step % config.eval_every == 0 or step == config.offline_steps:
                _record_evals(evals, agent, info, envs, configs, step)
                for rows, means in zip(train_rows, sums.per_seed_means(), strict=True):
                    rows.append({"step": step, **means})
                _log(loggers, evals, train_rows, step)
                bar.set_postfix(score=f"{np.mean([e[-1]['score'] for e in evals]):.1f}")
            if step % config.checkpoint_every == 0 and step < config.offline_steps and not sums:
                # Only at evaluation boundaries, so the running loss means restart empty.
                elapsed = time.perf_counter() - clock_start
                _save_checkpoints(configs, dirs, agent, rngs, step, evals, train_rows, elapsed)
    finally:
        envs.close()
        for logger in loggers:
            logger.close()
    wall = time.perf_counter() - clock_start
    execution = {
        "wall_time_s": wall,
        "seeds_in_process": len(configs),
        "compiled": agent.compiled,
        "device": str(agent.device),
    }
    return [
        _write_run(
            seed_config,
            out,
            seed_state(agent.state_dict(), index),
            info,
            evals[index],
            train_rows[index],
            execution,
        )
        for index, (seed_config, out) in enumerate(zip(configs, dirs, strict=True))
    ]


def _resume(
    agent: Agent, rngs: list[np.random.Generator], states: list[dict | None]
) -> tuple[int, float, list[list[dict]], list[list[dict]]]:
    """Put the stacked ``agent`` and the seeds' generators back into their checkpoints'
    ``states`` (when there are any); ``(step, elapsed seconds, evaluations, training rows)``
    per seed to continue from."""
    if states[0] is None:
        return 0, 0.0, [[] for _ in states], [[] for _ in states]
    agent.load_state_dict(stack_states([s["agent"] for s in states]))
    for rng, state in zip(rngs, states, strict=True):
        rng.bit_generator.state = state["generator"]
    evals = [s["evals"] for s in states]
    return states[0]["step"], states[0]["elapsed"], evals, [s["train"] for s in states]


def _live(config: PretrainConfig, out: Path) -> RunLogger:
    """The live logger of one seed's pretraining run (``logger``)."""
    tags = run_tags(out, config.dataset_id, config.algo, PRETRAIN_DIRNAME, config.seed)
    return make_logger(config.logger, out, tags)


def _save_checkpoints(
    configs: list[PretrainConfig],
    dirs: list[Path],
    agent: Agent,
    rngs: list[np.random.Generator],
    step: int,
    evals: list[list[dict]],
    train_rows: list[list[dict]],
    elapsed: float,
) -> None:
    """Each seed's resumable checkpoint at ``step``: its slice of the stacked agent, its
    generator and its logs."""
    agent_state = agent.state_dict()
    for index, (seed_config, out) in enumerate(zip(configs, dirs, strict=True)):
        atomic_torch_save(
            out / STATE,
            {
                "agent": seed_state(agent_state, index),
                "generator": rngs[index].bit_generator.state,
                "step": step,
                "evals": evals[index],
                "train": train_rows[index],
                "elapsed": elapsed,
                "config": comparable_config(seed_config),
                "format": AGENT_FORMAT,
            },
        )


def _stacked_agent(
    configs: list[PretrainConfig], info: DatasetInfo, normalizer: Normalizer
) -> tuple[Agent, list[np.random.Generator]]:
    """One stacked agent for the seeds of ``configs`` (compiled when ``torch_compile`` says
    so) and each seed's generator; each seed's weights come from its own seed, as alone."""
    config = configs[0]
    device = resolve_device(config.device, config.hidden, len(configs))
    use_tf32(config.tf32)
    rngs, agents = [], []
    for seed_config in configs:
        rngs.append(seed_everything(seed_config.seed))
        agents.append(
            make_agent(
                config.algo,
                info.obs_dim,
                info.act_dim,
                seed_config.agent_config(),
                normalizer=normalizer,
                device=device,
            )
        )
    agent = stack_agents(agents)
    if compile_update(config.torch_compile, agent.compile_wins, config.offline_steps):
        agent.compile_update(compile_mode(config.torch_compile))
    return agent, rngs


def _log(
    loggers: list[RunLogger], evals: list[list[dict]], train_rows: list[list[dict]], step: int
) -> None:
    """Each seed's evaluation at ``step`` (``eval/score``, ``eval/return``, ...) and its mean
    training losses since the last evaluation (``train/<loss>``), to its live logger."""
    for logger, seed_evals, seed_train in zip(loggers, evals, train_rows, strict=True):
        values = {f"eval/{k}": v for k, v in seed_evals[-1].items() if k != "step"}
        if seed_train and seed_train[-1]["step"] == step:
            values.update({f"train/{k}": v for k, v in seed_train[-1].items() if k != "step"})
        logger.scalars(step, values)


def _record_evals(
    evals: list[list[dict]],
    agent: Agent,
    info: DatasetInfo,
    envs: EnvPool,
    configs: list[PretrainConfig],
    step: int,
) -> None:
    """Evaluate every seed's deterministic policy, all episodes side by side (in ``envs``,
    kept between evaluations); append a row per seed."""
    returns, successes = evaluate_stacked(
        lambda obs: agent.act_per_seed(obs, deterministic=True),
        info,
        configs[0].eval_episodes,
        [eval_seed(c.seed) for c in configs],
        envs,
    )
    for rows, seed_returns, seed_successes in zip(evals, returns, successes, strict=True):
        row = {
            "step": step,
            "score": float(info.normalize(seed_returns).mean()),
            "return": float(np.mean(seed_returns)),
        }
        if info.success_key is not None:
            row["success_rate"] = success_rate(seed_successes)
        rows.append(row)


def _write_run(
    config: PretrainConfig,
    out: Path,
    agent_state: dict,
    info: DatasetInfo,
    evals: list[dict],
    train_rows: list[dict],
    execution: dict,
) -> PretrainResult:
    """Write one seed's run files; ``execution``: wall time, seeds in the process, compiled."""
    atomic_torch_save(
        out / AGENT,
        {
            "agent": agent_state,
            "algo": config.algo,
            "dataset_id": config.dataset_id,
            "env_id": info.env_id,
            "info": dataclasses.asdict(info),
            "config": dataclasses.asdict(config),
            "format": AGENT_FORMAT,
        },
    )
    columns = PRETRAIN_EVAL_COLUMNS + (["success_rate"] if info.success_key is not None else [])
    write_csv(out / EVAL_CSV, evals, columns)
    write_csv(out / TRAIN_CSV, train_rows)
    summary = {
        "score_final": evals[-1]["score"],
        **execution,
        "offline_steps": config.offline_steps,
        "algo": config.algo,
        "dataset_id": config.dataset_id,
        "seed": config.seed,
        "env_id": info.env_id,
        "config": comparable_config(config),
    }
    if info.success_key is not None:
        summary["success_rate_final"] = evals[-1]["success_rate"]
    atomic_write_json(out / SUMMARY, summary)
    (out / STATE).unlink(missing_ok=True)
    return _result(out, summary)


def _result(out: Path, summary: dict) -> PretrainResult:
    return PretrainResult(
        out, summary["score_final"], pd.read_csv(out / EVAL_CSV), summary["wall_time_s"]
    )


__all__ = ["PretrainResult", "pretrain", "pretrain_seeds"]
