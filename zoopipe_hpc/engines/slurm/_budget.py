"""The request budget of a run: a token bucket every Slurm state query must take a token from.

Sites throttle users far below what a naive poller asks (one documented site allows about 4
requests per minute sustained; Slurm 23.02+ can rate-limit per user). The bucket holds at most
``capacity`` tokens (the burst allowed right after a submission or a fault) and refills at
``per_minute / 60`` tokens a second (the sustained rate). A query that is due but finds no token
waits for a later poll: reading the progress records never waits for it.
"""

from __future__ import annotations

from collections.abc import Callable

from ...errors import ConfigurationError

__all__ = ["QueryBudget", "BURST"]

#: Tokens the bucket holds when full: the largest burst of state queries.
BURST = 10


class QueryBudget:
    """A token bucket: ``capacity`` tokens at most, ``per_minute`` new tokens a minute."""

    def __init__(
        self,
        per_minute: float,
        *,
        capacity: int = BURST,
        clock: Callable[[], float],
    ) -> None:
        if not per_minute > 0:
            raise ConfigurationError(
                f"max_queries_per_minute must be more than 0, got {per_minute}"
            )
        if capacity < 1:
            raise ConfigurationError(f"the query burst must be 1 or more, got {capacity}")
        self.per_minute = float(per_minute)
        self.capacity = capacity
        self._clock = clock
        self._tokens = float(capacity)
        self._at = clock()

    def limit_to(self, per_minute: float, capacity: int) -> None:
        """Lower the rate and the burst to at most these (a site's own rate limit)."""
        self._fill()
        self.per_minute = min(self.per_minute, per_minute)
        self.capacity = max(1, min(self.capacity, capacity))
        self._tokens = min(self._tokens, float(self.capacity))

    def _fill(self) -> None:
        now = self._clock()
        rate = self.per_minute / 60.0
        self._tokens = min(float(self.capacity), self._tokens + max(0.0, now - self._at) * rate)
        self._at = now

    @property
    def tokens(self) -> float:
        self._fill()
        return self._tokens

    def try_take(self) -> bool:
        """Take a token if there is one; False means: do not query now."""
        self._fill()
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

    def next_token_in(self) -> float:
        """Seconds until a token will be there (0 if there is one)."""
        self._fill()
        return max(0.0, (1.0 - self._tokens) * 60.0 / self.per_minute)
