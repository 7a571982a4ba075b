"""Slurm pieces that need no cluster: the CLI helper, state parsing, payload signing, params."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from zoopipe_hpc.engines.slurm import _cli
from zoopipe_hpc.engines.slurm._cli import SlurmCLI, SlurmCommandError
from zoopipe_hpc.engines.slurm._payload import PayloadRefused, PayloadStore
from zoopipe_hpc.engines.slurm._state import SacctSource, SqueueSource, TaskState, expand_job_ids
from zoopipe_hpc.engines.slurm.parameters import parse_slurm_time


class FakeRun:
    """Stands in for subprocess.run: answers from a script of (returncode, stdout, stderr)."""

    def __init__(self, answers: list[tuple[int, str, str]]) -> None:
        self.answers = list(answers)
        self.commands: list[list[str]] = []

    def __call__(self, args, **kwargs):  # type: ignore[no-untyped-def]
        self.commands.append(list(args))
        code, out, err = self.answers.pop(0)
        return subprocess.CompletedProcess(args, code, out, err)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    def install(answers: list[tuple[int, str, str]]) -> FakeRun:
        runner = FakeRun(answers)
        monkeypatch.setattr(_cli.subprocess, "run", runner)
        monkeypatch.setattr(_cli.shutil, "which", lambda tool: f"/usr/bin/{tool}")
        monkeypatch.setattr(_cli.time, "sleep", lambda s: None)
        return runner

    return install


def test_transient_errors_are_retried_and_counted(fake, caplog):  # type: ignore[no-untyped-def]
    runner = fake(
        [
            (1, "", "sacct: error: Socket timed out on send/recv operation"),
            (1, "", "slurm_load_jobs error: Unable to contact slurm controller"),
            (0, "12_0|COMPLETED|0:0|n1|0:0\n", ""),
        ]
    )
    cli = SlurmCLI()
    states = SacctSource(cli).query(["12"])
    assert states["12_0"].completed
    assert cli.calls["sacct"] == 3 and len(runner.commands) == 3
    assert "transient" in caplog.text


def test_a_real_failure_is_raised_at_once_with_the_command(fake):  # type: ignore[no-untyped-def]
    fake([(1, "", "sbatch: error: invalid partition specified: nope")])
    cli = SlurmCLI()
    with pytest.raises(SlurmCommandError, match="invalid partition") as info:
        cli.run(["sbatch", "x.sh"])
    assert info.value.command == ["sbatch", "x.sh"] and cli.calls["sbatch"] == 1


def test_giving_up_after_the_retries(fake):  # type: ignore[no-untyped-def]
    fake([(1, "", "Socket timed out")] * 3)
    with pytest.raises(SlurmCommandError, match="Socket timed out"):
        SlurmCLI(retries=2).run(["squeue"])


def test_only_slurm_commands_go_through_the_helper():
    with pytest.raises(ValueError):
        SlurmCLI().run(["rm", "-rf", "/"])


def test_sacct_rows_pending_ranges_and_signals(fake):  # type: ignore[no-untyped-def]
    fake(
        [
            (
                0,
                "7_[3-5%2]|PENDING|0:0|None assigned|0:0\n"
                "7_0|FAILED|9:0|n1|0:9\n"
                "7_1|CANCELLED by 0|0:15|n2|0:0\n"
                "7_2|OUT_OF_MEMORY|0:125|n3|0:0\n",
                "",
            )
        ]
    )
    states = SacctSource(SlurmCLI()).query(["7"])
    assert sorted(states) == ["7_0", "7_1", "7_2", "7_3", "7_4", "7_5"]
    assert states["7_4"].active
    assert "killed by SIGKILL" in states["7_0"].describe()
    assert states["7_1"].state == "CANCELLED"
    assert "ran out of memory" in states["7_2"].describe()


def test_srun_signal_is_read_before_slurmdbd_has_the_step(fake):  # type: ignore[no-untyped-def]
    """srun exits with the signal number of its killed task: 9:0 with DerivedExitCode 0:0 (the
    step not yet recorded) is SIGKILL; the task program's own exit codes stay exit codes."""
    fake([(0, "7_0|FAILED|9:0|n1|0:0\n7_1|FAILED|1:0|n1|0:0\n7_2|FAILED|2:0|n1|\n", "")])
    states = SacctSource(SlurmCLI()).query(["7"])
    assert "killed by SIGKILL" in states["7_0"].describe()
    assert states["7_1"].describe().endswith("(FAILED, exit code 1)")
    assert states["7_2"].describe().endswith("(FAILED, exit code 2)")


def test_squeue_asks_for_states_only_where_slurm_has_it(fake):  # type: ignore[no-untyped-def]
    runner = fake([(0, "9_0|RUNNING\n9_[1-2]|PENDING\n", ""), (0, "9_0|RUNNING|n1\n", "")])
    states = SqueueSource(SlurmCLI(), (24, 11)).query(["9"])
    assert sorted(states) == ["9_0", "9_1", "9_2"] and states["9_0"].node == ""
    assert "--only-job-state" in runner.commands[0]
    SqueueSource(SlurmCLI(), (22, 5)).query(["9"])
    assert "--only-job-state" not in runner.commands[1]


def test_squeue_fallback_reads_the_queue(fake):  # type: ignore[no-untyped-def]
    fake([(0, "8_0|RUNNING|n1\n8_1|PENDING|\n", "")])
    states = SqueueSource(SlurmCLI()).query(["8"])
    assert states["8_0"].state == "RUNNING" and states["8_1"].active


def test_expand_job_ids():
    assert expand_job_ids("5_[0-2,7]") == ["5_0", "5_1", "5_2", "5_7"]
    assert expand_job_ids("5_3") == ["5_3"]
    assert TaskState("1_0", "TIMEOUT").describe().startswith("Slurm task 1_0 reached its time")


@pytest.mark.parametrize(
    ("text", "minutes"),
    [("30", 30), ("00:30:00", 30), ("1:30", 2), ("1-00:00:00", 1440), ("2-3", 3060), (5, 5)],
)
def test_slurm_time_formats(text, minutes):  # type: ignore[no-untyped-def]
    assert parse_slurm_time(text) == minutes


class Thing:
    def __init__(self, value: int) -> None:
        self.value = value


def test_payload_round_trip_and_tampering(tmp_path: Path):
    folder = tmp_path / "job"
    folder.mkdir(mode=0o700)
    store = PayloadStore(folder)
    store.create()
    store.dump("shard-00000", Thing(41))
    assert store.load("shard-00000").value == 41
    path = store.path("shard-00000")
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(PayloadRefused, match="signature does not match"):
        store.load("shard-00000")


@pytest.mark.parametrize("target", ["folder", "payload", "key"])
def test_payloads_in_shared_places_are_refused(tmp_path: Path, target: str):
    folder = tmp_path / "job"
    folder.mkdir(mode=0o700)
    store = PayloadStore(folder)
    store.create()
    store.dump("p", Thing(1))
    path = {"folder": folder, "payload": store.path("p"), "key": folder / ".payload-key"}[target]
    os.chmod(path, os.stat(path).st_mode | 0o020)
    with pytest.raises(PayloadRefused, match="writable by group"):
        store.load("p")


class FakeDbJob:
    def __init__(self, array_id, task, state, code=0, sig=0, derived=0, nodes="n1"):  # type: ignore[no-untyped-def]
        self.array_id, self.array_task_id, self.state = array_id, task, state
        self.exit_code, self.exit_code_signal, self.derived_exit_code_signal = code, sig, derived
        self.nodelist = nodes


def fake_pyslurm(version: str, jobs: list[FakeDbJob]):  # type: ignore[no-untyped-def]
    """A stand-in with pyslurm's documented db API (Jobs.load(JobFilter(ids=...)))."""
    import types

    loaded: list[list[int]] = []

    class JobFilter:
        def __init__(self, ids):  # type: ignore[no-untyped-def]
            self.ids = ids

    class Jobs:
        @staticmethod
        def load(db_filter):  # type: ignore[no-untyped-def]
            loaded.append(db_filter.ids)
            return jobs

    module = types.SimpleNamespace(
        version=lambda: version, db=types.SimpleNamespace(Jobs=Jobs, JobFilter=JobFilter)
    )
    return module, loaded


def test_pyslurm_is_used_only_when_it_matches_the_cluster(fake, monkeypatch, caplog):  # type: ignore[no-untyped-def]
    import logging
    import sys

    from zoopipe_hpc.engines.slurm._state import choose_state_source

    caplog.set_level(logging.INFO)
    module, loaded = fake_pyslurm(
        "22.5.1",
        [
            FakeDbJob(9, 0, "COMPLETED"),
            FakeDbJob(9, 1, "FAILED", 0, 0, 9),
            FakeDbJob(9, None, "PENDING"),
        ],
    )
    monkeypatch.setitem(sys.modules, "pyslurm", module)
    fake([(0, "slurm 22.05.8\n", "")])
    source = choose_state_source(SlurmCLI())
    assert source.name == "pyslurm" and "from pyslurm 22.5.1" in caplog.text
    states = source.query(["9"])
    assert loaded == [[9]]
    assert states["9_0"].completed and "killed by SIGKILL" in states["9_1"].describe()

    module, _ = fake_pyslurm("25.11.2", [])
    monkeypatch.setitem(sys.modules, "pyslurm", module)
    fake([(0, "slurm 22.05.8\n", ""), (0, "", "")])
    assert choose_state_source(SlurmCLI()).name == "sacct"
    assert "does not match the cluster's slurm 22.05.8" in caplog.text


def test_without_pyslurm_the_choice_is_logged(fake, monkeypatch, caplog):  # type: ignore[no-untyped-def]
    import logging
    import sys

    from zoopipe_hpc.engines.slurm._state import choose_state_source

    caplog.set_level(logging.INFO)
    monkeypatch.setitem(sys.modules, "pyslurm", None)  # import fails
    fake([(1, "", "sacct: error: Slurm accounting storage is disabled"), (0, "slurm 22.05.8", "")])
    assert choose_state_source(SlurmCLI()).name == "squeue"
    assert "pyslurm is not importable" in caplog.text
    assert "sacct is not usable" in caplog.text
