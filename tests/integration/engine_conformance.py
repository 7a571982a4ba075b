"""The engine conformance suite: every engine subclasses :class:`EngineConformance`.

A subclass provides the ``engine`` fixture (a fresh engine per test) and may tune ``timeout``.
The tests check the promises every engine keeps: exact records, order after merge, fault
isolation, rollback on failure, cancellation, and progress from the progress records.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from _support import Trigger, User, read_jsonl, users, write_csv

from zoopipe_hpc import (
    CSVInputAdapter,
    JSONOutputAdapter,
    ParquetOutputAdapter,
    Pipe,
    PipeManager,
    PipeStatus,
)
from zoopipe_hpc.engines import BaseEngine


class EngineConformance:
    timeout: float = 120.0

    @pytest.fixture
    def engine(self) -> BaseEngine:  # pragma: no cover - always overridden
        raise NotImplementedError("subclasses provide an engine fixture")

    def _trigger_csv(self, path: Path, names: list[str]) -> Path:
        return write_csv(path, [{"id": i, "name": n} for i, n in enumerate(names)])

    def test_many_pipes_each_complete_with_exact_counts(self, engine: BaseEngine, tmp_path: Path):
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
        assert manager.run(timeout=self.timeout) is True
        for k, report in enumerate(manager.pipe_reports):
            assert report.status is PipeStatus.COMPLETED
            assert report.total_processed == 50 + k
            assert report.error_count == len(range(0, 50 + k, 10))
            assert report.success_count + report.error_count == report.total_processed
            assert len(read_jsonl(tmp_path / f"out{k}.jsonl")) == report.success_count
            assert len(read_jsonl(tmp_path / f"err{k}.jsonl")) == report.error_count
        total = manager.report
        assert total.is_finished and not total.has_error
        assert total.total_processed == sum(50 + k for k in range(3))

    def test_parallelize_pipe_gives_the_records_and_order_of_one_pipe(
        self, engine: BaseEngine, tmp_path: Path
    ):
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
        assert manager.run(timeout=self.timeout)
        assert (tmp_path / "par.jsonl").read_bytes() == (tmp_path / "single.jsonl").read_bytes()
        assert (tmp_path / "par_err.jsonl").read_bytes() == (
            tmp_path / "single_err.jsonl"
        ).read_bytes()
        assert manager.report.total_processed == 500
        assert not list((tmp_path / ".zoopipe-staging").glob("par.jsonl.run-*"))

    def test_parquet_merge_is_one_valid_file(self, engine: BaseEngine, tmp_path: Path):
        source = write_csv(tmp_path / "in.csv", users(300))
        pipe = Pipe(CSVInputAdapter(source), ParquetOutputAdapter(tmp_path / "out.parquet"), User)
        assert PipeManager.parallelize_pipe(pipe, workers=3, engine=engine).run(
            timeout=self.timeout
        )
        table = pq.read_table(tmp_path / "out.parquet")
        assert table.column("id").to_pylist() == list(range(300))

    def test_failing_pipe_is_isolated_and_nothing_is_committed(
        self, engine: BaseEngine, tmp_path: Path
    ):
        target = tmp_path / "out.jsonl"
        target.write_text('{"previous": true}\n')
        names = [f"n{i}" for i in range(40)]
        names[25] = "boom"
        source = self._trigger_csv(tmp_path / "in.csv", names)
        pipe = Pipe(CSVInputAdapter(source), JSONOutputAdapter(target), Trigger)
        manager = PipeManager.parallelize_pipe(pipe, workers=2, engine=engine)
        assert manager.run(timeout=self.timeout) is False
        reports = manager.pipe_reports
        assert reports[0].status is PipeStatus.COMPLETED
        assert reports[1].status is PipeStatus.FAILED
        assert "boom requested" in reports[1].message
        assert manager.report.has_error
        assert manager.error is not None and "shard 1" in str(manager.error)
        assert target.read_text() == '{"previous": true}\n'
        assert not list((tmp_path / ".zoopipe-staging").glob("out.jsonl.run-*"))

    @pytest.mark.parametrize("signal_name", ["sigkill", "sigsegv"])
    def test_killed_worker_is_reported_and_others_finish(
        self, engine: BaseEngine, tmp_path: Path, signal_name: str
    ):
        ok = self._trigger_csv(tmp_path / "ok.csv", [f"n{i}" for i in range(20)])
        bad = self._trigger_csv(tmp_path / "bad.csv", ["a", signal_name, "b"])
        manager = PipeManager(
            [
                Pipe(CSVInputAdapter(ok), JSONOutputAdapter(tmp_path / "ok.jsonl"), Trigger),
                Pipe(CSVInputAdapter(bad), JSONOutputAdapter(tmp_path / "bad.jsonl"), Trigger),
            ],
            engine=engine,
        )
        assert manager.run(timeout=self.timeout) is False
        first, second = manager.pipe_reports
        assert first.status is PipeStatus.COMPLETED and first.total_processed == 20
        assert second.status is PipeStatus.FAILED
        expected = "SIGKILL" if signal_name == "sigkill" else "SIGSEGV"
        assert expected in second.message
        assert len(read_jsonl(tmp_path / "ok.jsonl")) == 20
        assert not (tmp_path / "bad.jsonl").exists()

    def test_live_progress_then_shutdown_rolls_back(self, engine: BaseEngine, tmp_path: Path):
        import time

        source = self._trigger_csv(tmp_path / "in.csv", ["sleep0.05"] * 400)
        pipe = Pipe(CSVInputAdapter(source), JSONOutputAdapter(tmp_path / "out.jsonl"), Trigger)
        manager = PipeManager.parallelize_pipe(pipe, workers=2, engine=engine)
        manager.start()
        deadline = time.monotonic() + self.timeout
        seen: list[Any] = []
        while time.monotonic() < deadline:
            report = manager.report
            if report.total_processed > 0:
                seen.append(report)
                break
            time.sleep(0.1)
        assert seen, "no progress was reported while running"
        assert manager.is_running
        manager.shutdown(timeout=10)
        assert not manager.is_running
        assert manager.succeeded is False
        assert all(r.is_finished for r in manager.pipe_reports)
        assert any(r.status is PipeStatus.CANCELLED for r in manager.pipe_reports)
        assert not (tmp_path / "out.jsonl").exists()

    def test_invalid_records_never_pass_as_valid_without_error_output(
        self, engine: BaseEngine, tmp_path: Path
    ):
        source = write_csv(tmp_path / "in.csv", users(30, bad_every=3))
        pipe = Pipe(CSVInputAdapter(source), JSONOutputAdapter(tmp_path / "out.jsonl"), User)
        manager = PipeManager.parallelize_pipe(pipe, workers=2, engine=engine)
        assert manager.run(timeout=self.timeout)
        rows = read_jsonl(tmp_path / "out.jsonl")
        assert all(isinstance(r["id"], int) for r in rows)
        assert len(rows) == manager.report.success_count == 20
        assert manager.report.error_count == 10
        assert json.dumps(rows)  # all plain JSON

    # -- an Iceberg table as the output: one atomic snapshot per run -------------------------

    def test_iceberg_table_gets_the_records_and_order_of_one_pipe_once(
        self, engine: BaseEngine, tmp_path: Path
    ):
        from zoopipe_hpc import IcebergOutputAdapter

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
        assert manager.run(timeout=self.timeout) is True
        table = IcebergOutputAdapter("conformance.users", warehouse=warehouse).load_table()
        assert len(table.snapshots()) == 1
        snapshot = table.current_snapshot()
        assert snapshot is not None and snapshot.summary is not None
        assert snapshot.summary.additional_properties["zoopipe.run-id"] == "conf"
        # One snapshot, its files in shard order: a scan gives the single pipe's rows in order.
        assert (
            table.scan().to_arrow().to_pylist()
            == pq.read_table(tmp_path / "single.parquet").to_pylist()
        )
        assert len(read_jsonl(tmp_path / "err.jsonl")) == manager.report.error_count == 31

    def test_iceberg_failing_shard_leaves_the_table_as_it_was(
        self, engine: BaseEngine, tmp_path: Path
    ):
        from zoopipe_hpc import IcebergOutputAdapter

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
        assert manager.run(timeout=self.timeout) is False
        assert manager.error is not None and "shard 1" in str(manager.error)
        assert adapter.load_table().metadata_location == before
        assert len(list(adapter.data_dir.glob("*.parquet"))) == 1
        assert not list((adapter.location / ".zoopipe-staging").glob("data.run-*"))
