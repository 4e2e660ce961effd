"""The local Minari store: a dataset there is whole, or it is one clear error.

Minari writes a new dataset in place (``<store>/<id>/data/metadata.json``, then
``main_data.hdf5``, then the episode count into ``metadata.json``), so a build killed part-way
leaves a folder that Minari lists and loads like a finished one, with fewer episodes or none.
:func:`building` has Minari write into a private folder of the store instead and renames the
finished dataset into place in one step; :func:`files_problem` recognises what a killed
build, a truncated copy or a corrupt file left behind (also from builds that did not go
through :func:`building`, or from before it existed).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import h5py
import minari
from minari.namespace import create_namespace, list_local_namespaces

BUILDING = ".sftlib-building"
"""Folder of the store root where datasets are built (hidden: Minari lists no dot-folder)."""
METADATA = "metadata.json"
HDF5_FILE = "main_data.hdf5"


def store_root() -> Path:
    """The Minari store (``MINARI_DATASETS_PATH``, else ``~/.minari/datasets``)."""
    return Path(minari.storage.get_dataset_path())


def dataset_dir(dataset_id: str) -> Path:
    """Where the store keeps ``dataset_id`` (whether or not anything is there)."""
    return store_root() / dataset_id


def files_problem(dataset_id: str) -> tuple[Path, str] | None:
    """``(file, what is wrong)`` for a dataset folder in the store that is not a whole
    dataset; ``None`` if it is whole or there is no folder. Cheap: reads ``metadata.json``
    and the HDF5 file's table of episodes, not the data.
    """
    folder = dataset_dir(dataset_id)
    if not folder.exists():
        return None
    meta_path = folder / "data" / METADATA
    if not meta_path.is_file():
        return meta_path, "is missing (a build that never finished, or a partial copy)"
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        return meta_path, f"cannot be read ({type(e).__name__}: {e})"
    if not isinstance(meta, dict) or meta.get("dataset_id") != dataset_id:
        found = meta.get("dataset_id") if isinstance(meta, dict) else meta
        return meta_path, f"does not describe {dataset_id!r} (it names {found!r})"
    episodes = meta.get("total_episodes")
    if not isinstance(episodes, int) or episodes <= 0:
        return meta_path, (
            f"records {episodes!r} episodes: the build stopped before it wrote the data"
        )
    if meta.get("data_format", "hdf5") != "hdf5":
        return None  # other formats are Minari's own business
    data_path = folder / "data" / HDF5_FILE
    try:
        with h5py.File(data_path, "r") as f:
            stored = len(f.keys())
    except OSError as e:  # missing, truncated, not HDF5
        return data_path, f"cannot be read ({e})"
    if stored != episodes:
        return data_path, f"holds {stored} episodes where {METADATA} records {episodes}"
    return None


@contextlib.contextmanager
def building(dataset_id: str) -> Iterator[None]:
    """Have Minari write ``dataset_id`` into a private folder of the store inside the block,
    and rename the finished dataset into place when the block ends without an error.

    A build killed at any moment leaves nothing under the dataset's id (only a hidden
    folder, removed by the next build on this host). The store must not hold the id yet.
    Not thread-safe: Minari finds its store through ``MINARI_DATASETS_PATH``, which the
    block points at the private folder.
    """
    root = store_root()
    _remove_stale_builds(root)
    private = root / BUILDING / f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    private.mkdir(parents=True)
    saved = os.environ.get("MINARI_DATASETS_PATH")
    try:
        os.environ["MINARI_DATASETS_PATH"] = str(private)
        try:
            yield
        finally:
            if saved is None:
                del os.environ["MINARI_DATASETS_PATH"]
            else:
                os.environ["MINARI_DATASETS_PATH"] = saved
        _create_namespaces(dataset_id)
        target = root / dataset_id
        target.parent.mkdir(parents=True, exist_ok=True)
        # One rename on one filesystem: the id appears whole or not at all.
        try:
            os.rename(private / dataset_id, target)
        except OSError as e:
            if not target.exists():
                raise
            raise FileExistsError(
                f"dataset {dataset_id!r} was put in the store by another process while this "
                "one built it; that one is kept"
            ) from e
    finally:
        shutil.rmtree(private, ignore_errors=True)


def _create_namespaces(dataset_id: str) -> None:
    """Minari's namespace records for ``dataset_id`` in the real store, as a build in place
    would have written them."""
    namespace = dataset_id.rpartition("/")[0]
    if namespace and namespace not in list_local_namespaces():
        create_namespace(namespace)


def _remove_stale_builds(root: Path) -> None:
    """Remove the private folders of builds on this host whose process is gone."""
    host = socket.gethostname()
    for folder in (root / BUILDING).glob(f"{host}-*"):
        try:
            pid = int(folder.name[len(host) + 1 :].split("-")[0])
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except (ValueError, PermissionError):
            continue


__all__ = ["BUILDING", "building", "dataset_dir", "files_problem", "store_root"]
