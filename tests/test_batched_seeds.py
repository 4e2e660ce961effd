"""Several seeds in one process, pretraining and fine-tuning: each seed's run is its one-seed
run, to the bit."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from sftlib.agents import Agent, make_agent
from sftlib.agents.seeds import (
    bind_seed,
    bound_seeds,
    is_bound,
    seed_state,
    stack_agents,
    stack_states,
)
from sftlib.config import FinetuneConfig, PretrainConfig, finetune_config
from sftlib.data.buffer import Batch
from sftlib.sft.control import PolicyExpansion
from sftlib.sft.fqe import next_actions
from sftlib.training.checkpoint import CheckpointError
from sftlib.training.finetune import finetune, finetune_seeds
from sftlib.training.pretrain import pretrain, pretrain_seeds

from conftest import PENDULUM_ID, kill_after_checkpoints

RUN_FILES = ("eval.csv", "train.csv")


def config(algo: str = "iql", seed: int = 0, **kw) -> PretrainConfig:
    base = dict(
        dataset_id=PENDULUM_ID,
        algo=algo,
        offline_steps=200,
        eval_every=100,
        eval_episodes=1,
        hidden=(16, 16),
        batch_size=32,
        checkpoint_every=50,
        seed=seed,
    )
    return PretrainConfig(**{**base, **kw})


def files(d: Path) -> dict[str, bytes]:
    return {f: (d / f).read_bytes() for f in RUN_FILES}


def agent_tensors(d: Path) -> dict[str, torch.Tensor]:
    state = torch.load(d / "agent.pt", weights_only=False)["agent"]
    out = {}
    for part in ("modules", "targets"):
        for module, params in state[part].items():
            for name, tensor in params.items():
                out[f"{part}.{module}.{name}"] = tensor
    return out


def summary(d: Path) -> dict:
    s = json.loads((d / "summary.json").read_text())
    for key in ("wall_time_s", "seeds_in_process"):
        s.pop(key)
    return s


def assert_same_run(a: Path, b: Path) -> None:
    assert files(a) == files(b)
    ta, tb = agent_tensors(a), agent_tensors(b)
    assert ta.keys() == tb.keys()
    for key in ta:
        assert torch.equal(ta[key], tb[key]), key
    assert summary(a) == summary(b)


# --- stacking -------------------------------------------------------------------------------
@pytest.mark.parametrize("algo", ["iql", "td3bc", "sac"])
def test_stack_then_split_gives_back_every_seed_state(algo):
    agents = []
    for seed in range(3):
        torch.manual_seed(seed)
        agents.append(make_agent(algo, 3, 2, {"hidden": (8, 8), "batch_size": 4}))
    rng = np.random.default_rng(0)
    batch = Batch(
        *(
            torch.as_tensor(x, dtype=torch.float32)
            for x in (
                rng.standard_normal((4, 3)),
                rng.uniform(-1, 1, (4, 2)),
                rng.standard_normal(4),
                rng.standard_normal((4, 3)),
                np.zeros(4),
            )
        )
    )
    for agent in agents:
        agent.update(batch, online=True)  # optimiser moments exist
    stacked = stack_agents(agents)
    assert stacked.seeds == 3
    state = stacked.state_dict()
    for index, agent in enumerate(agents):
        single = seed_state(state, index)
        original = agent.state_dict()
        for part in ("modules", "targets"):
            for module in original[part]:
                for name, tensor in original[part][module].items():
                    assert torch.equal(single[part][module][name], tensor), (part, module, name)
        assert torch.equal(single["generators"][0], original["generators"][0])
    restacked = stack_states([seed_state(state, i) for i in range(3)])
    for module in state["modules"]:
        for name, tensor in state["modules"][module].items():
            assert torch.equal(restacked["modules"][module][name], tensor)


@pytest.mark.parametrize("algo", ["iql", "td3bc", "sac"])
def test_a_seed_in_a_stack_updates_exactly_as_alone(algo):
    """The property batched runs rest on: no operation mixes or re-rounds seeds.

    It holds when every per-seed activation is a whole number of 32 floats (a batch size
    that is a multiple of 32): torch's CPU kernels handle the last ``n % 32`` elements of a
    tensor with scalar code, whose transcendental functions round differently from the
    vector code (seen with softplus on batches of 8)."""
    torch.manual_seed(0)
    alone = make_agent(algo, 3, 2, {"hidden": (16, 16), "batch_size": 32})
    others = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        others.append(make_agent(algo, 3, 2, {"hidden": (16, 16), "batch_size": 32}))
    stacked = stack_agents([others[0], alone, others[1]])
    generator = torch.Generator().manual_seed(5)
    for _ in range(30):
        batch = Batch(
            torch.randn(3, 32, 3, generator=generator),
            torch.rand(3, 32, 2, generator=generator) * 2 - 1,
            torch.randn(3, 32, generator=generator),
            torch.randn(3, 32, 3, generator=generator),
            (torch.rand(3, 32, generator=generator) < 0.1).float(),
        )
        alone.update(batch.seed(1), online=True)
        stacked.update(batch, online=True)
    split = seed_state(stacked.state_dict(), 1)
    for module, params in alone.state_dict()["modules"].items():
        for name, tensor in params.items():
            assert torch.equal(split["modules"][module][name], tensor), (module, name)


def test_a_bound_seed_acts_with_the_stack_and_copies_its_current_weights():
    agents = []
    for seed in range(3):
        torch.manual_seed(seed)
        agents.append(make_agent("iql", 3, 2, {"hidden": (8, 8), "batch_size": 32}))
    stacked = stack_agents(agents)
    bound = agents[1]
    bind_seed(bound, stacked, 1)
    assert is_bound(bound, stacked, 1) and not is_bound(agents[0], stacked, 0)
    assert bound_seeds(agents, stacked) == [False, True, False]
    generator = torch.Generator().manual_seed(0)
    batch = Batch(
        torch.randn(3, 32, 3, generator=generator),
        torch.rand(3, 32, 2, generator=generator) * 2 - 1,
        torch.randn(3, 32, generator=generator),
        torch.randn(3, 32, 3, generator=generator),
        torch.zeros(3, 32),
    )
    stacked.update(batch)
    now = seed_state(stacked.state_dict(), 1)["modules"]
    for module, params in bound.state_dict()["modules"].items():
        for name, tensor in params.items():
            assert torch.equal(tensor, now[module][name]), (module, name)
    snapshot = bound.snapshot()  # a copy holds the weights of the moment, not the binding
    # What the seed saves or snapshots is its slice alone, not the stack's storage.
    saved = io.BytesIO()
    torch.save(bound.state_dict()["modules"], saved)
    alone = io.BytesIO()
    torch.save(agents[0].state_dict()["modules"], alone)
    assert len(saved.getvalue()) == len(alone.getvalue())
    for p in snapshot.actor.parameters():
        assert p.untyped_storage().nbytes() == p.numel() * p.element_size()
    stacked.update(batch)
    weight = snapshot.actor.net.layers[0].weight
    assert torch.equal(weight, now["actor"]["net.layers.0.weight"])
    assert not torch.equal(weight, bound.actor.net.layers[0].weight)
    with pytest.raises(RuntimeError, match="no longer live in this optimiser"):
        bound.optimizers["all"].step()  # its weights are the stack's: only the stack trains


# --- batched pretraining ----------------------------------------------------------------------
@pytest.mark.parametrize("algo", ["iql", "td3bc"])
def test_batched_pretraining_writes_each_seeds_one_seed_run(pendulum_dataset, tmp_path, algo):
    seeds = (0, 1, 2)
    for seed in seeds:
        pretrain(config(algo, seed), tmp_path / f"alone-{seed}", progress=False)
    results = pretrain_seeds(
        [config(algo, s) for s in seeds], [tmp_path / f"batch-{s}" for s in seeds], False
    )
    assert [r.out_dir.name for r in results] == [f"batch-{s}" for s in seeds]
    for seed in seeds:
        assert_same_run(tmp_path / f"alone-{seed}", tmp_path / f"batch-{seed}")
    assert json.loads((tmp_path / "batch-0" / "summary.json").read_text())["seeds_in_process"] == 3


@pytest.mark.slow
def test_batched_pretraining_resumes_from_mixed_progress(pendulum_dataset, tmp_path):
    """One seed done, one stopped at a checkpoint, one not started: the same end."""
    seeds = (0, 1, 2)
    configs = [config(seed=s, offline_steps=2000, checkpoint_every=100) for s in seeds]
    whole = [tmp_path / f"whole-{s}" for s in seeds]
    pretrain_seeds(configs, whole, False)
    mixed = [tmp_path / f"mixed-{s}" for s in seeds]
    pretrain(configs[0], mixed[0], progress=False)
    _run_and_kill([configs[1]], [mixed[1]], wait_for_checkpoints=2)
    pretrain_seeds(configs, mixed, False)
    for a, b in zip(whole, mixed, strict=True):
        assert_same_run(a, b)


KILL_SCRIPT = """
import sys
from sftlib.config import PretrainConfig
from sftlib.training.pretrain import pretrain_seeds
configs = [PretrainConfig(**c) for c in eval(sys.argv[1])]
pretrain_seeds(configs, eval(sys.argv[2]), progress=False)
"""


def _run_and_kill(configs: list[PretrainConfig], dirs: list[Path], wait_for_checkpoints: int):
    """Start a batched run in a subprocess and SIGKILL it after it wrote checkpoints."""
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    args = [repr([dataclasses.asdict(c) for c in configs]), repr([str(d) for d in dirs])]
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, *args], env=env)
    kill_after_checkpoints(proc, dirs[-1] / "checkpoint.pt", wait_for_checkpoints)
    assert all((d / "checkpoint.pt").exists() for d in dirs)


@pytest.mark.slow
def test_killed_batched_pretraining_resumes_to_identical_numbers(pendulum_dataset, tmp_path):
    seeds = (0, 1, 2)
    configs = [config(seed=s, offline_steps=3000, checkpoint_every=100) for s in seeds]
    whole = [tmp_path / f"whole-{s}" for s in seeds]
    killed = [tmp_path / f"killed-{s}" for s in seeds]
    pretrain_seeds(configs, whole, False)
    _run_and_kill(configs, killed, wait_for_checkpoints=3)
    pretrain_seeds(configs, killed, False)
    for a, b in zip(whole, killed, strict=True):
        assert_same_run(a, b)
        assert not (b / "checkpoint.pt").exists()


def test_seeds_of_a_batch_must_share_every_other_parameter(tmp_path):
    with pytest.raises(ValueError, match="differing: \\['offline_steps'\\]"):
        pretrain_seeds(
            [config(seed=0), config(seed=1, offline_steps=300)], [tmp_path / "a", tmp_path / "b"]
        )
    with pytest.raises(ValueError, match="distinct"):
        pretrain_seeds([config(seed=0), config(seed=0)], [tmp_path / "a", tmp_path / "b"])
    assert not any(tmp_path.iterdir())


# --- batched fine-tuning ----------------------------------------------------------------------
FINETUNE_FILES = ("eval.csv", "events.csv", "checks.csv", "train.csv")


@pytest.fixture(scope="module")
def seed_pretraining(pendulum_dataset, tmp_path_factory):
    """Pretraining runs of seeds 0-2, by algorithm: ``{algo: {seed: run dir}}``."""
    root = tmp_path_factory.mktemp("seed-pretraining")
    out = {}
    for algo in ("iql", "td3bc"):
        dirs = {seed: root / algo / f"seed={seed}" for seed in (0, 1, 2)}
        pretrain_seeds([config(algo, s) for s in dirs], list(dirs.values()), False)
        out[algo] = dirs
    return out


SFT_SCHEDULE = dict(
    check_every=50, patience=1, reset_every=250, reset_start=250, probe_size=32, mc_episodes=3
)
"""SFT's checks and resets often enough to happen within a few hundred steps."""


def ft_params(pretrain_dir: Path, seed: int, **kw) -> dict:
    if kw.get("variant", "direct").startswith("sft"):
        kw = {**SFT_SCHEDULE, **kw}
    base = dict(
        pretrain_dir=str(pretrain_dir),
        variant="direct",
        online_steps=500,
        eval_every=100,
        eval_episodes=1,
        checkpoint_every=100,
        torch_compile="off",
        seed=seed,
    )
    return {**base, **kw}


def ft_config(pretrain_dir: Path, seed: int, **kw) -> FinetuneConfig:
    return finetune_config(ft_params(pretrain_dir, seed, **kw))


def assert_same_finetuning(a: Path, b: Path) -> None:
    for f in FINETUNE_FILES:
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    assert summary(a) == summary(b)


def finetune_alone_and_side_by_side(configs: list[FinetuneConfig], tmp_path: Path) -> list:
    """Each seed fine-tuned alone (``alone-<seed>``), then all side by side (``batch-<seed>``);
    asserts each seed's two runs wrote the same files. The batch's results."""
    for c in configs:
        finetune(c, tmp_path / f"alone-{c.seed}", progress=False)
    results = finetune_seeds(configs, [tmp_path / f"batch-{c.seed}" for c in configs], False)
    for c in configs:
        assert_same_finetuning(tmp_path / f"alone-{c.seed}", tmp_path / f"batch-{c.seed}")
    return results


@pytest.mark.parametrize("variant", ["direct", "pex", "sft"])
@pytest.mark.parametrize("algo", ["iql", "td3bc"])
def test_batched_finetuning_writes_each_seeds_one_seed_run(
    seed_pretraining, tmp_path, algo, variant
):
    """PEX samples its selection from the global torch generator and acts with the learner's
    generator, both per seed: a batch that shared either would differ from the seeds alone.
    SFT also checks, switches, estimates, updates its anchor and resets per seed, the reset
    drawing fresh weights from the seed's global generator and restarting Adam."""
    dirs = seed_pretraining[algo]
    configs = [ft_config(d, seed, variant=variant) for seed, d in dirs.items()]
    results = finetune_alone_and_side_by_side(configs, tmp_path)
    assert [r.out_dir.name for r in results] == [f"batch-{c.seed}" for c in configs]
    batch_summary = json.loads((tmp_path / "batch-0" / "summary.json").read_text())
    assert batch_summary["seeds_in_process"] == 3
    # The seeds really differ: a batch that ran one seed three times would fail above.
    scores = {(tmp_path / f"batch-{c.seed}" / "eval.csv").read_text() for c in configs}
    assert len(scores) == 3
    if variant == "sft":  # the mechanisms above happened
        events = "".join((tmp_path / f"batch-{c.seed}" / "events.csv").read_text() for c in configs)
        assert events.count(",reset,") == 3


def test_batched_episode_control_writes_each_seeds_one_seed_run(seed_pretraining, tmp_path):
    """SFT's episode-level control: each seed's driver, promotion and reset its own; every
    evaluation (two episodes a seed) plays all seeds' episodes side by side, each seed's
    executed policy its promoted one."""
    dirs = seed_pretraining["iql"]
    configs = [
        ft_config(d, seed, variant="sft-episode", eval_episodes=2, probe_every=2)
        for seed, d in dirs.items()
    ]
    finetune_alone_and_side_by_side(configs, tmp_path)
    drivers = "".join((tmp_path / f"batch-{c.seed}" / "episodes.csv").read_text() for c in configs)
    assert ",1.0,0.0" in drivers and ",0.0,1.0" in drivers  # both policies drove episodes


def test_batched_sft_writes_each_seeds_one_seed_run_through_anchor_updates(
    seed_pretraining, tmp_path, monkeypatch
):
    """Every reset makes the learner the anchor (the verdict forced), so each seed's anchor
    FQE critic continues from its learner's inside the batch's stack of FQE critics, whose
    values then feed the train log and later decisions: still each seed's one-seed run."""
    monkeypatch.setattr("sftlib.sft.state_control.improves", lambda *_: True)
    dirs = seed_pretraining["iql"]
    configs = [ft_config(dirs[s], s, variant="sft", mc_veto=False) for s in (0, 1)]
    finetune_alone_and_side_by_side(configs, tmp_path)
    for c in configs:
        assert (tmp_path / f"batch-{c.seed}" / "events.csv").read_text().count(
            ",anchor_update,"
        ) == 1


def test_batched_sft_writes_each_seeds_one_seed_run_through_probe_episodes(
    seed_pretraining, tmp_path
):
    """Every second training episode is a probe (no switch comes): the learner acts alone and
    the anchor draws no exploration noise, though the batch asks the stacked anchors for every
    seed's candidates at once. A probing seed whose anchor drew would differ from its run."""
    dirs = seed_pretraining["iql"]
    configs = [
        ft_config(d, seed, variant="sft", probe_every=2, patience=1000, reset_start=1000)
        for seed, d in dirs.items()
    ]
    finetune_alone_and_side_by_side(configs, tmp_path)
    for c in configs:
        episodes = (tmp_path / f"batch-{c.seed}" / "episodes.csv").read_text().splitlines()
        assert episodes[2].endswith(",0.0,1.0")  # the second episode: the learner's alone


@pytest.mark.parametrize("variant", ["pex", "sft"])
def test_batched_selection_scores_every_seed_in_one_critic_call(
    seed_pretraining, tmp_path, monkeypatch, variant
):
    """A batch's training actions and its evaluations come from the stacked critics: one call
    per selecting critic and step for all seeds, not one per seed (``choose``, the one-seed
    selection, never runs). Training scores one state per seed (2 candidates), evaluation all
    its episodes' states at once (2 episodes: 4 candidates)."""
    stacked_calls, choose_calls = [], []
    q_values, choose = Agent.q_values, PolicyExpansion.choose

    def counting_q_values(agent, obs, actions):
        if obs.ndim == 3:
            stacked_calls.append(obs.shape[:2])
        return q_values(agent, obs, actions)

    def counting_choose(control, obs, deterministic):
        choose_calls.append(deterministic)
        return choose(control, obs, deterministic)

    monkeypatch.setattr(Agent, "q_values", counting_q_values)
    monkeypatch.setattr(PolicyExpansion, "choose", counting_choose)
    dirs = seed_pretraining["iql"]
    configs = [
        ft_config(d, seed, variant=variant, online_steps=200, eval_episodes=2)
        for seed, d in dirs.items()
    ]
    finetune_seeds(configs, [tmp_path / f"batch-{c.seed}" for c in configs], False)
    assert choose_calls == []
    assert {seeds for seeds, _ in stacked_calls} == {3}
    training = [n for _, n in stacked_calls if n == 2]
    evaluation = [n for _, n in stacked_calls if n == 4]
    assert len(training) + len(evaluation) == len(stacked_calls)
    assert 200 <= len(training) <= 2 * 200
    assert 3 * 200 <= len(evaluation) <= 2 * 3 * 200  # 3 evaluations of 200-step episodes


def test_fqe_takes_the_next_actions_of_bound_policies_from_their_stacks(monkeypatch):
    """The FQE critics of a batch evaluate each seed's anchor and learner: their next actions
    come from one call of the stacked anchors and one of the stacked learner, the values
    those of each policy called alone; a policy bound to no stack is called alone."""
    torch.manual_seed(0)
    made = [make_agent("iql", 3, 2, {"hidden": (8, 8), "batch_size": 4}) for _ in range(6)]
    learners, anchors = made[:3], made[3:]
    learner_stack, anchor_stack = stack_agents(learners), stack_agents(anchors)
    for slot in range(3):
        bind_seed(learners[slot], learner_stack, slot)
        bind_seed(anchors[slot], anchor_stack, slot)
    loose = make_agent("iql", 3, 2, {"hidden": (8, 8), "batch_size": 4})
    policies = [anchors[0], learners[0], anchors[1], learners[1], anchors[2], learners[2], loose]
    next_obs = torch.randn(len(policies), 5, 3)
    alone = torch.stack([pi.policy_action(next_obs[i], True) for i, pi in enumerate(policies)])
    calls = []
    policy_action = Agent.policy_action

    def counting(agent, obs, deterministic):
        calls.append((agent.seeds, obs.shape[0] if obs.ndim == 3 else None))
        return policy_action(agent, obs, deterministic)

    monkeypatch.setattr(Agent, "policy_action", counting)
    actions = next_actions(next_obs, policies, [learner_stack, anchor_stack])
    torch.testing.assert_close(actions, alone, rtol=1e-6, atol=1e-6)
    assert sorted(calls, key=str) == [(1, None), (3, 3), (3, 3)]  # the loose policy alone
    # Without the stacks, every policy is called alone.
    calls.clear()
    next_actions(next_obs, policies)
    assert calls == [(1, None)] * len(policies)


def test_seeds_sharing_one_pretraining_checkpoint_fine_tune_together(seed_pretraining, tmp_path):
    shared = seed_pretraining["iql"][0]
    configs = [ft_config(shared, seed, online_steps=300) for seed in (5, 6)]
    finetune_alone_and_side_by_side(configs, tmp_path)


FINETUNE_KILL_SCRIPT = """
import sys
from sftlib.config import finetune_config
from sftlib.training.finetune import finetune_seeds
configs = [finetune_config(c) for c in eval(sys.argv[1])]
finetune_seeds(configs, eval(sys.argv[2]), progress=False)
"""


def _finetune_and_kill(params: list[dict], dirs: list[Path], wait_for: int) -> None:
    """Start a batched fine-tuning run in a subprocess; SIGKILL it once the last seed wrote
    ``wait_for`` checkpoints."""
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    args = [repr(params), repr([str(d) for d in dirs])]
    proc = subprocess.Popen([sys.executable, "-c", FINETUNE_KILL_SCRIPT, *args], env=env)
    kill_after_checkpoints(proc, dirs[-1] / "checkpoint.pt", wait_for)
    assert not any((d / "summary.json").exists() for d in dirs)


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["pex", "sft"])
def test_killed_batched_finetuning_resumes_to_identical_numbers(
    seed_pretraining, tmp_path, variant
):
    """Killed after checkpoints, then resumed: the numbers of an unbroken run. (Pendulum's
    episodes all last 200 steps, so the seeds stopped at one step and resume in one stack;
    SFT resets every 250 steps, before and after the kill.)"""
    dirs = seed_pretraining["td3bc"]
    params = [
        ft_params(d, seed, online_steps=3000, eval_every=500, variant=variant)
        for seed, d in dirs.items()
    ]
    configs = [finetune_config(p) for p in params]
    whole = [tmp_path / f"whole-{c.seed}" for c in configs]
    killed = [tmp_path / f"killed-{c.seed}" for c in configs]
    finetune_seeds(configs, whole, False)
    _finetune_and_kill(params, killed, wait_for=3)
    steps = {torch.load(d / "checkpoint.pt", weights_only=False)["state"]["step"] for d in killed}
    assert len(steps) == 1 and 0 < steps.pop() < 3000
    finetune_seeds(configs, killed, False)
    for a, b in zip(whole, killed, strict=True):
        assert_same_finetuning(a, b)
        assert not (b / "checkpoint.pt").exists()


@pytest.mark.slow
def test_batched_finetuning_resumes_from_mixed_progress(seed_pretraining, tmp_path):
    """One seed done alone, one stopped at a checkpoint, one not started: the same end (the
    two unfinished seeds are at different steps, so they run in two stacks)."""
    dirs = seed_pretraining["iql"]
    params = [ft_params(d, seed, online_steps=2000, eval_every=500) for seed, d in dirs.items()]
    configs = [finetune_config(p) for p in params]
    whole = [tmp_path / f"whole-{c.seed}" for c in configs]
    mixed = [tmp_path / f"mixed-{c.seed}" for c in configs]
    finetune_seeds(configs, whole, False)
    finetune(configs[0], mixed[0], progress=False)
    _finetune_and_kill([params[1]], [mixed[1]], wait_for=2)
    finetune_seeds(configs, mixed, False)
    for a, b in zip(whole, mixed, strict=True):
        assert_same_finetuning(a, b)


def test_finetune_seeds_refuses_what_it_cannot_batch(seed_pretraining, tmp_path):
    dirs = seed_pretraining["iql"]
    outs = [tmp_path / "a", tmp_path / "b"]
    with pytest.raises(ValueError, match="differing: \\['online_steps'\\]"):
        finetune_seeds([ft_config(dirs[0], 0), ft_config(dirs[1], 1, online_steps=300)], outs)
    with pytest.raises(ValueError, match="distinct"):
        finetune_seeds([ft_config(dirs[0], 0), ft_config(dirs[1], 0)], outs)
    other_algo = seed_pretraining["td3bc"][1]
    with pytest.raises(CheckpointError, match="differ in more than their seed"):
        finetune_seeds([ft_config(dirs[0], 0), ft_config(other_algo, 1)], outs)
    assert not any(tmp_path.iterdir())
