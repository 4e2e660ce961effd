"""Train the behaviour policies of the dataset factory and save them as a small asset.

    python scripts/train_behaviour.py Hopper-v5 --steps 150000 --out sftlib/assets/behaviour

The shipped ``Hopper-v5`` asset was made with exactly this command (seed 0, 1 thread).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from sftlib.factory.behaviour import choose_levels, prune, train_behaviour
from sftlib.utils import atomic_torch_save, set_threads


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("env_id")
    p.add_argument("--steps", type=int, default=150_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--snapshot-every", type=int, default=5_000)
    p.add_argument("--hidden", type=int, nargs="+", default=[128, 128])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=Path("sftlib/assets/behaviour"))
    a = p.parse_args()
    set_threads(a.threads)
    t0 = time.time()
    rec = train_behaviour(a.env_id, a.steps, a.seed, a.snapshot_every, hidden=tuple(a.hidden))
    lv = choose_levels(rec)
    rec["train_seconds"] = time.time() - t0
    rec["torch_version"] = torch.__version__
    path = atomic_torch_save(a.out / f"{a.env_id}.pt", prune(rec))
    for s in rec["snapshots"]:
        print(f"step {s['step']:>7d}  return {s['return']:8.1f}")
    print(
        f"random {rec['random_return']:.1f}; medium = snapshot {lv['medium']}, "
        f"expert = snapshot {lv['expert']}; {rec['train_seconds']:.0f}s -> {path}"
    )


if __name__ == "__main__":
    main()
