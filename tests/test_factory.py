"""The dataset factory: shipped behaviour policies, and datasets that depend on their
arguments only."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from sftlib.data.datasets import load_dataset, transitions
from sftlib.factory import ASSETS, behaviour_record, make_dataset
from sftlib.factory.behaviour import choose_levels

TASKS = ("Hopper-v5", "Walker2d-v5", "HalfCheetah-v5")


@pytest.mark.parametrize("env_id", TASKS)
def test_behaviour_policies_ship_for_three_tasks(env_id):
    assert (ASSETS / f"{env_id}.pt").exists()
    record = behaviour_record(env_id)
    env = gym.make(env_id)
    assert (record["obs_dim"], record["act_dim"]) == (
        env.observation_space.shape[0],
        env.action_space.shape[0],
    )
    levels = choose_levels(record)
    snapshots = record["snapshots"]
    random_return = record["random_return"]
    expert = snapshots[levels["expert"]]["return"]
    medium = snapshots[levels["medium"]]["return"]
    assert random_return < medium < expert
    # medium is the snapshot nearest a third of the way from random to expert
    third = random_return + (expert - random_return) / 3
    nearest = min(abs(s["return"] - third) for s in snapshots[: levels["expert"] + 1])
    assert abs(medium - third) == nearest


def test_a_dataset_does_not_depend_on_what_ran_before_in_the_process(minari_store):
    """The behaviour policy's noise has its own generator: the global torch state, which
    anything else in the process may have moved, does not enter the data."""
    arrays = []
    for index, global_seed in enumerate((0, 12345)):
        torch.manual_seed(global_seed)
        torch.rand(100)
        dataset_id = f"local/hopper/factorytest{'ab'[index]}-v0"
        make_dataset("Hopper-v5", "medium", n_steps=300, seed=7, dataset_id=dataset_id)
        arrays.append(transitions(load_dataset(dataset_id)))
    for field in ("obs", "actions", "rewards", "terminals"):
        np.testing.assert_array_equal(getattr(arrays[0], field), getattr(arrays[1], field))


def test_ensure_dataset_says_when_it_makes_a_dataset(monkeypatch, capsys):
    """Making a dataset on first use takes a minute: one line, its start printed at once and
    its end when the dataset is made; loading an existing one prints nothing."""
    from sftlib import factory

    made = []
    monkeypatch.setattr(factory.minari, "list_local_datasets", lambda: {})
    monkeypatch.setattr(
        factory,
        "make_dataset",
        lambda env, level, dataset_id: made.append((env, level, dataset_id)) or "dataset",
    )
    assert factory.ensure_dataset("local/hopper/medium-v0") == "dataset"
    assert made == [("Hopper-v5", "medium", "local/hopper/medium-v0")]
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and "making it locally ... made in" in lines[0]

    monkeypatch.setattr(
        factory.minari, "list_local_datasets", lambda: {"local/hopper/medium-v0": 0}
    )
    monkeypatch.setattr(factory, "load_dataset", lambda dataset_id: "loaded")
    assert factory.ensure_dataset("local/hopper/medium-v0") == "loaded"
    assert capsys.readouterr().out == ""
