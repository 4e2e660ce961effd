"""torch.compile as an option: used where it wins, deterministic, and the same losses."""

from __future__ import annotations

import pytest
import torch

from sftlib.agents import make_agent
from sftlib.config import COMPILE_MIN_UPDATES, PretrainConfig, compile_mode, compile_update
from sftlib.data.buffer import Batch


def test_auto_compiles_only_where_it_was_measured_to_win():
    assert compile_update("auto", compile_wins=True, updates=COMPILE_MIN_UPDATES)
    assert not compile_update("auto", compile_wins=True, updates=COMPILE_MIN_UPDATES - 1)
    assert not compile_update("auto", compile_wins=False, updates=10**6)
    assert compile_update("on", compile_wins=False, updates=1)
    assert not compile_update("off", compile_wins=True, updates=10**6)
    assert compile_update("reduce-overhead", compile_wins=False, updates=1)
    assert make_agent("iql", 3, 2).compile_wins and not make_agent("td3bc", 3, 2).compile_wins


def agent(compiled: bool):
    """A small IQL learner, seeded the same each call, its update compiled or not."""
    torch.manual_seed(0)
    learner = make_agent("iql", 3, 2, {"hidden": (16, 16), "batch_size": 32})
    if compiled:
        learner.compile_update()
    return learner


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


@pytest.mark.slow
def test_a_compiled_learner_trains_on_through_a_reset():
    """A reset rebuilds Adam, which gathers the weights into a new buffer
    (:class:`sftlib.agents.optim.FlatAdam`): the compiled losses must read the weights where
    they now live, or the learner would train a stale copy."""

    eager, compiled = agent(False), agent(True)
    data = batches(8)
    for learner in (eager, compiled):
        for batch in data[:3]:
            learner.update(batch)
        torch.manual_seed(1)
        learner.reset_networks("last", 0.5)
    for batch in data[3:]:
        expected, got = eager.update(batch), compiled.update(batch)
        for key in got:
            torch.testing.assert_close(got[key], expected[key], rtol=1e-4, atol=1e-5)
    for p, q in zip(eager.critic.parameters(), compiled.critic.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)


def test_reduce_overhead_reaches_torch_compile_and_nothing_else_does(monkeypatch):
    """``torch_compile: reduce-overhead`` compiles the losses in torch.compile's
    reduce-overhead mode (CUDA graphs on a GPU); ``on`` and ``auto`` in its default mode."""
    assert compile_mode("reduce-overhead") == "reduce-overhead"
    assert {compile_mode(c) for c in ("on", "auto", "off")} == {"default"}
    modes = []

    def fake_compile(fn, mode="default"):
        modes.append(mode)
        return fn

    monkeypatch.setattr(torch, "compile", fake_compile)
    for mode in ("reduce-overhead", "default"):
        learner = agent(False)
        learner.compile_update(mode)
        learner.update(batches(1)[0])
        assert modes and set(modes) == {mode}
        modes.clear()


def test_tf32_is_a_run_parameter_off_by_default(pendulum_dataset, tmp_path):
    """A run with ``tf32: true`` lets CUDA matrix products use TF32; the default run does not."""
    from sftlib.training.pretrain import pretrain

    from conftest import PENDULUM_ID

    assert PretrainConfig(dataset_id=PENDULUM_ID).tf32 is False
    flag = torch.backends.cuda.matmul.allow_tf32
    try:
        for tf32 in (True, False):
            config = PretrainConfig(
                dataset_id=PENDULUM_ID, offline_steps=2, eval_every=2, eval_episodes=1,
                hidden=(8,), batch_size=8, tf32=tf32,
            )  # fmt: skip
            pretrain(config, tmp_path / str(tf32), progress=False)
            assert torch.backends.cuda.matmul.allow_tf32 is tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32 = flag
