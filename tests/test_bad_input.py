"""Bad input: each gets ONE clear error naming the field or thing and what to do, raised
before any compute, and nothing already written is lost.

"Before any compute" is checked by the ``no_compute`` fixture: the first expensive thing
``pretrain`` and ``finetune`` do is an evaluation, which it turns into a test failure.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import minari
import pytest
import torch

from sftlib.agents import make_agent
from sftlib.config import FinetuneConfig, PretrainConfig, SFTConfig, finetune_config
from sftlib.data.datasets import DatasetError, dataset_info, load_dataset
from sftlib.factory import (
    check_env_id,
    create_dataset,
    ensure_dataset,
    make_dataset,
    rollouts,
)
from sftlib.layout import AGENT, STATE, SUMMARY
from sftlib.training.checkpoint import CheckpointError, check_compatible, load_pretrained
from sftlib.training.finetune import finetune
from sftlib.training.pretrain import pretrain
from sftlib.training.seed_run import FineTuner

PENDULUM_ID = "local/pendulum/expert-v0"
OTHER_ENV = "InvertedPendulum-v5"  # obs 4, act 1 (Pendulum: obs 3, act 1)
OTHER_ID = "local/invertedpendulum/bad-input-test-v0"


# --- helpers and fixtures -----------------------------------------------------------------
def files(d: Path) -> dict[str, bytes]:
    """Every file under ``d`` with its bytes."""
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


@pytest.fixture
def run_dir(tmp_path) -> Path:
    """An output directory that already holds something worth keeping."""
    d = tmp_path / "run"
    d.mkdir()
    (d / "notes.txt").write_text("written by a person; must survive\n")
    return d


@pytest.fixture
def no_compute(monkeypatch):
    """Fail the test if pretraining or fine-tuning starts evaluating (= computing)."""

    def forbidden(*args, **kwargs):
        raise AssertionError("compute started before the bad input was reported")

    monkeypatch.setattr("sftlib.training.pretrain.evaluate_stacked", forbidden)
    monkeypatch.setattr("sftlib.training.evaluation.evaluate_stacked", forbidden)


@pytest.fixture
def pretrain_copy(pretrained_dirs, tmp_path) -> Path:
    """A private copy of the IQL pretraining run, free to damage."""
    return Path(shutil.copytree(pretrained_dirs["iql"], tmp_path / "pretrain-iql"))


@pytest.fixture(scope="module")
def other_env_dataset(minari_store):
    """A tiny random-policy dataset of another environment (different observation size)."""
    if OTHER_ID in minari.list_local_datasets():
        return minari.load_dataset(OTHER_ID)
    episodes = rollouts(OTHER_ENV, None, 50, seed=0, first_id=0)
    return create_dataset(OTHER_ID, OTHER_ENV, episodes, ref_min_score=0.0, ref_max_score=1000.0)


def assert_finetune_refused(pretrain_dir: Path, run_dir: Path, match: str, error=CheckpointError):
    before_run, before_pre = files(run_dir), files(pretrain_dir)
    with pytest.raises(error, match=match):
        finetune(
            FinetuneConfig(pretrain_dir=str(pretrain_dir), online_steps=10), run_dir, progress=False
        )
    assert files(run_dir) == before_run, "the run directory changed"
    assert not (run_dir / SUMMARY).exists()
    assert files(pretrain_dir) == before_pre, "the pretraining directory changed"


# --- environments and dataset levels ------------------------------------------------------------
def test_unknown_env_id(minari_store):
    before = set(minari.list_local_datasets())
    with pytest.raises(ValueError, match=r"'NoSuchEnv-v0'.*Hopper-v5"):
        make_dataset("NoSuchEnv-v0", "medium", progress=False)
    with pytest.raises(ValueError, match="NoSuchEnv-v0"):
        check_env_id("NoSuchEnv-v0")
    assert set(minari.list_local_datasets()) == before


def test_discrete_env_is_refused():
    with pytest.raises(ValueError, match=r"'CartPole-v1'.*non-continuous"):
        check_env_id("CartPole-v1")


def test_unknown_level_lists_the_levels(minari_store):
    before = set(minari.list_local_datasets())
    with pytest.raises(ValueError, match=r"level must be one of .*'medium-replay'.*'hard'"):
        make_dataset("Pendulum-v1", "hard", progress=False)
    with pytest.raises(ValueError, match="n_steps"):
        make_dataset("Pendulum-v1", "medium", n_steps=0, progress=False)
    assert set(minari.list_local_datasets()) == before


def test_ensure_dataset_with_unknown_env_name(minari_store):
    with pytest.raises(ValueError, match="'nosuchenv'"):
        ensure_dataset("local/nosuchenv/medium-v0")


# --- dataset ids ----------------------------------------------------------------------------------
def test_missing_local_dataset_says_how_to_make_one(minari_store):
    with pytest.raises(DatasetError, match=r"'local/nothere/medium-v0'.*make_dataset"):
        load_dataset("local/nothere/medium-v0")


@pytest.mark.parametrize("bad", ["local/pendulum/expert", "mujoco/hopper/medium", "", "a b-v0"])
def test_dataset_id_without_version(bad):
    with pytest.raises(DatasetError, match="version"):
        load_dataset(bad)
    with pytest.raises(ValueError, match="dataset_id"):
        PretrainConfig(dataset_id=bad)


@pytest.mark.parametrize("hub", ["missing", "installed-but-offline"])
def test_remote_dataset_unreachable(hub, monkeypatch, minari_store):
    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        if name == "huggingface_hub":
            return None if hub == "missing" else object()
        return real_find_spec(name, *args, **kwargs)

    def offline(*args, **kwargs):  # never touch the network from a test
        raise ConnectionError("network unreachable")

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    monkeypatch.setattr(minari, "load_dataset", offline)
    what = "huggingface_hub" if hub == "missing" else "ConnectionError"
    with pytest.raises(DatasetError, match=rf"'mujoco/hopper/medium-v0'.*{what}"):
        load_dataset("mujoco/hopper/medium-v0")
    with pytest.raises(DatasetError, match="download=False"):
        load_dataset("mujoco/hopper/medium-v0", download=False)


def test_pretrain_on_missing_dataset_keeps_the_run_dir(run_dir, no_compute, minari_store):
    before = files(run_dir)
    with pytest.raises(DatasetError, match="local/nothere/medium-v0"):
        pretrain(
            PretrainConfig(dataset_id="local/nothere/medium-v0", offline_steps=5),
            run_dir,
            progress=False,
        )
    assert files(run_dir) == before and not (run_dir / SUMMARY).exists()


# --- configuration ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: PretrainConfig(offline_steps=0), "offline_steps"),
        (lambda: PretrainConfig(offline_steps=-100), "offline_steps"),
        (lambda: PretrainConfig(eval_every=-1), "eval_every"),
        (lambda: PretrainConfig(batch_size=0), "batch_size"),
        (lambda: PretrainConfig(offline_steps=True), "offline_steps"),
        (lambda: PretrainConfig(seed=-1), "seed"),
        (lambda: FinetuneConfig(online_steps=0), "online_steps"),
        (lambda: FinetuneConfig(online_steps=-5), "online_steps"),
        (lambda: FinetuneConfig(offline_ratio=1.5), "offline_ratio"),
        (lambda: FinetuneConfig(offline_ratio=-0.1), "offline_ratio"),
        (lambda: FinetuneConfig(offline_ratio="half"), "offline_ratio"),
        (lambda: FinetuneConfig(utd_ratio=0), "utd_ratio"),
        (lambda: SFTConfig(shrink_alpha=1.0), "shrink_alpha"),
        (lambda: SFTConfig(reset_scope="middle"), "reset_scope"),
        (lambda: SFTConfig(ope="oracle"), "ope"),
    ],
)
def test_bad_number_or_choice_names_the_field(make, field):
    with pytest.raises(ValueError, match=field):
        make()


def test_unknown_algo_lists_the_known_ones():
    with pytest.raises(
        ValueError, match=r"algo must be one of \['iql', 'td3bc', 'calql'\], got 'cql'"
    ):
        PretrainConfig(algo="cql")
    with pytest.raises(ValueError, match="algo"):
        PretrainConfig(algo="sac")  # no offline update


def test_unknown_variant_lists_the_known_ones():
    with pytest.raises(
        ValueError, match=r"variant must be one of .*'direct'.*'pex'.*'sft-noreset'"
    ):
        finetune_config({"variant": "sft-magic"})
    with pytest.raises(ValueError, match="variant"):
        SFTConfig(variant="nope")


def test_unknown_keys_are_named():
    with pytest.raises(
        ValueError, match=r"unknown fine-tuning key\(s\) \['reset_evry'\].*reset_every"
    ):
        finetune_config({"reset_evry": 100, "variant": "sft"}, where="params/x.yaml")
    with pytest.raises(ValueError, match="params/x.yaml"):
        finetune_config({"reset_evry": 100}, where="params/x.yaml")
    with pytest.raises(ValueError, match=r"unknown SFTConfig key\(s\) \['nope'\]"):
        FinetuneConfig(sft={"nope": 1})


def test_unknown_agent_field_is_named():
    with pytest.raises(ValueError, match=r"unknown IQLConfig field\(s\) \['nope'\].*expectile"):
        PretrainConfig(agent={"nope": 1})
    with pytest.raises(ValueError, match="TD3BCConfig"):
        PretrainConfig(algo="td3bc", agent={"expectile": 0.7})  # an IQL field
    with pytest.raises(ValueError, match="expectile"):
        PretrainConfig(agent={"expectile": 1.5})


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: PretrainConfig(offline_steps=2.5), "offline_steps"),
        (lambda: PretrainConfig(batch_size=64.5), "batch_size"),
        (lambda: FinetuneConfig(online_steps=2.5), "online_steps"),
        (lambda: FinetuneConfig(utd_ratio=1.5), "utd_ratio"),
    ],
)
def test_fractional_counts_are_refused(make, field):
    with pytest.raises(ValueError, match=field):
        make()


def test_agent_fields_shadowed_by_top_level_fields_are_refused():
    with pytest.raises(ValueError, match="batch_size"):
        PretrainConfig(agent={"batch_size": 32})


# --- checkpoints -------------------------------------------------------------------------------------------
def test_pretrain_dir_without_agent_pt(tmp_path, run_dir, no_compute):
    empty = tmp_path / "empty-pretrain"
    empty.mkdir()
    assert_finetune_refused(empty, run_dir, match=r"agent\.pt does not exist; run")


def test_truncated_agent_pt(pretrain_copy, run_dir, no_compute):
    data = (pretrain_copy / AGENT).read_bytes()
    (pretrain_copy / AGENT).write_bytes(data[: len(data) // 2])
    assert_finetune_refused(pretrain_copy, run_dir, match=r"agent\.pt cannot be read.*truncated")


def test_garbage_agent_pt(pretrain_copy, run_dir, no_compute):
    (pretrain_copy / AGENT).write_bytes(b"this is not a torch checkpoint\n" * 10)
    assert_finetune_refused(pretrain_copy, run_dir, match="truncated or corrupt")


def test_agent_pt_that_is_not_a_pretraining_checkpoint(pretrain_copy, run_dir, no_compute):
    torch.save([1, 2, 3], pretrain_copy / AGENT)
    assert_finetune_refused(pretrain_copy, run_dir, match="does not hold a checkpoint dict")
    torch.save({"agent": {}}, pretrain_copy / AGENT)
    assert_finetune_refused(pretrain_copy, run_dir, match=r"lacks \['algo', 'dataset_id'\]")


def test_checkpoint_for_other_sizes_is_refused_by_finetune(pretrain_copy, run_dir, no_compute):
    state = load_pretrained(pretrain_copy)
    state["agent"]["obs_dim"] = 5
    torch.save(state, pretrain_copy / AGENT)
    assert_finetune_refused(
        pretrain_copy, run_dir, match=r"observation size 5 .*Pendulum-v1.* has 3 and 1"
    )


def test_checkpoint_for_another_env_is_refused(
    pretrain_copy, run_dir, other_env_dataset, no_compute
):
    info = dataset_info(other_env_dataset)
    assert (info.obs_dim, info.act_dim) == (4, 1)
    pretrained = load_pretrained(pretrain_copy)
    with pytest.raises(
        CheckpointError,
        match=r"observation size 3 and action size 1, but InvertedPendulum-v5"
        r".* has 4 and 1; pretrain on this dataset first",
    ):
        check_compatible(pretrained, info, pretrain_copy)
    # The same through finetune: a checkpoint whose recorded dataset is another env's.
    pretrained["dataset_id"] = OTHER_ID
    torch.save(pretrained, pretrain_copy / AGENT)
    assert_finetune_refused(pretrain_copy, run_dir, match="observation size 3")


def test_agent_load_state_dict_with_wrong_sizes_or_algo(pretrained_dirs):
    state = load_pretrained(pretrained_dirs["iql"])["agent"]
    with pytest.raises(ValueError, match=r"observation size 3 and action size 1.* 4 and 1"):
        make_agent("iql", 4, 1, {"hidden": (32, 32)}).load_state_dict(state)
    with pytest.raises(ValueError, match=r"'iql' agent, not 'td3bc'"):
        make_agent("td3bc", 3, 1, {"hidden": (32, 32)}).load_state_dict(state)


def test_finetune_resume_checkpoint_from_other_parameters(pretrained_dirs, run_dir, no_compute):
    config = FinetuneConfig(pretrain_dir=str(pretrained_dirs["iql"]), online_steps=10)
    torch.save(FineTuner(config, run_dir).state_dict(), run_dir / STATE)
    other = FinetuneConfig(pretrain_dir=str(pretrained_dirs["iql"]), online_steps=10, seed=1)
    before = files(run_dir)
    with pytest.raises(CheckpointError, match=r"checkpoint\.pt was written with other parameters"):
        finetune(other, run_dir, progress=False)
    assert files(run_dir) == before and not (run_dir / SUMMARY).exists()


def test_finished_pretraining_run_with_other_parameters_is_kept(pretrain_copy, no_compute):
    before = files(pretrain_copy)
    summary = json.loads((pretrain_copy / SUMMARY).read_text())
    config = PretrainConfig(**{**summary["config"], "seed": 7})
    with pytest.raises(CheckpointError, match=r"other parameters \(differing: \['seed'\]\)"):
        pretrain(config, pretrain_copy, progress=False)
    assert files(pretrain_copy) == before


def test_finetune_truncated_resume_checkpoint_is_kept(pretrained_dirs, run_dir, no_compute):
    (run_dir / STATE).write_bytes(b"\x80\x02half a checkpoint")
    before = files(run_dir)
    with pytest.raises(CheckpointError, match=r"checkpoint\.pt cannot be read.*Delete it"):
        finetune(
            FinetuneConfig(pretrain_dir=str(pretrained_dirs["iql"]), online_steps=10),
            run_dir,
            progress=False,
        )
    assert files(run_dir) == before


def test_pretrain_truncated_resume_checkpoint_is_kept(pendulum_dataset, run_dir, no_compute):
    (run_dir / STATE).write_bytes(b"PK\x03\x04 truncated zip")
    before = files(run_dir)
    with pytest.raises(CheckpointError, match=r"checkpoint\.pt cannot be read"):
        pretrain(
            PretrainConfig(dataset_id=PENDULUM_ID, offline_steps=5, hidden=(8, 8), batch_size=8),
            run_dir,
            progress=False,
        )
    assert files(run_dir) == before


def test_pretrain_resume_checkpoint_from_other_parameters(pendulum_dataset, tmp_path, monkeypatch):
    import sftlib.training.pretrain as pretrain_module

    class Interrupted(Exception):
        pass

    real_save = pretrain_module.atomic_torch_save

    def save_then_stop(path, obj):
        real_save(path, obj)
        if Path(path).name == STATE:
            raise Interrupted

    def config(seed):
        return PretrainConfig(
            dataset_id=PENDULUM_ID,
            offline_steps=4,
            eval_every=2,
            checkpoint_every=2,
            eval_episodes=1,
            hidden=(8, 8),
            batch_size=8,
            seed=seed,
        )

    monkeypatch.setattr(pretrain_module, "atomic_torch_save", save_then_stop)
    with pytest.raises(Interrupted):
        pretrain(config(seed=0), tmp_path, progress=False)
    monkeypatch.setattr(pretrain_module, "atomic_torch_save", real_save)
    assert (tmp_path / STATE).exists()
    before = files(tmp_path)
    with pytest.raises(CheckpointError, match="other parameters"):
        pretrain(config(seed=1), tmp_path, progress=False)
    assert files(tmp_path) == before


def test_controls_the_helpers_detect_what_they_guard_against(pendulum_dataset, run_dir, no_compute):
    """Controls: ``files`` sees a changed file, and ``no_compute`` stops a valid run."""
    before = files(run_dir)
    (run_dir / "notes.txt").write_text("changed\n")
    assert files(run_dir) != before
    with pytest.raises(AssertionError, match="compute started"):
        pretrain(
            PretrainConfig(dataset_id=PENDULUM_ID, offline_steps=5, hidden=(8, 8), batch_size=8),
            run_dir,
            progress=False,
        )


def test_make_datasets_checks_every_level_before_making_any(minari_store, monkeypatch):
    import sftlib.factory as factory

    made = []
    monkeypatch.setattr(factory, "make_dataset", lambda env_id, level, **kw: made.append(level))
    with pytest.raises(ValueError, match="level must be one of"):
        factory.make_datasets("Hopper-v5", ["medium", "mediocre"])
    assert made == []
