"""Dataset ids are checked when the plan is made: an id no factory makes is refused with the
closest known ids, a copy in the store that cannot be used with its file and the command
that remakes it; a dataset build killed part-way leaves nothing that passes for a dataset."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import minari
import pytest

from sftlib import cli
from sftlib.data.datasets import DatasetError, load_dataset, transitions
from sftlib.data.store import BUILDING, dataset_dir, files_problem
from sftlib.factory import create_dataset, ensure_dataset, rollouts
from sftlib.factory.catalog import check_dataset_id, remake_command
from sftlib.sweeps.params import ParamsError, load_study_params

BASE = "algos: [iql]\nvariants: [direct]\nseeds: [0]\n"
RECIPE_ID = "local/pendulum/random-v0"
"""A factory recipe id (made by hand here, in a private store, from a few random steps)."""
REMAKE = f"`minari delete {RECIPE_ID} && python -m sftlib datasets Pendulum-v1 --levels random`"


@pytest.fixture
def store(tmp_path, monkeypatch) -> Path:
    """A private, empty Minari store for this test (Minari reads the variable at each call)."""
    root = tmp_path / "datasets"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    return root


def make_small(dataset_id: str = RECIPE_ID) -> None:
    episodes = rollouts("Pendulum-v1", None, 450, seed=0, first_id=0)  # 3 episodes
    create_dataset(dataset_id, "Pendulum-v1", episodes, ref_min_score=-1500.0, ref_max_score=0.0)


def study_error(tmp_path: Path, datasets: str) -> str:
    path = tmp_path / "study.yaml"
    path.write_text(f"study: s\ndatasets: {datasets}\n{BASE}")
    with pytest.raises(ParamsError) as e:
        load_study_params([path])
    return str(e.value)


# --- ids no factory makes -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("dataset_id", "why", "closest"),
    [
        ("local/hoper/medium-v0", "unknown environment name 'hoper'", "local/hopper/medium-v0"),
        ("local/hopper/meduim-v0", "unknown level 'meduim'", "local/hopper/medium-v0"),
        ("local/walker2d/medium-v1", "only version 0", "local/walker2d/medium-v0"),
        ("local/pointmaze/umase-v0", "unknown maze 'umase'", "local/pointmaze/umaze-v0"),
        ("local/cartpole/medium-v0", "non-continuous action space", None),
    ],
)
def test_a_local_id_no_factory_makes_is_refused_when_the_plan_is_made(
    store, tmp_path, capsys, dataset_id, why, closest
):
    msg = study_error(tmp_path, f"[{dataset_id}]")
    assert msg.startswith(f"{tmp_path / 'study.yaml'}: datasets: dataset {dataset_id!r}"), msg
    assert why in msg
    if closest is not None:
        assert f"Closest known ids: ['{closest}'" in msg
    results = tmp_path / "results"
    study = tmp_path / "study.yaml"
    assert cli.main(["sweep", str(study), "--dry-run", "--results", str(results)]) == 2
    assert why in capsys.readouterr().err
    assert not results.exists() and not any(store.glob("local/*/*"))


def test_ids_the_factories_make_and_remote_ids_pass_the_plan_untouched(store, tmp_path):
    ids = [
        "local/hopper/medium-replay-v0",
        "local/pendulum/expert-v0",
        "local/pointmaze/umaze-dense-v0",
        "mujoco/hopper/medium-v0",
    ]
    path = tmp_path / "study.yaml"
    path.write_text(f"study: s\ndatasets: [{', '.join(ids)}]\n{BASE}")
    assert load_study_params([path]).datasets == ids
    assert not any(store.glob("local/*/*"))  # the plan makes nothing


def test_two_ids_that_share_a_run_directory_are_refused(store, tmp_path):
    msg = study_error(tmp_path, "[mujoco/hopper/medium-v0, mujoco/hopper-medium-v0]")
    assert "datasets: 'mujoco/hopper/medium-v0' and 'mujoco/hopper-medium-v0' would share" in msg


# --- copies in the store that cannot be used --------------------------------------------------
def truncate_hdf5(data: Path) -> Path:
    path = data / "main_data.hdf5"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def garbage_hdf5(data: Path) -> Path:
    path = data / "main_data.hdf5"
    path.write_bytes(b"not an HDF5 file\n" * 100)
    return path


def no_hdf5(data: Path) -> Path:
    (data / "main_data.hdf5").unlink()
    return data / "main_data.hdf5"


def no_episodes_recorded(data: Path) -> Path:
    """What a build killed after ``metadata.json`` was first written leaves behind."""
    path = data / "metadata.json"
    meta = json.loads(path.read_text())
    path.write_text(json.dumps({**meta, "total_episodes": 0, "total_steps": 0}))
    return path


def more_episodes_recorded(data: Path) -> Path:
    path = data / "metadata.json"
    meta = json.loads(path.read_text())
    path.write_text(json.dumps({**meta, "total_episodes": meta["total_episodes"] + 1}))
    return data / "main_data.hdf5"


def no_metadata(data: Path) -> Path:
    (data / "metadata.json").unlink()
    return data / "metadata.json"


def half_a_metadata_file(data: Path) -> Path:
    path = data / "metadata.json"
    path.write_text(path.read_text()[:40])
    return path


DAMAGES = [
    truncate_hdf5,
    garbage_hdf5,
    no_hdf5,
    no_episodes_recorded,
    more_episodes_recorded,
    no_metadata,
    half_a_metadata_file,
]


@pytest.mark.parametrize("damage", DAMAGES, ids=[d.__name__ for d in DAMAGES])
def test_a_copy_that_cannot_be_used_is_one_error_naming_the_file_and_the_remake_command(
    store, tmp_path, damage
):
    make_small()
    assert files_problem(RECIPE_ID) is None
    bad_file = damage(dataset_dir(RECIPE_ID) / "data")
    expected = f"dataset {RECIPE_ID!r} in the local Minari store cannot be used: {bad_file} "
    for refuse in (check_dataset_id, ensure_dataset):  # the plan, and the dataset phase
        with pytest.raises(DatasetError) as e:
            refuse(RECIPE_ID)
        assert str(e.value).startswith(expected) and str(e.value).endswith(f"Remake it: {REMAKE}")
    with pytest.raises(DatasetError, match=f"minari delete {RECIPE_ID}") as e:
        load_dataset(RECIPE_ID)  # what pretraining and fine-tuning call
    assert str(e.value).startswith(expected)
    msg = study_error(tmp_path, f"[{RECIPE_ID}]")
    assert f"datasets: {expected}" in msg and REMAKE in msg


def test_remake_commands_name_each_factory():
    assert remake_command("local/hopper/medium-v0") == (
        "`minari delete local/hopper/medium-v0 && python -m sftlib datasets Hopper-v5 "
        "--levels medium`"
    )
    assert remake_command("local/pointmaze/large-dense-v0") == (
        "`minari delete local/pointmaze/large-dense-v0 && python -m sftlib.factory.maze large "
        "--dense`"
    )
    assert remake_command("mujoco/hopper/medium-v0") == (
        "`minari delete mujoco/hopper/medium-v0 && minari download mujoco/hopper/medium-v0`"
    )
    assert remake_command("local/pendulum/handmade-v0") is None  # no factory made it


def test_a_file_damaged_after_loading_is_one_error_when_read(store):
    make_small()
    dataset = load_dataset(RECIPE_ID)
    truncate_hdf5(dataset_dir(RECIPE_ID) / "data")
    with pytest.raises(DatasetError, match=f"dataset '{RECIPE_ID}' in the local Minari store"):
        transitions(dataset)


# --- builds killed part-way ------------------------------------------------------------------
KILLED_BUILD = """
import sys, time
from pathlib import Path
import minari.dataset._storages.hdf5_storage as hdf5_storage
from sftlib.factory import create_dataset, rollouts

add, depth, written = hdf5_storage._add_episode_to_group, [0], [0]

def add_then_hang(*args, **kwargs):  # hang once two of the three episodes are in the file
    depth[0] += 1
    add(*args, **kwargs)
    depth[0] -= 1
    written[0] += depth[0] == 0
    if written[0] == 2:
        Path(sys.argv[1]).touch()
        time.sleep(120)

hdf5_storage._add_episode_to_group = add_then_hang
episodes = rollouts("Pendulum-v1", None, 450, seed=0, first_id=0)
create_dataset("{dataset_id}", "Pendulum-v1", episodes, ref_min_score=-1500.0, ref_max_score=0.0)
"""


def test_a_build_killed_part_way_leaves_nothing_that_passes_for_a_dataset(store, tmp_path):
    script = tmp_path / "build.py"
    script.write_text(textwrap.dedent(KILLED_BUILD.format(dataset_id=RECIPE_ID)))
    ready = tmp_path / "ready"
    proc = subprocess.Popen([sys.executable, str(script), str(ready)], env=dict(os.environ))
    deadline = time.time() + 120
    while not ready.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert ready.exists(), "the build never got to writing its data"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    assert RECIPE_ID not in minari.list_local_datasets()
    assert not dataset_dir(RECIPE_ID).exists()
    check_dataset_id(RECIPE_ID)  # absent, so the dataset phase would make it: no error
    make_small()  # nothing in the way; the dead build's private folder is cleared
    assert load_dataset(RECIPE_ID).total_episodes == 3
    assert not any((store / BUILDING).iterdir())
