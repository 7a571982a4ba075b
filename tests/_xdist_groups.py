"""Which tests must share one pytest-xdist worker (``scripts/test`` runs two, docs/testing.md).

Under ``--dist loadgroup`` the tests of one ``xdist_group`` run on one worker, one after the
other in collection order; the others are spread over the workers one by one. ``group_of``
names the group of a test, or None when it may run beside any other:

* ``serial``: everything that uses something the machine has only once: the Slurm test cluster
  and the shared filesystem (by marker or fixture), a real browser, JupyterLab kernel or tmux
  (wall-clock waits on the screen), and the scripts that run in namespaces of their own
  (``scripts/other-release``'s lock in /srv, ``scripts/slurm-cluster`` in ``unshare --net``).
* ``ray``: every test that starts Ray in the test process or a child: a local Ray instance is
  heavy (a dozen processes) and two beside each other on two cores time out, and
  ``test_ray_engine.py`` relies on its own order (its first test leaves Ray stopped).
* ``module:<path>``: tests that use a module- or class-scoped fixture (a Dask cluster, a
  benchmark run, a job folder): on two workers that fixture would be built twice.
"""

from __future__ import annotations

import pytest

__all__ = ["group_of", "put_in_group", "scheduled_first"]

SERIAL = "serial"
RAY = "ray"

_SERIAL_MARKERS = frozenset({"slurm", "shared_fs"})
_SERIAL_FIXTURES = frozenset({"slurm_cluster", "shared_fs"})
#: Module file names whose every test is serial, and why.
_SERIAL_MODULES = {
    "test_notebook_browser.py": "JupyterLab and Chromium, waits on what the page shows",
    "test_notebook_progress.py": "a real Jupyter kernel and terminal, waits on the display",
    "test_terminal_tmux.py": "tmux, waits on what the pane shows",
    "test_other_release_script.py": "scripts/other-release takes its lock in /srv",
    "test_slurm_cluster_network.py": "scripts/slurm-cluster in network namespaces",
}
#: Node-id prefixes of the tests that start Ray.
_RAY_TESTS = (
    "tests/integration/test_examples.py::test_example_runs[ray_engine]",
    "tests/integration/test_hooks_engines.py::test_hooks_on_ray",
    "tests/integration/test_ray_engine.py::",
    "tests/integration/test_wait_timeout.py::test_ray_engine",
    "tests/integration/test_zoopipe_examples.py::test_zoopipe_example[pipemanager-parallelize-ray]",
    "tests/unit/test_benchmarks_engines_smoke.py::",
)
_SHARED_SCOPES = frozenset({"module", "class", "package"})


def group_of(item: pytest.Item) -> str | None:
    """The xdist group ``item`` must run in, or None if it can run on any worker."""
    if _SERIAL_MARKERS & {mark.name for mark in item.iter_markers()}:
        return SERIAL
    if isinstance(item, pytest.Function):
        if _SERIAL_FIXTURES & set(item.fixturenames):
            return SERIAL
    if item.path.name in _SERIAL_MODULES:
        return SERIAL
    if item.nodeid.startswith(_RAY_TESTS):
        return RAY
    if isinstance(item, pytest.Function):
        for defs in item._fixtureinfo.name2fixturedefs.values():
            if any(d.scope in _SHARED_SCOPES for d in defs):
                return "module:" + item.nodeid.split("::", 1)[0].replace("/", ".")
    return None


def scheduled_first(items: list[pytest.Item], groups: dict[pytest.Item, str]) -> list[pytest.Item]:
    """``items`` in the order ``--dist loadgroup --no-loadscope-reorder`` hands them out: the
    ``serial`` group first (the longest, mostly waiting on the scheduler: the run ends when it
    does, so it must start at once) and ``ray`` second, so that the other worker starts Ray
    beside the first cluster tests rather than beside its own CPU-bound tests; then the other
    groups, then the tests of no group (small units that fill the other worker to the end).
    Stable: each group keeps its own order."""
    ranks = {SERIAL: 0, RAY: 1}

    def rank(item: pytest.Item) -> int:
        group = groups.get(item)
        return 3 if group is None else ranks.get(group, 2)

    return sorted(items, key=rank)


def put_in_group(item: pytest.Item, group: str) -> None:
    """Give ``item`` the ``@group`` suffix of its node id that ``--dist loadgroup`` schedules by,
    when xdist did not: pytest-xdist 3.8 writes ``item._nodeid``, which pytest 9.2 no longer
    reads (its node ids are structured), so every test would be spread as if ungrouped
    (pytest-dev/pytest-xdist#1386). Runs in the workers only, after xdist's own hook."""
    suffix = f"@{group}"
    if item.nodeid.endswith(suffix):
        return  # an xdist that works with this pytest
    if hasattr(item, "_id"):
        from _pytest.nodeid import coerce_node_id

        item._id = coerce_node_id(item.nodeid + suffix)
    else:
        item._nodeid = item.nodeid + suffix
