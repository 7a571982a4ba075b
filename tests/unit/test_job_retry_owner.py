"""Who submits a durable Slurm job's shards, and how often: no cluster, Slurm's tools faked.

Read-only engines and commands never run sbatch or scancel; the manifest is the ledger that
counts every submission of the job (``1 + max_retries`` per shard and round, whichever process
submits) and names the one process allowed to retry; payloads are written once.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from zoopipe_hpc.engines.slurm import SlurmEngine, _cli, _watch
from zoopipe_hpc.engines.slurm._payload import PayloadStore
from zoopipe_hpc.errors import StateError
from zoopipe_hpc.jobs import runner
from zoopipe_hpc.jobs.config import load_job_file
from zoopipe_hpc.jobs.manifest import JobDirectory, JobState, Manifest, ShardRecord

MODELS = """
from pydantic import BaseModel


class Row(BaseModel):
    id: int
    name: str
"""

JOB = """
name: owners
input:  {format: csv, path: data/in.csv}
output: {format: jsonl, path: out/rows.jsonl}
schema: "models:Row"
workers: 3
engine:
  kind: slurm
  partition: debug
  account: acct42
  qos: normal
  constraint: fast
  gres: "gpu:1"
  mem: 300M
  time: "00:05:00"
  max_retries: 2
  setup: ["echo site-setup"]
"""


class FakeSlurm:
    """Stands in for subprocess.run in SlurmCLI: answers by tool, records every command."""

    def __init__(self, sacct: str = "") -> None:
        self.commands: list[list[str]] = []
        self.sacct = sacct
        self.next_id = 100
        #: ``scontrol show config``'s answer: the site's limits.
        self.config = "MaxArraySize            = 1001\n"

    def __call__(self, args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        self.commands.append(list(args))
        out = ""
        if args[0] == "sbatch":
            self.next_id += 1
            out = f"{self.next_id}\n"
        elif args[0] == "scontrol":
            out = self.config
        elif args[0] == "sacct" and "-j" in args and args[args.index("-j") + 1] != "1":
            out = self.sacct
        return subprocess.CompletedProcess(args, 0, out, "")

    def ran(self, tool: str) -> list[list[str]]:
        return [c for c in self.commands if c[0] == tool]


@pytest.fixture
def slurm(monkeypatch: pytest.MonkeyPatch) -> Callable[..., FakeSlurm]:
    def install(sacct: str = "") -> FakeSlurm:
        fake = FakeSlurm(sacct)
        monkeypatch.setattr(_cli.subprocess, "run", fake)
        monkeypatch.setattr(_cli.shutil, "which", lambda tool: f"/usr/bin/{tool}")
        monkeypatch.setitem(sys.modules, "pyslurm", None)  # state from sacct
        return fake

    return install


@pytest.fixture
def job_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    (tmp_path / "data").mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "models.py").write_text(MODELS)
    lines = ["id,name"] + [f"{i},n{i}" for i in range(30)]
    (tmp_path / "data" / "in.csv").write_text("\n".join(lines) + "\n")
    job = tmp_path / "job.yaml"
    job.write_text(JOB)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield job


# -- the engine -----------------------------------------------------------------------------


def test_a_read_only_engine_never_retries_a_failed_shard(
    tmp_path: Path, slurm: Callable[..., FakeSlurm], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = slurm(sacct="7_0|FAILED|1:0|n1|0:0\n")
    folder = tmp_path / "job"
    (folder / "progress").mkdir(parents=True)
    engine = SlurmEngine(folder=tmp_path, max_retries=2)
    engine.attach(folder, [["7_0"]], read_only=True)
    [report] = engine.pipe_reports
    assert report.status.value == "failed" and "7_0" in report.message
    with pytest.raises(StateError, match="submits nothing"):
        engine.resubmit([0])
    engine.shutdown()
    assert fake.ran("sacct") and not fake.ran("sbatch") and not fake.ran("scancel")

    # The same failure seen by an engine that may retry: it resubmits (so the test above
    # would have caught a retry), once the failed task's record had its time to arrive.
    monkeypatch.setattr(_watch, "FAILED_RECORD_GRACE", 0.0)
    driving = SlurmEngine(folder=tmp_path, max_retries=2)
    driving.attach(folder, [["7_0"]])
    [again] = driving.pipe_reports
    assert not again.is_finished and len(fake.ran("sbatch")) == 1


def test_a_failed_task_s_record_that_arrives_after_sacct_still_says_why(
    tmp_path: Path, slurm: Callable[..., FakeSlurm], monkeypatch: pytest.MonkeyPatch
) -> None:
    """sacct may say FAILED before the task's own record of why (a payload refused) reaches
    this node through the shared filesystem: the shard is judged from the record if it comes
    within FAILED_RECORD_GRACE, from Slurm's answer alone after it."""
    from zoopipe_hpc.engines._attempts import slurm_attempt_id
    from zoopipe_hpc.engines._worker import progress_path
    from zoopipe_hpc.progress import ProgressWriter

    monkeypatch.setattr(_watch, "FAILED_RECORD_GRACE", 0.5)
    slurm(sacct="7_0|FAILED|1:0|n1|0:0\n8_0|FAILED|1:0|n1|0:0\n")
    folder = tmp_path / "job"
    (folder / "progress").mkdir(parents=True)
    engine = SlurmEngine(folder=tmp_path, max_retries=0)
    engine.attach(folder, [["7_0"], ["8_0"]])
    assert not any(r.is_finished for r in engine.pipe_reports)  # the record may be on its way
    attempt = slurm_attempt_id("7", 0)  # shard 0's record arrives, shard 1's never does
    with ProgressWriter(progress_path(folder / "progress", 0, attempt), attempt) as writer:
        writer.fail(
            "PayloadRefused: refusing to load shard-00000.pkl: its signature does not match"
        )
    time.sleep(0.6)
    first, second = engine.pipe_reports
    assert first.status.value == "failed", first
    assert "refusing to load" in first.message and "7_0" in first.message, first.message
    assert second.status.value == "failed" and "8_0" in second.message, second
    assert "refusing" not in second.message
    engine.shutdown()


# -- the ledger -------------------------------------------------------------------------------


def make_job_dir(tmp_path: Path, job_file: Path, **fields: Any) -> runner.JobHandle:
    config = load_job_file(job_file)
    path = tmp_path / "zoopipe-jobs" / "owners-x"
    JobDirectory(path).create(
        Manifest(
            job_id=path.name,
            name="owners",
            engine="slurm",
            run_id="x",
            config=config.resolved(),
            shards=[ShardRecord(i, f"part {i}", []) for i in range(3)],
            **fields,
        )
    )
    (path / "progress").mkdir()
    return runner.JobHandle(path)


def test_the_manifest_counts_every_submission_of_the_job(
    tmp_path: Path, job_file: Path, slurm: Callable[..., FakeSlurm]
) -> None:
    fake = slurm()
    handle = make_job_dir(tmp_path, job_file, retry_owner=runner._this_process())
    ledger = runner._JobLedger(handle, max_retries=2)
    token, allowed = ledger.reserve([0, 1, 2], "first")
    assert allowed == [0, 1, 2] and handle.manifest().submitting == {token: [0, 1, 2]}
    assert handle.manifest().submissions_used(1) == 1  # announced counts before sbatch ran
    ledger.record(token, "11", [0, 1, 2])
    assert ledger.reserve([0], "first")[1] == []  # never twice the first time
    for array in ("12", "13"):  # two automatic retries of shard 1: the limit
        token, allowed = ledger.reserve([1], "retry")
        assert allowed == [1]
        ledger.record(token, array, [1])
    assert ledger.reserve([1], "retry")[1] == []
    manifest = handle.manifest()
    assert manifest.shards[1].submissions == ["11_1", "12_0", "13_0"]
    assert manifest.submitting == {} and manifest.state is JobState.RUNNING

    # A retry by another process (here: a recover job that is not the owner) is refused.
    def other_owner(m: Manifest) -> None:
        m.retry_owner = {"kind": "detached", "token": "not-ours", "job": "99"}

    handle.directory.update(other_owner)
    assert ledger.reserve([0], "retry")[1] == []
    # A `zoopipe-hpc retry` starts a new round: 1 + max_retries submissions again.
    token, allowed = ledger.reserve([1], "resubmit")
    assert allowed == [1] and handle.manifest().shards[1].round_start == 3
    ledger.release(token)  # sbatch refused it
    assert handle.manifest().submitting == {}
    assert not fake.ran("sbatch")  # the ledger itself never submits


def test_nothing_is_submitted_once_the_job_is_over(
    tmp_path: Path, job_file: Path, slurm: Callable[..., FakeSlurm]
) -> None:
    fake = slurm()
    handle = make_job_dir(tmp_path, job_file, retry_owner=runner._this_process())
    ledger = runner._JobLedger(handle, max_retries=2)
    token, _ = ledger.reserve([2], "first")

    def rolled_back(m: Manifest) -> None:
        m.state = JobState.ROLLED_BACK

    handle.directory.update(rolled_back)
    for kind in ("retry", "resubmit", "first"):
        assert ledger.reserve([0], kind)[1] == []
    # An sbatch that was under way when the job ended: its array is cancelled at once.
    ledger.record(token, "21", [2])
    assert fake.ran("scancel") == [["scancel", "21"]]
    assert handle.manifest().shards[2].state == "cancelled"


def test_status_of_a_failed_shard_with_retries_left_submits_nothing(
    tmp_path: Path, job_file: Path, slurm: Callable[..., FakeSlurm]
) -> None:
    fake = slurm(sacct="31_0|COMPLETED|0:0|n1|0:0\n31_1|FAILED|1:0|n2|0:0\n31_2|RUNNING|0:0|n3|\n")
    handle = make_job_dir(tmp_path, job_file, retry_owner={})

    def submitted(m: Manifest) -> None:
        m.arrays = ["31"]
        m.state = JobState.RUNNING
        for shard in m.shards:
            shard.submissions = [f"31_{shard.index}"]

    handle.directory.update(submitted)
    watcher = runner.open_job(handle.path)
    for _ in range(3):
        rows = watcher.shard_status()
    assert rows[1].state == "failed" and rows[1].attempts == 1
    assert runner.list_jobs(handle.path.parent)[0].state == "running"
    assert not fake.ran("sbatch") and not fake.ran("scancel"), fake.commands
    assert handle.manifest().shards[1].submissions == ["31_1"]


# -- submitting ------------------------------------------------------------------------------


def test_payloads_are_written_once_and_follow_ups_carry_the_site_directives(
    job_file: Path, slurm: Callable[..., FakeSlurm], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = slurm()
    dumped: list[str] = []
    write = PayloadStore.write

    def counting(self: PayloadStore, name: str, body: bytes) -> Path:
        dumped.append(name)
        return write(self, name, body)

    monkeypatch.setattr(PayloadStore, "write", counting)
    handle = runner.submit(load_job_file(job_file), detach=True)
    assert dumped == ["shard-00000", "shard-00001", "shard-00002"]
    manifest = handle.manifest()
    assert [s.submissions for s in manifest.shards] == [["101_0"], ["101_1"], ["101_2"]]
    assert manifest.finish_jobs == {"commit": "102", "recover": "103"}
    owner = manifest.retry_owner
    assert owner["kind"] == "detached" and owner["job"] == "103" and owner["token"]
    assert manifest.submitting == {}

    array, commit, recover = (Path(c[-1]) for c in fake.ran("sbatch"))
    scripts = {"commit": commit.read_text(), "recover": recover.read_text()}
    assert "#SBATCH --array=0-2%3" in (handle.path / "logs" / "101_submission.sh").read_text()
    for step, script in scripts.items():
        assert "--array" not in script and "srun" not in script
        for line in (
            "#SBATCH --partition=debug",
            "#SBATCH --account=acct42",
            "#SBATCH --qos=normal",
            "#SBATCH --constraint=fast",
            "#SBATCH --time=30",
            "#SBATCH --mem=1G",
            "#SBATCH --cpus-per-task=1",
            f"#SBATCH --job-name=owners-{step}",
            "#SBATCH --kill-on-invalid-dep=yes",
            f"#SBATCH --output={handle.path}/logs/{step}-%j.out",
            "echo site-setup",
            f"-m zoopipe_hpc.cli _{step} {handle.path}",
        ):
            assert line in script, (step, line, script)
        assert "gres" not in script
    assert "#SBATCH --dependency=afterok:101" in scripts["commit"]
    assert "#SBATCH --dependency=afternotok:101" in scripts["recover"]
    assert f"ZOOPIPE_HPC_RECOVER_TOKEN={owner['token']}" in scripts["recover"]
    assert "ZOOPIPE_HPC_RECOVER_TOKEN" not in scripts["commit"]

    # The recover job with that token owns the retries; without it, a process does not.
    assert not runner._is_this_process(owner)
    monkeypatch.setenv(runner.RECOVER_TOKEN, owner["token"])
    assert runner._is_this_process(owner)


def test_an_attached_run_owns_its_retries(job_file: Path, slurm: Callable[..., FakeSlurm]) -> None:
    slurm()
    handle = runner.submit(load_job_file(job_file))
    owner = handle.manifest().retry_owner
    assert owner["kind"] == "attached" and owner["pid"] == str(os.getpid())
    assert runner._is_this_process(owner) and not runner._nobody_drives(owner)
    # A second handle in this process must not wait for itself, nor drive the job twice.
    with pytest.raises(runner.JobError, match="this process already runs the job"):
        runner.open_job(handle.path).wait()
    gone = {**owner, "pid": "999999999"}
    assert runner._nobody_drives(gone) and runner._nobody_drives({})


def test_a_durable_job_past_the_sites_limits_is_packed_by_itself(
    job_file: Path, slurm: Callable[..., FakeSlurm]
) -> None:
    fake = slurm()
    fake.config = "MaxArraySize = 2\nMaxJobCount = 10000\n"  # 3 shards do not fit one each
    handle = runner.submit(load_job_file(job_file), detach=True)
    manifest = handle.manifest()
    assert [s.submissions for s in manifest.shards] == [["101_*"]] * 3
    assert manifest.arrays == ["101"]
    script = (handle.path / "logs" / "101_submission.sh").read_text()
    assert "#SBATCH --array=0-1%2" in script and "--shards 0-2 --packed 1" in script
    _, commit, recover = (Path(c[-1]) for c in fake.ran("sbatch"))
    assert "#SBATCH --dependency=afterok:101" in commit.read_text()
    assert "#SBATCH --dependency=afternotok:101" in recover.read_text()
