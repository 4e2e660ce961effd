"""Online fine-tuning: ``finetune(config, out_dir)`` runs any variant (``direct``, ``pex``,
``sft`` and its ablations) from a pretraining run; ``finetune_seeds(configs, out_dirs)``
runs several seeds of one study point side by side in one process. Both are the one loop
(:func:`run_side_by_side`), for one seed or many; each run resumes from its own checkpoint.

With several seeds, one stacked learner updates every seed at once and each seed steps its
own environment. What a seed decides stays its own: its control (who acts: PEX's and SFT's
selections, SFT's stability checks, switches, estimates, anchor updates and resets) runs on a
one-seed learner bound to that seed's slice of the stack
(:func:`sftlib.agents.seeds.bind_seed`), with the seed's own random states. The gradient
updates are stacked: the learner's, and every seed's FQE critics in one
:class:`sftlib.sft.fqe.StackedFQE`. Each seed writes exactly the run directory of its
one-seed run, the same numbers to the bit on the same machine when the update is not
compiled.
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
from sftlib.agents.seeds import bind_seed, bound_seeds, seed_state, stack_agents
from sftlib.config import FinetuneConfig
from sftlib.data.buffer import Batch, gather_draws
from sftlib.sft.control import Control, stacked_anchors
from sftlib.sft.fqe import StackedFQE
from sftlib.training.checkpoint import (
    EXECUTION_FIELDS,
    CheckpointError,
    comparable_config,
    load_pretrained,
)
from sftlib.training.evaluation import SeedEvaluations
from sftlib.training.seed_run import FineTuner, FinetuneResult, resume_point

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
    pretrained = _check_finetune_batch(configs, dirs)
    results: list[FinetuneResult | None] = [None] * len(configs)
    pending: dict[int, list[tuple[int, dict | None]]] = {}
    for index, (config, out) in enumerate(zip(configs, dirs, strict=True)):
        results[index], checkpoint = resume_point(out, config)
        if results[index] is None:
            step = 0 if checkpoint is None else checkpoint["state"]["step"]
            pending.setdefault(step, []).append((index, checkpoint))
    offline = None
    for members in pending.values():
        runs, rngs = [], []
        for index, _ in members:
            config = configs[index]
            run = FineTuner(
                config, dirs[index], offline, len(members), pretrained[config.pretrain_dir]
            )
            runs.append(run)
            rngs.append(torch.get_rng_state())  # as the seed's own process would have it now
            offline = runs[0].info, runs[0].offline
        checkpoints = [checkpoint for _, checkpoint in members]
        ran = run_side_by_side(runs, checkpoints, rngs, progress)
        for (index, _), result in zip(members, ran, strict=True):
            results[index] = result
    return results  # type: ignore[return-value]


def _check_finetune_batch(
    configs: list[FinetuneConfig], dirs: list[Path]
) -> dict[str, dict[str, Any]]:
    """Every input of a batch checked before any compute; the pretraining checkpoints
    loaded for it, by ``pretrain_dir`` (each run reads its own from them, not from disk)."""
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
    return pretrained


def _without_seed(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in ("seed", *EXECUTION_FIELDS)}


def finetune(config: FinetuneConfig, out_dir: str | Path, progress: bool = True) -> FinetuneResult:
    """Fine-tune from ``config.pretrain_dir`` into ``out_dir``: the loop with one seed.

    A complete run (``summary.json`` present) is returned as it is; an interrupted one
    continues from ``checkpoint.pt`` and ends with exactly the numbers of an
    uninterrupted run. Every input is checked before any compute.
    """
    return finetune_seeds([config], [out_dir], progress)[0]


def run_side_by_side(
    runs: list[FineTuner],
    checkpoints: list[dict | None],
    rngs: list[torch.Tensor],
    progress: bool,
) -> list[FinetuneResult]:
    """The fine-tuning loop, for one seed or many (``runs``, one seed each, all at one step),
    in lockstep. Each step: every seed's training action (its control's answer), one
    environment step per seed, ``utd_ratio`` stacked updates on one batch per seed, the
    stacked FQE update when due; then per seed, by its own schedule and state, what follows
    the updates (the control's checks and resets); every seed's evaluation side by side
    (:class:`~sftlib.training.evaluation.SeedEvaluations`) when due; each episode's end.

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
    for slot, (run, checkpoint) in enumerate(zip(runs, checkpoints, strict=True)):
        with own(slot):
            obs.append(run.begin(checkpoint))
    learner = _stacked_learner(runs)
    evaluations = SeedEvaluations(runs, learner)
    if not runs[0].state.evals:  # a fresh start: the offline policy first
        _record(runs, evaluations)
    controls = [run.control for run in runs]
    acting = type(controls[0])
    critics = [critic for control in controls for critic in control.fqe_critics().values()]
    fqe = StackedFQE(critics) if critics else None  # every seed's FQE critics as one stack
    config, bar = runs[0].config, _progress(runs, progress)
    for step in bar:
        for run in runs:
            run.state.step = step
        actions = acting.act_side_by_side(controls, learner, obs, own)
        stepped = [
            run.explore(observation, action, actor)
            for run, observation, (action, actor) in zip(runs, obs, actions, strict=True)
        ]
        for _ in range(config.utd_ratio if controls[0].learns_at(step) else 0):
            metrics = learner.update(gather_batches(runs, [1] * len(runs)), online=True)
            for slot, run in enumerate(runs):
                run.state.log({key: value[slot : slot + 1] for key, value in metrics.items()})
        # A checkpoint holds the seed's optimiser state: its slice of the stacked one.
        saving = [s for s, (_, done) in enumerate(stepped) if done and runs[s].checkpoint_due(step)]
        _sync(learner, runs, saving)
        if fqe is not None and controls[0].fqe_due(step):
            update_fqe(fqe, runs, _policy_stacks(learner, controls))
        for slot, run in enumerate(runs):
            with own(slot):
                run.review(step)
        if runs[0].evaluates_at(step):
            _record(runs, evaluations, bar)
        for slot, (run, (next_obs, done)) in enumerate(zip(runs, stepped, strict=True)):
            with own(slot):
                obs[slot] = run.end_episode(step) if done else next_obs
        _after_resets(learner, runs)
    evaluations.close()
    return [_finish(run, len(runs)) for run in runs]


def _progress(runs: list[FineTuner], progress: bool) -> tqdm:
    """The loop's steps still to run, as a progress bar (hidden when not ``progress``)."""
    start, config = runs[0].state.step, runs[0].config
    seeds = ",".join(str(run.config.seed) for run in runs)
    return tqdm(
        range(start + 1, config.online_steps + 1),
        desc=f"finetune {config.sft.variant} seed {seeds}",
        disable=not progress,
        initial=start,
        total=config.online_steps,
    )


def _record(runs: list[FineTuner], evaluations: SeedEvaluations, bar: tqdm | None = None) -> None:
    """Every seed's evaluation at the current step, side by side, into its run; the seeds'
    mean executed score on ``bar``."""
    rows = evaluations.rows()
    for run, row in zip(runs, rows, strict=True):
        run.record(row)
    if bar is not None:
        bar.set_postfix(score=f"{np.mean([row['executed_score'] for row in rows]):.1f}")


def _stacked_learner(runs: list[FineTuner]) -> Agent:
    """One learner stacking every run's (a one-seed run's own learner), compiled if theirs
    are; each run's learner is bound to its slice, to act and evaluate with the stack."""
    learner = stack_agents([run.learner for run in runs])
    if runs[0].learner.compiled and not learner.compiled:
        learner.compile_update(runs[0].learner.compile_mode)
    if learner is not runs[0].learner:
        for slot, run in enumerate(runs):
            bind_seed(run.learner, learner, slot)
    return learner


def _finish(run: FineTuner, seeds_in_process: int) -> FinetuneResult:
    run.seeds_in_process = seeds_in_process
    run.state.elapsed = time.perf_counter() - run.clock_start
    return run.finish()


def _policy_stacks(learner: Agent, controls: Sequence[Control]) -> list[Agent]:
    """The stacked agents the seeds' policies are bound to: the learner's, and the anchors'
    where the controls have anchors (none for one seed: its policies are called as they are)."""
    if len(controls) == 1:
        return []
    if controls[0].anchor_agent() is None:
        return [learner]
    return [learner, stacked_anchors(controls)]


def update_fqe(
    stack: StackedFQE, runs: Sequence[FineTuner], policy_stacks: Sequence[Agent] = ()
) -> None:
    """One step of every FQE critic of ``runs`` as one update of ``stack`` (which holds them
    in that order, each run's in the order of its control's critics), each on a batch of its
    run's, drawn in that order; each run logs its own losses. ``policy_stacks``: the stacked
    agents whose seeds the evaluated policies are (:meth:`StackedFQE.update`)."""
    policies = []
    for run in runs:
        evaluated = run.control.fqe_policies()
        policies += [evaluated[name] for name in run.control.fqe_critics()]
    batch = gather_batches(runs, [len(run.control.fqe_critics()) for run in runs])
    losses = iter(stack.update(batch, policies, policy_stacks).split(1))
    for run in runs:
        for name in run.control.fqe_critics():
            run.state.log({f"fqe/loss_{name}": next(losses)})


def gather_batches(runs: Sequence[FineTuner], counts: Sequence[int]) -> Batch:
    """``counts[k]`` training batches of each run ``k``, drawn in that order with the run's
    generator, as one stacked batch (run by run): the offline rows of all of them in one
    gather (:func:`sftlib.data.buffer.gather_draws`)."""
    owners = [run for run, count in zip(runs, counts, strict=True) for _ in range(count)]
    draws = [run.draw() for run in owners]
    return gather_draws([r.offline for r in owners], [r.online for r in owners], draws)


def _after_resets(learner: Agent, runs: list[FineTuner]) -> None:
    """After a step at which the seeds reset their learners: the reset weights are already in
    the stack (a seed's reset writes through its binding); each seed also rebuilt its Adam
    state, which unbound it. Start the stack's Adam state afresh and bind the seeds again."""
    bound = bound_seeds([run.learner for run in runs], learner)
    if all(bound):
        return
    if any(bound):
        raise RuntimeError("the seeds of one stack must reset their learners at the same steps")
    learner.reset_optimizers()
    for slot, run in enumerate(runs):
        bind_seed(run.learner, learner, slot)


def _sync(learner: Agent, runs: list[FineTuner], slots: Sequence[int]) -> None:
    """Seed ``slot`` of the stacked ``learner``'s state, optimiser included, into
    ``runs[slot].learner``, for each of ``slots`` (the stacked state read once)."""
    slots = [slot for slot in slots if runs[slot].learner is not learner]
    if slots:
        state = learner.state_dict()
        for slot in slots:
            runs[slot].learner.load_state_dict(seed_state(state, slot))


__all__ = ["finetune", "finetune_seeds", "run_side_by_side"]
