"""The terminal bars as a user sees them: ``zoopipe-hpc run`` and ``zoopipe-hpc watch`` in tmux.

A tmux server of the test's own (its socket in the test's folder) runs a local durable job in
one window and, once the job runs, ``zoopipe-hpc watch`` on its directory in another, both in a
real pseudo-terminal. ``tmux capture-pane`` is polled until both commands have exited: the bar
is redrawn in place (one line, however many updates), grows, and ends green with the counts and
the final summary. A second test fails a shard (red, the message under the bar, the command
to type, no log line glued onto the bar) and retries it to a green end. Needs the Debian
package ``tmux`` (``scripts/test`` installs it as root).

The same ``watch`` of a detached job on the Slurm test cluster is at the end, marked ``slurm``.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from _frontends import end_family, need_tools, session, wait_until
from test_cli_jobs import SLURM
from test_cli_jobs import make_job as cli_job

WIDTH = 200
BAR = re.compile(r"\[([#-]{20})\]\s+(\d+)%")


@dataclass
class Job:
    """A job file (``test_cli_jobs``' job, model and input) and what its run must show."""

    path: Path
    rows: int
    invalid: int
    shards: int
    env: dict[str, str]


def make_job(
    tmp_path: Path,
    *,
    rows: int,
    shards: int,
    kind: str = "local",
    extra: str = "",
    failing_row: int | None = None,
) -> Job:
    """``rows`` rows, every 6th with an id that is not an integer, the others taking 0.2 s each
    to validate; the validator raises on ``failing_row`` while the file ``broken`` exists."""
    names = ["bad-id" if i % 6 == 0 else f"slow{i}" for i in range(rows)]
    if failing_row is not None:
        names[failing_row] = "needs-table"
    path = cli_job(tmp_path, names, kind=kind, workers=shards, extra=extra)
    # COLUMNS and LINES are the test runner's (pytest-xdist sets 80x24 in its workers): a shell
    # in the pane has the pane's size, which the bar must fit.
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "TMUX", "COLUMNS", "LINES")}
    checkout = str(Path(__file__).parents[2])
    env["PYTHONPATH"] = os.pathsep.join([checkout, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return Job(path, rows, names.count("bad-id"), shards, env)


def zoopipe_hpc() -> str:
    """The ``zoopipe-hpc`` command of this interpreter's environment (as a user types it)."""
    script = Path(sys.executable).parent / "zoopipe-hpc"
    if script.exists():
        return str(script)
    return f"{sys.executable} -m zoopipe_hpc.cli"


class Tmux:
    """A tmux server of our own, on a socket in a folder of ours, its windows kept after their
    command exits (so that their last screen can be read)."""

    def __init__(self, socket: Path, env: dict[str, str]) -> None:
        self.socket = socket
        self.env = env

    def __call__(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", "-S", str(self.socket), *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=10,
        )
        if done.returncode != 0:
            raise AssertionError(f"tmux {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout

    def open(self, name: str, command: str, cwd: Path) -> None:
        """Run ``command`` in a new window; a shell around it writes its exit status to a file
        (tmux's own ``pane_dead_status`` stayed empty now and then, its child unreaped)."""
        status = shlex.quote(str(self.socket.parent / f"{name}.status"))
        wrapped = f"{command}; echo $? > {status}.part && mv {status}.part {status}"
        self("new-window", "-d", "-n", name, "-c", str(cwd), wrapped)

    def screen(self, name: str, *, colours: bool = False, history: bool = False) -> str:
        args = ["capture-pane", "-p", "-t", f"=main:={name}"]
        if colours:
            args.append("-e")
        if history:
            args += ["-S", "-"]
        return self(*args)

    def exit_status(self, name: str) -> int | None:
        """The exit status of the window's command once it exited, None while it runs."""
        try:
            return int((self.socket.parent / f"{name}.status").read_text())
        except FileNotFoundError:
            return None


@contextmanager
def tmux_server(tmp_path: Path, env: dict[str, str]) -> Iterator[Tmux]:
    folder = tmp_path / "tmux"
    folder.mkdir(mode=0o700)
    socket = folder / "socket"
    tmux = Tmux(socket, env)
    # -D: the server stays in the foreground, a child of ours, so that we can end it and all
    # that its panes started. The first session holds the options; the windows come later.
    with session(
        ["tmux", "-S", str(socket), "-D", "-f", "/dev/null"], log=tmp_path / "tmux.log", env=env
    ) as server:
        wait_until("the tmux server", lambda: socket.is_socket(), 10, 0.05)
        tmux("new-session", "-d", "-s", "main", "-x", str(WIDTH), "-y", "30", "-n", "idle")
        tmux("set-option", "-g", "remain-on-exit", "on")
        tmux("set-option", "-g", "history-limit", "5000")
        tmux("set-window-option", "-g", "aggressive-resize", "off")
        tmux("set-option", "-g", "default-size", f"{WIDTH}x30")
        try:
            yield tmux
        finally:
            left = end_family(server.pid)
            if left:
                raise AssertionError(f"processes of the tmux panes survived: {left}")


@dataclass
class Watched:
    """What a window showed: every distinct bar line seen while it ran, everything it wrote
    (its history and screen, without and with colours), and the command's exit status."""

    bars: list[str]
    history: str
    coloured: str
    status: int


def bar_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if BAR.search(line)]


def follow(tmux: Tmux, names: list[str], timeout: float) -> dict[str, Watched]:
    """Poll the windows' screens until every command in them exited."""
    bars: dict[str, list[str]] = {name: [] for name in names}
    status: dict[str, int] = {}

    def all_exited() -> bool:
        for name in names:
            if name in status:
                continue
            code = tmux.exit_status(name)  # before the screen: the screen is then complete
            for line in bar_lines(tmux.screen(name)):
                if line.rstrip() not in bars[name][-1:]:
                    bars[name].append(line.rstrip())
            if code is not None:
                status[name] = code
        return len(status) == len(names)

    try:
        wait_until(f"{', '.join(names)} to exit in tmux", all_exited, timeout, 0.1)
    except AssertionError as timeout_error:
        windows = "".join(
            f"\n--- window {name} ---\n{tmux.screen(name, history=True).rstrip()}" for name in names
        )
        raise AssertionError(f"{timeout_error}{windows}") from None
    return {
        name: Watched(
            bars[name],
            tmux.screen(name, history=True),
            tmux.screen(name, history=True, colours=True),
            status[name],
        )
        for name in names
    }


def check_bars(seen: Watched, job: Job, job_id: str) -> None:
    context = f"\n--- window ---\n{seen.history}\n--- bars seen ---\n" + "\n".join(seen.bars)
    assert seen.status == 0, context
    # Redrawn in place: one bar line in the whole history of the window, never one per update.
    assert len(bar_lines(seen.history)) == 1, context
    # The window's last screen: a poll may miss the final redraw before the command exits.
    final = bar_lines(seen.history)[-1]
    assert final.startswith(f"{job_id}  [####################] 100%"), context
    assert f"{job.rows:,} rows" in final, context
    assert f"{job.invalid} errors" in final, context
    assert f"shards {job.shards}/{job.shards}" in final, context
    assert re.search(r"  done in \d+:\d\d:\d\d  ", final), context
    assert "failed" not in final and "ETA" not in final, context
    assert len(final) < WIDTH, context  # the last column stays free
    # In colour on a terminal: the outcome word is green.
    assert "\x1b[32mdone" in seen.coloured, repr(seen.coloured)
    # The summary under the bar.
    assert f"{job_id}: committed" in seen.history, context
    # While it ran: an ETA (or the wait for workers), shards not all finished, a bar that grew.
    running = seen.bars[:-1]
    assert running, context
    for line in running:
        assert "ETA " in line or "waiting for workers" in line, context
        assert "done in" not in line, context
    percents = [int(BAR.search(line).group(2)) for line in seen.bars]  # type: ignore[union-attr]
    assert percents == sorted(percents), context


def job_directory(folder: Path) -> Path | None:
    jobs = folder / "zoopipe-jobs"
    found = sorted(jobs.iterdir()) if jobs.is_dir() else []
    return found[0] if found else None


def manifest_state(path: Path) -> str | None:
    try:
        state: str = json.loads((path / "manifest.json").read_text())["manifest"]["state"]
    except (OSError, ValueError, KeyError):
        return None
    return state


def test_run_and_watch_show_the_bars_in_tmux(tmp_path: Path) -> None:
    need_tools("tmux", packages="tmux")
    job = make_job(tmp_path, rows=90, shards=3)  # 25 slow rows, about 5 s a shard
    command = zoopipe_hpc()
    with tmux_server(tmp_path, job.env) as tmux:
        tmux.open("run", f"{command} run job.yaml", tmp_path)
        path = wait_until("the job directory", lambda: job_directory(tmp_path), 40, 0.05)
        wait_until("the job to run", lambda: manifest_state(path) == "running", 40, 0.05)
        tmux.open("watch", f"{command} watch {path}", tmp_path)
        seen = follow(tmux, ["run", "watch"], timeout=90)
    assert manifest_state(path) == "committed"
    errors = (tmp_path / "out" / "errors.jsonl").read_text().splitlines()
    assert len(errors) == job.invalid
    assert f"job directory: {path}" in seen["run"].history
    check_bars(seen["run"], job, path.name)
    check_bars(seen["watch"], job, path.name)


def test_a_failed_run_and_its_retry_in_tmux(tmp_path: Path) -> None:
    """The red end of a failed local run (the failing shard's message under the bar, the
    command to type), then ``zoopipe-hpc retry`` of its one failed shard ending green."""
    need_tools("tmux", packages="tmux")
    job = make_job(tmp_path, rows=60, shards=3, failing_row=55)  # the last shard fails
    (tmp_path / "broken").write_text("")
    command = zoopipe_hpc()
    with tmux_server(tmp_path, job.env) as tmux:
        tmux.open("run", f"{command} run job.yaml", tmp_path)
        failed = follow(tmux, ["run"], timeout=90)["run"]
        path = job_directory(tmp_path)
        assert path is not None and manifest_state(path) == "failed", failed.history
        assert not (tmp_path / "out" / "rows.jsonl").exists()  # nothing committed
        (tmp_path / "broken").unlink()
        tmux.open("retry", f"{command} retry {path}", tmp_path)
        retried = follow(tmux, ["retry"], timeout=90)["retry"]
    context = f"\n--- window ---\n{failed.history}"
    assert failed.status == 1, context
    assert len(bar_lines(failed.history)) == 1, context
    final = failed.bars[-1]
    assert final.startswith(f"{path.name}  [####################] 100%"), context
    assert re.search(r"  FAILED in \d+:\d\d:\d\d  shards 3/3  1 failed$", final), context
    assert "\x1b[31mFAILED" in failed.coloured and "\x1b[31m1 failed" in failed.coloured
    under = failed.history.split(final, 1)[1]
    assert under.startswith("\n  pipe 2: ") and "lookup table is missing" in under, context
    assert f"  fix the cause, then: zoopipe-hpc retry {path}" in under, context
    # The retry runs shard 2 again; its bar counts the whole job, and ends done.
    assert "resubmitted shards [2]" in retried.history, retried.history
    check_bars(retried, job, path.name)
    assert manifest_state(path) == "committed"


@pytest.mark.slurm
@pytest.mark.usefixtures("slurm_cluster")
def test_watch_of_a_detached_slurm_job_shows_the_bars_in_tmux(tmp_path: Path) -> None:
    """A detached job is committed by Slurm: the watch reads the manifest, the progress records
    and Slurm's accounting, and draws the same bars and summary."""
    need_tools("tmux", packages="tmux")
    job = make_job(tmp_path, rows=90, shards=3, kind="slurm", extra=SLURM)
    submitted = subprocess.run(
        [*zoopipe_hpc().split(), "run", "job.yaml", "--detach"],
        cwd=tmp_path,
        env=job.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    path = job_directory(tmp_path)
    assert path is not None, submitted.stdout
    with tmux_server(tmp_path, job.env) as tmux:
        tmux.open("watch", f"{zoopipe_hpc()} watch {path}", tmp_path)
        seen = follow(tmux, ["watch"], timeout=240)
    assert manifest_state(path) == "committed"
    check_bars(seen["watch"], job, path.name)
