"""The commit-strategy conformance suite: what every commit strategy promises a run.

A strategy (:mod:`zoopipe_hpc.commit.strategies`) turns one target's staged parts into the
target. Subclass :class:`CommitStrategyConformance` and say how to build an output adapter whose
``commit_strategy`` is the strategy under test and how to read its target::

    class TestMyTable(CommitStrategyConformance):
        def make_adapter(self, tmp_path):
            return MyTableOutputAdapter("db.sqlite", table="t")

        def read_target(self, adapter):
            ...  # the rows now visible at the target, in order ([] if it does not exist)

The tests drive a real :class:`~zoopipe_hpc.commit.transaction.Transaction`: parts are written
through the adapter's part adapters (as workers write them) and committed, rolled back, or
interrupted between two steps and recovered.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import pyarrow as pa
import pytest

from ..adapters.base import BaseOutputAdapter
from ..commit import transaction as transaction_module
from ..commit.staged import StagedFile, WorkerOutcome
from ..commit.transaction import Slot, Transaction
from ..errors import CommitError
from ._expect import expect, expect_equal
from .data import Record

__all__ = ["CommitStrategyConformance"]


class _Interrupted(Exception):
    """Raised at a step of the commit by :meth:`CommitStrategyConformance._interrupt_at`."""


class CommitStrategyConformance:
    """Parts are published together and in order; nothing is visible before the decision; a
    rollback leaves the target as it was; the commit record's entry survives JSON and
    publishing it again changes nothing; a commit interrupted after its decision is finished
    by the next run, one interrupted before it is undone."""

    #: True when a commit adds to the target's rows (a table append) instead of replacing them.
    appends: ClassVar[bool] = False

    # -- what a subclass provides -------------------------------------------------------------

    def make_adapter(self, tmp_path: Path) -> BaseOutputAdapter:
        """An output adapter whose target lives under ``tmp_path``."""
        raise NotImplementedError(f"{type(self).__name__} must override make_adapter()")

    def read_target(self, adapter: BaseOutputAdapter) -> list[Record]:
        """The rows a reader sees at the adapter's target now, in order ([] when none)."""
        raise NotImplementedError(f"{type(self).__name__} must override read_target()")

    def schema(self) -> pa.Schema:
        return pa.schema([pa.field("id", pa.int64()), pa.field("name", pa.string())])

    def rows(self, start: int, n: int) -> list[Record]:
        return [{"id": i, "name": f"row {i}"} for i in range(start, start + n)]

    # -- a run of ``parts`` parts ---------------------------------------------------------------

    def _run(
        self, adapter: BaseOutputAdapter, parts: Sequence[list[Record]], run_id: str | None = None
    ) -> tuple[Transaction, dict[int, WorkerOutcome]]:
        """Begin a transaction with one target of ``len(parts)`` parts and stage them."""
        transaction = Transaction(run_id)
        slots = [Slot(index, "output") for index in range(len(parts))]
        target = transaction.add(adapter, slots, "the output")
        transaction.begin()
        outcomes = {}
        for index, rows in enumerate(parts):
            part = adapter.as_part(target.staging, index, f"a{index}", sole=len(parts) == 1)
            writer = part.open(self.schema())
            writer.write(rows)
            path = writer.commit()
            staged = (StagedFile.of("output", path, len(rows)),)
            outcomes[index] = WorkerOutcome(index, f"a{index}", len(rows), len(rows), 0, staged)
        return transaction, outcomes

    def _seed(self, adapter: BaseOutputAdapter) -> list[Record]:
        """Commit a first run so that the target has previous contents; returns them."""
        rows = self.rows(1000, 3)
        transaction, outcomes = self._run(adapter, [rows])
        transaction.commit(outcomes)
        return self.read_target(adapter)

    @staticmethod
    def _interrupt_at(monkeypatch: pytest.MonkeyPatch, step: str) -> None:
        def hook(name: str) -> None:
            if name == step:
                raise _Interrupted(f"interrupted at {step}")

        monkeypatch.setattr(transaction_module, "_step", hook)

    # -- the promises ---------------------------------------------------------------------------

    @pytest.mark.parametrize("parts", [1, 3])
    def test_commit_publishes_every_part_in_order(self, tmp_path: Path, parts: int) -> None:
        """Once committed, the target holds every part's rows, in part order."""
        adapter = self.make_adapter(tmp_path)
        chunks = [self.rows(10 * k, 4 + k) for k in range(parts)]
        transaction, outcomes = self._run(adapter, chunks)
        transaction.commit(outcomes)
        expect_equal(
            self.read_target(adapter),
            [row for chunk in chunks for row in chunk],
            "the target holds the parts' rows in order",
        )
        expect_equal(transaction.state, "committed", "the transaction says it committed")

    def test_nothing_is_visible_before_the_decision(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """After ``prepare`` and up to the decision, readers still see the previous target."""
        adapter = self.make_adapter(tmp_path)
        before = self._seed(adapter)
        for step in ("prepared", "locked", "recorded-prepared"):
            seen: list[list[Record]] = []

            def look(name: str, step: str = step, seen: list[list[Record]] = seen) -> None:
                if name == step:
                    seen.append(self.read_target(adapter))

            monkeypatch.setattr(transaction_module, "_step", look)
            transaction, outcomes = self._run(adapter, [self.rows(0, 5), self.rows(5, 2)])
            transaction.commit(outcomes)
            expect_equal(seen, [before], f"the previous rows are what a reader sees at {step}")
            before = self.read_target(adapter)

    def test_rollback_leaves_the_target_as_it_was(self, tmp_path: Path) -> None:
        """A run that is rolled back (a shard failed) changes nothing, and leaves no staging."""
        adapter = self.make_adapter(tmp_path)
        before = self._seed(adapter)
        transaction, _ = self._run(adapter, [self.rows(0, 5), self.rows(5, 5)])
        transaction.rollback("a shard failed")
        expect_equal(self.read_target(adapter), before, "the target is as it was")
        for target in transaction.targets:
            expect(not target.staging.path.exists(), "the run's staging folder is removed")

    def test_a_missing_part_fails_the_commit_and_changes_nothing(self, tmp_path: Path) -> None:
        """A staged part that vanished is a CommitError naming the shard; nothing changes."""
        adapter = self.make_adapter(tmp_path)
        before = self._seed(adapter)
        transaction, outcomes = self._run(adapter, [self.rows(0, 5), self.rows(5, 5)])
        Path(outcomes[1].files[0].path).unlink()
        with pytest.raises(CommitError, match="shard 1"):
            transaction.commit(outcomes)
        expect_equal(self.read_target(adapter), before, "the target is as it was")

    def test_the_entry_survives_json_and_publishing_again_changes_nothing(
        self, tmp_path: Path
    ) -> None:
        """Recovery publishes an entry read back from the commit record: it must be JSON, and
        publishing an entry that was already published must be a no-op."""
        adapter = self.make_adapter(tmp_path)
        transaction, outcomes = self._run(adapter, [self.rows(0, 6)])
        target = transaction.targets[0]
        entry = target.strategy.prepare(transaction.files_for(target, outcomes))
        again = json.loads(json.dumps(entry))
        target.strategy.publish(entry)
        once = self.read_target(adapter)
        target.strategy.publish(again)
        expect_equal(self.read_target(adapter), once, "a second publish changes nothing")
        expect_equal(once, self.rows(0, 6), "the published rows")

    @pytest.mark.parametrize(
        ("step", "finished"),
        [("prepared", False), ("recorded-prepared", False), ("recorded", True)],
    )
    def test_an_interrupted_commit_is_settled_by_the_next_run(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str, finished: bool
    ) -> None:
        """Interrupted before its decision, a run is undone; after it, the next run with the
        same run id finishes it before doing anything else."""
        adapter = self.make_adapter(tmp_path)
        before = self._seed(adapter)
        rows = self.rows(0, 7)
        self._interrupt_at(monkeypatch, step)
        transaction, outcomes = self._run(adapter, [rows], run_id="interrupted")
        with pytest.raises((_Interrupted, CommitError)):
            transaction.commit(outcomes)
        monkeypatch.setattr(transaction_module, "_step", lambda name: None)
        again = Transaction("interrupted")
        again.add(self.make_adapter(tmp_path), [Slot(0, "output")], "the output")
        again.begin()  # settles what the interrupted process left
        new = before + rows if self.appends else rows
        seen = self.read_target(adapter)
        if self.appends:  # a table's rows are a set: compare them in one order
            seen, new = sorted(seen, key=repr), sorted(new, key=repr)
        expect_equal(
            seen,
            new if finished else before,
            "finished after the decision" if finished else "undone before the decision",
        )
        again.rollback("the test is over")
