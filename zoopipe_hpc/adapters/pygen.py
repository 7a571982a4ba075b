"""In-process sources and sinks: Python iterables in, Python records out (ZooPipe's names).

These adapters hold Python objects, not file names, so where they can run is limited:

* :class:`PyGeneratorInputAdapter` over a one-shot iterator (a generator object) is read in
  the process that made it: ``Pipe.run()`` or ``Pipe.start()``. Given a list (or any
  sequence) or a zero-argument *factory* returning an iterable, it pickles with its records or
  its factory, so it can travel to worker processes, Ray, Dask and Slurm, and it splits.
* :class:`PyGeneratorOutputAdapter` hands records to the caller's process, so only a pipe run
  there can write to it (``Pipe.run()``, ``Pipe.start()``); every :class:`PipeManager` engine
  runs pipes in other processes and is refused with a ``ConfigurationError``.
"""

from __future__ import annotations

import itertools
import os
import pickle
import shutil
import tempfile
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from ..errors import ConfigurationError, OutputError
from .base import BaseInputAdapter, BaseOutputAdapter, InputBatch, Record, _FileSink, check_workers

__all__ = ["PyGeneratorInputAdapter", "PyGeneratorOutputAdapter"]

Source = Iterable[Any] | Callable[[], Iterable[Any]]


class PyGeneratorInputAdapter(BaseInputAdapter):
    """Reads records from a Python iterable: a list, a generator, or a factory (a callable
    taking no arguments that returns a fresh iterable each time it is called).

    Each item must be a mapping (a ``dict``); any other item becomes an error record
    (``pygen_not_mapping``). Records are numbered from 1 in the iterable's order, and that
    number is the ``line`` of their error records, whose ``source`` is ``name`` (by default the
    iterable's type or the factory's name in angle brackets). ``generate_ids`` is ZooPipe's option,
    accepted and kept (no per-entry id is made; see ``docs/guide.md``).

    A generator can be read once; a list or a factory can be read again, pickled, and
    split into contiguous runs of records. See the module docstring for where each can run.
    """

    def __init__(
        self,
        iterable: Source,
        *,
        generate_ids: bool = True,
        batch_size: int = 10_000,
        name: str | None = None,
        item_range: tuple[int, int] | None = None,
    ) -> None:
        super().__init__(name or "<python iterable>")
        if not callable(iterable) and not isinstance(iterable, Iterable):
            raise ConfigurationError(
                f"PyGeneratorInputAdapter needs an iterable or a factory returning one, got "
                f"{type(iterable).__name__}"
            )
        self.iterable = iterable
        self.generate_ids = bool(generate_ids)
        self.batch_size = batch_size
        self.item_range = item_range
        self.name = name
        self._used = False

    @property
    def source(self) -> str:
        """``name``, or the factory's or iterable's type name in angle brackets."""
        if self.name is not None:
            return self.name
        name = getattr(self.iterable, "__qualname__", type(self.iterable).__name__)
        return f"<{name}>"

    @property
    def one_shot(self) -> bool:
        """True for an iterator (a generator object): it is read once, in this process."""
        return not callable(self.iterable) and iter(self.iterable) is self.iterable

    def describe(self) -> str:
        if self.item_range is None:
            return f"PyGeneratorInputAdapter({self.source})"
        start, stop = self.item_range
        return f"PyGeneratorInputAdapter({self.source}, records {start + 1}-{stop})"

    def check_travel(self, where: str) -> None:
        if self.one_shot:
            raise ConfigurationError(
                f"{self.describe()} reads a generator, which cannot be sent to {where}: it "
                "runs in-process only (Pipe.run() or Pipe.start()); give a list or a factory "
                "(a function returning the iterable) to run it on an engine"
            )

    def __getstate__(self) -> dict[str, Any]:
        self.check_travel("another process")
        return self.__dict__.copy()

    def _items(self) -> Iterable[Any]:
        source = self.iterable
        return source() if callable(source) else source

    def max_shards(self, wanted: int) -> int:
        if self.one_shot or self.item_range is not None:
            return 1
        if isinstance(self.iterable, Sequence):
            return max(1, min(wanted, len(self.iterable)))
        return wanted

    def split(self, workers: int) -> list[BaseInputAdapter]:
        """Contiguous runs of records; a generator cannot be cut, so its first shard has
        every record and the others none."""
        check_workers(workers)
        if self.one_shot:
            empty = (PyGeneratorInputAdapter((), name=self.source) for _ in range(workers - 1))
            return [self, *empty]
        start, stop = self.item_range or (0, self._count())
        cuts = [start + (stop - start) * k // workers for k in range(workers + 1)]
        return [
            PyGeneratorInputAdapter(
                self.iterable,
                generate_ids=self.generate_ids,
                batch_size=self.batch_size,
                name=self.name,
                item_range=(cuts[k], cuts[k + 1]),
            )
            for k in range(workers)
        ]

    def _count(self) -> int:
        items = self._items()
        if isinstance(items, Sequence):
            return len(items)
        return sum(1 for _ in items)

    def batches(self) -> Iterator[InputBatch]:
        if self.one_shot:
            if self._used:
                raise ConfigurationError(
                    f"{self.describe()}: the generator was read already; give a list or a "
                    "factory to read the input again"
                )
            self._used = True
        start, stop = self.item_range or (0, None)
        items: Iterable[Any] = self._items()
        if isinstance(items, Sequence):
            items = items[start:stop]
        elif start or stop is not None:
            items = itertools.islice(items, start, stop)
        step = max(1, self.batch_size)
        number = start
        iterator = iter(items)
        while chunk := list(itertools.islice(iterator, step)):
            records: list[Record] = []
            lines: list[int] = []
            malformed: list[Record] = []
            for item in chunk:
                number += 1
                if isinstance(item, Mapping):
                    records.append(dict(item))
                    lines.append(number)
                else:
                    malformed.append(self._not_a_mapping(item, number))
            yield InputBatch(records, self.source, malformed, lines.__getitem__)

    def _not_a_mapping(self, item: Any, number: int) -> Record:
        return {
            "source": self.source,
            "line": number,
            "record": {"__raw__": repr(item)},
            "errors": [
                {
                    "type": "pygen_not_mapping",
                    "loc": [],
                    "msg": f"expected a mapping (a dict), got {type(item).__name__}",
                }
            ],
        }


class _Channel:
    """What a PyGeneratorOutputAdapter and its parts share: the committed records, and
    whether a run is under way."""

    def __init__(self) -> None:
        self.ready = threading.Condition()
        self.records: list[Record] = []
        self.running = 0
        self.ended = 0
        self.failure: str | None = None
        self.entry: dict[str, Any] | None = None


class _PickleSink(_FileSink):
    """A part of an in-process output: its rows, pickled batch by batch into a private
    staging file (read back only by the process that wrote it)."""

    def __init__(self, path: Path) -> None:
        self._file = open(path, "wb")  # noqa: SIM115 - closed in close()

    def write(self, rows: Sequence[Record]) -> None:
        batch = rows.to_pylist() if isinstance(rows, pa.Table) else [dict(r) for r in rows]
        pickle.dump(batch, self._file, protocol=pickle.HIGHEST_PROTOCOL)

    def close(self) -> None:
        if not self._file.closed:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()


class PyGeneratorOutputAdapter(BaseOutputAdapter):
    """Hands the records a run writes to this process: iterate the adapter for them.

    As every output here, it is written through the run's transaction: iterating waits until
    the current (or next) run has ended, then yields the records of the last run that was
    committed, in order, as Python dicts. A run that fails commits nothing, and iterating after
    it raises :class:`~zoopipe_hpc.errors.OutputError` with the reason. ``queue_size`` is
    ZooPipe's option, accepted and kept: records are handed over at the commit, not streamed.

    Only a pipe run in this process can write it (``Pipe.run()``, ``Pipe.start()``); a
    :class:`~zoopipe_hpc.PipeManager` refuses it (its engines run pipes in other processes).
    """

    format = "python"
    commit_strategy = "python"

    def __init__(self, queue_size: int = 1000) -> None:
        folder = tempfile.mkdtemp(prefix="zoopipe-pygen-")
        super().__init__(Path(folder) / "records.pickle")
        weakref.finalize(self, shutil.rmtree, folder, True)
        self.queue_size = queue_size
        self._channel = _Channel()

    def describe(self) -> str:
        return f"PyGeneratorOutputAdapter(at {hex(id(self._channel))})"

    def check_travel(self, where: str) -> None:
        raise ConfigurationError(
            f"{self.describe()} hands records to this process and cannot be written from "
            f"{where}: run the pipe in-process (Pipe.run() or Pipe.start()), or write a file"
        )

    def __getstate__(self) -> dict[str, Any]:
        self.check_travel("another process")
        return {}  # pragma: no cover - check_travel raises

    def _clone(self) -> PyGeneratorOutputAdapter:
        clone = PyGeneratorOutputAdapter.__new__(PyGeneratorOutputAdapter)
        BaseOutputAdapter.__init__(clone, self.path)
        clone.queue_size = self.queue_size
        clone._channel = self._channel
        return clone

    def _open_file(self, path: Path, schema: pa.Schema | None) -> _FileSink:
        return _PickleSink(path)

    def merge(self, parts: Sequence[Path], destination: Path) -> None:
        with open(destination, "wb") as out:
            for part in parts:
                with open(part, "rb") as f:
                    shutil.copyfileobj(f, out)

    # -- the commit strategy's side (zoopipe_hpc.commit._python) ------------------------------

    def _begin(self) -> None:
        with self._channel.ready:
            self._channel.running += 1

    def _deliver(self, files: Sequence[str], entry: dict[str, Any]) -> None:
        records: list[Record] = []
        for name in files:
            with open(name, "rb") as f:
                while True:
                    try:
                        records.extend(pickle.load(f))  # noqa: S301 - our own private file
                    except EOFError:
                        break
        channel = self._channel
        with channel.ready:
            channel.records, channel.failure, channel.entry = records, None, entry
            self._end(channel)

    def _landed(self, entry: dict[str, Any]) -> bool:
        return self._channel.entry == entry

    def _rolled_back(self, reason: str) -> None:
        channel = self._channel
        with channel.ready:
            channel.failure = reason or "the run was rolled back"
            self._end(channel)

    @staticmethod
    def _end(channel: _Channel) -> None:
        channel.running = max(0, channel.running - 1)
        channel.ended += 1
        channel.ready.notify_all()

    # -- the caller's side --------------------------------------------------------------------

    @property
    def records(self) -> list[Record]:
        """The records of the last committed run (empty before one), without waiting."""
        with self._channel.ready:
            return list(self._channel.records)

    def __iter__(self) -> Iterator[Record]:
        channel = self._channel
        with channel.ready:
            channel.ready.wait_for(lambda: channel.running == 0 and channel.ended > 0)
            if channel.failure is not None:
                raise OutputError(
                    f"{self.describe()}: the run wrote nothing: {channel.failure}",
                    path=str(self.path),
                )
            records = list(channel.records)
        return iter(records)
