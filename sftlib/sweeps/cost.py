"""What a sweep will cost before it runs: gradient updates, environment steps, CPU-hours (or
GPU-hours) and the wall time for a number of workers.

The work is counted from the plan (:func:`sftlib.sweeps.plan.plan`); its time comes from
rates measured on this machine by :func:`measure_rates` in a few seconds (or given, as tests
do). The model, printed with every estimate (:func:`describe`):

- a pretraining process of K seeds: ``offline_steps`` stacked updates of K seeds, plus its
  evaluations (every episode of every seed at once: per step of an episode's length, K x
  ``eval_episodes`` environment steps and one batched forward);
- a fine-tuning process of K seeds: per online step ``utd_ratio`` stacked updates, K
  environment steps and the policy forwards of its variant, each one batched forward for
  all seeds (one for ``direct``; :data:`ANCHOR_FORWARDS` for the variants that act with an
  anchor), an FQE step every ``fqe_every`` steps where the variant uses FQE (both critics of
  every seed train as one stack: counted as one update), and its evaluations (the learner
  alone and, when it is not the executed policy, the executed policy; every episode of every
  seed at once, as in pretraining);
- every notebook :data:`NOTEBOOK_START_S` for starting its kernel, imports and loading the
  dataset; every local dataset still to make :data:`DATASET_BUILD_S`, before any run;
- evaluation episodes as long as the dataset's mean episode when the dataset is here, else
  the environment's time limit;
- updates timed eagerly: a run that ``torch.compile`` s its update (``torch_compile``) runs
  faster than counted; SFT's stability checks and estimates are not counted.

The wall time places the runs in plan order on the workers, each fine-tuning run after its
pretraining run, as the Dask scheduler does.
"""

from __future__ import annotations

import dataclasses
import heapq
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sftlib.config import (
    VARIANTS,
    FinetuneConfig,
    PretrainConfig,
    SFTConfig,
    field_names,
    finetune_config,
    pretrain_config,
)
from sftlib.sweeps.plan import Run
from sftlib.sweeps.rates import ANY, Rates, Shape, measure, shape_key

NOTEBOOK_START_S = 15.0
"""Seconds a notebook spends before training: kernel start, imports, loading the dataset."""
DATASET_BUILD_S = 60.0
"""Seconds to make one local dataset (README: about a minute per MuJoCo level)."""
ANCHOR_FORWARDS = 3
"""Forward passes per step of a variant that acts with an anchor, each for all seeds at once:
the anchors' and the learners' candidates and the selecting critics' values."""
DEFAULT_EPISODE_STEPS = 1_000
"""Episode length when neither the dataset nor the environment says (MuJoCo's time limit)."""
UNTIMED = Rates({ANY: 0.0}, {ANY: 0.0}, {ANY: 0.0}, source="not timed")
"""Rates for runs that are counted but not timed: the complete runs of a plan, whose shapes
:func:`measure_rates` does not measure."""


@dataclass
class RunCost:
    """The work of one notebook execution (a process training K seeds) and its time."""

    name: str
    kind: str
    seeds: int
    updates: int
    """Gradient updates of the agent, summed over seeds."""
    fqe_updates: int
    """FQE gradient steps (both critics), summed over seeds."""
    env_steps: int
    """Online environment steps, summed over seeds."""
    eval_steps: int
    """Environment steps of evaluation episodes, summed over seeds."""
    seconds: float
    """Estimated wall time of the process."""


@dataclass
class CostEstimate:
    """What the runs still to run will cost, and how that was estimated."""

    runs: list[RunCost]
    workers: int
    device: str
    datasets_to_make: list[str]
    wall_seconds: float
    method: str
    total_updates: int = 0
    """Gradient updates (agent and FQE) of the whole plan, complete runs included."""
    total_env_steps: int = 0
    """Environment steps (online and evaluation) of the whole plan."""

    @property
    def process_seconds(self) -> float:
        return sum(run.seconds for run in self.runs)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CostEstimate:
        values = dict(data)
        values["runs"] = [RunCost(**run) for run in values["runs"]]
        return cls(**values)


# --------------------------------------------------------------------------- work


def eval_count(steps: int, every: int) -> int:
    """Evaluations of a run of ``steps`` evaluating every ``every`` steps, at 0 and the end."""
    return 1 + steps // every + (1 if steps % every else 0)


def _config_values(parameters: Mapping[str, Any], cls: type) -> dict[str, Any]:
    """The entries of a run's parameters that are fields of ``cls`` (flat, as injected)."""
    names = set(field_names(cls)) | (
        set(field_names(SFTConfig)) if cls is FinetuneConfig else set()
    )
    return {k: v for k, v in parameters.items() if k in names - {"sft"}}


def _acts_with_anchor(variant: str) -> bool:
    """Every variant but ``direct`` acts with a second policy beside the learner (``pex``: the
    offline policy; the ``sft`` variants: the anchor)."""
    return variant != "direct"


def _device_kind(device: str) -> str:
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return "cuda" if str(device).startswith("cuda") else "cpu"


def shapes(runs: list[Run], env_ids: Mapping[str, str]) -> dict[str, Shape]:
    """Each run's :class:`Shape`, by run name (``env_ids``: dataset id -> env id); a
    fine-tuning run takes its network from its pretraining run, which every plan holds."""
    pretrain_of = {d: run for run in runs if run.kind == "pretrain" for d in run.dirs}
    out = {}
    for run in runs:
        source = run if run.kind == "pretrain" else pretrain_of[run.pretrain_dir]
        config = pretrain_config(_config_values(source.parameters, PretrainConfig))
        out[run.name] = Shape(
            config.algo,
            tuple(config.hidden),
            config.batch_size,
            len(run.dirs),
            env_ids[run.dataset_id],
            _device_kind(run.parameters.get("device", "auto")),
            int(run.parameters.get("threads", 1)),
        )
    return out


def run_cost(run: Run, shape: Shape, rates: Rates, episode_steps: int) -> RunCost:
    """The work of ``run`` and its time at ``rates`` (``episode_steps``: per evaluation
    episode)."""
    key = shape_key(shape)
    update = Rates.lookup(rates.update_s, key)
    act = Rates.lookup(rates.act_s, key)
    env_step = Rates.lookup(rates.env_step_s, shape.env_id)
    seeds = shape.seeds
    if run.kind == "pretrain":
        pre = pretrain_config(_config_values(run.parameters, PretrainConfig))
        evals, episodes = eval_count(pre.offline_steps, pre.eval_every), pre.eval_episodes
        per_eval = episode_steps * (seeds * episodes * env_step + act)
        seconds = pre.offline_steps * update + evals * per_eval
        return RunCost(
            run.name,
            run.kind,
            seeds,
            updates=pre.offline_steps * seeds,
            fqe_updates=0,
            env_steps=0,
            eval_steps=evals * episodes * episode_steps * seeds,
            seconds=seconds + NOTEBOOK_START_S,
        )
    config = finetune_config(_config_values(run.parameters, FinetuneConfig))
    steps, variant = config.online_steps, config.sft.variant
    anchored = _acts_with_anchor(variant)
    fqe_steps = steps // config.sft.fqe_every if VARIANTS[variant].ope in ("fqe", "cpe") else 0
    forwards = ANCHOR_FORWARDS if anchored else 1
    per_step = config.utd_ratio * update + seeds * env_step + forwards * act
    evals, episodes = eval_count(steps, config.eval_every), config.eval_episodes
    # The learners alone, and the executed policies when they are not the learners.
    env_steps = seeds * episodes * env_step
    per_eval = episode_steps * (env_steps + act + (env_steps + forwards * act if anchored else 0))
    seconds = steps * per_step + fqe_steps * update + evals * per_eval
    return RunCost(
        run.name,
        run.kind,
        seeds,
        updates=steps * config.utd_ratio * seeds,
        fqe_updates=fqe_steps * seeds,
        env_steps=steps * seeds,
        eval_steps=seeds * evals * episodes * episode_steps * (2 if anchored else 1),
        seconds=seconds + NOTEBOOK_START_S,
    )


# --------------------------------------------------------------------------- environments


def env_for_dataset(dataset_id: str) -> tuple[str, int | None]:
    """The environment id of ``dataset_id`` and its mean episode length when known.

    A dataset in the local Minari store says both; otherwise the id is inferred from the
    name (``local/hopper/...``, ``mujoco/halfcheetah/...`` -> the newest registered
    ``Hopper-v*``, ``HalfCheetah-v*``; ``local/pointmaze/...`` -> its PointMaze env), and
    the episode length is unknown (``None``). ``"?"`` when nothing says.
    """
    import minari

    metadata = minari.list_local_datasets().get(dataset_id)
    if metadata is not None:
        spec = metadata.get("env_spec")
        spec = json.loads(spec) if isinstance(spec, str) else spec
        episodes = metadata.get("total_episodes") or 0
        mean = round(metadata["total_steps"] / episodes) if episodes else None
        if isinstance(spec, Mapping) and spec.get("id"):
            return spec["id"], mean
    from sftlib.factory import env_id_for, maze

    match = maze.LOCAL_ID.fullmatch(dataset_id)
    if match:
        return maze.env_id_for(match["maze"], bool(match["dense"])), None
    parts = dataset_id.split("/")
    if len(parts) == 3 and parts[0] in ("local", "mujoco"):
        try:
            return env_id_for(parts[1]), None
        except ValueError:
            pass
    return "?", None


def episode_steps(env_id: str, dataset_mean: int | None) -> int:
    """Steps of one evaluation episode: the dataset's mean, else the env's time limit."""
    if dataset_mean:
        return dataset_mean
    import gymnasium as gym

    spec = gym.registry.get(env_id)
    return (spec.max_episode_steps if spec else None) or DEFAULT_EPISODE_STEPS


def local_datasets_to_make(dataset_ids: list[str]) -> list[str]:
    """The ``local/...`` ids among ``dataset_ids`` that the factory has yet to make."""
    import minari

    present = minari.list_local_datasets()
    return [d for d in dataset_ids if d.startswith("local/") and d not in present]


# --------------------------------------------------------------------------- the estimate


def wall_seconds(runs: list[Run], seconds: Mapping[str, float], workers: int) -> float:
    """Wall time of ``runs`` (those in ``seconds``) on ``workers`` workers: each free worker
    takes the first run in plan order that can start (a fine-tuning run once its pretraining
    run, when that is among them, has ended), as Dask does."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    pending = [run for run in runs if run.name in seconds]
    ends: dict[Any, float] = {}  # pretraining run dir -> when its process ends
    free = [0.0] * workers  # when each worker is free, as a heap
    finish = 0.0
    while pending:
        now = heapq.heappop(free)
        waiting = {d for run in pending if run.kind == "pretrain" for d in run.dirs}

        ready = [run for run in pending if _ready_at(run, waiting, ends) <= now]
        if not ready:  # this worker idles until the next pretraining run ends
            heapq.heappush(free, min(_ready_at(run, waiting, ends) for run in pending))
            continue
        run = ready[0]
        pending.remove(run)
        end = now + seconds[run.name]
        if run.kind == "pretrain":
            ends.update(dict.fromkeys(run.dirs, end))
        finish = max(finish, end)
        heapq.heappush(free, end)
    return finish


def _ready_at(run: Run, waiting: set[Any], ends: Mapping[Any, float]) -> float:
    """When ``run`` can start: at once, when its pretraining run ends, or not yet known
    (``inf``: its pretraining run is among ``waiting``, not placed yet)."""
    if run.pretrain_dir in waiting:
        return float("inf")
    return ends.get(run.pretrain_dir, 0.0)


def environments(runs: list[Run]) -> tuple[dict[str, str], dict[str, int]]:
    """For each dataset of ``runs``: its environment id, and the steps of one evaluation
    episode (:func:`env_for_dataset`, :func:`episode_steps`)."""
    env_ids, lengths = {}, {}
    for dataset_id in dict.fromkeys(run.dataset_id for run in runs):
        env_id, mean = env_for_dataset(dataset_id)
        env_ids[dataset_id], lengths[dataset_id] = env_id, episode_steps(env_id, mean)
    return env_ids, lengths


def estimate(runs: list[Run], rates: Rates, workers: int) -> CostEstimate:
    """The cost of the incomplete ``runs`` of a plan at ``rates`` on ``workers`` workers."""
    env_ids, episodes = environments(runs)
    by_name = shapes(runs, env_ids)
    costs = [
        run_cost(
            run, by_name[run.name], UNTIMED if run.complete else rates, episodes[run.dataset_id]
        )
        for run in runs
    ]
    todo = [cost for cost, run in zip(costs, runs, strict=True) if not run.complete]
    to_make = local_datasets_to_make(
        list(dict.fromkeys(r.dataset_id for r in runs if not r.complete))
    )
    wall = wall_seconds(runs, {cost.name: cost.seconds for cost in todo}, workers)
    return CostEstimate(
        runs=todo,
        workers=workers,
        device=rates.device,
        datasets_to_make=to_make,
        wall_seconds=wall + DATASET_BUILD_S * len(to_make),
        method=method(rates, episodes),
        total_updates=sum(cost.updates + cost.fqe_updates for cost in costs),
        total_env_steps=sum(cost.env_steps + cost.eval_steps for cost in costs),
    )


def measure_rates(runs: list[Run], seconds_per_rate: float = 0.25) -> Rates:
    """This machine's rates for the shapes of the incomplete ``runs``
    (:func:`sftlib.sweeps.rates.measure`): a few seconds."""
    by_name = shapes(runs, environments(runs)[0])
    return measure([by_name[run.name] for run in runs if not run.complete], seconds_per_rate)


def method(rates: Rates, episodes: Mapping[str, int]) -> str:
    """The estimate's method in a few lines (what :func:`describe` prints under it)."""
    lengths = ", ".join(f"{dataset} {steps}" for dataset, steps in episodes.items())
    return (
        f"rates {rates.source} (eager stacked updates and forward passes at each run's "
        f"network and seed count, env steps with random actions); {NOTEBOOK_START_S:.0f} s "
        f"per notebook for kernel, imports and data; {DATASET_BUILD_S:.0f} s per local dataset "
        f"to make; evaluation episodes of {lengths} steps; an FQE step counted as one update; "
        "torch.compile's speed-up, SFT's checks and estimates not counted"
    )


def hours_label(device: str) -> str:
    return "GPU-hours" if device == "cuda" else "CPU-hours"


def describe(cost: CostEstimate) -> str:
    """The estimate as text (for ``sft sweep --dry-run``)."""
    runs = cost.runs
    updates = sum(run.updates for run in runs)
    fqe = sum(run.fqe_updates for run in runs)
    online = sum(run.env_steps for run in runs)
    evaluation = sum(run.eval_steps for run in runs)
    seeds = sum(run.seeds for run in runs)
    datasets = (
        f" + {len(cost.datasets_to_make)} dataset(s) to make" if cost.datasets_to_make else ""
    )
    lines = [
        f"cost of the plan: {cost.total_updates:,} gradient updates, "
        f"{cost.total_env_steps:,} environment steps",
        f"still to run: {len(runs)} notebook runs ({seeds} seed runs)",
        f"  gradient updates   {updates + fqe:>14,}  ({updates:,} agent, {fqe:,} FQE)",
        f"  environment steps  {online + evaluation:>14,}  ({online:,} online, "
        f"{evaluation:,} evaluating)",
        f"  {hours_label(cost.device):<17}  {cost.process_seconds / 3600:>14.2f}  "
        f"(one {'GPU' if cost.device == 'cuda' else 'core'} per run)",
        f"  wall time          {format_duration(cost.wall_seconds):>14}  "
        f"with {cost.workers} worker(s){datasets}",
        f"  method: {cost.method}",
    ]
    return "\n".join(lines)


def format_duration(seconds: float) -> str:
    """``42 s``, ``6 min 1 s``, ``3 h 05 min``."""
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        minutes, rest = divmod(round(seconds), 60)
        return f"{minutes} min {rest} s"
    hours, rest = divmod(round(seconds / 60), 60)
    return f"{hours} h {rest:02d} min"
