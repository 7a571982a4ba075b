"""A look at a job from another process (``status``, a second ``watch``) reads the records of
the shards not settled only, and lists the progress folder at most once."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from zoopipe_hpc.engines._attempts import record_name
from zoopipe_hpc.jobs import listing
from zoopipe_hpc.jobs.config import load_job_file
from zoopipe_hpc.jobs.manifest import JobDirectory, JobState, Manifest, ShardRecord
from zoopipe_hpc.jobs.runner import open_job
from zoopipe_hpc.progress import ProgressWriter
from zoopipe_hpc.report import PipeStatus

SHARDS = 40
RUNNING = {3, 17, 38}

JOB = """
name: looks
input:  {format: csv, path: data/in.csv}
output: {format: jsonl, path: out/rows.jsonl}
schema: "models:Row"
workers: 40
engine: {kind: local}
"""


def write_record(folder: Path, name: str, attempt: str, finished: bool) -> None:
    with ProgressWriter(folder / name, attempt) as writer:
        writer.start()
        writer.update(5, 5, 0, force=True)
        if finished:
            writer.finish()


@pytest.fixture
def job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A local job of 40 shards, 37 finished and 3 running; ``local_names`` records are
    numbered as a local run numbers them (not by the shard), so they must be looked up."""
    (tmp_path / "data").mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "models.py").write_text(
        "from pydantic import BaseModel\n\n\nclass Row(BaseModel):\n    id: int\n"
    )
    (tmp_path / "data" / "in.csv").write_text("id\n" + "\n".join(map(str, range(80))) + "\n")
    (tmp_path / "job.yaml").write_text(JOB)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    config = load_job_file(tmp_path / "job.yaml")
    path = tmp_path / "zoopipe-jobs" / "looks-x"
    shards = [
        ShardRecord(i, f"part {i}", [f"local-{i}"], "running", f"a{i:04d}") for i in range(SHARDS)
    ]
    JobDirectory(path).create(
        Manifest(
            job_id=path.name,
            name="looks",
            engine="local",
            run_id="x",
            config=config.resolved(),
            shards=shards,
            state=JobState.RUNNING,
        )
    )
    progress = path / "progress"
    progress.mkdir()
    for i in range(SHARDS):
        # Half the records named by the shard, half by a local run's own numbering.
        name = record_name(i, f"a{i:04d}") if i % 2 else record_name(1000 + i, f"a{i:04d}")
        write_record(progress, name, f"a{i:04d}", finished=i not in RUNNING)
    return path


def counting(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    counts = {"records": 0, "listings": 0}
    read, listdir = listing.read_progress, os.listdir

    def read_counted(*args: Any, **kwargs: Any) -> Any:
        counts["records"] += 1
        return read(*args, **kwargs)

    def listdir_counted(path: Any = ".") -> list[str]:
        if Path(path).name == "progress":
            counts["listings"] += 1
        return listdir(path)

    monkeypatch.setattr(listing, "read_progress", read_counted)
    monkeypatch.setattr(listing.os, "listdir", listdir_counted)
    return counts


def test_a_look_reads_only_the_records_of_shards_not_settled(
    job: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    counts = counting(monkeypatch)
    reader = open_job(job)
    first = reader.shard_reports()
    assert [r.status for r in first].count(PipeStatus.COMPLETED) == SHARDS - len(RUNNING)
    assert {r.pipe_index for r in first if r.status is PipeStatus.RUNNING} == RUNNING
    assert [r.total_processed for r in first] == [5] * SHARDS
    assert counts == {"records": SHARDS, "listings": 1}, counts

    for _ in range(3):
        again = reader.shard_reports()
    assert counts["records"] == SHARDS + 3 * len(RUNNING), counts
    assert counts["listings"] == 1 + 3, counts  # one a look, for the records named locally
    assert [(r.status, r.attempt_id) for r in again] == [(r.status, r.attempt_id) for r in first]


def test_a_settled_shard_is_read_again_once_the_manifest_says_something_new(
    job: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reader = open_job(job)
    reader.shard_reports()
    # Shard 5 is run again (a retry): a new attempt, its record not written yet.
    JobDirectory(job).update(
        lambda m: m.shards.__setitem__(
            5, replace(m.shards[5], attempt_id="b0005", submissions=["local-5", "local-5b"])
        )
    )
    counts = counting(monkeypatch)
    reports = reader.shard_reports()
    assert reports[5].status is PipeStatus.RUNNING and reports[5].total_processed == 0
    assert reports[5].extra["attempts"] == "2"
    assert counts["records"] == len(RUNNING)  # shard 5 has no record yet: nothing to read
    write_record(job / "progress", record_name(5, "b0005"), "b0005", finished=True)
    assert reader.shard_reports()[5].status is PipeStatus.COMPLETED
    assert reader.shard_reports()[5].attempt_id == "b0005"


def test_a_look_reads_the_manifest_again_only_when_it_changed_or_has_aged(
    job: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from zoopipe_hpc.jobs import _reading

    reads: list[int] = []
    read = JobDirectory.read

    def counted(directory: JobDirectory) -> Manifest:
        reads.append(1)
        return read(directory)

    reader = open_job(job)
    monkeypatch.setattr(JobDirectory, "read", counted)
    first = reader.looked_manifest()
    assert reader.looked_manifest() is first and len(reads) == 1
    JobDirectory(job).update(lambda m: setattr(m, "message", "moved on"))
    assert len(reads) == 2  # the update's own read, under its lock
    assert reader.looked_manifest().message == "moved on" and len(reads) == 3
    assert reader.looked_manifest().message == "moved on" and len(reads) == 3
    assert reader.manifest() is not first and len(reads) == 4  # what decides reads fresh
    clock = [1e6]
    monkeypatch.setattr(_reading.time, "monotonic", lambda: clock[0])
    reader.looked_manifest()
    clock[0] += _reading.LOOK_REREAD_EVERY + 1  # an unchanged file that may hide a change
    reader.looked_manifest()
    assert len(reads) == 6
