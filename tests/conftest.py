from __future__ import annotations

import sys
from pathlib import Path

# Worker processes (forked or on Slurm nodes) import the shared test models from here.
sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent / "integration"))
