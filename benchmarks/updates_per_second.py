"""Gradient updates per second of every base algorithm, on random data of Hopper shapes.

    python benchmarks/updates_per_second.py --threads 1 --steps 300
    python benchmarks/updates_per_second.py --device cuda --batch-size 256 --hidden 256 256

Times ``Agent.update`` alone (batches are made beforehand, on the device): IQL (one rule
offline and online), TD3+BC offline (with the behaviour-cloning term) and online (plain
TD3), and SAC. TD3+BC steps its actor every ``policy_freq`` (2) updates, as in training,
so its number is the mean over both kinds of update. Each algorithm gets ``--warmup``
untimed updates first. ``--threads 0`` leaves torch's default (all cores).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from sftlib.agents import make_agent
from sftlib.buffer import Batch
from sftlib.utils import resolve_device, set_threads

HOPPER_OBS_DIM, HOPPER_ACT_DIM = 11, 3
N_BATCHES = 16
"""Distinct random batches cycled through, so no update sees exactly the previous batch."""
CASES = (("iql", False), ("td3bc", False), ("td3bc", True), ("sac", True))
"""(algorithm, online) pairs that are timed."""


def random_batches(n: int, batch_size: int, device: torch.device, seed: int) -> list[Batch]:
    """``n`` batches of random Hopper-shaped transitions: obs ``[B, 11]``, actions ``[B, 3]``
    in ``[-1, 1]``, rewards ``[B]``, terminals ``[B]`` (about 1% ones)."""
    rng = np.random.default_rng(seed)

    def t(x: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(x, dtype=torch.float32, device=device)

    return [
        Batch(
            obs=t(rng.standard_normal((batch_size, HOPPER_OBS_DIM))),
            actions=t(rng.uniform(-1.0, 1.0, (batch_size, HOPPER_ACT_DIM))),
            rewards=t(rng.standard_normal(batch_size)),
            next_obs=t(rng.standard_normal((batch_size, HOPPER_OBS_DIM))),
            terminals=t(rng.random(batch_size) < 0.01),
        )
        for _ in range(n)
    ]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_updates(
    algo: str,
    online: bool,
    batches: list[Batch],
    hidden: tuple[int, ...],
    steps: int,
    warmup: int,
    device: torch.device,
) -> float:
    """Seconds per update of ``algo`` (mean over ``steps`` timed updates)."""
    agent = make_agent(
        algo,
        HOPPER_OBS_DIM,
        HOPPER_ACT_DIM,
        {"hidden": hidden, "batch_size": len(batches[0].obs)},
        device=device,
    )
    for i in range(warmup):
        agent.update(batches[i % len(batches)], online=online)
    sync(device)
    t0 = time.perf_counter()
    for i in range(steps):
        agent.update(batches[i % len(batches)], online=online)
    sync(device)
    return (time.perf_counter() - t0) / steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    p.add_argument("--hidden", type=int, nargs="+", default=[256, 256], help="hidden widths")
    p.add_argument("--batch-size", type=int, default=256, help="transitions per update")
    p.add_argument("--steps", type=int, default=300, help="timed updates per algorithm")
    p.add_argument("--warmup", type=int, default=20, help="untimed updates first")
    p.add_argument("--device", default="cpu", help="cpu, cuda[:N] or auto")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    if a.steps <= 0 or a.warmup < 0 or a.batch_size <= 0 or a.threads < 0:
        p.error("--steps and --batch-size must be positive, --warmup and --threads >= 0")

    set_threads(a.threads)
    torch.manual_seed(a.seed)
    device = resolve_device(a.device)
    hidden = tuple(a.hidden)
    batches = random_batches(N_BATCHES, a.batch_size, device, a.seed)

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(
        f"torch {torch.__version__} | device {device} ({name}) | threads "
        f"{torch.get_num_threads()} | hidden {list(hidden)} | batch {a.batch_size} | "
        f"obs {HOPPER_OBS_DIM} act {HOPPER_ACT_DIM} | {a.steps} timed after {a.warmup} warm-up"
    )
    print(f"{'algorithm':<10} {'update':<8} {'updates/s':>10} {'ms/update':>10}")
    for algo, online in CASES:
        sec = time_updates(algo, online, batches, hidden, a.steps, a.warmup, device)
        kind = "online" if online else "offline"
        print(f"{algo:<10} {kind:<8} {1.0 / sec:>10.1f} {1000.0 * sec:>10.2f}")


if __name__ == "__main__":
    main()
