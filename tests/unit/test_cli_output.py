"""What the command line prints from records, logs and manifests cannot drive the terminal,
and a reader that goes away (``| head``) ends a command quietly.

The hostile job: one shard's validator raises an error whose text holds escape sequences (it
reaches the manifest, the log and the aggregate report), and both shards' progress records are
rewritten by a "neighbour" with such a host and message. Every command is run in a subprocess,
as a user would, and its raw bytes are checked.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from zoopipe_hpc._text import printable, printable_lines
from zoopipe_hpc.cli.main import EXIT_PIPE_CLOSED, main
from zoopipe_hpc.display import NotebookProgress, TerminalProgress
from zoopipe_hpc.progress.record import ProgressWriter
from zoopipe_hpc.report import PipeReport, PipeStatus

# Retitle the window, ring, clear the screen, an 8-bit CSI, a bidi override, a carriage
# return, and a line that would pass for the program's own verdict.
EVIL = "boom \x1b]0;pwned\x07\x1b[2J\x9b31m\u202e\rback\nforged: committed"
EVIL_HOST = "n1\x1b]0;pwned\x07\x1b[2J\x9b2J\n"  # a progress record's host holds 64 bytes

MODELS = f"""
from pydantic import BaseModel, field_validator


class Row(BaseModel):
    id: int
    name: str

    @field_validator("name")
    @classmethod
    def check(cls, value):
        if value == "evil":
            raise RuntimeError({EVIL!r})
        return value
"""

JOB = """
name: hostile
input:  {format: csv, path: data/in.csv}
output: {format: jsonl, path: out/rows.jsonl}
errors: {format: jsonl, path: out/errors.jsonl}
schema: "models:Row"
workers: 2
engine:
  kind: local
"""

# Control characters that must never reach the output: C0 but newline, DEL, C1, and the
# other characters printable() escapes.
_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
# The only sequences the terminal display writes itself: its colours (SGR) and clear-to-EOL.
_OWN_SEQUENCES = re.compile(r"\x1b\[(?:0|31|32)m|\x1b\[K")


def cli(
    *args: str | Path, cwd: Path, stderr: int = subprocess.PIPE
) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    return subprocess.run(
        [sys.executable, "-m", "zoopipe_hpc.cli", *map(str, args)],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=stderr,
        timeout=180,
        env=env,
    )


def assert_inert(raw: bytes, *, allow_own_sequences: bool = False) -> str:
    """``raw`` decoded, after checking it holds no control character (but newline) and, with
    ``allow_own_sequences``, no escape sequence but the display's colours and clear-to-EOL
    (and the carriage returns of its redraws and of the terminal's line discipline)."""
    text = raw.decode("utf-8")
    if allow_own_sequences:
        text = _OWN_SEQUENCES.sub("", text).replace("\r", "")
    found = _CONTROL.findall(text)
    assert not found, f"control characters reached the output: {found!r} in {text!r}"
    assert not any(line.startswith("forged") for line in text.splitlines()), text
    return text


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(folder, job directory) of a failed local job whose texts are hostile."""
    root = tmp_path_factory.mktemp("hostile")
    (root / "data").mkdir()
    (root / "out").mkdir()
    (root / "models.py").write_text(MODELS)
    (root / "data" / "in.csv").write_text("id,name\n1,a\n2,evil\n3,c\n4,d\n")
    (root / "job.yaml").write_text(JOB)
    run = cli("run", "job.yaml", cwd=root)
    assert run.returncode == 1, run.stdout + run.stderr
    for stream in (run.stdout, run.stderr):
        assert_inert(stream)
    [job] = (root / "zoopipe-jobs").iterdir()
    records = sorted((job / "progress").glob("progress-*.rec"))
    assert len(records) == 2
    for path in records:
        # progress-<shard>.<attempt id>.rec, rewritten under the same attempt id.
        attempt_id = path.name.split(".", 1)[1].removesuffix(".rec")
        with ProgressWriter(path, attempt_id, host=EVIL_HOST) as writer:
            writer.update(1, 1, 0, force=True)
            if path.name.startswith("progress-00000."):
                writer.fail(EVIL)
            else:
                writer.finish(EVIL)
    return root, job


def test_status_escapes_the_host_and_the_message(hostile: tuple[Path, Path]) -> None:
    root, job = hostile
    done = cli("status", job, cwd=root)
    assert done.returncode == 0, done.stderr
    text = assert_inert(done.stdout)
    assert_inert(done.stderr)
    # Shown escaped, nothing dropped.
    assert printable(EVIL_HOST) in text
    assert "boom \\x1b]0;pwned\\x07\\x1b[2J\\x9b31m\\u202e\\rback" in text


def test_status_json_keeps_the_exact_text_escaped_by_json(hostile: tuple[Path, Path]) -> None:
    root, job = hostile
    done = cli("status", "--json", job, cwd=root)
    assert done.returncode == 0, done.stderr
    assert_inert(done.stdout)
    document = json.loads(done.stdout)
    assert {shard["node"] for shard in document["shards"]} == {EVIL_HOST}
    assert EVIL in document["message"]


def test_watch_and_list_escape_what_they_print(hostile: tuple[Path, Path]) -> None:
    root, job = hostile
    watched = cli("watch", job, cwd=root)
    assert watched.returncode == 1, watched.stdout + watched.stderr
    assert "\\x1b]0;pwned\\x07" in assert_inert(watched.stdout)
    assert "\\x1b]0;pwned\\x07" in assert_inert(watched.stderr)  # the bar's failure message
    listed = cli("list", cwd=root)
    assert listed.returncode == 0 and job.name in assert_inert(listed.stdout)


def test_on_a_terminal_only_the_displays_own_colours_are_written(
    hostile: tuple[Path, Path],
) -> None:
    root, job = hostile
    leader, follower = os.openpty()
    try:
        watched = cli("watch", job, cwd=root, stderr=follower)
    finally:
        os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the terminal's other side is closed and drained
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    raw = b"".join(chunks)
    assert b"\x1b[31m" in raw  # it did draw in colour: the allowlist is what was checked
    text = assert_inert(raw, allow_own_sequences=True)
    assert "FAILED" in text and "\\x1b]0;pwned\\x07" in text
    assert_inert(watched.stdout)


def test_a_closed_pipe_ends_the_command_quietly(hostile: tuple[Path, Path]) -> None:
    root, job = hostile
    jobs = root / "many-jobs"
    for index in range(400):  # `list --json` of these is larger than a pipe's buffer
        copy = jobs / f"{job.name}-{index:03d}"
        copy.mkdir(parents=True)
        shutil.copy(job / "manifest.json", copy / "manifest.json")
    command = f"{sys.executable} -m zoopipe_hpc.cli"
    for pipeline, codes in (
        (f"{command} status --json {job} | head -c 10", {0, EXIT_PIPE_CLOSED}),
        # The reader is gone before anything is written, or after 10 bytes of 100 kB: the
        # write fails for sure.
        (f"{command} status --json {job} | true", {EXIT_PIPE_CLOSED}),
        (f"{command} watch --quiet {job} | true", {EXIT_PIPE_CLOSED}),
        (f"{command} list --json {jobs} | head -c 10", {EXIT_PIPE_CLOSED}),
        (f"{command} list {jobs} | head -n 1", {0, EXIT_PIPE_CLOSED}),
    ):
        done = subprocess.run(
            ["bash", "-c", pipeline + '; echo "exit=${PIPESTATUS[0]}" >&2'],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert "Traceback" not in done.stderr and "Error" not in done.stderr, done.stderr
        assert int(done.stderr.split("exit=")[-1]) in codes, (pipeline, done.stderr)


# -- in process ---------------------------------------------------------------------------------


def test_printable_escapes_visibly_and_keeps_the_rest() -> None:
    assert printable("node\x1b]0;t\x07\x1b[2J") == "node\\x1b]0;t\\x07\\x1b[2J"
    assert printable("\x00\x7f\x9b\u202e\u2028\udcff") == "\\x00\\x7f\\x9b\\u202e\\u2028\\udcff"
    assert printable("a\tb\nc\rd") == "a\\tb\\nc\\rd"
    assert printable("héllo wörld ✓ C:\\path") == "héllo wörld ✓ C:\\path"
    assert printable_lines("one\ntwo\tcols\r\x1b[2J") == "one\n  two\tcols\\r\\x1b[2J"


def test_the_terminal_bar_escapes_its_title_and_message() -> None:
    stream = io.StringIO()
    bar = TerminalProgress(stream, title="job\x1b[2J", width=200)
    bar.is_tty = bar.color = True  # the tty rendering, colours and all
    report = PipeReport(pipe_index=0, status=PipeStatus.FAILED, message=EVIL)
    bar.close(report)
    text = assert_inert(stream.getvalue().encode(), allow_own_sequences=True)
    assert "job\\x1b[2J" in text and "\\x1b]0;pwned\\x07" in text


def test_the_notebook_label_escapes_the_message() -> None:
    shown: list[str] = []

    class _Display:
        @staticmethod
        def HTML(markup: str) -> str:  # noqa: N802 - the name IPython.display gives it
            return markup

        @staticmethod
        def display(content: str, display_id: str) -> None:
            shown.append(content)

    widget = NotebookProgress("job\x1b[2J<b>", use_widgets=False)
    widget._started = True  # the HTML fallback, without IPython
    widget._display = _Display  # type: ignore[assignment]
    widget.close(PipeReport(pipe_index=0, status=PipeStatus.FAILED, message=EVIL + "<i>"))
    [markup] = shown
    assert not _CONTROL.search(markup.replace("\n", ""))
    assert "job\\x1b[2J&lt;b&gt;" in markup and "\\x1b]0;pwned\\x07" in markup
    assert "&lt;i&gt;" in markup


class _ClosedPipe(io.StringIO):
    def flush(self) -> None:
        raise BrokenPipeError(32, "Broken pipe")


def test_main_returns_141_when_its_output_is_closed(tmp_path: Path) -> None:
    assert main(["list", "--json", str(tmp_path)], out=_ClosedPipe()) == EXIT_PIPE_CLOSED
