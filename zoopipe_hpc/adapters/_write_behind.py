"""Writes handed to one background thread, in order, so encoding overlaps the next batch (private).

A sink's encoder (pyarrow's Parquet writer) runs without the GIL: while it encodes and
compresses one batch, the pipe can read and validate the next one on another core.
:class:`WriteBehind` runs the writes of one sink on one thread, in the order they were
handed over, with at most ``depth`` batches waiting (memory stays bounded by the batch size).

A failed write is not lost: the first error is raised by the next :meth:`put` or by
:meth:`drain`, which the sink calls before it closes its file, so a part is never committed
after a write that failed; after a failure, nothing more is written.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from ..errors import StateError

__all__ = ["WriteBehind"]

_T = TypeVar("_T")

#: What the queue holds after the last item: the thread ends.
_STOP = object()


class WriteBehind(Generic[_T]):
    """``write(item)`` for each :meth:`put` item, on one thread, in order (see the module)."""

    def __init__(self, write: Callable[[_T], None], name: str, depth: int = 1) -> None:
        self._write = write
        self._queue: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            if self._error is None:
                try:
                    self._write(item)  # type: ignore[arg-type]
                except BaseException as exc:  # noqa: BLE001 - raised in the caller's thread
                    self._error = exc

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def put(self, item: _T) -> None:
        """Hand ``item`` over (waits while ``depth`` items are waiting); raises the error of
        an earlier write, if one failed."""
        self._raise()
        if not self._thread.is_alive():
            raise StateError(f"{self._thread.name}: drained already, nothing more is written")
        self._queue.put(item)

    def drain(self) -> None:
        """Wait until every item is written and end the thread; raises the first error."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join()
        self._raise()
