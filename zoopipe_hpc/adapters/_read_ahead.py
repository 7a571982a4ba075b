"""An input's batches read on a thread of their own, one batch ahead of the pipe (private).

pyarrow's CSV parser, the kernels that apply null markers and the decompressors run without
the GIL: while the pipe checks one batch's columns, the next batch is read on another core,
as pyarrow's own CSV reader reads ahead on its thread pool. :class:`ReadAhead` is the reading
twin of :class:`~._write_behind.WriteBehind`: at most ``depth`` batches wait, so memory stays
bounded by the batch size.

The batches come out in their order. The input's ``batches()`` is called and run on the
reader's thread only; an error it raises is raised, in the pipe's thread, by the ``next()``
that would have returned the batch after the last one read. :meth:`ReadAhead.close` (also when
the pipe fails or stops early) stops the reader, which then closes the input's iterator on its
own thread (temporary copies of compressed files are removed there).

:func:`reading` reads ahead only for an adapter that says it may (``read_ahead``), when the
process may run on two CPUs or more, and unless ``ZOOPIPE_HPC_READ_AHEAD=0``.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar

from ..validation.executors import _usable_cpus
from .base import BaseInputAdapter, InputBatch

__all__ = ["ENV_VAR", "ReadAhead", "read_ahead_enabled", "reading"]

ENV_VAR = "ZOOPIPE_HPC_READ_AHEAD"

_T = TypeVar("_T")

#: Seconds a blocked reader waits before looking whether it was told to stop.
_POLL = 0.1
_ITEM, _END, _ERROR = "item", "end", "error"


class ReadAhead(Generic[_T]):
    """The items ``produce()`` yields, read ``depth`` ahead on one thread (see the module)."""

    def __init__(self, produce: Callable[[], Iterable[_T]], name: str, depth: int = 1) -> None:
        self._produce = produce
        self._queue: queue.Queue[tuple[str, object]] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._done = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        iterator: Iterator[_T] | None = None
        try:
            iterator = iter(self._produce())
            for item in iterator:
                if not self._offer(_ITEM, item):
                    return
            self._offer(_END, None)
        except BaseException as exc:  # noqa: BLE001 - raised in the consumer's thread
            self._offer(_ERROR, exc)
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    def _offer(self, kind: str, value: object) -> bool:
        """Queue one entry, unless told to stop before there is room (False)."""
        while not self._stop.is_set():
            try:
                self._queue.put((kind, value), timeout=_POLL)
            except queue.Full:
                continue
            return True
        return False

    def __iter__(self) -> Iterator[_T]:
        return self

    def __next__(self) -> _T:
        if self._done:
            raise StopIteration
        kind, value = self._queue.get()
        if kind == _ITEM:
            return value  # type: ignore[return-value]
        self._done = True
        self._thread.join()
        if kind == _ERROR:
            raise value  # type: ignore[misc]
        raise StopIteration

    def close(self) -> None:
        """Stop reading ahead; returns once the reader closed the input's iterator."""
        self._done = True
        self._stop.set()
        while self._thread.is_alive():
            with contextlib.suppress(queue.Empty):
                self._queue.get(timeout=_POLL)
        self._thread.join()

    def __enter__(self) -> ReadAhead[_T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_ahead_enabled() -> bool:
    """False when ``ZOOPIPE_HPC_READ_AHEAD`` is ``0``, ``false``, ``no`` or ``off``."""
    return os.environ.get(ENV_VAR, "1").strip().lower() not in ("0", "false", "no", "off")


@contextlib.contextmanager
def reading(adapter: BaseInputAdapter) -> Iterator[Iterator[InputBatch]]:
    """``adapter``'s batches, read ahead on a thread when that can pay (see the module)."""
    if not (adapter.read_ahead and read_ahead_enabled() and _usable_cpus() > 1):
        yield adapter.batches()
        return
    with ReadAhead(adapter.batches, name="zoopipe-read-ahead") as ahead:
        yield ahead
