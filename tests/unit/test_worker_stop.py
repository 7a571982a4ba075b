"""A worker asked to stop records a cancellation, however many stop signals follow the first.

The kernel sends a child its parent-death signal again each time one of its dying parent's
threads hands it on, so a worker can get a burst of SIGTERMs; only the first may act.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from zoopipe_hpc.progress import read_progress
from zoopipe_hpc.progress.record import ProgressState

_WORKER = textwrap.dedent(
    """
    import os, signal, sys, threading, time
    from pathlib import Path
    sys.path.insert(0, sys.argv[3])
    from _support import Trigger, write_csv
    from zoopipe_hpc import CSVInputAdapter, JSONOutputAdapter, Pipe
    from zoopipe_hpc.engines._worker import install_stop_handlers, run_pipe

    folder, record = Path(sys.argv[1]), Path(sys.argv[2])
    rows = [{"id": i, "name": "sleep0.002"} for i in range(5000)]
    source = write_csv(folder / "in.csv", rows)
    pipe = Pipe(CSVInputAdapter(source), JSONOutputAdapter(folder / "out.jsonl"), Trigger)
    install_stop_handlers()

    def burst():
        while not record.exists() or record.stat().st_size == 0:
            time.sleep(0.01)
        time.sleep(0.3)
        for _ in range(2000):  # a burst of stop signals, as a dying parent's threads send
            os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=burst, daemon=True).start()
    try:
        run_pipe(pipe, 0, record, "a1b2c3")
    except BaseException as exc:
        print(type(exc).__name__, exc)
    """
)


def test_a_burst_of_stop_signals_is_recorded_as_one_cancellation(tmp_path: Path):
    record = tmp_path / "progress-00000.a1b2c3.rec"
    support = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, "-c", _WORKER, str(tmp_path), str(record), str(support)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "WorkerTerminated stopped by SIGTERM", done.stdout + done.stderr
    snapshot = read_progress(record, expected_attempt_id="a1b2c3")
    assert snapshot is not None
    assert snapshot.state is ProgressState.CANCELLED
    assert snapshot.message == "stopped by SIGTERM"
    assert snapshot.total_processed < 5000
    assert not (tmp_path / "out.jsonl").exists()


_HANDLER = textwrap.dedent(
    """
    import os, signal
    from zoopipe_hpc.engines._worker import WorkerTerminated, install_stop_handlers

    install_stop_handlers()
    try:
        os.kill(os.getpid(), signal.SIGUSR2)  # Slurm's warning before the end of the time limit
        raise SystemExit("the stop signal did not stop")
    except WorkerTerminated as exc:
        print(exc)
    # From the first stop signal on, the next ones cannot interrupt the recording of the stop.
    print(all(signal.getsignal(s) is signal.SIG_IGN for s in (signal.SIGTERM, signal.SIGINT)))
    os.kill(os.getpid(), signal.SIGTERM)
    os.kill(os.getpid(), signal.SIGINT)
    print("still here")
    """
)


def test_the_first_stop_signal_makes_the_next_ones_ignored() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _HANDLER], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:3] == ["stopped by SIGUSR2", "True", "still here"]
