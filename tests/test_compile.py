"""torch.compile as an option: used where it wins, deterministic, and the same losses."""

from __future__ import annotations

import pytest
import torch

from sftlib.agents import make_agent
from sftlib.buffer import Batch
from sftlib.config import COMPILE_MIN_UPDATES, compile_update


def test_auto_compiles_only_where_it_was_measured_to_win():
    assert compile_update("auto", compile_wins=True, updates=COMPILE_MIN_UPDATES)
    assert not compile_update("auto", compile_wins=True, updates=COMPILE_MIN_UPDATES - 1)
    assert not compile_update("auto", compile_wins=False, updates=10**6)
    assert compile_update("on", compile_wins=False, updates=1)
    assert not compile_update("off", compile_wins=True, updates=10**6)
    assert make_agent("iql", 3, 2).compile_wins and not make_agent("td3bc", 3, 2).compile_wins


def batches(n: int) -> list[Batch]:
    generator = torch.Generator().manual_seed(0)
    return [
        Batch(
            torch.randn(32, 3, generator=generator),
            torch.rand(32, 2, generator=generator) * 2 - 1,
            torch.randn(32, generator=generator),
            torch.randn(32, 3, generator=generator),
            torch.zeros(32),
        )
        for _ in range(n)
    ]


@pytest.mark.slow
def test_a_compiled_update_computes_the_same_losses_and_is_reproducible():
    def agent(compiled: bool):
        torch.manual_seed(0)
        learner = make_agent("iql", 3, 2, {"hidden": (16, 16), "batch_size": 32})
        if compiled:
            learner.compile_update()
        return learner

    eager, first, second = agent(False), agent(True), agent(True)
    data = batches(3)
    for batch in data:
        expected = eager.update(batch)
        got = first.update(batch)
        assert got.keys() == expected.keys()
        for key in got:  # the same losses, up to the rounding of other kernels
            torch.testing.assert_close(got[key], expected[key], rtol=1e-4, atol=1e-5)
        second.update(batch)
    for p, q in zip(first.actor.parameters(), second.actor.parameters(), strict=True):
        assert torch.equal(p, q)  # compiled runs are bit-reproducible
    assert first._compiled and not first.snapshot()._compiled  # copies compile their own
