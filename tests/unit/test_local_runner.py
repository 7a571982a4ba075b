"""The run lock of a local job: one holder at a time, named in messages, and what happens on a
filesystem without locks."""

from __future__ import annotations

import errno
import logging
import os
import socket
from pathlib import Path

import pytest

from zoopipe_hpc.jobs import _local_runner
from zoopipe_hpc.jobs._local_runner import LocalRunner


def test_one_holder_at_a_time_named_by_pid_and_host(tmp_path: Path) -> None:
    first, second = LocalRunner(tmp_path), LocalRunner(tmp_path)
    assert first.owner() is None and second.owner() is None
    assert first.try_claim() and first.held
    assert first.try_claim()  # again: still ours
    assert not second.try_claim() and not second.held
    owner = second.owner()
    assert owner is not None and owner["pid"] == os.getpid()
    assert owner["host"] == socket.gethostname()
    assert second.describe(owner) == f"pid {os.getpid()} on host {socket.gethostname()}"
    assert LocalRunner.is_this_process(owner)
    first.release()
    assert not first.held and second.owner() is None
    assert not (tmp_path / _local_runner.OWNER_FILE).exists()
    assert second.try_claim()
    second.release()


def test_without_locks_the_run_goes_on_and_says_what_it_cannot_promise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def no_locks(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(_local_runner.fcntl, "flock", no_locks)
    runner = LocalRunner(tmp_path)
    with caplog.at_level(logging.WARNING, logger="zoopipe_hpc.jobs._local_runner"):
        assert runner.try_claim()
    assert "cannot lock" in caplog.text and "No locks available" in caplog.text
    assert LocalRunner(tmp_path).owner() is None
    runner.release()
    assert not runner.held


def test_other_lock_errors_are_not_hidden(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(fd: int, operation: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(_local_runner.fcntl, "flock", broken)
    with pytest.raises(OSError, match="Input/output error"):
        LocalRunner(tmp_path).try_claim()
