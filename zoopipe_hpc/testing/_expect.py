"""Checks that fail with the promise they test.

The suites are package code, where ``assert`` is linted away (``python -O`` strips it) and not
rewritten by pytest; these raise :class:`AssertionError` themselves, with a message that says
which promise was broken and what was seen.
"""

from __future__ import annotations

import reprlib

__all__ = ["expect", "expect_equal"]

_short = reprlib.Repr()
_short.maxstring = 200
_short.maxother = 200
_short.maxlist = 12
_short.maxdict = 12


def expect(condition: object, promise: str) -> None:
    """Fail with ``promise`` unless ``condition`` is true."""
    if not condition:
        raise AssertionError(promise)


def expect_equal(actual: object, expected: object, promise: str) -> None:
    """Fail with ``promise`` and both values (shortened) unless ``actual == expected``."""
    if actual == expected:
        return
    detail = f"\n  got:      {_short.repr(actual)}\n  expected: {_short.repr(expected)}"
    if isinstance(actual, list) and isinstance(expected, list):
        detail += f"\n  lengths:  {len(actual)} and {len(expected)}"
        for index, (left, right) in enumerate(zip(actual, expected, strict=False)):
            if left != right:
                detail += (
                    f"\n  first difference at item {index}: "
                    f"{_short.repr(left)} != {_short.repr(right)}"
                )
                break
    raise AssertionError(promise + detail)
