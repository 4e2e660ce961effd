"""Test-session set-up shared by the tests and the nbval notebook runs.

Every test, and every notebook kernel started by nbval, uses a private Minari store, cache
and results root in a temporary directory, never the user's ``~/.minari`` or ``results/``:
environment variables set here are inherited by the kernels.
"""

from __future__ import annotations

import os
import shutil
import tempfile

_ROOT = tempfile.mkdtemp(prefix="sftlib-test-")


def pytest_configure(config):
    os.environ["MINARI_DATASETS_PATH"] = os.path.join(_ROOT, "datasets")
    os.environ["XDG_CACHE_HOME"] = os.path.join(_ROOT, "cache")
    os.environ["SFTLIB_RESULTS"] = os.path.join(_ROOT, "results")
    os.environ.setdefault("MPLBACKEND", "Agg")


def pytest_unconfigure(config):
    shutil.rmtree(_ROOT, ignore_errors=True)
