"""Several fine-tuning seeds in one process: ``finetune_seeds(configs, out_dirs)`` runs the
seeds of one study point side by side, one stacked learner updating every seed at once and
one environment per seed. Each seed writes exactly the run directory of its one-seed run
(:func:`sftlib.training.finetune.finetune`), the same numbers to the bit on the same machine when
the update is not compiled, and resumes from the same checkpoints.

Every variant batches. What a seed decides stays its own: PEX's and SFT's selections, SFT's
stability checks, switches, Monte-Carlo and FQE estimates, anchor updates and resets run per
seed on a one-seed learner bound to that seed's slice of the stack
(:func:`sftlib.agents.seeds.bind_seed`), with the seed's own random states. The gradient
updates are stacked: the learner's, and SFT's FQE critics (every seed's two in one
:class:`sftlib.sft.StackedFQE`). Resets come at the same steps for every seed (the
schedule), after which the stack's Adam state starts afresh, as each seed's would alone.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from sftlib.agents import Agent
from sftlib.agents.seeds import bind_seed, is_bound, seed_state, stack_agents
from sftlib.config import FinetuneConfig
from sftlib.data.buffer import Batch
from sftlib.sft import StackedFQE
from sftlib.training.checkpoint import (
    EXECUTION_FIELDS,
    CheckpointError,
    comparable_config,
    load_pretrained,
)
from sftlib.training.finetune import FineTuner, FinetuneResult, resume_point, update_fqe

BATCH_FIELDS = ("seed", "pretrain_dir")
"""What may differ between the seeds of one :func:`finetune_seeds` batch."""


def finetune_seeds(
    configs: Sequence[FinetuneConfig],
    out_dirs: Sequence[str | Path],
    progress: bool = True,
) -> list[FinetuneResult]:
    """Fine-tune several seeds of one study point in one process: one stacked learner that
    updates every seed at once, one environment per seed.

    ``configs`` differ only in ``seed`` and ``pretrain_dir`` (pretraining runs of one study
    point, or one shared checkpoint); ``out_dirs[k]`` is seed ``k``'s run directory. Any
    variant: each seed's decisions (selection, switch, estimates, anchor updates) stay its
    own, on its slice of the stacked learner. Complete runs are returned as they are;
    interrupted ones continue from their checkpoints, side by side with the seeds that
    stopped at the same step (the seeds of one stack share Adam's step count, so seeds at
    another step run in another stack, after this one). Each seed writes the files of its
    one-seed run, with the same numbers on the same machine when the update is not compiled
    (``torch_compile: off``). Every input is checked before any compute.
    """
    configs, dirs = list(configs), [Path(d) for d in out_dirs]
    _check_finetune_batch(configs, dirs)
    results: list[FinetuneResult | None] = [None] * len(configs)
    pending: dict[int, list[tuple[int, dict | None]]] = {}
    for index, (config, out) in enumerate(zip(configs, dirs, strict=True)):
        results[index], checkpoint = resume_point(out, config)
        if results[index] is None:
            step = 0 if checkpoint is None else checkpoint["state"]["step"]
            pending.setdefault(step, []).append((index, checkpoint))
    offline = None
    for members in pending.values():
        tuners, rngs = [], []
        for index, _ in members:
            tuners.append(FineTuner(configs[index], dirs[index], offline))
            rngs.append(torch.get_rng_state())  # as the seed's own process would have it now
            offline = tuners[0].info, tuners[0].offline
        checkpoints = [checkpoint for _, checkpoint in members]
        ran = _side_by_side(tuners, checkpoints, rngs, progress)
        for (index, _), result in zip(members, ran, strict=True):
            results[index] = result
    return results  # type: ignore[return-value]


def _check_finetune_batch(configs: list[FinetuneConfig], dirs: list[Path]) -> None:
    if not configs or len(configs) != len(dirs):
        raise ValueError("finetune_seeds needs one out_dir per config, and at least one config")

    def shared(config: FinetuneConfig) -> dict[str, Any]:
        return {k: v for k, v in comparable_config(config).items() if k not in BATCH_FIELDS}

    reference = shared(configs[0])
    for config in configs[1:]:
        other = shared(config)
        if other != reference:
            differing = sorted(k for k in reference if reference[k] != other.get(k))
            raise ValueError(
                f"seeds of one batch must share every parameter but {list(BATCH_FIELDS)}; "
                f"differing: {differing}"
            )
    seeds = [c.seed for c in configs]
    if len(set(seeds)) != len(seeds) or len(set(dirs)) != len(dirs):
        raise ValueError(f"seeds and out_dirs of one batch must be distinct, got seeds {seeds}")
    pretrained = {d: load_pretrained(d) for d in dict.fromkeys(c.pretrain_dir for c in configs)}
    kinds = {
        (p["dataset_id"], p["algo"], json.dumps(_without_seed(p["config"]), sort_keys=True))
        for p in pretrained.values()
    }
    if len(kinds) > 1:
        raise CheckpointError(
            f"the pretraining runs {[str(d) for d in pretrained]} differ in more than their "
            "seed (dataset, algorithm or parameters): fine-tune them in separate batches"
        )


def _without_seed(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in ("seed", *EXECUTION_FIELDS)}


def _side_by_side(
    tuners: list[FineTuner],
    checkpoints: list[dict | None],
    rngs: list[torch.Tensor],
    progress: bool,
) -> list[FinetuneResult]:
    """Run ``tuners`` (one seed each, all at one step) in lockstep: each step, every seed's
    action (``direct``: one stacked policy call; composite variants: each seed's selection
    between its anchor and its slice of the stacked learner), one environment step per seed,
    ``utd_ratio`` stacked updates on one batch per seed, the stacked FQE update when due;
    then per seed, by its own schedule and state, what follows the updates (stability check,
    reset, evaluation) and the episode's end.

    Each seed keeps its own global torch random state (``rngs``, updated in place; PEX
    samples its selection from it, a reset its fresh weights), swapped in around the seed's
    own work, as its one-seed process would have it."""

    @contextmanager
    def own(slot: int) -> Iterator[None]:
        torch.set_rng_state(rngs[slot])
        try:
            yield
        finally:
            rngs[slot] = torch.get_rng_state()

    obs = []
    for slot, (tuner, checkpoint) in enumerate(zip(tuners, checkpoints, strict=True)):
        with own(slot):
            obs.append(tuner.begin(checkpoint))
    start, config = tuners[0].state.step, tuners[0].config
    learner = stack_agents([t.learner for t in tuners])
    if tuners[0].learner.compiled and not learner.compiled:
        learner.compile_update()
    if learner is not tuners[0].learner:
        for slot, tuner in enumerate(tuners):
            bind_seed(tuner.learner, learner, slot)  # acts and evaluates with the stack
    composite = tuners[0].variant.composite
    # Every seed's FQE critics train as one stack.
    fqe = StackedFQE([c for t in tuners for c in t.fqe.values()]) if tuners[0].fqe else None
    bar = tqdm(
        range(start + 1, config.online_steps + 1),
        desc=f"finetune {config.sft.variant} seed {','.join(str(t.config.seed) for t in tuners)}",
        disable=not progress,
        initial=start,
        total=config.online_steps,
    )
    for step in bar:
        if not composite:
            actions = learner.act_per_seed(np.stack(obs), deterministic=False)
        stepped = []
        for slot, tuner in enumerate(tuners):
            tuner.state.step = step
            if composite:
                with own(slot):
                    action, actor = tuner.act(obs[slot], deterministic=False)
            else:
                action, actor = actions[slot], "learner"
            stepped.append(tuner.explore(obs[slot], action, actor))
        for _ in range(config.utd_ratio):
            metrics = learner.update(Batch.stack([t.sample_batch() for t in tuners]), online=True)
            for slot, tuner in enumerate(tuners):
                tuner.state.log({k: v[slot : slot + 1] for k, v in metrics.items()})
        # A checkpoint holds the seed's optimiser state: its slice of the stacked one.
        saving = [
            slot
            for slot, (tuner, (_, done)) in enumerate(zip(tuners, stepped, strict=True))
            if done and tuner.checkpoint_due(step)
        ]
        _sync(learner, tuners, saving)
        if fqe is not None and tuners[0].fqe_due(step):
            update_fqe(fqe, tuners)
        for slot, (tuner, (next_obs, done)) in enumerate(zip(tuners, stepped, strict=True)):
            with own(slot):
                tuner.review(step)
                obs[slot] = tuner.end_episode(step) if done else next_obs
        _after_resets(learner, tuners)
        if tuners[0].evaluates_at(step):
            scores = [t.state.evals[-1]["executed_score"] for t in tuners]
            bar.set_postfix(score=f"{np.mean(scores):.1f}")
    results = []
    for tuner in tuners:
        tuner.seeds_in_process = len(tuners)
        tuner.state.elapsed = time.perf_counter() - tuner.clock_start
        results.append(tuner.finish())
    return results


def _after_resets(learner: Agent, tuners: list[FineTuner]) -> None:
    """After a step at which the seeds reset their learners: the reset weights are already in
    the stack (a seed's reset writes through its binding); each seed also rebuilt its Adam
    state, which unbound it. Start the stack's Adam state afresh and bind the seeds again."""
    bound = [is_bound(tuner.learner, learner, slot) for slot, tuner in enumerate(tuners)]
    if all(bound):
        return
    if any(bound):
        raise RuntimeError("the seeds of one stack must reset their learners at the same steps")
    learner.reset_optimizers()
    for slot, tuner in enumerate(tuners):
        bind_seed(tuner.learner, learner, slot)


def _sync(learner: Agent, tuners: list[FineTuner], slots: Sequence[int]) -> None:
    """Seed ``slot`` of the stacked ``learner``'s state, optimiser included, into
    ``tuners[slot].learner``, for each of ``slots`` (the stacked state read once)."""
    slots = [slot for slot in slots if tuners[slot].learner is not learner]
    if slots:
        state = learner.state_dict()
        for slot in slots:
            tuners[slot].learner.load_state_dict(seed_state(state, slot))


__all__ = ["finetune_seeds"]
