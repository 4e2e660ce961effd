"""The seed-batch helpers the notebooks call (notebooks stay thin: the assembly is here)."""

from __future__ import annotations

import pytest

from sftlib.config import (
    FinetuneConfig,
    PretrainConfig,
    default_pretrain_dir,
    with_other_seeds,
)


def test_other_seeds_copy_the_config_with_their_seed_and_pretraining_run():
    config = FinetuneConfig(pretrain_dir="a", online_steps=7)
    batch = with_other_seeds(config, [3, 4], ["b", "c"])
    assert [(c.seed, c.pretrain_dir, c.online_steps) for c in batch] == [
        (0, "a", 7),
        (3, "b", 7),
        (4, "c", 7),
    ]
    assert [c.seed for c in with_other_seeds(PretrainConfig(), [1])] == [0, 1]
    assert with_other_seeds(config, []) == [config]


def test_other_seeds_need_one_pretraining_run_each():
    with pytest.raises(ValueError, match="one pretraining run per other seed"):
        with_other_seeds(FinetuneConfig(pretrain_dir="a"), [1, 2], ["b"])


def test_the_default_pretraining_run_is_notebook_01s(monkeypatch, tmp_path):
    monkeypatch.setenv("SFTLIB_RESULTS", str(tmp_path))
    assert default_pretrain_dir(2) == (
        tmp_path / "interactive" / "local-hopper-medium-v0" / "iql" / "pretrain" / "seed=2"
    )
