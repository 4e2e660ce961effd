"""Offline pretraining: ``pretrain(config, out_dir)``, resumable from its own checkpoint.

Run directory (``out_dir``):

- ``agent.pt``: final agent (networks, optimisers, frozen normaliser) + dataset id and config;
- ``eval.csv``: ``step, score, return`` (normalised score 0-100, undiscounted return);
- ``train.csv``: mean training losses between evaluations;
- ``checkpoint.pt``: the resumable state while training runs (removed at the end);
- ``summary.json``: written last; the run is complete iff it exists.
"""

from __future__ import annotations

import dataclasses
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from sftlib.agents import Agent, make_agent
from sftlib.buffer import Normalizer
from sftlib.checkpoint import (
    check_checkpoint_config,
    comparable_config,
    completed_summary,
    load_checkpoint,
    pretrain_checkpoint,
    write_csv,
)
from sftlib.config import PretrainConfig
from sftlib.data import DatasetInfo, dataset_info, load_dataset, transitions
from sftlib.evaluation import evaluate_policy
from sftlib.layout import AGENT, EVAL_CSV, PRETRAIN_EVAL_COLUMNS, STATE, SUMMARY, TRAIN_CSV
from sftlib.utils import (
    atomic_torch_save,
    atomic_write_json,
    eval_seed,
    resolve_device,
    seed_everything,
    set_rng_state,
    set_threads,
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
    out = Path(out_dir)
    if (summary := completed_summary(out, config)) is not None:
        return _result(out, summary)
    state = None
    if (out / STATE).exists():
        state = load_checkpoint(out / STATE)
        check_checkpoint_config(state, config, out / STATE)
    ds = load_dataset(config.dataset_id)  # any dataset problem surfaces before compute
    info = dataset_info(ds)
    set_threads(config.threads)
    rng = seed_everything(config.seed)
    buffer = transitions(ds)
    agent = make_agent(
        config.algo,
        info.obs_dim,
        info.act_dim,
        config.agent_config(),
        normalizer=Normalizer.fit(buffer.obs[: buffer.size]),
        device=resolve_device(config.device),
    )
    start, evals, train_rows, elapsed = 0, [], [], 0.0
    if state is not None:
        agent.load_state_dict(state["agent"])
        set_rng_state(state["rng"], rng)
        start, evals, train_rows, elapsed = (
            state["step"],
            state["evals"],
            state["train"],
            state["elapsed"],
        )

    clock_start = time.perf_counter() - elapsed
    sums: dict[str, float] = defaultdict(float)
    n_sum = 0
    if start == 0:
        evals.append(_evaluate(agent, info, config, 0))
    bar = tqdm(
        range(start + 1, config.offline_steps + 1),
        desc=f"pretrain {config.algo}",
        disable=not progress,
        initial=start,
        total=config.offline_steps,
    )
    for step in bar:
        metrics = agent.update(buffer.sample(config.batch_size, rng), online=False)
        for key, value in metrics.items():
            sums[key] += value
        n_sum += 1
        if step % config.eval_every == 0 or step == config.offline_steps:
            evals.append(_evaluate(agent, info, config, step))
            train_rows.append({"step": step, **{key: total / n_sum for key, total in sums.items()}})
            sums, n_sum = defaultdict(float), 0
            bar.set_postfix(score=f"{evals[-1]['score']:.1f}")
        if step % config.checkpoint_every == 0 and step < config.offline_steps and n_sum == 0:
            # Only at evaluation boundaries, so the running loss means restart empty.
            elapsed = time.perf_counter() - clock_start
            checkpoint = pretrain_checkpoint(agent, rng, step, evals, train_rows, elapsed, config)
            atomic_torch_save(out / STATE, checkpoint)
    wall = time.perf_counter() - clock_start

    atomic_torch_save(
        out / AGENT,
        {
            "agent": agent.state_dict(),
            "algo": config.algo,
            "dataset_id": config.dataset_id,
            "env_id": info.env_id,
            "info": dataclasses.asdict(info),
            "config": dataclasses.asdict(config),
        },
    )
    write_csv(out / EVAL_CSV, evals, PRETRAIN_EVAL_COLUMNS)
    write_csv(out / TRAIN_CSV, train_rows)
    summary = {
        "score_final": evals[-1]["score"],
        "wall_time_s": wall,
        "offline_steps": config.offline_steps,
        "algo": config.algo,
        "dataset_id": config.dataset_id,
        "seed": config.seed,
        "env_id": info.env_id,
        "config": comparable_config(config),
    }
    atomic_write_json(out / SUMMARY, summary)
    (out / STATE).unlink(missing_ok=True)
    return _result(out, summary)


def _evaluate(agent: Agent, info: DatasetInfo, config: PretrainConfig, step: int) -> dict:
    returns = evaluate_policy(
        lambda o: agent.act(o, deterministic=True),
        info.env_id,
        config.eval_episodes,
        eval_seed(config.seed),
    )
    return {
        "step": step,
        "score": float(info.normalize(returns).mean()),
        "return": float(np.mean(returns)),
    }


def _result(out: Path, summary: dict) -> PretrainResult:
    return PretrainResult(
        out, summary["score_final"], pd.read_csv(out / EVAL_CSV), summary["wall_time_s"]
    )
