"""One stop-signal policy for every worker entry point, the Slurm task's included.

Each stop signal becomes a ``WorkerTerminated`` whose reason names the signal (and, on Slurm,
why Slurm sends it); the first one wins; the pipe records it as CANCELLED.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from zoopipe_hpc.engines._worker import STOP_SIGNALS, install_stop_handlers
from zoopipe_hpc.engines.slurm.task import SLURM_STOP_REASONS
from zoopipe_hpc.errors import ConfigurationError
from zoopipe_hpc.progress import read_progress
from zoopipe_hpc.progress.record import ProgressState

_SUPPORT = Path(__file__).resolve().parents[1]


def test_reasons_must_name_a_stop_signal() -> None:
    # Compared with the handlers before the calls, not with a fixed value: a pytest-xdist
    # worker (execnet) may already ignore some of these signals.
    before = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    with pytest.raises(ConfigurationError, match="must name it"):
        install_stop_handlers({signal.SIGTERM: "stopped"})
    with pytest.raises(ConfigurationError, match="not one of the stop signals"):
        install_stop_handlers({signal.SIGHUP: "SIGHUP"})
    # Nothing was installed by the refused calls.
    assert {s: signal.getsignal(s) for s in STOP_SIGNALS} == before


def test_slurm_reasons_name_their_signal_and_why_slurm_sends_it() -> None:
    assert set(SLURM_STOP_REASONS) <= set(STOP_SIGNALS)
    assert "SIGUSR2" in SLURM_STOP_REASONS[signal.SIGUSR2]
    assert "time limit" in SLURM_STOP_REASONS[signal.SIGUSR2]
    assert "scancel" in SLURM_STOP_REASONS[signal.SIGTERM]


_HANDLER = textwrap.dedent(
    """
    import os, signal, sys
    from zoopipe_hpc.engines._worker import WorkerTerminated, install_stop_handlers
    from zoopipe_hpc.engines.slurm.task import SLURM_STOP_REASONS

    install_stop_handlers(SLURM_STOP_REASONS)
    try:
        os.kill(os.getpid(), getattr(signal, sys.argv[1]))
        raise SystemExit("the stop signal did not stop")
    except WorkerTerminated as exc:
        print(exc)
        print(signal.Signals(exc.signum).name)
    for later in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR2):
        os.kill(os.getpid(), later)
    print("later signals ignored")
    """
)


@pytest.mark.parametrize("name", ["SIGTERM", "SIGINT", "SIGUSR2"])
def test_on_slurm_each_stop_signal_says_why_and_the_first_one_wins(name: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _HANDLER, name], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    reason, signum, last = done.stdout.splitlines()[:3]
    expected = SLURM_STOP_REASONS.get(getattr(signal, name), f"stopped by {name}")
    assert reason == expected
    assert name in reason
    assert (signum, last) == (name, "later signals ignored")


_TASK = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    sys.path.insert(0, sys.argv[2])
    from _support import Trigger, write_csv
    from zoopipe_hpc import CSVInputAdapter, JSONOutputAdapter, Pipe
    from zoopipe_hpc.engines.slurm._payload import PayloadStore
    from zoopipe_hpc.engines.slurm.task import run_shard, shard_payload_name

    folder = Path(sys.argv[1])
    rows = [{"id": i, "name": "sleep0.01"} for i in range(3000)]
    source = write_csv(folder / "in.csv", rows)
    pipe = Pipe(CSVInputAdapter(source), JSONOutputAdapter(folder / "out.jsonl"), Trigger)
    (folder / "progress").mkdir(mode=0o700)
    store = PayloadStore(folder)
    store.create()
    store.dump(shard_payload_name(0), pipe)
    print("ready", flush=True)
    try:
        run_shard(str(folder), 0)
    except BaseException as exc:
        print(type(exc).__name__, exc, flush=True)
    """
)


def test_the_slurm_task_records_its_time_limit_warning_as_a_cancellation(tmp_path: Path) -> None:
    folder = tmp_path / "job"
    folder.mkdir(mode=0o700)
    env = {
        **os.environ,
        "SLURM_ARRAY_JOB_ID": "77",
        "SLURM_ARRAY_TASK_ID": "0",
        "SLURM_RESTART_COUNT": "1",
        "SLURMD_NODENAME": "n9",
    }
    record = folder / "progress" / "progress-00000.77-0-r1.rec"
    task = subprocess.Popen(
        [sys.executable, "-c", _TASK, str(folder), str(_SUPPORT)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        start = time.monotonic()
        while time.monotonic() - start < 60:
            snapshot = read_progress(record, expected_attempt_id="77-0-r1")
            if snapshot is not None and snapshot.total_processed > 0:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the task never made progress")
        task.send_signal(signal.SIGUSR2)
        task.send_signal(signal.SIGTERM)  # a second stop signal changes nothing
        out, err = task.communicate(timeout=60)
    finally:
        if task.poll() is None:
            task.kill()
            task.wait()
    reason = SLURM_STOP_REASONS[signal.SIGUSR2]
    assert f"WorkerTerminated {reason}" in out, out + err
    snapshot = read_progress(record, expected_attempt_id="77-0-r1")
    assert snapshot is not None
    assert snapshot.state is ProgressState.CANCELLED
    assert snapshot.message == reason
    assert snapshot.host == "n9"
    assert snapshot.total_processed < 3000
    assert not (folder / "out.jsonl").exists()


def test_a_packed_task_notes_a_stop_even_where_exceptions_are_swallowed() -> None:
    """The packed task's loop notes its stop signal instead of raising it: a USR2 landing in
    code that swallows exceptions (the logging module's at-fork hook lost one so, and the task
    ran on into its time limit) still stops the loop, and wakes its wait."""
    from multiprocessing.connection import wait

    from zoopipe_hpc.engines.slurm._packed import _StopRequest

    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR2)}
    stop = _StopRequest(SLURM_STOP_REASONS)
    try:
        try:
            os.kill(os.getpid(), signal.SIGUSR2)
            time.sleep(0.05)  # the handler runs here, between bytecodes
        except BaseException:  # what swallowing code does; the note must not depend on it
            pass
        assert stop.signum == signal.SIGUSR2
        assert stop.reason == SLURM_STOP_REASONS[signal.SIGUSR2]
        assert wait([stop.fileno()], timeout=1) == [stop.fileno()]
        stop.drain()
        os.kill(os.getpid(), signal.SIGTERM)  # a later signal keeps the first reason
        time.sleep(0.05)
        assert stop.signum == signal.SIGUSR2
    finally:
        stop.close()
        for signum, handler in saved.items():
            signal.signal(signum, handler)
