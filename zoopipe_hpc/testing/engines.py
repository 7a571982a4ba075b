"""The engine conformance suite: the promises every engine keeps, as pytest tests.

Subclass :class:`EngineConformance` in a test module (its name starting with ``Test``) and say
how to build the engine, either by overriding :meth:`~EngineConformance.make_engine`::

    class TestMyEngine(EngineConformance):
        timeout = 60.0

        def make_engine(self, tmp_path: Path) -> BaseEngine:
            return MyEngine()

or, when the engine needs other fixtures (a cluster shared by the module), by overriding the
``engine`` fixture itself. Each test gets a fresh engine; the default fixture shuts it down
after the test, so an engine must accept ``shutdown()`` after its manager has shut it down.

The records flow through worker processes, which import the models of
:mod:`zoopipe_hpc.testing.data`: an engine under test must be able to import ``zoopipe_hpc``
where its workers run. The Iceberg tests are skipped when pyiceberg is not installed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pyarrow.parquet as pq
import pytest

from ..adapters import CSVInputAdapter, JSONOutputAdapter, ParquetOutputAdapter
from ..engines.base import BaseEngine
from ..manager import PipeManager
from ..pipe import Pipe
from ..report import PipeReport, PipeStatus
from ._expect import expect, expect_equal
from .data import Trigger, User, read_jsonl, users, write_csv

__all__ = ["EngineConformance"]


class EngineConformance:
    """Exact records, shard order after a merge, fault isolation, rollback on failure,
    cancellation, and live progress: what a :class:`~zoopipe_hpc.engines.BaseEngine` promises.
    """

    #: Seconds a whole run may take in one test (raise it for an engine with slow start-up).
    timeout: ClassVar[float] = 120.0

    def make_engine(self, tmp_path: Path) -> BaseEngine:
        """A new engine for one test; ``tmp_path`` is that test's folder (for job files)."""
        raise NotImplementedError(
            f"{type(self).__name__} must override make_engine() or the engine fixture"
        )

    @pytest.fixture
    def engine(self, tmp_path: Path) -> Iterator[BaseEngine]:
        """The engine under test, from :meth:`make_engine`, shut down after the test."""
        engine = self.make_engine(tmp_path)
        yield engine
        engine.shutdown()

    # -- helpers ----------------------------------------------------------------------------

    @staticmethod
    def _trigger_csv(path: Path, names: list[str]) -> Path:
        return write_csv(path, [{"id": i, "name": n} for i, n in enumerate(names)])

    # -- many pipes -----------------------------------------------------------------------------

    def test_many_pipes_each_complete_with_exact_counts(
        self, engine: BaseEngine, tmp_path: Path
    ) -> None:
        """Several pipes on one engine all complete; each report counts exactly the records of
        its own input (valid plus invalid), and each output holds exactly those records."""
        pipes = []
        for k in range(3):
            source = write_csv(tmp_path / f"in{k}.csv", users(50 + k, bad_every=10))
            pipes.append(
                Pipe(
                    CSVInputAdapter(source),
                    JSONOutputAdapter(tmp_path / f"out{k}.jsonl"),
                    User,
                    error_output_adapter=JSONOutputAdapter(tmp_path / f"err{k}.jsonl"),
                )
            )
        manager = PipeManager(pipes, engine=engine)
        expect(manager.run(timeout=self.timeout) is True, f"the run failed: {manager.error}")
        for k, report in enumerate(manager.pipe_reports):
            expect_equal(report.status, PipeStatus.COMPLETED, f"pipe {k} completes")
            expect_equal(report.total_processed, 50 + k, f"pipe {k} counts every record")
            expect_equal(
                report.error_count, len(range(0, 50 + k, 10)), f"pipe {k} counts invalid records"
            )
            expect_equal(
                report.success_count + report.error_count,
                report.total_processed,
                f"pipe {k}: valid plus invalid is every record",
            )
            expect_equal(
                len(read_jsonl(tmp_path / f"out{k}.jsonl")),
                report.success_count,
                f"pipe {k}'s output holds its valid records",
            )
            expect_equal(
                len(read_jsonl(tmp_path / f"err{k}.jsonl")),
                report.error_count,
                f"pipe {k}'s error output holds its invalid records",
            )
        total = manager.report
        expect(total.is_finished and not total.has_error, f"the total is finished, clean: {total}")
        expect_equal(
            total.total_processed, sum(50 + k for k in range(3)), "the total adds up the pipes"
        )

    # -- one pipe in shards ------------------------------------------------------------------

    def test_parallelize_pipe_gives_the_records_and_order_of_one_pipe(
        self, engine: BaseEngine, tmp_path: Path
    ) -> None:
        """A pipe split into shards on the engine writes byte for byte what the same pipe run
        in one process writes (valid and error outputs), and leaves no staging behind."""
        source = write_csv(tmp_path / "in.csv", users(500, bad_every=13))
        single = Pipe(
            CSVInputAdapter(source),
            JSONOutputAdapter(tmp_path / "single.jsonl"),
            User,
            error_output_adapter=JSONOutputAdapter(tmp_path / "single_err.jsonl"),
        )
        single.run()
        pipe = Pipe(
            CSVInputAdapter(source),
            JSONOutputAdapter(tmp_path / "par.jsonl"),
            User,
            error_output_adapter=JSONOutputAdapter(tmp_path / "par_err.jsonl"),
        )
        manager = PipeManager.parallelize_pipe(pipe, workers=4, engine=engine)
        expect(manager.run(timeout=self.timeout), f"the run failed: {manager.error}")
        expect(
            (tmp_path / "par.jsonl").read_bytes() == (tmp_path / "single.jsonl").read_bytes(),
            "the merged output equals the output of one pipe",
        )
        expect(
            (tmp_path / "par_err.jsonl").read_bytes()
            == (tmp_path / "single_err.jsonl").read_bytes(),
            "the merged error output equals the error output of one pipe",
        )
        expect_equal(manager.report.total_processed, 500, "every record is counted once")
        expect_equal(
            list((tmp_path / ".zoopipe-staging").glob("par.jsonl.run-*")),
            [],
            "no staging folder is left after the commit",
        )

    def test_parquet_merge_is_one_valid_file(self, engine: BaseEngine, tmp_path: Path) -> None:
        """Parquet parts written by the engine's workers merge into one valid file, rows in
        input order."""
        source = write_csv(tmp_path / "in.csv", users(300))
        pipe = Pipe(CSVInputAdapter(source), ParquetOutputAdapter(tmp_path / "out.parquet"), User)
        manager = PipeManager.parallelize_pipe(pipe, workers=3, engine=engine)
        expect(manager.run(timeout=self.timeout), f"the run failed: {manager.error}")
        table = pq.read_table(tmp_path / "out.parquet")
        expect_equal(table.column("id").to_pylist(), list(range(300)), "rows are in input order")

    # -- failures ------------------------------------------------------------------------------

    def test_failing_pipe_is_isolated_and_nothing_is_committed(
        self, engine: BaseEngine, tmp_path: Path
    ) -> None:
        """When one shard raises, the other completes, the failure names the shard and its
        cause, the previous target stays as it was, and no staging is left."""
        target = tmp_path / "out.jsonl"
        target.write_text('{"previous": true}\n')
        names = [f"n{i}" for i in range(40)]
        names[25] = "boom"
        source = self._trigger_csv(tmp_path / "in.csv", names)
        pipe = Pipe(CSVInputAdapter(source), JSONOutputAdapter(target), Trigger)
        manager = PipeManager.parallelize_pipe(pipe, workers=2, engine=engine)
        expect(manager.run(timeout=self.timeout) is False, "a run with a failed shard fails")
        reports = manager.pipe_reports
        expect_equal(reports[0].status, PipeStatus.COMPLETED, "the healthy shard completes")
        expect_equal(reports[1].status, PipeStatus.FAILED, "the failing shard is FAILED")
        expect(
            "boom requested" in reports[1].message,
            f"the report gives the cause: {reports[1].message!r}",
        )
        expect(manager.report.has_error, "the total report has an error")
        expect(
            manager.error is not None and "shard 1" in str(manager.error),
            f"the error names the shard: {manager.error}",
        )
        expect_equal(target.read_text(), '{"previous": true}\n', "the previous target is kept")
        expect_equal(
            list((tmp_path / ".zoopipe-staging").glob("out.jsonl.run-*")),
            [],
            "no staging folder is left after the rollback",
        )

    @pytest.mark.parametrize("signal_name", ["sigkill", "sigsegv"])
    def test_killed_worker_is_reported_and_others_finish(
        self, engine: BaseEngine, tmp_path: Path, signal_name: str
    ) -> None:
        """A worker killed by a signal is reported FAILED with the signal's name, while the
        other pipe completes; the run is one transaction, so neither pipe's previous target
        changes (byte for byte) and the error says nothing was committed."""
        ok = self._trigger_csv(tmp_path / "ok.csv", [f"n{i}" for i in range(20)])
        bad = self._trigger_csv(tmp_path / "bad.csv", ["a", signal_name, "b"])
        previous = {tmp_path / "ok.jsonl": b'{"previous": "ok"}\n', tmp_path / "bad.jsonl": b""}
        for path, data in previous.items():
            path.write_bytes(data)
        manager = PipeManager(
            [
                Pipe(CSVInputAdapter(ok), JSONOutputAdapter(tmp_path / "ok.jsonl"), Trigger),
                Pipe(CSVInputAdapter(bad), JSONOutputAdapter(tmp_path / "bad.jsonl"), Trigger),
            ],
            engine=engine,
        )
        expect(manager.run(timeout=self.timeout) is False, "a run with a killed worker fails")
        first, second = manager.pipe_reports
        expect(
            first.status is PipeStatus.COMPLETED and first.total_processed == 20,
            f"the other pipe completes with every record: {first}",
        )
        expect_equal(second.status, PipeStatus.FAILED, "the killed pipe is FAILED")
        expected = "SIGKILL" if signal_name == "sigkill" else "SIGSEGV"
        expect(expected in second.message, f"the report names {expected}: {second.message!r}")
        for path, data in previous.items():
            expect_equal(path.read_bytes(), data, f"{path.name} is byte-identical to before")
        expect(
            manager.error is not None and "nothing was committed" in str(manager.error),
            f"the error says so: {manager.error}",
        )
        expect_equal(
            sorted(p.name for p in (tmp_path / ".zoopipe-staging").glob("*.run-*")),
            [],
            "no staging folder of the run is left",
        )

    # -- progress and cancellation -------------------------------------------------------------

    def test_live_progress_then_shutdown_rolls_back(
        self, engine: BaseEngine, tmp_path: Path
    ) -> None:
        """Progress is visible while pipes run; ``shutdown()`` stops them, leaves every report
        final (some CANCELLED), the run not succeeded, and no target written."""
        source = self._trigger_csv(tmp_path / "in.csv", ["sleep0.05"] * 400)
        pipe = Pipe(CSVInputAdapter(source), JSONOutputAdapter(tmp_path / "out.jsonl"), Trigger)
        manager = PipeManager.parallelize_pipe(pipe, workers=2, engine=engine)
        manager.start()
        deadline = time.monotonic() + self.timeout
        seen: list[PipeReport] = []
        while time.monotonic() < deadline:
            report = manager.report
            if report.total_processed > 0:
                seen.append(report)
                break
            time.sleep(0.1)
        expect(seen, "progress is reported while the pipes run")
        expect(manager.is_running, "the manager is still running")
        manager.shutdown(timeout=10)
        expect(not manager.is_running, "shutdown() stops the run")
        expect(manager.succeeded is False, "a shut-down run has not succeeded")
        reports = manager.pipe_reports
        expect(all(r.is_finished for r in reports), f"every report is final: {reports}")
        expect(
            any(r.status is PipeStatus.CANCELLED for r in reports),
            f"a stopped pipe is CANCELLED: {reports}",
        )
        expect(not (tmp_path / "out.jsonl").exists(), "nothing is committed")

    def test_invalid_records_never_pass_as_valid_without_error_output(
        self, engine: BaseEngine, tmp_path: Path
    ) -> None:
        """Without an error output, invalid records are counted but never written as valid."""
        source = write_csv(tmp_path / "in.csv", users(30, bad_every=3))
        pipe = Pipe(CSVInputAdapter(source), JSONOutputAdapter(tmp_path / "out.jsonl"), User)
        manager = PipeManager.parallelize_pipe(pipe, workers=2, engine=engine)
        expect(manager.run(timeout=self.timeout), f"the run failed: {manager.error}")
        rows = read_jsonl(tmp_path / "out.jsonl")
        expect(all(isinstance(r["id"], int) for r in rows), "only valid rows are written")
        expect_equal(len(rows), 20, "the output holds the valid rows")
        expect_equal(manager.report.success_count, 20, "valid rows are counted")
        expect_equal(manager.report.error_count, 10, "invalid rows are counted")
        expect(json.dumps(rows), "the rows are plain JSON")

    # -- an Iceberg table as the output: one atomic snapshot per run -------------------------

    def test_iceberg_table_gets_the_records_and_order_of_one_pipe_once(
        self, engine: BaseEngine, tmp_path: Path
    ) -> None:
        """Shards writing an Iceberg table make one snapshot, tagged with the run id, whose
        scan gives the rows of one pipe in order."""
        pytest.importorskip("pyiceberg")
        from ..adapters import IcebergOutputAdapter

        source = write_csv(tmp_path / "in.csv", users(400, bad_every=13))
        single = Pipe(
            CSVInputAdapter(source), ParquetOutputAdapter(tmp_path / "single.parquet"), User
        )
        single.run()
        warehouse = tmp_path / "warehouse"
        pipe = Pipe(
            CSVInputAdapter(source),
            IcebergOutputAdapter("conformance.users", warehouse=warehouse),
            User,
            error_output_adapter=JSONOutputAdapter(tmp_path / "err.jsonl"),
        )
        manager = PipeManager.parallelize_pipe(pipe, workers=3, engine=engine, run_id="conf")
        expect(manager.run(timeout=self.timeout) is True, f"the run failed: {manager.error}")
        table = IcebergOutputAdapter("conformance.users", warehouse=warehouse).load_table()
        expect_equal(len(table.snapshots()), 1, "one run makes one snapshot")
        snapshot = table.current_snapshot()
        summary = snapshot.summary if snapshot is not None else None
        expect(summary is not None, "the snapshot has a summary")
        properties = summary.additional_properties if summary is not None else {}
        expect_equal(properties.get("zoopipe.run-id"), "conf", "the snapshot names the run id")
        expect(
            table.scan().to_arrow().to_pylist()
            == pq.read_table(tmp_path / "single.parquet").to_pylist(),
            "a scan gives the rows of one pipe, in order",
        )
        expect_equal(len(read_jsonl(tmp_path / "err.jsonl")), 31, "the error output")
        expect_equal(manager.report.error_count, 31, "invalid rows are counted")

    def test_iceberg_failing_shard_leaves_the_table_as_it_was(
        self, engine: BaseEngine, tmp_path: Path
    ) -> None:
        """A failed shard leaves the table's metadata, its data files and no staging behind."""
        pytest.importorskip("pyiceberg")
        from ..adapters import IcebergOutputAdapter

        warehouse = tmp_path / "warehouse"
        names = [f"n{i}" for i in range(40)]
        seed = self._trigger_csv(tmp_path / "seed.csv", names[:3])
        Pipe(
            CSVInputAdapter(seed),
            IcebergOutputAdapter("conformance.t", warehouse=warehouse),
            Trigger,
        ).run()
        adapter = IcebergOutputAdapter("conformance.t", warehouse=warehouse)
        before = adapter.load_table().metadata_location
        names[25] = "boom"
        source = self._trigger_csv(tmp_path / "in.csv", names)
        pipe = Pipe(CSVInputAdapter(source), adapter, Trigger)
        manager = PipeManager.parallelize_pipe(pipe, workers=2, engine=engine)
        expect(manager.run(timeout=self.timeout) is False, "a run with a failed shard fails")
        expect(
            manager.error is not None and "shard 1" in str(manager.error),
            f"the error names the shard: {manager.error}",
        )
        expect_equal(adapter.load_table().metadata_location, before, "the table is unchanged")
        expect_equal(len(list(adapter.data_dir.glob("*.parquet"))), 1, "no new data file")
        expect_equal(
            list((adapter.location / ".zoopipe-staging").glob("data.run-*")),
            [],
            "no staging folder is left",
        )
