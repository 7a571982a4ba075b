"""The xdist groups of tests/_xdist_groups.py name tests and modules that exist: a renamed test
would otherwise silently leave its group and run beside the others."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import _xdist_groups

TESTS = Path(__file__).resolve().parents[1]


def test_every_ray_test_named_exists() -> None:
    for prefix in _xdist_groups._RAY_TESTS:
        path, _, name = prefix.partition("::")
        source = (TESTS.parent / path).read_text(encoding="utf-8")
        if name:
            function = name.split("[", 1)[0]
            assert re.search(rf"^def {re.escape(function)}\(", source, re.M), prefix
        if "[" in name and f'"{name.split("[", 1)[1].rstrip("]")}"' not in source:
            # A case id made from data (an example's file name): the collection has it.
            assert prefix in _collected(path), prefix


def _collected(path: str) -> list[str]:
    """The node ids pytest collects from ``path`` (a module of the suite)."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--collect-only", "-q", path],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=TESTS.parent,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.splitlines()


def test_every_serial_module_exists() -> None:
    for name in _xdist_groups._SERIAL_MODULES:
        assert list(TESTS.rglob(name)), name
