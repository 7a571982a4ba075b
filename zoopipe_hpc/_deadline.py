"""One way to wait: a :class:`Deadline` and :func:`wait_until`, used by every wait in the package.

Every ``wait(timeout)`` returns within its timeout plus a few milliseconds: a poll never sleeps
past the deadline (the last sleep is cut to what remains), and a condition that became true
after the deadline is not reported as met in time.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["Deadline", "wait_until"]


class Deadline:
    """A point in time ``timeout`` seconds from now (``None``: never)."""

    __slots__ = ("at",)

    def __init__(self, timeout: float | None) -> None:
        if timeout is not None and timeout < 0:
            timeout = 0.0
        self.at = None if timeout is None else time.monotonic() + timeout

    @property
    def expired(self) -> bool:
        return self.at is not None and time.monotonic() >= self.at

    def remaining(self) -> float | None:
        """Seconds left (never negative), or None without a deadline."""
        if self.at is None:
            return None
        return max(0.0, self.at - time.monotonic())

    def step(self, interval: float) -> float:
        """How long the next sleep may last: ``interval``, cut to what remains."""
        left = self.remaining()
        return interval if left is None else min(interval, left)

    def sleep(self, interval: float) -> None:
        """Sleep ``interval`` seconds or until the deadline, whichever comes first."""
        pause = self.step(interval)
        if pause > 0:
            time.sleep(pause)


def wait_until(
    condition: Callable[[], bool], timeout: float | Deadline | None, interval: float = 0.05
) -> bool:
    """Poll ``condition`` every ``interval`` seconds until it is true (True) or ``timeout`` has
    passed (False). The condition is checked once more at the deadline, never after it.

    ``timeout`` may be a :class:`Deadline` made by the caller, so that the condition can see
    how much time is left (and put a slow part of its check off when little is).
    """
    deadline = timeout if isinstance(timeout, Deadline) else Deadline(timeout)
    while True:
        if condition():
            return True
        if deadline.expired:
            return False
        deadline.sleep(interval)
