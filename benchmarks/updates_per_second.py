"""Gradient updates per second against the machine's matmul roofline, for one seed and for K
seeds in one process, measured side by side in one run.

    python benchmarks/updates_per_second.py                  # 1 thread, 64-64 and 256-256, K=8
    python benchmarks/updates_per_second.py --seeds 8 --hidden 64 256 --algos iql td3bc
    python benchmarks/updates_per_second.py --compile         # also torch.compile'd IQL
    python benchmarks/updates_per_second.py --device cuda     # on a GPU

What is timed: ``Agent.update`` on random batches of Hopper shapes (obs 11, action 3, batch
256) made beforehand on the device, after warm-up updates; the stacked K-seed agent gets one
batch per seed. The roofline is a 1-thread (``--threads``) ``256x256 @ 256x256`` float32
matmul, measured in the same run before every case, so machine drift shows in both numbers
alike. FLOPs per update are counted from the matmuls an update actually runs (forward and
backward, ``torch.utils.flop_counter``): elementwise work is not counted, so "% of roofline"
is the share of the matmul peak the whole update reaches. Every case is repeated ``--reps``
times, interleaved, and the median is printed. The last two columns compare seed-updates per
second with one seed per process: eager, and the faster of eager and compiled (with
``--compile``; what a one-seed run of that algorithm would use).

When ``d3rlpy`` is importable its IQL and TD3+BC updates are timed in the same interleaved
loop on the same shapes, and the sftlib/d3rlpy ratio is printed (``pip install --no-deps
d3rlpy`` plus its pure-Python dependencies works beside gymnasium 1.4).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from sftlib.agents import Agent, make_agent
from sftlib.agents.seeds import stack_agents
from sftlib.data.buffer import Batch
from sftlib.utils import resolve_device, set_threads

OBS_DIM, ACT_DIM, BATCH = 11, 3, 256
CASES = {
    "iql": (("iql", False),),
    "td3bc": (("td3bc", False), ("td3bc", True)),
    "calql": (("calql", False),),
    "sac": (("sac", True),),
}
"""Algorithm -> the (algo, online) update kinds timed for it."""
N_BATCHES = 8


def random_batches(seeds: int, device: torch.device, seed: int) -> list[Batch]:
    """Random Hopper-shaped batches ``[seeds, 256, ...]`` (rewards, ~1% terminals, returns-to-go)."""
    rng = np.random.default_rng(seed)

    def t(x: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(x, dtype=torch.float32, device=device)

    shape = (seeds, BATCH)
    return [
        Batch(
            obs=t(rng.standard_normal((*shape, OBS_DIM))),
            actions=t(rng.uniform(-1.0, 1.0, (*shape, ACT_DIM))),
            rewards=t(rng.standard_normal(shape)),
            next_obs=t(rng.standard_normal((*shape, OBS_DIM))),
            terminals=t(rng.random(shape) < 0.01),
            returns_to_go=t(rng.standard_normal(shape) * 10.0),
        )
        for _ in range(N_BATCHES)
    ]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def roofline(device: torch.device, reps: int = 300) -> float:
    """GFLOP/s of a ``256x256 @ 256x256`` float32 matmul on ``device``."""
    a = torch.randn(256, 256, device=device)
    b = torch.randn(256, 256, device=device)
    for _ in range(20):
        torch.mm(a, b)
    sync(device)
    start = time.perf_counter()
    for _ in range(reps):
        torch.mm(a, b)
    sync(device)
    return 2 * 256**3 * reps / (time.perf_counter() - start) / 1e9


def build(algo: str, hidden: tuple[int, ...], seeds: int, device: torch.device) -> Agent:
    agents = []
    for seed in range(seeds):
        torch.manual_seed(seed)
        agents.append(
            make_agent(
                algo, OBS_DIM, ACT_DIM, {"hidden": hidden, "batch_size": BATCH}, device=device
            )
        )
    return stack_agents(agents)


def update_flops(update: Callable[[Batch], object], batch: Batch) -> int:
    """Matmul FLOPs of one update (forward and backward)."""
    with FlopCounterMode(display=False) as counter:
        update(batch)
    return counter.get_total_flops()


@dataclass
class Case:
    """One timed update rule: ``group`` (e.g. ``iql offline``), how (``eager``, ``compiled``,
    ``d3rlpy``), ``seeds`` per batched update."""

    group: str
    how: str
    seeds: int
    update: Callable[[object], object]
    batches: list
    flops: int = 0
    samples: list[float] | None = None

    @property
    def name(self) -> str:
        return f"{self.group} {self.how} K={self.seeds}"

    def time(self, steps: int, device: torch.device) -> None:
        sync(device)
        start = time.perf_counter()
        for i in range(steps):
            self.update(self.batches[i % N_BATCHES])
        sync(device)
        self.samples = (self.samples or []) + [steps / (time.perf_counter() - start)]

    @property
    def rate(self) -> float:
        """Median batched updates per second."""
        return statistics.median(self.samples or [float("nan")])


def sftlib_case(
    kind: str, online: bool, hidden: tuple[int, ...], seeds: int, compiled: bool, device
) -> Case:
    agent = build(kind, hidden, seeds, device)
    if compiled:
        agent.compile_update()

    def update(batch: Batch) -> object:
        return agent.update(batch, online=online)

    group = f"{kind} {'online' if online else 'offline'}"
    how = "compiled" if compiled else "eager"
    return Case(group, how, seeds, update, random_batches(seeds, device, 0))


def d3rlpy_cases(hidden: tuple[int, ...], device: torch.device) -> list[Case]:
    """d3rlpy's IQL and TD3+BC offline updates on the same shapes, when it is importable."""
    try:
        import d3rlpy
        from d3rlpy.torch_utility import TorchMiniBatch
    except ImportError:
        return []
    encoder = d3rlpy.models.VectorEncoderFactory(hidden_units=list(hidden))
    configs = {
        "iql offline": d3rlpy.algos.IQLConfig(
            batch_size=BATCH,
            actor_encoder_factory=encoder,
            critic_encoder_factory=encoder,
            value_encoder_factory=encoder,
        ),
        "td3bc offline": d3rlpy.algos.TD3PlusBCConfig(
            batch_size=BATCH, actor_encoder_factory=encoder, critic_encoder_factory=encoder
        ),
    }
    name = f"{device.type}:{device.index or 0}"
    cases = []
    for group, config in configs.items():
        algo = config.create(device=name)
        algo.create_impl((OBS_DIM,), ACT_DIM)
        rng = np.random.default_rng(0)

        def t(x: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(x, dtype=torch.float32, device=device)

        batches = [
            TorchMiniBatch(
                observations=t(rng.standard_normal((BATCH, OBS_DIM))),
                actions=t(rng.uniform(-1, 1, (BATCH, ACT_DIM))),
                rewards=t(rng.standard_normal((BATCH, 1))),
                next_observations=t(rng.standard_normal((BATCH, OBS_DIM))),
                next_actions=t(np.zeros((BATCH, ACT_DIM))),
                returns_to_go=t(np.zeros((BATCH, 1))),
                terminals=t(np.zeros((BATCH, 1))),
                intervals=t(np.ones((BATCH, 1))),
                device=name,
            )
            for _ in range(N_BATCHES)
        ]
        steps = iter(range(10**9))

        def update(batch, impl=algo.impl, steps=steps) -> object:
            return impl.update(batch, next(steps))

        cases.append(Case(group, "d3rlpy", 1, update, batches))
    return cases


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch default)")
    p.add_argument("--hidden", type=int, nargs="+", default=[64, 256], help="widths (2 layers)")
    p.add_argument("--seeds", type=int, default=8, help="K: seeds of the stacked agent")
    p.add_argument("--algos", nargs="+", default=["iql", "td3bc"], choices=sorted(CASES))
    p.add_argument("--steps", type=int, default=200, help="timed updates per case and rep")
    p.add_argument("--warmup", type=int, default=20, help="untimed updates first")
    p.add_argument("--reps", type=int, default=3, help="interleaved repetitions (median)")
    p.add_argument("--compile", action="store_true", help="also time torch.compile'd updates")
    p.add_argument("--no-d3rlpy", action="store_true", help="skip d3rlpy even if importable")
    p.add_argument("--device", default="cpu", help="cpu, cuda[:N] or auto")
    a = p.parse_args()
    if a.steps <= 0 or a.warmup < 0 or a.threads < 0 or a.seeds < 1 or a.reps < 1:
        p.error("--steps, --seeds, --reps must be positive, --warmup and --threads >= 0")

    set_threads(a.threads)
    device = resolve_device(a.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(
        f"torch {torch.__version__} | device {device} ({name}) | threads "
        f"{torch.get_num_threads()} | batch {BATCH} | obs {OBS_DIM} act {ACT_DIM} | "
        f"{a.steps} timed updates x {a.reps} interleaved reps after {a.warmup} warm-up"
    )
    for width in a.hidden:
        hidden = (width, width)
        cases: list[Case] = []
        for algo in a.algos:
            for kind, online in CASES[algo]:
                for compiled in (False, True) if a.compile else (False,):
                    for seeds in sorted({1, a.seeds}):
                        cases.append(sftlib_case(kind, online, hidden, seeds, compiled, device))
        if not a.no_d3rlpy:
            cases += d3rlpy_cases(hidden, device)
        start = time.perf_counter()
        for case in cases:
            for i in range(a.warmup):  # compiles the compiled ones
                case.update(case.batches[i % N_BATCHES])
            if case.how == "eager":  # the counter sees eager kernels; compiled run the same
                case.flops = update_flops(case.update, case.batches[0])
        for case in cases:
            if case.how == "compiled":
                case.flops = next(
                    c.flops
                    for c in cases
                    if (c.group, c.seeds, c.how) == (case.group, case.seeds, "eager")
                )
        warm = time.perf_counter() - start
        rooflines = []
        for _ in range(a.reps):
            for case in cases:
                rooflines.append(roofline(device))
                case.time(a.steps, device)
        peak = statistics.median(rooflines)
        print(
            f"\nhidden {list(hidden)} | matmul roofline {peak:.1f} GFLOP/s (256^3, median of "
            f"{len(rooflines)}) | warm-up and compilation {warm:.0f}s"
        )
        print(
            f"{'update':<34} {'updates/s':>10} {'seed-upd/s':>11} {'GFLOP/upd':>10} "
            f"{'GFLOP/s':>8} {'roofline':>9} {'vs eager K=1':>13} {'vs best K=1':>12}"
        )
        base = {c.group: c for c in cases if c.how == "eager" and c.seeds == 1}
        best: dict[str, Case] = {}  # the faster of eager and compiled, one seed per process
        for c in cases:
            if c.how != "d3rlpy" and c.seeds == 1 and c.rate > best.get(c.group, c).rate - 1e-9:
                best[c.group] = c
        for case in cases:
            per_seed = case.rate * case.seeds
            ratio = ""
            if case.group in base and case.how != "d3rlpy":
                ratio = f"{per_seed / base[case.group].rate:>12.2f}x"
                ratio += f" {per_seed / best[case.group].rate:>11.2f}x"
            elif case.group in base:
                ratio = f"{per_seed / base[case.group].rate:>12.2f}x"
            if case.flops:
                gflops = case.flops * case.rate / 1e9
                flop_text = (
                    f"{case.flops / case.seeds / 1e9:>10.3f} {gflops:>8.1f} {gflops / peak:>8.0%}"
                )
            else:
                flop_text = f"{'':>10} {'':>8} {'':>9}"
            print(f"{case.name:<34} {case.rate:>10.1f} {per_seed:>11.1f} {flop_text} {ratio}")


if __name__ == "__main__":
    main()
