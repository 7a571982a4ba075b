"""The clocks of the progress records (private); tests replace these attributes.

The wall clock stamps the times stored in a record, which are compared across hosts; the
monotonic clock paces the writer's msync and RSS sampling; ``sleep`` is the reader's pause
between two reads of a record that looked torn. Callers look them up here at call time
(``_clock.now()``), so replacing one attribute here replaces it everywhere.
"""

from __future__ import annotations

import time

__all__ = ["monotonic", "now", "sleep"]

now = time.time
monotonic = time.monotonic
sleep = time.sleep
