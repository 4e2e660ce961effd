"""Several seeds in one process: each seed's run is its one-seed run, to the bit."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from sftlib.agents import make_agent
from sftlib.agents.seeds import seed_state, stack_agents, stack_states
from sftlib.buffer import Batch
from sftlib.config import PretrainConfig
from sftlib.pretrain import pretrain, pretrain_seeds

from conftest import PENDULUM_ID

RUN_FILES = ("eval.csv", "train.csv")


def config(algo: str = "iql", seed: int = 0, **kw) -> PretrainConfig:
    base = dict(
        dataset_id=PENDULUM_ID,
        algo=algo,
        offline_steps=200,
        eval_every=100,
        eval_episodes=1,
        hidden=(16, 16),
        batch_size=32,
        checkpoint_every=50,
        seed=seed,
    )
    return PretrainConfig(**{**base, **kw})


def files(d: Path) -> dict[str, bytes]:
    return {f: (d / f).read_bytes() for f in RUN_FILES}


def agent_tensors(d: Path) -> dict[str, torch.Tensor]:
    state = torch.load(d / "agent.pt", weights_only=False)["agent"]
    out = {}
    for part in ("modules", "targets"):
        for module, params in state[part].items():
            for name, tensor in params.items():
                out[f"{part}.{module}.{name}"] = tensor
    return out


def summary(d: Path) -> dict:
    s = json.loads((d / "summary.json").read_text())
    for key in ("wall_time_s", "seeds_in_process"):
        s.pop(key)
    return s


def assert_same_run(a: Path, b: Path) -> None:
    assert files(a) == files(b)
    ta, tb = agent_tensors(a), agent_tensors(b)
    assert ta.keys() == tb.keys()
    for key in ta:
        assert torch.equal(ta[key], tb[key]), key
    assert summary(a) == summary(b)


# --- stacking -------------------------------------------------------------------------------
@pytest.mark.parametrize("algo", ["iql", "td3bc", "sac"])
def test_stack_then_split_gives_back_every_seed_state(algo):
    agents = []
    for seed in range(3):
        torch.manual_seed(seed)
        agents.append(make_agent(algo, 3, 2, {"hidden": (8, 8), "batch_size": 4}))
    rng = np.random.default_rng(0)
    batch = Batch(
        *(
            torch.as_tensor(x, dtype=torch.float32)
            for x in (
                rng.standard_normal((4, 3)),
                rng.uniform(-1, 1, (4, 2)),
                rng.standard_normal(4),
                rng.standard_normal((4, 3)),
                np.zeros(4),
            )
        )
    )
    for agent in agents:
        agent.update(batch, online=True)  # optimiser moments exist
    stacked = stack_agents(agents)
    assert stacked.seeds == 3
    state = stacked.state_dict()
    for index, agent in enumerate(agents):
        single = seed_state(state, index)
        original = agent.state_dict()
        for part in ("modules", "targets"):
            for module in original[part]:
                for name, tensor in original[part][module].items():
                    assert torch.equal(single[part][module][name], tensor), (part, module, name)
        assert torch.equal(single["generators"][0], original["generators"][0])
    restacked = stack_states([seed_state(state, i) for i in range(3)])
    for module in state["modules"]:
        for name, tensor in state["modules"][module].items():
            assert torch.equal(restacked["modules"][module][name], tensor)


@pytest.mark.parametrize("algo", ["iql", "td3bc", "sac"])
def test_a_seed_in_a_stack_updates_exactly_as_alone(algo):
    """The property batched runs rest on: no operation mixes or re-rounds seeds.

    It holds when every per-seed activation is a whole number of 32 floats (a batch size
    that is a multiple of 32): torch's CPU kernels handle the last ``n % 32`` elements of a
    tensor with scalar code, whose transcendental functions round differently from the
    vector code (seen with softplus on batches of 8)."""
    torch.manual_seed(0)
    alone = make_agent(algo, 3, 2, {"hidden": (16, 16), "batch_size": 32})
    others = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        others.append(make_agent(algo, 3, 2, {"hidden": (16, 16), "batch_size": 32}))
    stacked = stack_agents([others[0], alone, others[1]])
    generator = torch.Generator().manual_seed(5)
    for _ in range(30):
        batch = Batch(
            torch.randn(3, 32, 3, generator=generator),
            torch.rand(3, 32, 2, generator=generator) * 2 - 1,
            torch.randn(3, 32, generator=generator),
            torch.randn(3, 32, 3, generator=generator),
            (torch.rand(3, 32, generator=generator) < 0.1).float(),
        )
        alone.update(batch.seed(1), online=True)
        stacked.update(batch, online=True)
    split = seed_state(stacked.state_dict(), 1)
    for module, params in alone.state_dict()["modules"].items():
        for name, tensor in params.items():
            assert torch.equal(split["modules"][module][name], tensor), (module, name)


# --- batched pretraining ----------------------------------------------------------------------
@pytest.mark.parametrize("algo", ["iql", "td3bc"])
def test_batched_pretraining_writes_each_seeds_one_seed_run(pendulum_dataset, tmp_path, algo):
    seeds = (0, 1, 2)
    for seed in seeds:
        pretrain(config(algo, seed), tmp_path / f"alone-{seed}", progress=False)
    results = pretrain_seeds(
        [config(algo, s) for s in seeds], [tmp_path / f"batch-{s}" for s in seeds], False
    )
    assert [r.out_dir.name for r in results] == [f"batch-{s}" for s in seeds]
    for seed in seeds:
        assert_same_run(tmp_path / f"alone-{seed}", tmp_path / f"batch-{seed}")
    assert json.loads((tmp_path / "batch-0" / "summary.json").read_text())["seeds_in_process"] == 3


@pytest.mark.slow
def test_batched_pretraining_resumes_from_mixed_progress(pendulum_dataset, tmp_path):
    """One seed done, one stopped at a checkpoint, one not started: the same end."""
    seeds = (0, 1, 2)
    configs = [config(seed=s, offline_steps=2000, checkpoint_every=100) for s in seeds]
    whole = [tmp_path / f"whole-{s}" for s in seeds]
    pretrain_seeds(configs, whole, False)
    mixed = [tmp_path / f"mixed-{s}" for s in seeds]
    pretrain(configs[0], mixed[0], progress=False)
    _run_and_kill([configs[1]], [mixed[1]], wait_for_checkpoints=2)
    pretrain_seeds(configs, mixed, False)
    for a, b in zip(whole, mixed, strict=True):
        assert_same_run(a, b)


KILL_SCRIPT = """
import sys
from sftlib.config import PretrainConfig
from sftlib.pretrain import pretrain_seeds
configs = [PretrainConfig(**c) for c in eval(sys.argv[1])]
pretrain_seeds(configs, eval(sys.argv[2]), progress=False)
"""


def _run_and_kill(configs: list[PretrainConfig], dirs: list[Path], wait_for_checkpoints: int):
    """Start a batched run in a subprocess and SIGKILL it after it wrote checkpoints."""
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    args = [repr([dataclasses.asdict(c) for c in configs]), repr([str(d) for d in dirs])]
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, *args], env=env)
    ckpt, seen, last = dirs[-1] / "checkpoint.pt", 0, None
    deadline = time.time() + 120
    while seen < wait_for_checkpoints and time.time() < deadline and proc.poll() is None:
        stat = ckpt.stat() if ckpt.exists() else None
        if stat is not None and (stat.st_ino, stat.st_mtime_ns) != last:
            last, seen = (stat.st_ino, stat.st_mtime_ns), seen + 1
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert all((d / "checkpoint.pt").exists() for d in dirs)


@pytest.mark.slow
def test_killed_batched_pretraining_resumes_to_identical_numbers(pendulum_dataset, tmp_path):
    seeds = (0, 1, 2)
    configs = [config(seed=s, offline_steps=3000, checkpoint_every=100) for s in seeds]
    whole = [tmp_path / f"whole-{s}" for s in seeds]
    killed = [tmp_path / f"killed-{s}" for s in seeds]
    pretrain_seeds(configs, whole, False)
    _run_and_kill(configs, killed, wait_for_checkpoints=3)
    pretrain_seeds(configs, killed, False)
    for a, b in zip(whole, killed, strict=True):
        assert_same_run(a, b)
        assert not (b / "checkpoint.pt").exists()


def test_seeds_of_a_batch_must_share_every_other_parameter(tmp_path):
    with pytest.raises(ValueError, match="differing: \\['offline_steps'\\]"):
        pretrain_seeds(
            [config(seed=0), config(seed=1, offline_steps=300)], [tmp_path / "a", tmp_path / "b"]
        )
    with pytest.raises(ValueError, match="distinct"):
        pretrain_seeds([config(seed=0), config(seed=0)], [tmp_path / "a", tmp_path / "b"])
    assert not any(tmp_path.iterdir())
