"""The output-adapter conformance suite: what every :class:`BaseOutputAdapter` promises.

Subclass :class:`OutputAdapterConformance` in a test module and say how to build the adapter
and how to read a file it wrote::

    class TestMyOutput(OutputAdapterConformance):
        suffix = ".my"

        def make_adapter(self, path):
            return MyOutputAdapter(path)

        def read_rows(self, path, schema):
            ...  # the rows of the file at ``path``, as dicts, values of the schema's types

The tests write rows, publish them and read them back. How a writer's rows reach the target
(a writer stages its part, the run's transaction publishes it) lives in three helpers only,
:meth:`write_and_publish`, :meth:`write_and_abort` and :meth:`part_adapters`.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import ClassVar, TypeAlias

import pyarrow as pa
import pytest

from ..adapters.base import BaseOutputAdapter, OutputWriter
from ..commit._staging import StagingArea
from ..commit.staged import StagedFile, WorkerOutcome
from ..commit.transaction import Slot, Transaction
from ._expect import expect, expect_equal
from .data import Record

__all__ = ["OutputAdapterConformance", "WriteBatch"]

#: What one call to the writer takes: rows (``write``) or an Arrow table (``write_table``).
WriteBatch: TypeAlias = "Sequence[Record] | pa.Table"


def _visible(folder: Path) -> list[str]:
    """Names in ``folder`` a reader would see (hidden staging folders left out)."""
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


class OutputAdapterConformance:
    """Rows read back as written; nothing at the target before it is published; an abort
    leaves the previous target byte for byte; merged parts equal one file; an empty output
    is a valid file."""

    #: Suffix of the target files (``.csv``): some adapters choose their format from it.
    suffix: ClassVar[str] = ""

    # -- what a subclass provides ---------------------------------------------------------------

    def make_adapter(self, path: Path) -> BaseOutputAdapter:
        """An adapter writing the file ``path``."""
        raise NotImplementedError(f"{type(self).__name__} must override make_adapter()")

    def read_rows(self, path: Path, schema: pa.Schema) -> list[Record]:
        """The rows of the file at ``path``, in order, with values of ``schema``'s types
        (a CSV reader converts the text back to those types)."""
        raise NotImplementedError(f"{type(self).__name__} must override read_rows()")

    def as_read(self, row: Record) -> Record:
        """``row`` as :meth:`read_rows` gives it back, when the format changes a value."""
        return dict(row)

    # -- sample data ----------------------------------------------------------------------------

    def sample_schema(self) -> pa.Schema:
        """The Arrow schema of :meth:`sample_rows` (what a pipe passes to ``open``)."""
        return pa.schema(
            [
                pa.field("id", pa.int64()),
                pa.field("name", pa.string()),
                pa.field("score", pa.float64()),
                pa.field("active", pa.bool_()),
            ]
        )

    def sample_rows(self, n: int, start: int = 0) -> list[Record]:
        """``n`` rows with delimiters, quotes, line breaks, non-ASCII text and null scores."""
        rows = []
        for i in range(start, start + n):
            name = f'user {i}, the "{i}th" é'
            if i % 7 == 3:
                name += "\nsecond line"
            score = None if i % 5 == 4 else i / 7
            rows.append({"id": i, "name": name, "score": score, "active": i % 2 == 0})
        return rows

    # -- the commit mechanics: the one place that knows how written rows are published ---------

    @staticmethod
    def _write(writer: OutputWriter, batches: Sequence[WriteBatch]) -> None:
        for batch in batches:
            if isinstance(batch, pa.Table):
                writer.write_table(batch)
            else:
                writer.write(batch)

    def write_and_publish(
        self,
        adapter: BaseOutputAdapter,
        batches: Sequence[WriteBatch],
        schema: pa.Schema | None,
        *,
        before_publish: Callable[[], None] | None = None,
    ) -> Path:
        """Write ``batches`` (one write call each) as the only part of ``adapter``'s target,
        call ``before_publish`` once everything is staged, then commit the run's transaction
        (what a one-pipe run does); returns the path published. A part adapter (of
        :meth:`part_adapters`) is written and closed into its part file, as a worker does."""
        if adapter.is_part:
            writer = adapter.open(schema)
            try:
                self._write(writer, batches)
                return writer.commit()
            except BaseException:
                writer.abort()
                raise
        transaction, part = self._one_part_run(adapter)
        writer = part.open(schema)
        try:
            self._write(writer, batches)
            staged = writer.commit()
            if before_publish is not None:
                before_publish()
        except BaseException:
            writer.abort()
            transaction.rollback("the test failed")
            raise
        rows = sum(b.num_rows if isinstance(b, pa.Table) else len(b) for b in batches)
        outcome = WorkerOutcome(0, "", rows, rows, 0, (StagedFile.of("output", staged, rows),))
        transaction.commit({0: outcome})
        return adapter.path

    def write_and_abort(
        self, adapter: BaseOutputAdapter, batches: Sequence[WriteBatch], schema: pa.Schema | None
    ) -> None:
        """Write ``batches`` as the only part of ``adapter``'s target, then throw the run away."""
        transaction, part = self._one_part_run(adapter)
        writer = part.open(schema)
        try:
            self._write(writer, batches)
        finally:
            writer.abort()
            transaction.rollback("aborted by the test")

    def part_adapters(self, adapter: BaseOutputAdapter, n: int) -> list[BaseOutputAdapter]:
        """The ``n`` part adapters shards of ``adapter``'s output write through."""
        staging = StagingArea(adapter.path)
        staging.create()
        return adapter.split(n, staging)

    @staticmethod
    def _one_part_run(adapter: BaseOutputAdapter) -> tuple[Transaction, BaseOutputAdapter]:
        transaction = Transaction()
        target = transaction.add(adapter, [Slot(0, "output")], "the output")
        transaction.begin()
        return transaction, adapter.as_part(target.staging, 0, sole=True)

    # -- rows ---------------------------------------------------------------------------------

    def _target(self, tmp_path: Path, name: str = "out") -> tuple[BaseOutputAdapter, Path]:
        path = tmp_path / f"{name}{self.suffix}"
        return self.make_adapter(path), path

    def test_written_rows_read_back_equal(self, tmp_path: Path) -> None:
        """The published file holds the rows written, in order, equal for the schema; the
        path published is the adapter's target."""
        adapter, path = self._target(tmp_path)
        rows = self.sample_rows(50)
        published = self.write_and_publish(adapter, [rows], self.sample_schema())
        expect_equal(Path(published), path, "the rows are published at the target")
        expect_equal(
            self.read_rows(path, self.sample_schema()),
            [self.as_read(r) for r in rows],
            "the rows read back equal the rows written",
        )

    def test_several_writes_append_in_order(self, tmp_path: Path) -> None:
        """Rows written in several calls (some empty) read back as one run, in order."""
        adapter, path = self._target(tmp_path)
        rows = self.sample_rows(40)
        batches = [rows[:1], [], rows[1:17], rows[17:18], [], rows[18:]]
        self.write_and_publish(adapter, batches, self.sample_schema())
        expect_equal(
            self.read_rows(path, self.sample_schema()),
            [self.as_read(r) for r in rows],
            "rows of several writes read back in order",
        )

    def test_rows_given_as_an_arrow_table_are_written_alike(self, tmp_path: Path) -> None:
        """``write_table`` (the columnar fast path) writes the same rows as ``write``."""
        schema = self.sample_schema()
        rows = self.sample_rows(30)
        adapter, path = self._target(tmp_path)
        table = pa.Table.from_pylist(rows, schema=schema)
        self.write_and_publish(adapter, [table.slice(0, 10), rows[10:20], table.slice(20)], schema)
        expect_equal(
            self.read_rows(path, schema),
            [self.as_read(r) for r in rows],
            "rows written from a table read back equal",
        )

    def test_empty_output_is_a_valid_file(self, tmp_path: Path) -> None:
        """An output that got no rows is published as a valid file of the format, with no
        rows."""
        adapter, path = self._target(tmp_path)
        self.write_and_publish(adapter, [], self.sample_schema())
        expect(path.is_file(), "an empty output is published as a file")
        expect_equal(self.read_rows(path, self.sample_schema()), [], "it holds no rows")

    # -- publishing and aborting --------------------------------------------------------------

    def test_nothing_is_visible_at_the_target_before_publishing(self, tmp_path: Path) -> None:
        """While rows are written, no target appears; a previous target stays byte for byte
        until the new one is published, and then is the new one whole."""
        schema = self.sample_schema()
        adapter, path = self._target(tmp_path)
        before = _visible(tmp_path)

        def absent() -> None:
            expect(not path.exists(), "no target is visible before it is published")
            expect_equal(_visible(tmp_path), before, "no file appears next to the target")

        self.write_and_publish(adapter, [self.sample_rows(20)], schema, before_publish=absent)
        previous = path.read_bytes()
        new_rows = self.sample_rows(25, start=100)

        def unchanged() -> None:
            expect(path.read_bytes() == previous, "the previous target is unchanged until then")

        self.write_and_publish(
            self.make_adapter(path), [new_rows], schema, before_publish=unchanged
        )
        expect_equal(
            self.read_rows(path, schema),
            [self.as_read(r) for r in new_rows],
            "after publishing, the target holds the new rows only",
        )

    def test_abort_leaves_a_previous_target_byte_identical(self, tmp_path: Path) -> None:
        """Aborting a writer, after rows were written, leaves the previous target byte for
        byte and no new file next to it."""
        schema = self.sample_schema()
        adapter, path = self._target(tmp_path)
        self.write_and_publish(adapter, [self.sample_rows(20)], schema)
        previous = path.read_bytes()
        before = _visible(tmp_path)
        self.write_and_abort(self.make_adapter(path), [self.sample_rows(30, start=50)], schema)
        expect(path.read_bytes() == previous, "an abort leaves the previous target byte for byte")
        expect_equal(_visible(tmp_path), before, "an abort leaves no file next to the target")

    def test_abort_without_a_previous_target_creates_none(self, tmp_path: Path) -> None:
        """Aborting the first write of a target leaves no target and nothing visible."""
        adapter, path = self._target(tmp_path)
        self.write_and_abort(adapter, [self.sample_rows(10)], self.sample_schema())
        expect(not path.exists(), "an aborted output creates no target")
        expect_equal(_visible(tmp_path), [], "an abort leaves no file behind")

    # -- parts and merge ------------------------------------------------------------------------

    @pytest.mark.parametrize("n", [1, 3, 5])
    def test_merged_parts_equal_one_file(self, tmp_path: Path, n: int) -> None:
        """Rows written through ``split(n)``'s part adapters (some parts empty), merged with
        ``merge(parts, destination)``, read back exactly as the same rows written to one
        file; the parts write neither the target nor anything next to it."""
        schema = self.sample_schema()
        rows = self.sample_rows(45)
        (tmp_path / "single").mkdir()
        single, single_path = self._target(tmp_path / "single")
        self.write_and_publish(single, [rows], schema)

        adapter, path = self._target(tmp_path)
        parts = self.part_adapters(adapter, n)
        expect_equal(len(parts), n, f"split({n}) gives {n} part adapters")
        cuts = [len(rows) * k // n for k in range(n + 1)]
        chunks = [rows[cuts[k] : cuts[k + 1]] for k in range(n)]
        if n > 1:
            chunks[1] = []  # a shard with no rows still writes a valid part
            chunks[0] = rows[: cuts[2]]
        paths = [
            Path(self.write_and_publish(part, [chunk], schema))
            for part, chunk in zip(parts, chunks, strict=True)
        ]
        expect_equal(len(set(paths)), n, "every part has a file of its own")
        expect(path not in paths and not path.exists(), "parts never write the target")
        expect_equal(_visible(tmp_path), ["single"], "parts write nothing next to the target")

        destination = tmp_path / f"merged{self.suffix}"
        adapter.merge(paths, destination)
        merged = self.read_rows(destination, schema)
        expect_equal(merged, [self.as_read(r) for r in rows], "the merged file holds every row")
        expect_equal(
            merged, self.read_rows(single_path, schema), "the merged file reads as one file"
        )

    def test_merge_of_empty_parts_is_a_valid_empty_file(self, tmp_path: Path) -> None:
        """Parts that all got no rows merge into a valid file of the format with no rows."""
        schema = self.sample_schema()
        adapter, _ = self._target(tmp_path)
        paths = [
            Path(self.write_and_publish(part, [], schema))
            for part in self.part_adapters(adapter, 3)
        ]
        destination = tmp_path / f"merged{self.suffix}"
        adapter.merge(paths, destination)
        expect_equal(self.read_rows(destination, schema), [], "the merge of empty parts")

    def test_adapter_and_parts_pickle(self, tmp_path: Path) -> None:
        """An adapter and its parts survive ``pickle`` (they travel to workers) and then
        write where the originals would."""
        schema = self.sample_schema()
        adapter, path = self._target(tmp_path)
        rows = self.sample_rows(12)
        copy = pickle.loads(pickle.dumps(adapter))
        expect_equal(copy.path, adapter.path, "a pickled adapter keeps its target")
        self.write_and_publish(copy, [rows], schema)
        expect_equal(
            self.read_rows(path, schema), [self.as_read(r) for r in rows], "it writes the target"
        )
        part = self.part_adapters(self.make_adapter(path), 2)[1]
        restored = pickle.loads(pickle.dumps(part))
        expect_equal(restored.path, part.path, "a pickled part keeps its part file")
        written = self.write_and_publish(restored, [rows], schema)
        expect_equal(Path(written), part.path, "a pickled part writes its part file")
