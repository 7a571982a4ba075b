"""A process start that meets filelock's fork guard is tried again; anything else is raised."""

from __future__ import annotations

import pytest

from zoopipe_hpc.engines._fork import start_forked


class _Flaky:
    def __init__(self, failures: int, message: str) -> None:
        self.failures = failures
        self.message = message
        self.calls = 0

    def start(self) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise RuntimeError(self.message)


def test_a_start_refused_while_a_lock_changes_hands_is_tried_again() -> None:
    process = _Flaky(3, "os.fork is unsafe while filelock is changing descriptor ownership")
    start_forked(process)
    assert process.calls == 4


def test_another_error_is_raised_at_once() -> None:
    process = _Flaky(1, "something else")
    with pytest.raises(RuntimeError, match="something else"):
        start_forked(process)
    assert process.calls == 1


def test_the_guard_lasting_past_the_patience_is_raised() -> None:
    process = _Flaky(10**6, "os.fork is unsafe while filelock is changing descriptor ownership")
    with pytest.raises(RuntimeError, match="filelock"):
        start_forked(process, patience=0.05)
