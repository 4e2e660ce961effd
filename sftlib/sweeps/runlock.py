"""One lock per run directory, so that two sweeps can share a results tree.

``<run_dir>/.lock`` is created with ``O_CREAT|O_EXCL`` and holds the host and pid of its
holder. A lock whose pid is alive on this host (or that was taken on another host, which
cannot be checked from here) refuses the run; a lock of a dead pid on this host is stale
and taken over.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from sftlib.layout import LOCK_FILE


class RunLocked(RuntimeError):
    """Another live process holds the run dir's lock."""


def _read_lock(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and "pid" in data and "host" in data else None


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


@contextlib.contextmanager
def run_lock(out_dir: str | Path, log: Callable[[str], None] = lambda _: None) -> Iterator[None]:
    """Hold ``<out_dir>/.lock`` for the duration; raise :class:`RunLocked` if a live
    process holds it, take it over if its process is dead (same host)."""
    out_dir = Path(out_dir)
    path = out_dir / LOCK_FILE
    host = socket.gethostname()
    me = {"host": host, "pid": os.getpid()}
    out_dir.mkdir(parents=True, exist_ok=True)
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _read_lock(path)
            if holder is None:
                raise RunLocked(
                    f"{path} exists but is unreadable (being written, or left by a crash); "
                    "if no sweep is running this run, delete it and rerun"
                ) from None
            if holder["host"] != host:
                raise RunLocked(
                    f"another sweep is running {out_dir} (pid {holder['pid']} on host "
                    f"{holder['host']}, which cannot be checked from {host}); wait for it, or "
                    f"if it is dead delete {path} and rerun"
                ) from None
            if _pid_alive(int(holder["pid"])):
                raise RunLocked(
                    f"another sweep is running {out_dir} (pid {holder['pid']} on host "
                    f"{holder['host']}); wait for it to finish, or stop it and rerun"
                ) from None
            # Stale: its process is gone. (Two sweeps taking over the same stale lock at
            # the same instant could both succeed; O_EXCL still serialises everything else.)
            log(f"taking over stale lock of dead pid {holder['pid']} on {holder['host']}")
            path.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(me))
        break
    else:
        raise RunLocked(f"could not take {path}: other sweeps keep taking it")
    try:
        yield
    finally:
        if _read_lock(path) == me:
            path.unlink(missing_ok=True)
