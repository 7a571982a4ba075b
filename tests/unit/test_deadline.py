"""The one wait helper: a wait never sleeps past its deadline, and never looks after it."""

from __future__ import annotations

import time
from collections.abc import Sequence

import pytest

from zoopipe_hpc._deadline import Deadline, wait_until
from zoopipe_hpc.engines.base import BaseEngine
from zoopipe_hpc.report import PipeReport, PipeStatus

#: How late a sleeping thread may wake up on a loaded 2-core machine.
SLACK = 0.010


def _elapsed(start: float) -> float:
    return time.monotonic() - start


def test_no_deadline_never_expires_and_sleeps_the_whole_interval() -> None:
    deadline = Deadline(None)
    assert deadline.at is None
    assert deadline.expired is False
    assert deadline.remaining() is None
    assert deadline.step(0.25) == 0.25


def test_a_negative_timeout_is_an_expired_deadline() -> None:
    deadline = Deadline(-5)
    assert deadline.expired
    assert deadline.remaining() == 0.0
    assert deadline.step(1.0) == 0.0


def test_remaining_shrinks_and_never_goes_negative() -> None:
    deadline = Deadline(0.02)
    first = deadline.remaining()
    assert first is not None and 0 < first <= 0.02
    time.sleep(0.03)
    assert deadline.remaining() == 0.0
    assert deadline.expired


def test_sleep_is_cut_to_what_remains() -> None:
    deadline = Deadline(0.02)
    start = time.monotonic()
    deadline.sleep(5.0)
    assert 0.02 - 0.001 <= _elapsed(start) <= 0.02 + SLACK
    start = time.monotonic()
    deadline.sleep(5.0)  # expired: no sleep at all
    assert _elapsed(start) < SLACK


@pytest.mark.parametrize("timeout", [0.0, 0.001, 0.03])
def test_wait_until_returns_false_within_its_timeout(timeout: float) -> None:
    looks: list[float] = []

    def never() -> bool:
        looks.append(time.monotonic())
        return False

    start = time.monotonic()
    assert wait_until(never, timeout, interval=1.0) is False
    assert _elapsed(start) <= timeout + SLACK
    # Looked at first and once more at the deadline, never after it.
    assert len(looks) == (1 if timeout == 0 else 2)
    assert all(at - start <= timeout + SLACK for at in looks)


def test_a_condition_true_at_once_returns_true_even_without_time() -> None:
    assert wait_until(lambda: True, 0) is True


def test_the_condition_is_checked_once_more_at_the_deadline() -> None:
    ready_at = time.monotonic() + 0.02
    start = time.monotonic()
    # The interval is far longer than the timeout: only the look at the deadline can see it.
    assert wait_until(lambda: time.monotonic() >= ready_at, 0.04, interval=10.0) is True
    assert _elapsed(start) <= 0.04 + SLACK


def test_wait_until_polls_every_interval_until_true() -> None:
    calls = []

    def third_time() -> bool:
        calls.append(1)
        return len(calls) == 3

    assert wait_until(third_time, None, interval=0.001) is True
    assert len(calls) == 3


def test_wait_until_takes_the_callers_deadline() -> None:
    deadline = Deadline(0.02)
    seen: list[float | None] = []

    def never() -> bool:
        seen.append(deadline.remaining())
        return False

    start = time.monotonic()
    assert wait_until(never, deadline, interval=1.0) is False
    assert _elapsed(start) <= 0.02 + SLACK
    assert seen[0] is not None and seen[0] > 0 and seen[-1] == 0.0


class _SlowPollEngine(BaseEngine):
    """One pipe that is running until ``finish_at``; a poll interval of a whole second."""

    poll_interval = 1.0

    def __init__(self, finish_at: float) -> None:
        self.finish_at = finish_at
        self.deadlines_left: list[float | None] = []

    def start(self, pipes: Sequence[object]) -> None:
        pass

    def shutdown(self, timeout: float = 5.0) -> None:
        pass

    @property
    def pipe_reports(self) -> list[PipeReport]:
        done = time.monotonic() >= self.finish_at
        status = PipeStatus.COMPLETED if done else PipeStatus.RUNNING
        return [PipeReport(pipe_index=0, status=status)]

    def _running_within(self, deadline: Deadline) -> bool:
        self.deadlines_left.append(deadline.remaining())
        return super()._running_within(deadline)


@pytest.mark.parametrize("timeout", [0.0, 0.001, 0.05])
def test_engine_wait_returns_within_its_timeout_not_a_poll_interval(timeout: float) -> None:
    engine = _SlowPollEngine(finish_at=time.monotonic() + 60)
    start = time.monotonic()
    assert engine.wait(timeout) is False
    assert _elapsed(start) <= timeout + SLACK
    # Each look is told how much time the wait has left (a slow look may put work off).
    assert engine.deadlines_left and all(
        left is not None and left <= timeout for left in engine.deadlines_left
    )


def test_engine_wait_sees_pipes_that_finish_by_the_deadline() -> None:
    engine = _SlowPollEngine(finish_at=time.monotonic() + 0.02)
    start = time.monotonic()
    assert engine.wait(0.05) is True
    assert _elapsed(start) <= 0.05 + SLACK
    assert engine.wait(None) is True
