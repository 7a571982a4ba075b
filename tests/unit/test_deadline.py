"""The one wait helper: a wait never sleeps past its deadline, and never looks after it.

The tests run on a fake clock (``clock``): every ``time.monotonic`` and ``time.sleep`` of
``zoopipe_hpc._deadline`` reads and advances it, so "within its timeout" is checked exactly,
not against a slack that a loaded machine (a second pytest process, the Slurm jobs) exceeds.
"""

from __future__ import annotations

import types
from collections.abc import Sequence

import pytest

from zoopipe_hpc import _deadline
from zoopipe_hpc._deadline import Deadline, wait_until
from zoopipe_hpc.engines.base import BaseEngine
from zoopipe_hpc.report import PipeReport, PipeStatus


class _Clock:
    """A monotonic clock that moves only when slept on: ``now`` plus every sleep asked for."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"sleep length must be non-negative, not {seconds}")
        self.sleeps.append(seconds)
        self.now += seconds

    def since(self, start: float) -> float:
        return self.now - start


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> _Clock:
    fake = _Clock()
    monkeypatch.setattr(
        _deadline, "time", types.SimpleNamespace(monotonic=fake.monotonic, sleep=fake.sleep)
    )
    return fake


def test_no_deadline_never_expires_and_sleeps_the_whole_interval(clock: _Clock) -> None:
    deadline = Deadline(None)
    assert deadline.at is None
    assert deadline.expired is False
    assert deadline.remaining() is None
    assert deadline.step(0.25) == 0.25
    deadline.sleep(0.25)
    assert clock.sleeps == [0.25]


def test_a_negative_timeout_is_an_expired_deadline(clock: _Clock) -> None:
    deadline = Deadline(-5)
    assert deadline.expired
    assert deadline.remaining() == 0.0
    assert deadline.step(1.0) == 0.0


def test_remaining_shrinks_and_never_goes_negative(clock: _Clock) -> None:
    deadline = Deadline(0.02)
    assert deadline.remaining() == pytest.approx(0.02)
    clock.now += 0.015
    assert deadline.remaining() == pytest.approx(0.005)
    assert not deadline.expired
    clock.now += 0.015
    assert deadline.remaining() == 0.0
    assert deadline.expired


def test_sleep_is_cut_to_what_remains(clock: _Clock) -> None:
    deadline = Deadline(0.02)
    start = clock.now
    deadline.sleep(5.0)
    assert clock.since(start) == pytest.approx(0.02)
    deadline.sleep(5.0)  # expired: no sleep at all
    assert clock.sleeps == [pytest.approx(0.02)]


@pytest.mark.parametrize("timeout", [0.0, 0.001, 0.03])
def test_wait_until_returns_false_within_its_timeout(clock: _Clock, timeout: float) -> None:
    looks: list[float] = []

    def never() -> bool:
        looks.append(clock.now)
        return False

    start = clock.now
    assert wait_until(never, timeout, interval=1.0) is False
    assert clock.since(start) == pytest.approx(timeout)
    # Looked at first and once more at the deadline, never after it.
    assert looks == ([start] if timeout == 0 else [start, pytest.approx(start + timeout)])


def test_a_condition_true_at_once_returns_true_even_without_time(clock: _Clock) -> None:
    assert wait_until(lambda: True, 0) is True
    assert clock.sleeps == []


def test_the_condition_is_checked_once_more_at_the_deadline(clock: _Clock) -> None:
    ready_at = clock.now + 0.02
    start = clock.now
    # The interval is far longer than the timeout: only the look at the deadline can see it.
    assert wait_until(lambda: clock.now >= ready_at, 0.04, interval=10.0) is True
    assert clock.since(start) == pytest.approx(0.04)


def test_a_condition_that_turns_true_after_the_deadline_is_not_met_in_time(
    clock: _Clock,
) -> None:
    ready_at = clock.now + 0.05
    assert wait_until(lambda: clock.now >= ready_at, 0.04, interval=0.01) is False
    assert clock.now < ready_at


def test_wait_until_polls_every_interval_until_true(clock: _Clock) -> None:
    calls = []

    def third_time() -> bool:
        calls.append(1)
        return len(calls) == 3

    assert wait_until(third_time, None, interval=0.001) is True
    assert len(calls) == 3
    assert clock.sleeps == [0.001, 0.001]


def test_wait_until_takes_the_callers_deadline(clock: _Clock) -> None:
    deadline = Deadline(0.02)
    seen: list[float | None] = []

    def never() -> bool:
        seen.append(deadline.remaining())
        return False

    start = clock.now
    assert wait_until(never, deadline, interval=1.0) is False
    assert clock.since(start) == pytest.approx(0.02)
    assert seen == [pytest.approx(0.02), 0.0]


class _SlowPollEngine(BaseEngine):
    """One pipe that is running until ``finish_at`` on ``clock``; a poll interval of a second."""

    poll_interval = 1.0

    def __init__(self, clock: _Clock, finish_at: float) -> None:
        self.clock = clock
        self.finish_at = finish_at
        self.deadlines_left: list[float | None] = []

    def start(self, pipes: Sequence[object]) -> None:
        pass

    def shutdown(self, timeout: float = 5.0) -> None:
        pass

    @property
    def pipe_reports(self) -> list[PipeReport]:
        done = self.clock.now >= self.finish_at
        status = PipeStatus.COMPLETED if done else PipeStatus.RUNNING
        return [PipeReport(pipe_index=0, status=status)]

    def _running_within(self, deadline: Deadline) -> bool:
        self.deadlines_left.append(deadline.remaining())
        return super()._running_within(deadline)


@pytest.mark.parametrize("timeout", [0.0, 0.001, 0.05])
def test_engine_wait_returns_within_its_timeout_not_a_poll_interval(
    clock: _Clock, timeout: float
) -> None:
    engine = _SlowPollEngine(clock, finish_at=clock.now + 60)
    start = clock.now
    assert engine.wait(timeout) is False
    assert clock.since(start) == pytest.approx(timeout)
    # Each look is told how much time the wait has left (a slow look may put work off).
    assert engine.deadlines_left and all(
        left is not None and left <= timeout for left in engine.deadlines_left
    )


def test_engine_wait_sees_pipes_that_finish_by_the_deadline(clock: _Clock) -> None:
    engine = _SlowPollEngine(clock, finish_at=clock.now + 0.02)
    start = clock.now
    assert engine.wait(0.05) is True
    assert clock.since(start) == pytest.approx(0.05)
    assert engine.wait(None) is True
