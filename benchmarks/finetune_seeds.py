"""Online fine-tuning throughput: K seeds of ``direct`` (``pex``, ``sft``) one after another (one
process per seed, as a sweep without batching runs them) against the same K seeds side by side
in one process (``sftlib.training.finetune.finetune_seeds``), measured interleaved in one run.

    python benchmarks/finetune_seeds.py                       # Hopper medium, 64-64, K=3 and 8
    python benchmarks/finetune_seeds.py --hidden 128 --seeds 5 --steps 3000
    python benchmarks/finetune_seeds.py --variant sft --seeds 3
    python benchmarks/finetune_seeds.py --variant sft --seeds 8 --eval-every 250 --eval-episodes 5

What is timed: whole ``finetune`` calls from pretraining checkpoints (loading the dataset,
environment steps, batch sampling, updates, the evaluations: by default of one episode at the
start and the end; ``--eval-every``/``--eval-episodes`` set them as a study does), on 1
thread, uncompiled.
Printed: seed-steps per second (online steps summed over seeds / wall time) and the ratio
batched / one seed at a time. The checkpoints come from a short pretraining run made here
(``--offline-steps``); the dataset is built on first use like any local dataset.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

from sftlib.config import PretrainConfig, finetune_config
from sftlib.factory import ensure_dataset
from sftlib.training.finetune import finetune, finetune_seeds
from sftlib.training.pretrain import pretrain_seeds
from sftlib.utils import set_threads
from sftlib.variants import VARIANTS


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--dataset", default="local/hopper/medium-v0")
    p.add_argument("--algo", default="iql", choices=["iql", "td3bc", "calql", "sac"])
    p.add_argument("--variant", default="direct", choices=list(VARIANTS))
    p.add_argument("--hidden", type=int, default=64, help="width of the 2 hidden layers")
    p.add_argument("--seeds", type=int, nargs="+", default=[3, 8], help="K values to time")
    p.add_argument("--steps", type=int, default=2000, help="online steps per seed")
    p.add_argument("--offline-steps", type=int, default=500, help="pretraining steps")
    p.add_argument("--reps", type=int, default=2, help="interleaved repetitions (median)")
    p.add_argument("--eval-every", type=int, help="steps between evaluations (default: --steps)")
    p.add_argument("--eval-episodes", type=int, default=1, help="episodes per evaluation")
    a = p.parse_args()
    a.eval_every = a.eval_every or a.steps
    if min(a.steps, a.reps, min(a.seeds), a.eval_every, a.eval_episodes) < 1:
        p.error("--steps, --reps, --seeds, --eval-every and --eval-episodes must be positive")
    set_threads(1)
    ensure_dataset(a.dataset)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        most = max(a.seeds)
        pre = [root / "pretrain" / f"seed={s}" for s in range(most)]
        base = PretrainConfig(
            dataset_id=a.dataset,
            algo=a.algo,
            offline_steps=a.offline_steps,
            eval_every=a.offline_steps,
            eval_episodes=1,
            hidden=(a.hidden, a.hidden),
            torch_compile="off",
        )
        pretrain_seeds([dataclasses.replace(base, seed=s) for s in range(most)], pre, False)

        def configs(k: int):
            return [
                finetune_config(
                    {
                        "pretrain_dir": str(pre[s]),
                        "variant": a.variant,
                        "online_steps": a.steps,
                        "eval_every": a.eval_every,
                        "eval_episodes": a.eval_episodes,
                        "torch_compile": "off",
                        "seed": s,
                    }
                )
                for s in range(k)
            ]

        rates: dict[tuple[int, str], list[float]] = {}
        for rep in range(a.reps):
            for k in a.seeds:
                for how in ("one at a time", "side by side"):
                    out = root / f"rep{rep}-k{k}-{how.replace(' ', '-')}"
                    start = time.perf_counter()
                    if how == "side by side":
                        finetune_seeds(configs(k), [out / str(s) for s in range(k)], False)
                    else:
                        for s, config in enumerate(configs(k)):
                            finetune(config, out / str(s), progress=False)
                    rate = k * a.steps / (time.perf_counter() - start)
                    rates.setdefault((k, how), []).append(rate)
    print(
        f"{a.algo} {a.variant} on {a.dataset} | hidden {[a.hidden] * 2} | {a.steps} online steps "
        f"per seed | evaluations of {a.eval_episodes} episode(s) every {a.eval_every} steps | "
        f"1 thread, eager | median of {a.reps} interleaved reps"
    )
    print(f"{'K':>3} {'one at a time':>15} {'side by side':>14} {'ratio':>7}   (seed-steps/s)")
    for k in a.seeds:
        alone = statistics.median(rates[(k, "one at a time")])
        batched = statistics.median(rates[(k, "side by side")])
        print(f"{k:>3} {alone:>15.1f} {batched:>14.1f} {batched / alone:>6.2f}x")


if __name__ == "__main__":
    main()
