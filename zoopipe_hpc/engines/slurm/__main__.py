"""``python -P -u -m zoopipe_hpc.engines.slurm <job folder> --shards <list>``: one array task.

A module of its own, imported by nothing else, so that ``-m`` runs it once (``-m`` of a module
the package itself imports would run a second copy of it). See :mod:`.task`.
"""

from __future__ import annotations

import sys

from .task import main

__all__: list[str] = []

if __name__ == "__main__":
    sys.exit(main())
