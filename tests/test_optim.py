"""FlatAdam: torch's multi-tensor Adam on one flat buffer per parameter group.

Agents step to the numbers ``torch.optim.Adam(foreach=True)`` gives, their optimiser states
load into each other, and the parameters really live in one buffer (the speed-up).

FlatAdam and torch's Adam are compared within a tolerance: they run the same element-wise
formulas, but on different tensors (one flat buffer, or one tensor per parameter), and which
elements a CPU kernel computes in its vector loop and which in its scalar tail depends on
the tensor sizes and the machine's vector width; the two loops may round a fused
multiply-add differently. On the machines measured they agree to the bit; elsewhere an ulp
apart is still the same optimiser. Runs of FlatAdam against itself compare exactly.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import sftlib.agents.base as base
from sftlib.agents import make_agent
from sftlib.agents.optim import FlatAdam
from sftlib.data.buffer import Batch

CASES = [("iql", False), ("td3bc", False), ("td3bc", True), ("calql", True), ("sac", True)]
"""(algo, online): Cal-QL has three parameter groups with two learning rates."""


def torch_adam(params, lr):
    return torch.optim.Adam(params, lr=lr, foreach=True)


def batches(seeds: int, count: int = 12) -> list[Batch]:
    g = torch.Generator().manual_seed(3)
    shape = (seeds, 32)
    return [
        Batch(
            obs=torch.randn(*shape, 3, generator=g),
            actions=torch.rand(*shape, 2, generator=g) * 2 - 1,
            rewards=torch.randn(*shape, generator=g),
            next_obs=torch.randn(*shape, 3, generator=g),
            terminals=(torch.rand(*shape, generator=g) < 0.1).float(),
            returns_to_go=torch.randn(*shape, generator=g),
        )
        for _ in range(count)
    ]


def build(algo: str, seeds: int, monkeypatch=None, optimizer=None):
    if optimizer is not None:
        monkeypatch.setattr(base, "adam", optimizer)
        for module in ("iql", "calql", "sac"):
            monkeypatch.setattr(f"sftlib.agents.{module}.adam", optimizer)
    torch.manual_seed(0)
    return make_agent(algo, 3, 2, {"hidden": (16, 16), "batch_size": 32}, seeds=seeds)


def train(agent, online: bool, todo: list[Batch]) -> None:
    for batch in todo:
        agent.update(batch, online=online)


CLOSE = {"rtol": 1e-5, "atol": 1e-8}
"""FlatAdam against torch's Adam: a few float32 ulps, far below what a wrong formula moves
(a step is ``lr = 1e-4 .. 3e-4`` times a unit-scale ratio; eps is 1e-8)."""


def assert_same_tree(a, b, path: str = "", close: dict | None = None) -> None:
    """``a`` and ``b`` hold the same keys and numbers: to the bit, or within ``close``
    (``rtol``/``atol``; integers such as step counts always exactly)."""
    if isinstance(a, torch.Tensor):
        if close is None or not a.is_floating_point():
            assert torch.equal(a, b), path
        else:
            torch.testing.assert_close(a, b, **close, msg=lambda m: f"{path}: {m}")
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for key in a:
            assert_same_tree(a[key], b[key], f"{path}/{key}", close)
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_tree(x, y, f"{path}[{i}]", close)
    elif isinstance(a, np.ndarray):
        assert np.array_equal(a, b), path
    elif close is not None and isinstance(a, float):
        assert a == pytest.approx(b, rel=close["rtol"], abs=close["atol"]), path
    else:
        assert a == b, path


@pytest.mark.parametrize("algo,online", CASES)
@pytest.mark.parametrize("seeds", [1, 2])
def test_agents_step_as_with_torch_adam(monkeypatch, algo, online, seeds):
    flat = build(algo, seeds)
    assert all(isinstance(o, FlatAdam) for o in flat.optimizers.values())
    train(flat, online, batches(seeds))
    with monkeypatch.context() as m:
        reference = build(algo, seeds, m, torch_adam)
        assert not any(isinstance(o, FlatAdam) for o in reference.optimizers.values())
        train(reference, online, batches(seeds))
    # Weights, targets, and the optimiser state in torch's per-parameter layout.
    assert_same_tree(flat.state_dict(), reference.state_dict(), close=CLOSE)


@pytest.mark.parametrize("algo,online", [("iql", False), ("calql", True)])
def test_optimiser_states_load_both_ways(monkeypatch, algo, online):
    todo = batches(1)
    flat = build(algo, 1)
    train(flat, online, todo[:5])
    with monkeypatch.context() as m:
        reference = build(algo, 1, m, torch_adam)
        train(reference, online, todo[:5])
        from_flat = build(algo, 1, m, torch_adam)
        from_flat.load_state_dict(copy.deepcopy(flat.state_dict()))
    from_reference = build(algo, 1)
    train(from_reference, online, todo[7:])  # moments of its own, which the load replaces
    from_reference.load_state_dict(copy.deepcopy(reference.state_dict()))
    for agent in (flat, reference, from_flat, from_reference):
        train(agent, online, todo[5:])
    for other in (reference, from_flat, from_reference):  # each stepped by torch's Adam too
        assert_same_tree(flat.state_dict(), other.state_dict(), close=CLOSE)


def test_a_groups_parameters_and_moments_live_in_one_buffer():
    agent = build("iql", 1)
    train(agent, False, batches(1, 1))
    optimizer = agent.optimizers["all"]
    params = optimizer.param_groups[0]["params"]
    assert len(params) > 10
    for key in ("data", "exp_avg", "exp_avg_sq"):
        buffer = optimizer._flat[0][key]
        start, end = buffer.data_ptr(), buffer.data_ptr() + 4 * buffer.numel()
        tensors = params if key == "data" else [optimizer.state[p][key] for p in params]
        assert all(start <= t.data_ptr() < end for t in tensors), key
    # Stepping moves the modules' own parameters.
    before = agent.vf.net.layers[0].weight.clone()
    train(agent, False, batches(1, 1))
    assert not torch.equal(before, agent.vf.net.layers[0].weight)


def test_a_deep_copy_trains_on_its_own_buffer():
    agent = build("iql", 1)
    train(agent, False, batches(1, 2))
    twin = copy.deepcopy(agent)
    before = {k: v.clone() for k, v in agent.actor.state_dict().items()}
    train(twin, False, batches(1, 2))
    assert all(torch.equal(v, agent.actor.state_dict()[k]) for k, v in before.items())
    assert not torch.equal(before["net.layers.0.weight"], twin.actor.net.layers[0].weight)
    train(agent, False, batches(1, 2))  # the original still trains its own modules
    assert_same_tree(agent.state_dict()["modules"], twin.state_dict()["modules"])


def test_a_parameter_without_gradient_is_an_error():
    layer = torch.nn.Linear(3, 2)
    optimizer = FlatAdam(list(layer.parameters()), lr=1e-3)
    layer(torch.randn(4, 3)).sum().backward()
    layer.bias.grad = None
    with pytest.raises(RuntimeError, match="gradient for every parameter"):
        optimizer.step()


def test_a_state_with_parameters_at_different_steps_is_refused():
    layer = torch.nn.Linear(3, 2)
    reference = torch_adam(list(layer.parameters()), 1e-3)
    layer(torch.randn(4, 3)).sum().backward()
    reference.step()
    layer.bias.grad = None
    layer(torch.randn(4, 3)).sum().backward()
    layer.bias.grad = None
    reference.step()  # torch skips the bias: its step count stays at 1
    with pytest.raises(ValueError, match="different Adam steps"):
        FlatAdam(list(layer.parameters()), 1e-3).load_state_dict(reference.state_dict())
