"""Fingerprints of fine-tuning runs, to show that a change of code keeps every number.

Makes a small Pendulum dataset (a hand-written swing-up controller with noise) in a private
Minari store, pretrains IQL and TD3+BC briefly, then fine-tunes every variant with one seed
per process (seeds 0 and 1) and with both seeds side by side, eagerly and (IQL's ``direct``
and ``sft``) compiled, with schedules short enough that checks, switches, probes, resets
and anchor updates all happen. Prints one line per run: the SHA-256 of its ``eval.csv``,
``events.csv``, ``checks.csv``, ``train.csv`` and of ``summary.json`` without wall time::

    python scripts/fingerprint_runs.py OUT_DIR > before.txt
    # ... change the code ...
    python scripts/fingerprint_runs.py OUT_DIR2 > after.txt
    diff before.txt after.txt    # no output: the same numbers, run for run
    python scripts/fingerprint_runs.py OUT_DIR2 --compare OUT_DIR   # when files gained columns

Run both on one machine: numbers are bit-identical on one machine, not across machines.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np

FILES = ("eval.csv", "events.csv", "checks.csv", "train.csv")
VARIANTS = ("direct", "pex", "sft", "sft-noswitch", "sft-q", "sft-mc", "sft-fqe", "sft-noreset")


def _imports():
    """The library's entry points, where this version of ``sftlib`` keeps them."""
    try:
        from sftlib.data.rollouts import evaluate_policy
        from sftlib.factory import create_dataset, rollouts
        from sftlib.training.finetune import finetune, finetune_seeds
        from sftlib.training.pretrain import pretrain
    except ImportError:
        from sftlib.evaluation import evaluate_policy
        from sftlib.factory import create_dataset, rollouts
        from sftlib.finetune import finetune
        from sftlib.finetune_batch import finetune_seeds
        from sftlib.pretrain import pretrain
    return evaluate_policy, create_dataset, rollouts, finetune, finetune_seeds, pretrain


def expert(obs: np.ndarray) -> np.ndarray:
    c, s, w = obs
    if c > 0.85:
        u = -(10.0 * np.arctan2(s, c) + 2.0 * w)
    else:
        energy = 0.5 * w**2 + 10.0 * (c - 1.0)
        u = 2.0 * np.sign(-w * energy) if abs(w) > 1e-3 else 1.0
    return np.array([np.clip(u / 2.0, -1.0, 1.0)], np.float32)


def fingerprint(run: Path, root: Path) -> str:
    """The run's files, its summary without wall time and with ``root`` (where this
    invocation wrote) written as ``OUT``."""
    digest = hashlib.sha256()
    for name in FILES:
        digest.update((run / name).read_bytes())
    summary = json.loads((run / "summary.json").read_text().replace(str(root), "OUT"))
    for key in ("wall_time_s", "seeds_in_process", "device"):
        summary.pop(key, None)
    digest.update(json.dumps(summary, sort_keys=True).encode())
    return digest.hexdigest()[:16]


def compare(before: Path, after: Path) -> int:
    """Whether every number of the runs under ``before`` is in the same run under ``after``:
    each CSV's columns and rows as ``before`` has them (``after`` may add columns), each key
    of ``before``'s summaries (``after`` may add keys; wall time and the ``before`` and
    ``after`` folders aside), and every run of ``after`` that ``before`` has. Prints one line
    per run and returns the number that differ."""
    import csv

    differing = 0
    for side in ("one", "side"):
        for run in sorted((before / side).glob("*/seed=*")):
            other = after / run.relative_to(before)
            problems = []
            for name in FILES:
                old = list(csv.DictReader((run / name).open()))
                new = list(csv.DictReader((other / name).open()))
                columns = list(old[0]) if old else []
                if [[r[c] for c in columns] for r in old] != [
                    [r.get(c) for c in columns] for r in new
                ]:
                    problems.append(name)
            old = json.loads((run / "summary.json").read_text().replace(str(before), "OUT"))
            new = json.loads((other / "summary.json").read_text().replace(str(after), "OUT"))
            for key in set(old) - {"wall_time_s", "config"}:
                if old[key] != new.get(key):
                    problems.append(f"summary.{key}")
            if not _contains(new["config"], old["config"]):
                problems.append("summary.config")
            differing += bool(problems)
            label = f"{run.parent.name} {run.name} K={1 if side == 'one' else 2}"
            print(f"{label} {'same' if not problems else 'DIFFERS: ' + ', '.join(problems)}")
    return differing


def _contains(new: dict, old: dict) -> bool:
    """Whether ``new`` holds every key of ``old`` (nested dicts key by key) with its value."""
    return all(
        _contains(new.get(k) or {}, v) if isinstance(v, dict) else new.get(k) == v
        for k, v in old.items()
    )


def rehash(root: Path) -> None:
    """Print the fingerprints of the runs already under ``root``."""
    for side, k in (("one", 1), ("side", 2)):
        for run in sorted((root / side).glob("*/seed=*")):
            print(f"{run.parent.name} {run.name} K={k} {fingerprint(run, root)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="a new folder for the dataset and the runs")
    parser.add_argument("--online-steps", type=int, default=1_200)
    parser.add_argument("--rehash", action="store_true", help="only hash the runs in OUT_DIR")
    parser.add_argument(
        "--compare", type=Path, default=None, metavar="BEFORE",
        help="compare OUT_DIR's runs with BEFORE's: the numbers BEFORE has, allowing new columns",
    )  # fmt: skip
    args = parser.parse_args()
    if args.rehash:
        return rehash(args.out)
    if args.compare is not None:
        sys.exit(1 if compare(args.compare, args.out) else 0)
    os.environ["MINARI_DATASETS_PATH"] = str(args.out / "datasets")
    import torch

    torch.set_num_threads(1)
    from sftlib.config import FinetuneConfig, PretrainConfig, SFTConfig

    evaluate_policy, create_dataset, rollouts, finetune, finetune_seeds, pretrain = _imports()
    rng = np.random.default_rng(0)

    def behaviour(obs):
        return np.clip(expert(obs) + 0.2 * rng.standard_normal(1), -1, 1).astype(np.float32)

    episodes = rollouts("Pendulum-v1", behaviour, 4_000, seed=0, first_id=0)
    ref_max = float(evaluate_policy(expert, "Pendulum-v1", 3, seed=123).mean())
    dataset_id = "local/pendulum/expert-v0"
    create_dataset(
        dataset_id,
        "Pendulum-v1",
        episodes,
        ref_min_score=-1230.0,
        ref_max_score=ref_max,
        description="fingerprint dataset",
    )
    lines = []
    for algo in ("iql", "td3bc"):
        pretrained = {}
        for seed in (0, 1):
            pretrained[seed] = args.out / f"pretrain-{algo}-{seed}"
            pretrain(
                PretrainConfig(
                    dataset_id=dataset_id,
                    algo=algo,
                    offline_steps=300,
                    seed=seed,
                    eval_every=300,
                    eval_episodes=2,
                    hidden=(32, 32),
                    batch_size=64,
                ),
                pretrained[seed],
                progress=False,
            )
        compiled = ("direct", "sft") if algo == "iql" else ()
        for variant in VARIANTS:
            for compile_choice in ("off", "on") if variant in compiled else ("off",):
                sft = SFTConfig(
                    variant=variant,
                    check_every=100,
                    patience=1,
                    drift_tol=0.5,
                    probe_every=2,
                    probe_size=64,
                    reset_every=400,
                    reset_start=400,
                    margin=0.0,
                    mc_episodes=4,
                    mc_min_share=0.0,
                )

                def config(seed: int, sft: SFTConfig = sft, choice: str = compile_choice):
                    return FinetuneConfig(
                        pretrain_dir=str(pretrained[seed]),  # noqa: B023 (used at once)
                        online_steps=args.online_steps,
                        eval_every=400,
                        eval_episodes=2,
                        seed=seed,
                        checkpoint_every=500,
                        device="cpu",
                        torch_compile=choice,
                        sft=sft,
                    )

                name = f"{algo}-{variant}-{compile_choice}"
                for seed in (0, 1):
                    out = args.out / "one" / name / f"seed={seed}"
                    finetune(config(seed), out, progress=False)
                    lines.append(f"{name} seed={seed} K=1 {fingerprint(out, args.out)}")
                outs = [args.out / "side" / name / f"seed={seed}" for seed in (0, 1)]
                finetune_seeds([config(0), config(1)], outs, progress=False)
                for seed, out in zip((0, 1), outs, strict=True):
                    lines.append(f"{name} seed={seed} K=2 {fingerprint(out, args.out)}")
                print("\n".join(lines[-4:]), flush=True)
    del lines
    sys.stdout.flush()


if __name__ == "__main__":
    main()
