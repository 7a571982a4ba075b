"""The input-adapter conformance suite: what every :class:`BaseInputAdapter` promises.

Subclass :class:`InputAdapterConformance` in a test module and say how to write a sample file
of the format and how to build the adapter::

    class TestMyInput(InputAdapterConformance):
        suffix = ".my"

        def write_records(self, path, records, fields):
            ...  # write ``records`` (dicts with the keys ``fields``) in the format

        def make_adapter(self, path, *, batch_size=None):
            return MyInputAdapter(path, batch_size=batch_size or 10_000)

Override :meth:`~InputAdapterConformance.as_read` when the format does not keep the values'
types (CSV reads text), and :meth:`~InputAdapterConformance.write_malformed` when the format
can hold something that is not a record (a CSV row with the wrong number of fields, a line
that is not JSON): the malformed-input test is skipped otherwise.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import ClassVar

import pytest

from ..adapters.base import BaseInputAdapter, InputBatch
from ..errors import ConfigurationError, InputError
from ._expect import expect, expect_equal
from .data import Record

__all__ = ["InputAdapterConformance"]

#: Shard counts every split test tries (the last ones exceed the records of a small input).
_SPLITS = (1, 2, 3, 4, 7, 16)


def _names(adapter: BaseInputAdapter) -> list[str]:
    """What a batch or error record of ``adapter`` may name: its source, or for a multi-file
    input (one with ``paths``) the file the record comes from."""
    paths = getattr(adapter, "paths", None) or ()
    return [adapter.source, *(str(p) for p in paths)]


def _read(adapter: BaseInputAdapter) -> tuple[list[Record], list[Record], list[InputBatch]]:
    """(records in order, malformed error records, batches) of one adapter."""
    batches = list(adapter.batches())
    records = [record for batch in batches for record in batch.records]
    malformed = [error for batch in batches for error in batch.malformed]
    return records, malformed, batches


class InputAdapterConformance:
    """Every record once and in order, whole or in shards; shards that pickle; a missing
    file named in an :class:`~zoopipe_hpc.errors.InputError`; malformed input as error
    records; batches of bounded size."""

    #: Suffix of the sample files (``.csv``): some adapters choose their format from it.
    suffix: ClassVar[str] = ""

    #: Field names of the sample records, in order: ``id`` (int), ``name`` (str), ``score``
    #: (float).
    fields: ClassVar[tuple[str, ...]] = ("id", "name", "score")

    # -- what a subclass provides ---------------------------------------------------------------

    def write_records(self, path: Path, records: Sequence[Record], fields: Sequence[str]) -> None:
        """Write ``records`` (each with the keys ``fields``, maybe none) to ``path``."""
        raise NotImplementedError(f"{type(self).__name__} must override write_records()")

    def make_adapter(self, path: Path, *, batch_size: int | None = None) -> BaseInputAdapter:
        """An adapter reading ``path``.

        ``batch_size``: about how many records a batch should hold (an option counted in bytes
        can be sized from it: the sample records take under 60 bytes each); None for the
        adapter's defaults.
        """
        raise NotImplementedError(f"{type(self).__name__} must override make_adapter()")

    def write_malformed(self, path: Path, records: Sequence[Record], at: int) -> int | None:
        """Write ``records`` with one malformed entry (not a record at all) just before
        ``records[at]``; return the 1-based line where the malformed entry starts.

        The records hold no line breaks. The default returns None without writing anything:
        the format cannot hold a malformed record, and that test is skipped.
        """
        return None

    def as_read(self, record: Record) -> Record:
        """``record`` as the adapter reads it back (CSV: every value as text)."""
        return dict(record)

    # -- sample data ----------------------------------------------------------------------------

    def sample_records(self, n: int, *, line_breaks: bool = True) -> list[Record]:
        """``n`` records with delimiters, quotes, non-ASCII text and, with ``line_breaks``,
        a line break inside every seventh name."""
        records = []
        for i in range(n):
            name = f'user {i:05d}, the "{i}th" é'
            if line_breaks and i % 7 == 3:
                name += "\nsecond line"
            records.append({"id": i, "name": name, "score": i / 7})
        return records

    def _sample(self, tmp_path: Path, n: int, *, name: str = "in") -> tuple[Path, list[Record]]:
        path = tmp_path / f"{name}{self.suffix}"
        records = self.sample_records(n)
        self.write_records(path, records, self.fields)
        return path, [self.as_read(r) for r in records]

    # -- reading a whole input ----------------------------------------------------------------

    def test_batches_hold_every_record_in_order(self, tmp_path: Path) -> None:
        """``batches()`` yields every record of the input once, in input order, and nothing
        malformed in a well-formed input; every batch names the adapter's source."""
        path, expected = self._sample(tmp_path, 120)
        adapter = self.make_adapter(path)
        records, malformed, batches = _read(adapter)
        expect_equal(records, expected, "the batches hold every record, in order")
        expect_equal(malformed, [], "a well-formed input has no malformed records")
        for batch in batches:
            expect(
                batch.source in _names(adapter),
                f"a batch names the adapter's source (or one of its files): {batch.source!r}",
            )
            expect_equal(len(batch), len(batch.records), "len(batch) counts its records")

    def test_a_second_read_gives_the_same_records(self, tmp_path: Path) -> None:
        """An adapter can be read more than once (a retried shard reads again)."""
        path, expected = self._sample(tmp_path, 40)
        adapter = self.make_adapter(path)
        expect_equal(_read(adapter)[0], expected, "the first read")
        expect_equal(_read(adapter)[0], expected, "a second read gives the same records")

    def test_empty_input_has_no_records(self, tmp_path: Path) -> None:
        """An input of the format with no records reads as no records, whole or split."""
        path = tmp_path / f"empty{self.suffix}"
        self.write_records(path, [], self.fields)
        adapter = self.make_adapter(path)
        expect_equal(_read(adapter)[:2], ([], []), "an empty input has no records")
        for n in (1, 3):
            shards = adapter.split(n)
            expect_equal(len(shards), n, f"split({n}) of an empty input gives {n} shards")
            expect_equal(
                [_read(s)[:2] for s in shards], [([], [])] * n, "the shards have no records"
            )

    def test_source_and_describe_name_the_input(self, tmp_path: Path) -> None:
        """``source`` is the input's path as text, and ``describe()`` mentions it."""
        path, _ = self._sample(tmp_path, 3)
        adapter = self.make_adapter(path)
        expect_equal(adapter.source, str(path), "source is the input's path")
        description = adapter.describe()
        expect(
            isinstance(description, str) and str(path) in description,
            f"describe() names the source: {description!r}",
        )

    # -- shards ---------------------------------------------------------------------------------

    @pytest.mark.parametrize("n", _SPLITS)
    def test_split_shards_hold_every_record_once_in_order(self, tmp_path: Path, n: int) -> None:
        """``split(n)`` gives exactly ``n`` shards whose records, read one after the other,
        are the whole input's records: each exactly once, in order (also for more shards than
        records, where some shards are empty). Shards keep the input's source."""
        for size in (5, 150):
            path, expected = self._sample(tmp_path, size, name=f"in{size}")
            adapter = self.make_adapter(path)
            shards = adapter.split(n)
            expect_equal(len(shards), n, f"split({n}) gives {n} shards")
            parts = [_read(shard)[0] for shard in shards]
            expect_equal(
                [r for part in parts for r in part],
                expected,
                f"the {n} shards of {size} records hold every record once, in order",
            )
            for shard in shards:
                expect_equal(shard.source, adapter.source, "a shard reads the same source")

    def test_split_of_a_large_input_shares_out_records(self, tmp_path: Path) -> None:
        """Shards of an input with many records are not all empty but one: work is shared."""
        path, expected = self._sample(tmp_path, 2000)
        shards = self.make_adapter(path, batch_size=100).split(4)
        sizes = [len(_read(shard)[0]) for shard in shards]
        expect_equal(sum(sizes), len(expected), "the shards hold every record")
        expect(sum(1 for s in sizes if s) >= 2, f"records are shared among the shards: {sizes}")

    def test_split_rejects_a_count_below_one(self, tmp_path: Path) -> None:
        """``split(0)`` raises :class:`~zoopipe_hpc.errors.ConfigurationError`."""
        path, _ = self._sample(tmp_path, 3)
        with pytest.raises(ConfigurationError):
            self.make_adapter(path).split(0)

    @pytest.mark.parametrize("n", [1, 3])
    def test_shards_pickle_and_read_the_same_after(self, tmp_path: Path, n: int) -> None:
        """An adapter and its shards survive ``pickle`` (they travel to workers) and read the
        same records afterwards."""
        path, expected = self._sample(tmp_path, 60)
        adapter = self.make_adapter(path)
        copy = pickle.loads(pickle.dumps(adapter))
        expect_equal(_read(copy)[0], expected, "a pickled adapter reads the same records")
        for index, shard in enumerate(adapter.split(n)):
            restored = pickle.loads(pickle.dumps(shard))
            expect_equal(
                _read(restored)[0], _read(shard)[0], f"shard {index} reads the same after pickle"
            )
            expect_equal(restored.source, shard.source, "a pickled shard keeps its source")

    def test_shards_locate_records_as_the_whole_input_does(self, tmp_path: Path) -> None:
        """``batch.locate(i)`` gives a record the same line (or None, for formats without
        lines) whether it is read from the whole input or from a shard."""
        path, _ = self._sample(tmp_path, 80)
        adapter = self.make_adapter(path)

        def lines(item: BaseInputAdapter) -> list[int | None]:
            return [batch.locate(i) for batch in item.batches() for i in range(len(batch))]

        whole = lines(adapter)
        for n in (2, 5):
            expect_equal(
                [line for shard in adapter.split(n) for line in lines(shard)],
                whole,
                f"the records of {n} shards have the lines they have in the whole input",
            )

    # -- a missing input ------------------------------------------------------------------------

    def test_missing_file_raises_input_error_naming_the_path(self, tmp_path: Path) -> None:
        """``check()`` of a missing file raises :class:`~zoopipe_hpc.errors.InputError` whose
        ``path`` and message name the file; so do ``split()`` and reading the batches."""
        missing = tmp_path / f"missing{self.suffix}"
        adapter = self.make_adapter(missing)
        attempts: dict[str, Callable[[], object]] = {
            "check()": adapter.check,
            "split(2)": lambda: adapter.split(2),
            "batches()": lambda: list(adapter.batches()),
        }
        for call, attempt in attempts.items():
            with pytest.raises(InputError) as caught:
                attempt()
            error = caught.value
            expect_equal(getattr(error, "path", None), str(missing), f"{call}: the error's path")
            expect(str(missing) in str(error), f"{call}: the message names the file: {error}")

    def test_check_accepts_a_readable_input(self, tmp_path: Path) -> None:
        """``check()`` of a readable input returns without raising."""
        path, _ = self._sample(tmp_path, 3)
        self.make_adapter(path).check()

    # -- malformed input ------------------------------------------------------------------------

    def test_malformed_input_becomes_error_records_with_source_and_line(
        self, tmp_path: Path
    ) -> None:
        """Something that is not a record is reported in ``batch.malformed`` as an error
        record (``source``, ``line``, ``record``, ``errors``), not raised; every good record
        is still read, in order; each shard reports it once, with the same line."""
        path = tmp_path / f"bad{self.suffix}"
        records = self.sample_records(30, line_breaks=False)
        line = self.write_malformed(path, records, 12)
        if line is None:
            pytest.skip(f"{type(self).__name__}: the format cannot hold a malformed record")
        adapter = self.make_adapter(path)
        good, malformed, _ = _read(adapter)
        expect_equal(good, [self.as_read(r) for r in records], "every good record is read")
        expect_equal(len(malformed), 1, "the malformed entry is one error record")
        error = malformed[0]
        source = error.get("source")
        expect(
            source in _names(adapter),
            f"the error record names the source (or its own file): {source!r}",
        )
        expect_equal(error.get("line"), line, "the error record gives the line")
        expect("record" in error, f"the error record keeps what was read: {error}")
        errors = error.get("errors")
        expect(
            isinstance(errors, list) and errors and all("msg" in e for e in errors),
            f"the error record says what is wrong: {error}",
        )
        for n in (2, 3, 7):
            found = [
                (e.get("source"), e.get("line")) for s in adapter.split(n) for e in _read(s)[1]
            ]
            expect_equal(found, [(source, line)], f"{n} shards report the malformed entry once")

    # -- bounded batches ------------------------------------------------------------------------

    def test_batch_size_does_not_grow_with_the_input(self, tmp_path: Path) -> None:
        """With the same options, an input eight times larger is read in more batches, not
        in larger ones: memory is bounded by the batch size, not by the input."""
        small_path, small_expected = self._sample(tmp_path, 600, name="small")
        large_path, large_expected = self._sample(tmp_path, 4800, name="large")
        small_records, _, small = _read(self.make_adapter(small_path, batch_size=100))
        large_records, _, large = _read(self.make_adapter(large_path, batch_size=100))
        expect_equal(small_records, small_expected, "the small input in small batches")
        expect_equal(large_records, large_expected, "the large input in small batches")
        expect(
            len(small) >= 3,
            f"batch_size=100 reads 600 records in several batches, not {len(small)}",
        )
        largest_small = max(len(b) + len(b.malformed) for b in small)
        largest_large = max(len(b) + len(b.malformed) for b in large)
        expect(
            largest_large <= 1.5 * largest_small,
            f"the largest batch grew with the input: {largest_small} records for 600, "
            f"{largest_large} for 4800",
        )
