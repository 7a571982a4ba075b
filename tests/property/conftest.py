"""Hypothesis profiles for the property suite.

``HYPOTHESIS_PROFILE`` picks one by name; without it, ``ci`` is used when ``CI`` is set and
``dev`` otherwise. ``max_examples`` is the budget of the cheap properties (no processes); the
tests that run pipes through worker processes take a fraction of it (see ``test_sharding``).

* ``dev``: quick local runs.
* ``ci``: more examples, still bounded so the whole suite stays within about 3 minutes on a
  2-core machine. A failure prints a ``@reproduce_failure`` blob to replay it locally.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_COMMON = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
}

settings.register_profile("dev", max_examples=60, **_COMMON)
settings.register_profile("ci", max_examples=250, print_blob=True, **_COMMON)

settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")
)
