"""How fast this machine trains: seconds per stacked update, per policy forward pass and per
environment step, measured in a few seconds for the shapes of a study's runs (what
:mod:`sftlib.sweeps.cost` turns into an estimate), or given by hand."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sftlib.config import PretrainConfig

ANY = "*"
"""Key of a rate table that holds for every key (rates given by hand, in tests)."""


@dataclass
class Rates:
    """Seconds per unit of work, measured on one machine (or given)."""

    update_s: dict[str, float] = field(default_factory=dict)
    """Seconds per stacked update of K seeds, by :func:`shape_key`."""
    act_s: dict[str, float] = field(default_factory=dict)
    """Seconds per policy forward pass (one observation per seed), by :func:`shape_key`."""
    env_step_s: dict[str, float] = field(default_factory=dict)
    """Seconds per ``env.step``, by environment id."""
    device: str = "cpu"
    """Where updates were timed: ``cpu`` or ``cuda``."""
    source: str = "given"
    """How the rates were had, for the estimate's method line."""

    @staticmethod
    def lookup(table: Mapping[str, float], key: str) -> float:
        if key in table:
            return table[key]
        if ANY in table:
            return table[ANY]
        raise KeyError(f"no rate for {key!r}; measured: {sorted(table)}")


@dataclass(frozen=True)
class Shape:
    """What a process's speed depends on."""

    algo: str
    hidden: tuple[int, ...]
    batch_size: int
    seeds: int
    env_id: str
    device: str
    threads: int


def shape_key(shape: Shape) -> str:
    """``iql 64-64 b256 x4 Hopper-v5 cpu``: one line naming a measured rate."""
    hidden = "-".join(str(width) for width in shape.hidden)
    return f"{shape.algo} {hidden} b{shape.batch_size} x{shape.seeds} {shape.env_id} {shape.device}"


def measure(shapes: Iterable[Shape], seconds_per_rate: float = 0.25) -> Rates:
    """Time one stacked update and one policy forward of every shape, and ``env.step`` of
    every shape's environment, ``seconds_per_rate`` each, in the runs' threads."""
    import torch

    started = time.perf_counter()
    rates = Rates()
    threads = torch.get_num_threads()
    try:
        for shape in dict.fromkeys(shapes):
            key = shape_key(shape)
            if key not in rates.update_s:
                torch.set_num_threads(max(shape.threads, 1))
                rates.update_s[key], rates.act_s[key] = _time_agent(shape, seconds_per_rate)
                if shape.device == "cuda":
                    rates.device = "cuda"
            if shape.env_id not in rates.env_step_s:
                rates.env_step_s[shape.env_id] = _time_env(shape.env_id, seconds_per_rate)
    finally:
        torch.set_num_threads(threads)
    rates.source = f"measured on this machine in {time.perf_counter() - started:.1f} s"
    return rates


def _dims(env_id: str) -> tuple[int, int]:
    if env_id == "?":
        return 17, 6  # a MuJoCo-sized guess
    from sftlib.data.envs import make_env

    env = make_env(env_id)
    dims = env.observation_space.shape[0], env.action_space.shape[0]
    env.close()
    return dims


def _time_agent(shape: Shape, budget: float) -> tuple[float, float]:
    """Seconds per stacked update and per forward pass of ``shape``'s agent, on random data."""
    import numpy as np
    import torch

    from sftlib.agents import make_agent
    from sftlib.agents.seeds import stack_agents
    from sftlib.data.buffer import Normalizer, ReplayBuffer

    obs_dim, act_dim = _dims(shape.env_id)
    rng = np.random.default_rng(0)
    n = 4 * shape.batch_size
    obs = rng.standard_normal((n, obs_dim)).astype(np.float32)
    buffer = ReplayBuffer.from_arrays(
        obs=obs,
        actions=rng.uniform(-1, 1, (n, act_dim)).astype(np.float32),
        rewards=rng.standard_normal(n).astype(np.float32),
        next_obs=obs,
        terminals=np.zeros(n, np.float32),
        returns_to_go=np.zeros(n, np.float32),
    )
    config = PretrainConfig(algo=shape.algo, hidden=shape.hidden, batch_size=shape.batch_size)
    device = torch.device(shape.device)
    agent = stack_agents(
        [
            make_agent(
                shape.algo,
                obs_dim,
                act_dim,
                config.agent_config(),
                normalizer=Normalizer.fit(obs),
                device=device,
            )
            for _ in range(shape.seeds)
        ]
    )
    rngs = [np.random.default_rng(seed) for seed in range(shape.seeds)]

    def update() -> None:
        agent.update(buffer.sample_per_seed(shape.batch_size, rngs), online=False)

    def act() -> None:
        agent.act_per_seed(obs[: shape.seeds], deterministic=True)

    return _seconds_per_call(update, budget, device), _seconds_per_call(act, budget / 4, device)


def _seconds_per_call(call: Any, budget: float, device: Any = None) -> float:
    """Mean seconds of ``call`` after two warm-up calls, over at least 3 calls and about
    ``budget`` seconds."""
    import torch

    def sync() -> None:
        if device is not None and device.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(2):
        call()
    sync()
    calls, start = 0, time.perf_counter()
    while calls < 3 or time.perf_counter() - start < budget:
        call()
        calls += 1
    sync()
    return (time.perf_counter() - start) / calls


def _time_env(env_id: str, budget: float) -> float:
    """Seconds per ``env.step`` with random actions (resets not counted)."""
    if env_id == "?":
        return 1e-4  # a MuJoCo-sized guess, named in the method line
    from sftlib.data.envs import make_env

    env = make_env(env_id)
    env.reset(seed=0)
    env.action_space.seed(0)
    steps, spent = 0, 0.0
    while steps < 20 or spent < budget:
        action = env.action_space.sample()
        start = time.perf_counter()
        _, _, terminated, truncated, _ = env.step(action)
        spent += time.perf_counter() - start
        steps += 1
        if terminated or truncated:
            env.reset()
    env.close()
    return spent / steps
