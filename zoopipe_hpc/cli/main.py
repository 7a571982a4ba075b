"""``zoopipe-hpc``: run a job file, then watch, resume, retry or cancel it by its directory.

Exit codes (the same for every command):

====  =====================================================================================
0     success: the job committed (``run``, ``resume``, ``retry``, ``watch``), or the command
      did what it says (``status``, ``list``, ``cancel``, a detached ``run``)
1     the job failed or was rolled back; the reason is printed and kept in the manifest
2     the command line or the job file is wrong (nothing was submitted)
3     the job directory is missing, or its manifest is unreadable or was tampered with
4     the job is in a state where this command cannot act (e.g. ``retry`` of a committed job)
5     Slurm refused or failed a command (the message names the command)
130   interrupted (Ctrl-C): watching stopped, the job itself keeps running
141   the output was closed early (``status --json | head``): the command stopped quietly,
      with the code a shell reports for a tool killed by SIGPIPE
====  =====================================================================================

Text from manifests, progress records and error messages is printed through
:func:`zoopipe_hpc._text.printable`: a control character in it is shown escaped (``\\x1b``),
it never reaches the terminal. ``--json`` output escapes it by the JSON rules.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from .._text import printable, printable_lines
from ..engines.slurm import SlurmCommandError
from ..errors import ConfigurationError, ZoopipeHPCError
from ..jobs.config import JobConfig, JobConfigError, load_job_file
from ..jobs.manifest import JobState, ManifestError
from ..jobs.runner import (
    JobError,
    JobHandle,
    dry_run,
    finish_commit,
    finish_recover,
    list_jobs,
    open_job,
    submit,
)
from ..report import PipeReport

if TYPE_CHECKING:
    from ..display import TerminalProgress

__all__ = ["main", "build_parser", "EXIT_CODES"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NO_JOB, EXIT_STATE, EXIT_SLURM = 0, 1, 2, 3, 4, 5
EXIT_INTERRUPTED = 130
EXIT_PIPE_CLOSED = 141  # 128 + SIGPIPE: what a shell reports for `yes | head`'s `yes`
EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_FAILED: "the job failed or was rolled back",
    EXIT_USAGE: "bad command line or job file",
    EXIT_NO_JOB: "job directory missing, unreadable or tampered with",
    EXIT_STATE: "the job's state does not allow this command",
    EXIT_SLURM: "a Slurm command failed",
    EXIT_INTERRUPTED: "interrupted; the job keeps running",
    EXIT_PIPE_CLOSED: "the output was closed early (e.g. piped into head)",
}

_EPILOG = "exit codes: " + "; ".join(f"{k} {v}" for k, v in EXIT_CODES.items())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zoopipe-hpc",
        description="Run validated data pipelines as durable jobs, locally or on Slurm.",
        epilog=_EPILOG,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens (INFO)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser(
        "run", help="submit a job file and watch it to the end", epilog=_EPILOG
    )
    run.add_argument("job_file", type=Path, help="the job's YAML file")
    run.add_argument("--engine", choices=["local", "slurm"], help="override engine.kind")
    run.add_argument(
        "--detach",
        action="store_true",
        help="return at once; Slurm commits (afterok) or rolls back (afternotok) by itself",
    )
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="print every script that would be submitted (with --detach: the commit and "
        "recover jobs too); submit nothing, create no job directory",
    )

    for name, text in (
        ("status", "print each shard's state, rows, rows/s, errors, attempts, node and log"),
        ("watch", "show live progress until the job is over"),
        ("cancel", "cancel the job's Slurm jobs and discard its staged parts"),
        ("resume", "reattach after the submitting process died, and finish the commit"),
        ("retry", "resubmit only the failed shards, then watch and commit"),
    ):
        sub = commands.add_parser(name, help=text, description=text, epilog=_EPILOG)
        sub.add_argument("job_dir", type=Path, help="the job directory (printed by run)")
        if name == "status":
            sub.add_argument("--json", action="store_true", help="machine-readable output")
        if name in ("watch", "resume", "retry"):
            sub.add_argument("--quiet", action="store_true", help="no progress bar")

    listing = commands.add_parser("list", help="list the jobs in a jobs folder", epilog=_EPILOG)
    listing.add_argument(
        "jobs_dir",
        type=Path,
        nargs="?",
        default=Path("zoopipe-jobs"),
        help="default: ./zoopipe-jobs",
    )
    listing.add_argument("--json", action="store_true", help="machine-readable output")

    for hidden in ("_commit", "_recover"):
        # No help=: a subcommand given one is listed in --help, even as argparse.SUPPRESS.
        step = commands.add_parser(hidden)
        step.add_argument("job_dir", type=Path)
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    stdout = out or sys.stdout
    try:
        try:
            return _main(argv, stdout)
        finally:
            # A reader that went away (`| head`) is found here, not at interpreter exit.
            stdout.flush()
    except BrokenPipeError:
        _drop_closed_output(stdout)
        return EXIT_PIPE_CLOSED


def _main(argv: Sequence[str] | None, stdout: TextIO) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _log_to_stderr(verbose=args.verbose or args.command.startswith("_"))
    command: Callable[[argparse.Namespace, TextIO], int] = _COMMANDS[args.command]
    try:
        return command(args, stdout)
    except KeyboardInterrupt:
        print(
            "\ninterrupted: the job keeps running; `zoopipe-hpc resume` reattaches", file=sys.stderr
        )
        return EXIT_INTERRUPTED
    except (JobConfigError, ConfigurationError) as exc:
        _error(exc)
        return EXIT_USAGE
    except ManifestError as exc:
        _error(exc)
        return EXIT_NO_JOB
    except JobError as exc:
        _error(exc)
        return EXIT_STATE
    except SlurmCommandError as exc:
        _error(exc)
        return EXIT_SLURM
    except ZoopipeHPCError as exc:
        _error(exc)
        return EXIT_FAILED


def _error(exc: BaseException) -> None:
    """Print ``exc``, whose text may quote a manifest, a record or a Slurm command's output."""
    print(f"error: {printable_lines(str(exc))}", file=sys.stderr)


class _PrintableFormatter(logging.Formatter):
    """Log lines (they quote records and manifests) with their control characters escaped."""

    def format(self, record: logging.LogRecord) -> str:
        return printable_lines(super().format(record))


def _log_to_stderr(verbose: bool) -> None:
    """Log INFO and up (``verbose``) with times and names, else warnings and errors as bare
    lines (what Python's last-resort handler would print), escaped either way."""
    handler = logging.StreamHandler()
    if verbose:
        handler.setFormatter(_PrintableFormatter("%(asctime)s %(name)s: %(message)s"))
    else:
        handler.setFormatter(_PrintableFormatter("%(message)s"))
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, handlers=[handler])


def _drop_closed_output(stdout: TextIO) -> None:
    """After a write to a closed pipe: point the streams whose pipe is closed at ``/dev/null``,
    so that what is still buffered in them does not fail again (with a traceback) at exit."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for stream in {id(s): s for s in (stdout, sys.stdout, sys.stderr)}.values():
            try:
                stream.flush()
            except BrokenPipeError:
                try:
                    os.dup2(devnull, stream.fileno())
                except (OSError, ValueError):  # no descriptor (io.UnsupportedOperation)
                    pass
            except (OSError, ValueError):
                pass
    finally:
        os.close(devnull)


# -- commands ---------------------------------------------------------------------------------


def _run(args: argparse.Namespace, out: TextIO) -> int:
    config = load_job_file(args.job_file)
    if args.dry_run:
        return _dry_run(config, args, out)
    handle = submit(config, engine=args.engine, detach=args.detach)
    path = printable(str(handle.path))
    print(f"job directory: {path}", file=out)
    if args.detach:
        jobs = handle.manifest().finish_jobs
        commit, recover = (printable(str(jobs.get(step))) for step in ("commit", "recover"))
        print(
            f"submitted; Slurm will commit (job {commit}) or roll back "
            f"(job {recover}). Follow it with: zoopipe-hpc watch {path}",
            file=out,
        )
        return EXIT_OK
    return _watch_to_end(handle, args.quiet, out)


def _dry_run(config: JobConfig, args: argparse.Namespace, out: TextIO) -> int:
    scripts = dry_run(config, engine=args.engine, detach=args.detach)
    if not scripts:
        print(
            f"{printable(config.name)}: the local engine submits nothing to Slurm; "
            f"{config.workers} shards would run in processes on this machine (dry run: "
            f"nothing was started)",
            file=out,
        )
        return EXIT_OK
    for what, script in scripts:
        print(f"# ---- {printable(what)}: sbatch --parsable <this script> ----", file=out)
        print(printable_lines(script.rstrip("\n"), indent=""), file=out)
        print(file=out)
    print(
        f"# dry run: {len(scripts)} script(s) shown; nothing was submitted and no job "
        f"directory was created",
        file=out,
    )
    return EXIT_OK


def _status(args: argparse.Namespace, out: TextIO) -> int:
    handle = open_job(args.job_dir)
    manifest = handle.manifest()
    rows = handle.shard_status()
    if args.json:
        document = {
            "job": manifest.job_id,
            "state": manifest.state.value,
            "message": manifest.message,
            "engine": manifest.engine,
            "arrays": manifest.arrays,
            "finish_jobs": manifest.finish_jobs,
            "shards": [asdict(r) for r in rows],
        }
        json.dump(document, out, indent=2)
        out.write("\n")
        return EXIT_OK
    print(
        f"{printable(manifest.job_id)}: {manifest.state.value} ({printable(manifest.engine)})",
        file=out,
    )
    if manifest.message:
        print(f"  {printable_lines(manifest.message, indent='    ')}", file=out)
    header = ("shard", "state", "rows", "rows/s", "errors", "attempts", "node", "log")
    # The state, node and log come from the shards' records: escaped, one line each.
    table = [header] + [
        (
            str(r.index),
            printable(r.state),
            f"{r.rows:,}",
            f"{r.rows_per_second:,.0f}",
            f"{r.errors:,}",
            str(r.attempts),
            printable(r.node) if r.node else "-",
            printable(r.log) if r.log else "-",
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print(
            "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip(), file=out
        )
    return EXIT_OK


def _watch(args: argparse.Namespace, out: TextIO) -> int:
    return _watch_to_end(open_job(args.job_dir), args.quiet, out)


def _resume(args: argparse.Namespace, out: TextIO) -> int:
    handle = open_job(args.job_dir)
    again = handle.resume()
    if again:
        print(f"running shards {again} again", file=out)
    else:
        print("reattached: nothing submitted again", file=out)
    return _watch_to_end(handle, args.quiet, out)


def _retry(args: argparse.Namespace, out: TextIO) -> int:
    handle = open_job(args.job_dir)
    failed = handle.retry()
    print(f"resubmitted shards {failed}", file=out)
    return _watch_to_end(handle, args.quiet, out)


def _cancel(args: argparse.Namespace, out: TextIO) -> int:
    handle = open_job(args.job_dir)
    handle.cancel()
    print(
        f"{printable(handle.path.name)}: cancelled; staged parts discarded, targets untouched",
        file=out,
    )
    return EXIT_OK


def _list(args: argparse.Namespace, out: TextIO) -> int:
    jobs = list_jobs(args.jobs_dir)
    if args.json:
        json.dump([{**asdict(j), "path": str(j.path)} for j in jobs], out, indent=2)
        out.write("\n")
        return EXIT_OK
    if not jobs:
        print(f"no jobs in {printable(str(args.jobs_dir))}", file=out)
    for job in jobs:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(job.created)) if job.created else "-"
        # A shared jobs folder holds other users' directories: names and states are escaped.
        print(
            f"{printable(job.path.name)}  {printable(job.state)}  {printable(job.engine)}  "
            f"{job.done}/{job.shards} shards  {when}",
            file=out,
        )
    return EXIT_OK


def _commit_step(args: argparse.Namespace, out: TextIO) -> int:
    return EXIT_OK if finish_commit(args.job_dir) else EXIT_FAILED


def _recover_step(args: argparse.Namespace, out: TextIO) -> int:
    finish_recover(args.job_dir)
    return EXIT_OK


def _watch_to_end(handle: JobHandle, quiet: bool, out: TextIO) -> int:
    display = None if quiet else _display(handle.path.name)

    def show(report: PipeReport, shards: list[PipeReport]) -> None:
        if display is not None:
            display.update(report, shards)

    with _logs_above(display):
        committed = handle.wait(on_report=show if display is not None else None)
        if display is not None:
            display.close(handle.report())
    manifest = handle.manifest()
    job_id = printable(manifest.job_id)
    if committed:
        print(f"{job_id}: committed", file=out)
        return EXIT_OK
    print(f"{job_id}: {manifest.state.value}: {printable_lines(manifest.message)}", file=out)
    if manifest.state is JobState.FAILED:
        print(f"  fix the cause, then: zoopipe-hpc retry {printable(str(handle.path))}", file=out)
    return EXIT_FAILED


def _display(title: str) -> TerminalProgress:
    from ..display import TerminalProgress

    return TerminalProgress(sys.stderr, title=title)


@contextlib.contextmanager
def _logs_above(display: TerminalProgress | None) -> Iterator[None]:
    """While inside: the log lines meant for the display's stream (a job that failed, a
    warning) are written above its bar, not glued onto the end of the bar's line."""
    moved: list[tuple[logging.StreamHandler[Any], Any]] = []
    if display is not None:
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream is display.stream:
                moved.append((handler, handler.setStream(display.above())))
    try:
        yield
    finally:
        for handler, stream in moved:
            handler.setStream(stream)


_COMMANDS: dict[str, Callable[[argparse.Namespace, TextIO], int]] = {
    "run": _run,
    "status": _status,
    "watch": _watch,
    "cancel": _cancel,
    "resume": _resume,
    "retry": _retry,
    "list": _list,
    "_commit": _commit_step,
    "_recover": _recover_step,
}
