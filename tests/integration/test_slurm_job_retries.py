"""A detached job's retries on the real cluster, counted by Slurm's accounting (sacct).

A shard fails on purpose while ``status``, ``list`` and two more ``watch`` processes look at the
job over and over; sacct must show the shard submitted at most ``1 + max_retries`` times, all
of them by the job itself (the first array and the recover jobs' retries).
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from _support import read_jsonl
from test_cli_jobs import MODELS, cli, job_dir, make_job, manifest

pytestmark = [pytest.mark.slurm, pytest.mark.on_shared_fs, pytest.mark.usefixtures("slurm_cluster")]

MAX_RETRIES = 2
FINAL = {"committed", "rolled_back", "cancelled"}


def sacct_rows(start: str, name: str) -> list[tuple[str, str, str]]:
    """(JobID, JobName, Partition) of this test's jobs since ``start``; each array task once."""
    out = subprocess.run(
        ["sacct", "-X", "-n", "-P", "--format=JobID,JobName,Partition", "-S", start],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = [tuple(line.split("|")) for line in out.splitlines() if line.strip()]
    return [(j, n, p) for j, n, p in rows if n.startswith(name)]


def tasks_of(rows: list[tuple[str, str, str]], job_name: str) -> list[str]:
    """Every array task (``<array>_<task>``, pending ranges expanded) of the array job name."""
    tasks: list[str] = []
    for job, name, _ in rows:
        if name != job_name:
            continue
        array, _, spec = job.partition("_")
        for part in spec.strip("[]").split("%")[0].split(","):
            low, _, high = part.partition("-")
            tasks.extend(f"{array}_{t}" for t in range(int(low), int(high or low) + 1))
    return tasks


def detached_job(tmp_path: Path, models: str) -> tuple[Path, str]:
    """A 3-shard job whose shard 2 holds the row that fails; returns it and its unique name."""
    name = f"rt{uuid.uuid4().hex[:8]}"
    names = [f"n{i}" for i in range(30)]
    names[25] = "needs-table"  # shard 2 of 3
    extra = (
        f'  partition: debug\n  time: "00:05:00"\n  mem: 300M\n  max_retries: {MAX_RETRIES}\n'
        f"  job_name: {name}-array\n  finish_mem: 500M"
    )
    job = make_job(tmp_path, names, kind="slurm", extra=extra)
    job.write_text(job.read_text().replace("name: t\n", f"name: {name}\n", 1))
    (tmp_path / "models.py").write_text(models)
    (tmp_path / "broken").write_text("")
    return job, name


def run_and_look(tmp_path: Path, job: Path, limit: float = 150) -> tuple[Path, int, list[int]]:
    """``run --detach``, then status/list/watch until the job is over. Returns the job
    directory, how many looks were taken, and the exit codes of the two extra watchers."""
    done = cli("run", job, "--detach", cwd=tmp_path, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    path = job_dir(tmp_path)
    watch = [sys.executable, "-m", "zoopipe_hpc.cli", "watch", str(path), "--quiet"]
    watchers = [
        subprocess.Popen(watch, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    looks = 0
    deadline = time.monotonic() + limit
    try:
        while manifest(path)["state"] not in FINAL:
            assert time.monotonic() < deadline, f"job still {manifest(path)['state']}"
            for command in (("status", path), ("status", path, "--json"), ("list",)):
                looked = cli(*command, cwd=tmp_path, timeout=60)
                assert looked.returncode == 0, looked.stdout + looked.stderr
            looks += 1
        codes = [w.wait(60) for w in watchers]
    finally:
        for w in watchers:
            w.kill()
            w.communicate()
    return path, looks, codes


def test_status_list_and_watch_never_submit_and_retries_stop_at_the_limit(
    tmp_path: Path,
) -> None:
    start = time.strftime("%Y-%m-%dT%H:%M:%S")
    job, name = detached_job(tmp_path, MODELS)  # shard 2 fails every time
    (tmp_path / "out" / "rows.jsonl").write_text('{"previous": true}\n')
    path, looks, codes = run_and_look(tmp_path, job)
    final = manifest(path)
    assert final["state"] == "rolled_back", final["message"]
    assert "no retries left" in final["message"] and "lookup table is missing" in final["message"]
    assert looks >= 2 and codes == [1, 1]  # rolled back: exit 1 for every watcher
    time.sleep(5)  # nothing may follow a rolled-back job either
    rows = sacct_rows(start, name)
    tasks = tasks_of(rows, f"{name}-array")
    arrays = sorted({t.split("_")[0] for t in tasks})
    # One array of 3 tasks, then one 1-task array per retry: shard 2 ran 1 + max_retries times.
    assert len(arrays) == 1 + MAX_RETRIES, rows
    assert len(tasks) == 3 + MAX_RETRIES, rows
    assert arrays == sorted(final["arrays"])
    shard_2 = final["shards"][2]["submissions"]
    assert len(shard_2) == 1 + MAX_RETRIES and {s.split("_")[0] for s in shard_2} == set(arrays)
    assert [len(s["submissions"]) for s in final["shards"]] == [1, 1, 1 + MAX_RETRIES]
    # Each round had its own commit and recover job, on the job's partition.
    recovers = [r for r in rows if r[1] == f"{name}-recover"]
    assert len(recovers) == 1 + MAX_RETRIES and {r[2] for r in recovers} == {"debug"}
    assert final["submitting"] == {}
    assert (tmp_path / "out" / "rows.jsonl").read_text() == '{"previous": true}\n'
    print(f"sacct: {len(arrays)} arrays, {len(tasks)} tasks, {looks} rounds of looks")


FAILS_ONCE = MODELS.replace(
    'raise RuntimeError("the lookup table is missing',
    'BROKEN.unlink()\n            raise RuntimeError("the lookup table is missing',
)


def test_a_shard_that_fails_once_is_retried_once_and_committed(tmp_path: Path) -> None:
    start = time.strftime("%Y-%m-%dT%H:%M:%S")
    job, name = detached_job(tmp_path, FAILS_ONCE)
    path, looks, codes = run_and_look(tmp_path, job)
    final = manifest(path)
    assert final["state"] == "committed", final["message"]
    assert codes == [0, 0]
    assert [r["id"] for r in read_jsonl(tmp_path / "out" / "rows.jsonl")] == list(range(30))
    time.sleep(3)
    tasks = tasks_of(sacct_rows(start, name), f"{name}-array")
    assert len(tasks) == 3 + 1, tasks
    assert [len(s["submissions"]) for s in final["shards"]] == [1, 1, 2]


def test_a_packed_detached_job_is_retried_by_its_recover_job_and_committed(
    tmp_path: Path,
) -> None:
    start = time.strftime("%Y-%m-%dT%H:%M:%S")
    job, name = detached_job(tmp_path, FAILS_ONCE)  # shard 2 fails the first time
    job.write_text(job.read_text().rstrip("\n") + "\n  max_tasks: 2\n  workers_per_task: 2\n")
    path, _, codes = run_and_look(tmp_path, job)
    final = manifest(path)
    assert final["state"] == "committed", final["message"]
    assert codes == [0, 0]
    assert [r["id"] for r in read_jsonl(tmp_path / "out" / "rows.jsonl")] == list(range(30))
    # The first array had 2 tasks for 3 shards; the task that ran shard 2 failed, so the
    # recover job (a Slurm job itself) resubmitted shard 2 alone, packed again: 1 task.
    first, retry = final["arrays"]
    assert [s["submissions"] for s in final["shards"]] == [
        [f"{first}_*"],
        [f"{first}_*"],
        [f"{first}_*", f"{retry}_*"],
    ]
    time.sleep(3)
    rows = sacct_rows(start, name)
    tasks = tasks_of(rows, f"{name}-array")
    assert sorted(tasks) == sorted([f"{first}_0", f"{first}_1", f"{retry}_0"]), rows
