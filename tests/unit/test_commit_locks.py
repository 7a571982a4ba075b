"""The commit lock's error handling (fakes for the filelock failures GlusterFS showed; the real
thing across two clients is tests/integration/test_shared_fs.py)."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import pytest
from filelock import StrictSoftFileLock

from zoopipe_hpc.commit import _locks
from zoopipe_hpc.commit._locks import locked
from zoopipe_hpc.errors import CommitError


def _failing_acquire(failures: list[BaseException]) -> Any:
    real = StrictSoftFileLock.acquire

    def acquire(self: StrictSoftFileLock, *args: Any, **kwargs: Any) -> Any:
        if failures:
            raise failures.pop(0)
        return real(self, *args, **kwargs)

    return acquire


def _claim_withdrawn() -> ExceptionGroup:
    return ExceptionGroup(
        "strict record read cleanup failed",
        [FileNotFoundError(errno.ENOENT, "gone"), OSError(errno.ESTALE, "Stale file handle")],
    )


def test_a_transient_error_in_the_lock_protocol_is_tried_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    failures: list[BaseException] = [_claim_withdrawn(), OSError(errno.ESTALE, "stale")]
    monkeypatch.setattr(StrictSoftFileLock, "acquire", _failing_acquire(failures))
    target = tmp_path / "out.csv"
    with locked(target, timeout=5):
        (tmp_path / "inside").write_text("held")
    assert failures == []
    assert (tmp_path / "inside").read_text() == "held"


@pytest.mark.parametrize(
    "failure",
    [
        ExceptionGroup("strict publication cleanup failed", [PermissionError(errno.EACCES, "no")]),
        OSError(errno.EIO, "I/O error"),
    ],
)
def test_any_other_lock_failure_is_a_commit_error_naming_the_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: BaseException
) -> None:
    monkeypatch.setattr(StrictSoftFileLock, "acquire", _failing_acquire([failure]))
    target = tmp_path / "out.csv"
    with pytest.raises(CommitError) as caught:
        with locked(target, timeout=5):
            pytest.fail("the lock was taken")
    assert caught.value.path == str(target)
    assert str(target) in str(caught.value) and "lock file" in str(caught.value)


def test_transient_errors_that_never_stop_end_as_a_commit_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    failures = [_claim_withdrawn() for _ in range(_locks.LOCK_ATTEMPTS)]
    monkeypatch.setattr(StrictSoftFileLock, "acquire", _failing_acquire(failures))
    with pytest.raises(CommitError, match="strict record read cleanup failed"):
        with locked(tmp_path / "out.csv", timeout=5):
            pytest.fail("the lock was taken")
    assert failures == []


def test_an_unlock_failure_is_a_commit_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def release(self: StrictSoftFileLock, *args: Any, **kwargs: Any) -> None:
        raise ExceptionGroup("strict unlink directory cleanup failed", [OSError(errno.EIO, "eio")])

    target = tmp_path / "out.csv"
    with pytest.raises(CommitError, match="could not unlock") as caught:
        with locked(target, timeout=5):
            monkeypatch.setattr(StrictSoftFileLock, "release", release)
    assert caught.value.path == str(target)
