"""Fail if a source notebook under notebooks/ carries outputs or execution counts.

Executed notebooks belong under results/; sources stay clean and diffable.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat


def dirty(path: Path) -> bool:
    nb = nbformat.read(path, as_version=4)
    return any(c.cell_type == "code" and (c.outputs or c.execution_count) for c in nb.cells)


def main() -> int:
    bad = [p for p in sorted(Path("notebooks").glob("*.ipynb")) if dirty(p)]
    for p in bad:
        print(f"{p}: has outputs; clear them (Jupyter: Edit > Clear Outputs of All Cells)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
