"""Shared fixtures: a private Minari store and a small Pendulum dataset whose behaviour
policy is a hand-written swing-up controller (expert without any training)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch


def kill_after_checkpoints(proc: subprocess.Popen, checkpoint: Path, count: int) -> None:
    """SIGKILL ``proc`` once it has written ``checkpoint`` ``count`` times (each checkpoint is
    a new file renamed into place: a new inode), and wait for it."""
    seen, last = 0, None
    deadline = time.time() + 120
    while seen < count and time.time() < deadline and proc.poll() is None:
        stat = checkpoint.stat() if checkpoint.exists() else None
        if stat is not None and (stat.st_ino, stat.st_mtime_ns) != last:
            last, seen = (stat.st_ino, stat.st_mtime_ns), seen + 1
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


PENDULUM = "Pendulum-v1"
PENDULUM_ID = "local/pendulum/expert-v0"


def pendulum_expert(obs: np.ndarray) -> np.ndarray:
    """Energy-pumping swing-up, then a PD balance near the top (return about -150)."""
    c, s, w = obs
    if c > 0.85:
        u = -(10.0 * np.arctan2(s, c) + 2.0 * w)
    else:
        energy = 0.5 * w**2 + 10.0 * (c - 1.0)  # 0 when upright and still
        u = 2.0 * np.sign(-w * energy) if abs(w) > 1e-3 else 1.0
    return np.array([np.clip(u / 2.0, -1.0, 1.0)], np.float32)


def noisy(policy, scale: float, seed: int):
    rng = np.random.default_rng(seed)
    return lambda o: np.clip(policy(o) + scale * rng.standard_normal(1), -1, 1).astype(np.float32)


@pytest.fixture(scope="session", autouse=True)
def minari_store():
    """The private Minari store set up by the root ``conftest.py`` (never the user's)."""
    torch.set_num_threads(1)
    return os.environ["MINARI_DATASETS_PATH"]


@pytest.fixture(scope="session")
def pendulum_dataset(minari_store):
    """``local/pendulum/expert-v0``: 6,000 transitions of the noisy expert."""
    from sftlib.data.rollouts import evaluate_policy
    from sftlib.factory import create_dataset, rollouts

    episodes = rollouts(PENDULUM, noisy(pendulum_expert, 0.2, 0), 6_000, seed=0, first_id=0)
    ref_max = float(evaluate_policy(pendulum_expert, PENDULUM, 5, seed=123).mean())
    return create_dataset(
        PENDULUM_ID,
        PENDULUM,
        episodes,
        ref_min_score=-1230.0,
        ref_max_score=ref_max,
        description="test dataset",
    )


@pytest.fixture(scope="session")
def pretrained_dirs(pendulum_dataset, tmp_path_factory):
    """Short IQL and TD3+BC pretraining runs on the Pendulum dataset, by algorithm."""
    from sftlib.config import PretrainConfig
    from sftlib.training.pretrain import pretrain

    out = {}
    for algo in ("iql", "td3bc"):
        d = tmp_path_factory.mktemp(f"pretrain-{algo}")
        pretrain(
            PretrainConfig(
                dataset_id=PENDULUM_ID,
                algo=algo,
                offline_steps=300,
                eval_every=300,
                eval_episodes=2,
                hidden=(32, 32),
                batch_size=64,
            ),
            d,
            progress=False,
        )
        out[algo] = d
    return out
