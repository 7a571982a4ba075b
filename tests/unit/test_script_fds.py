"""scripts/_fds.sh: the cluster scripts start their daemons with no descriptor of ours above 2.

A daemon that inherits one holds it for as long as it runs: a caller's
``flock FILE scripts/test`` lock stayed held after the suite, by munged, MariaDB and glusterd.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

FDS = Path(__file__).resolve().parents[2] / "scripts" / "_fds.sh"


def _bash(script: str, tmp_path: Path) -> str:
    lock = tmp_path / "held.lock"
    done = subprocess.run(
        ["bash", "-c", f"set -euo pipefail; source {FDS}; exec 7>>{lock}; {script}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return done.stdout


def test_a_command_gets_only_the_standard_descriptors(tmp_path: Path) -> None:
    out = _bash("without_inherited_fds readlink /proc/self/fd/7 || echo closed", tmp_path)
    assert out.strip() == "closed"
    # The shell that called it keeps its own.
    assert _bash("without_inherited_fds true; readlink /proc/$$/fd/7", tmp_path).strip() == str(
        tmp_path / "held.lock"
    )


def test_a_background_daemon_is_the_pid_the_caller_records(tmp_path: Path) -> None:
    out = _bash(
        "(close_inherited_fds; exec sleep 30) </dev/null & pid=$!; "
        # until the subshell has exec'd (a wrapper shell stays bash: the test then fails)
        'for _ in $(seq 100); do [ "$(cat /proc/$pid/comm)" = sleep ] && break; sleep 0.1; done; '
        'cat /proc/$pid/comm; ls /proc/$pid/fd | sort -n | tr "\\n" " "; kill $pid',
        tmp_path,
    )
    comm, fds = out.splitlines()
    assert comm == "sleep"
    assert fds.split() == ["0", "1", "2"]
