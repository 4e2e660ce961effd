"""``python -m sftlib ...``: the same as the ``sft`` command (see :mod:`sftlib.cli`)."""

import sys

from sftlib.cli import main

sys.exit(main())
