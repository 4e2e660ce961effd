"""Seeding, devices, threads and atomic file writes."""

from __future__ import annotations

import json
import os
import random
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int) -> np.random.Generator:
    """Seed python, numpy and torch; return the run's own numpy generator.

    Also asks torch for deterministic kernels, so the same seed gives bit-identical
    numbers on CPU.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    return np.random.default_rng(seed)


def eval_seed(seed: int) -> int:
    """Seed of the evaluation episodes of run ``seed``: fixed per run so every point of a
    curve sees the same start states, and far from the training seeds."""
    return 1_000_000 + 1_000 * seed


GPU_MIN_WORK = 2 * 128 * 128
"""``device: auto`` takes CUDA only for work of at least this ``seeds x width**2`` (width: the
widest hidden layer). Measured: one update costs about 4 ms on an H200 whatever the number of
stacked seeds (launch overhead), while one CPU thread runs IQL 64-64 at ~480 updates/s and
256-256 at ~146/s, stacking seeds at 64-64 for ~2.2x at 8 seeds. So the GPU loses on small
networks with few seeds (64-64 one seed: 210/s there against 480/s here) and wins from about
128-128 with two seeds, 64-64 with eight, or 256-256 alone."""


def resolve_device(
    device: str = "auto", hidden: tuple[int, ...] | list[int] = (), seeds: int = 1
) -> torch.device:
    """The device a run uses: ``cpu``/``cuda[:N]`` as said; ``auto``: CUDA when it is
    available and the stacked networks are big enough to win there (``seeds x width**2 >=``
    :data:`GPU_MIN_WORK`, ``hidden`` the layer widths, ``seeds`` stacked in one process),
    else CPU."""
    if device == "auto":
        width = max(hidden, default=256)
        big = seeds * width * width >= GPU_MIN_WORK
        return torch.device("cuda" if big and torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except RuntimeError as e:
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {device!r}") from e


def use_tf32(enabled: bool) -> None:
    """Whether CUDA float32 matrix products and convolutions may use TF32 in this process
    (``tf32`` of a run's config; torch's own default is off for matrix products)."""
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled


def set_threads(n: int) -> None:
    """Torch intra-op threads. One per process is fastest for CPU sweeps of small nets."""
    if n > 0:
        torch.set_num_threads(n)


def _atomic(path: str | os.PathLike, write: Callable[[Any], None], mode: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to a temporary file beside ``path``, then rename: never half-written."""
    return _atomic(path, lambda f: f.write(text), "w")


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_jsonable))


def atomic_torch_save(path: str | os.PathLike, obj: Any) -> Path:
    return _atomic(path, lambda f: torch.save(obj, f), "wb")


def _jsonable(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def rng_state(rng: np.random.Generator) -> dict[str, Any]:
    """Every random state of a run: torch, numpy (global and the run's generator), python."""
    return {
        "torch": torch.get_rng_state(),
        "numpy_global": np.random.get_state(),
        "python": random.getstate(),
        "generator": rng.bit_generator.state,
    }


def set_rng_state(state: dict[str, Any], rng: np.random.Generator) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy_global"])
    random.setstate(state["python"])
    rng.bit_generator.state = state["generator"]


class MetricSums:
    """Running sums of per-update metrics (``{name: [seeds]}`` tensors), kept as tensors so
    the hot loop never converts; read as floats once per logging interval."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}

    def add(self, metrics: dict[str, torch.Tensor]) -> None:
        for key, value in metrics.items():
            total = self.sums.get(key)
            self.sums[key] = value if total is None else total + value
            self.counts[key] = self.counts.get(key, 0) + 1

    def __bool__(self) -> bool:
        return bool(self.counts)

    def per_seed_means(self) -> list[dict[str, float]]:
        """One ``{name: mean}`` per seed since the last read; the sums restart empty."""
        means = {k: (total / self.counts[k]).tolist() for k, total in self.sums.items()}
        self.sums, self.counts = {}, {}
        seeds = len(next(iter(means.values()))) if means else 0
        return [{k: values[i] for k, values in means.items()} for i in range(seeds)]
