"""``python -m zoopipe_hpc.cli``: the same as the ``zoopipe-hpc`` command."""

import sys

from .main import main

sys.exit(main())
