"""Batch executors: how one pipe validates a batch (one thread, or several threads)."""

from __future__ import annotations

import abc
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..errors import ConfigurationError
from ._rows import RowValidator, ValidationResult

__all__ = ["BatchExecutor", "SingleThreadExecutor", "MultiThreadExecutor"]


class BatchExecutor(abc.ABC):
    """Validates the records of one input batch; the result keeps the input order."""

    def __init__(self, batch_size: int = 10_000) -> None:
        if batch_size < 1:
            raise ConfigurationError(f"batch_size must be at least 1, got {batch_size}")
        self.batch_size = batch_size

    def get_batch_size(self) -> int:
        """The most records validated in one call (ZooPipe's accessor for ``batch_size``)."""
        return self.batch_size

    def get_concurrency(self) -> int:
        """How many threads validate at once (ZooPipe's accessor; 1 for one thread)."""
        return 1

    @abc.abstractmethod
    def validate(self, validator: RowValidator, rows: Sequence[dict[str, Any]]) -> ValidationResult:
        """Validate ``rows``; valid rows and invalid indexes come back in input order.

        A :class:`~zoopipe_hpc.errors.ValidatorError` (a validator raised something else than a
        validation error) propagates with ``index`` the position in ``rows`` of the row that
        raised, for the pipe to name its line.
        """

    def close(self) -> None:
        """Release threads, if any."""

    def __getstate__(self) -> dict[str, Any]:
        return {"batch_size": self.batch_size}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)  # type: ignore[misc]


class SingleThreadExecutor(BatchExecutor):
    """Validates each batch in the pipe's own thread."""

    def validate(self, validator: RowValidator, rows: Sequence[dict[str, Any]]) -> ValidationResult:
        return validator(rows)


class MultiThreadExecutor(BatchExecutor):
    """Validates slices of each batch on a pool of threads and reassembles them in order.

    pydantic-core holds the GIL while it validates, so on a standard CPython build this helps
    most when the model calls out to code that releases it; for CPU-bound validation across
    cores, use more workers (processes or Slurm tasks) through the engine.
    """

    def __init__(self, max_workers: int | None = 4, batch_size: int = 10_000) -> None:
        super().__init__(batch_size)
        if max_workers is None:  # ZooPipe's None: as many threads as this process has CPUs
            max_workers = _usable_cpus()
        if max_workers < 1:
            raise ConfigurationError(f"max_workers must be at least 1, got {max_workers}")
        self.max_workers = max_workers
        self._pool: ThreadPoolExecutor | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"batch_size": self.batch_size, "max_workers": self.max_workers}

    def get_concurrency(self) -> int:
        return self.max_workers

    def validate(self, validator: RowValidator, rows: Sequence[dict[str, Any]]) -> ValidationResult:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.max_workers, thread_name_prefix="zoopipe-validate")
        step = max(1, -(-len(rows) // self.max_workers))
        slices = [(rows[i : i + step], i) for i in range(0, len(rows), step)]
        merged = ValidationResult()
        for part in self._pool.map(lambda s: validator(s[0], s[1]), slices):
            merged.valid.extend(part.valid)
            merged.invalid.extend(part.invalid)
        return merged

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


def _usable_cpus() -> int:
    """The CPUs this process may run on (a Slurm allocation, not the whole node)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)
