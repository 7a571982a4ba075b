"""Submitting one sbatch array, with sbatch called through our SlurmCLI.

The job script is rendered by submitit's template (from the validated parameters), and the logs
follow submitit's naming; nothing else of submitit is used. In particular no per-task pickle is
written and submitit's runner is not started: each task runs the project's own entry point
(:mod:`.task`), which checks the job folder and the signed payload before it unpickles anything.
"""

from __future__ import annotations

import logging
import shlex
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path

from submitit.core.utils import JobPaths

from ..._private import Use, ensure_private_dir
from ...commit._atomic import atomic_write
from ...errors import ConfigurationError, PayloadRefused, SlurmCommandError
from ._cli import SlurmCLI
from ._packing import Packing
from .parameters import SlurmParameters, render_job_script
from .task import TASK_MODULE, format_shards

__all__ = ["ArraySubmitter", "sbatch_script"]

log = logging.getLogger(__name__)

_SUBMIT = Use(
    action="submit an array",
    risk="anyone who can write there could change the job script before sbatch reads it",
    error=PayloadRefused,
)


class ArraySubmitter:
    """Writes the job script of one array of the job in ``job_folder``, then runs
    ``sbatch --parsable``.

    Task ``k`` of an array of ``shards`` runs
    ``<python> -P -u -m zoopipe_hpc.engines.slurm <job folder> --shards <shards>``, which runs
    shard ``shards[k]``. The script is ``logs/<array job id>_submission.sh``.
    """

    def __init__(
        self,
        job_folder: Path,
        parameters: SlurmParameters,
        cli: SlurmCLI,
        python: str | None = None,
        environment: dict[str, str] | None = None,
    ) -> None:
        self.job_folder = job_folder
        self.log_folder = job_folder / "logs"
        self.parameters = parameters
        self.cli = cli
        self.python = python or shlex.quote(sys.executable)
        self.environment = dict(environment or {})
        # Every poll names each shard's log (ShardWatch._extra): submitit's JobPaths takes
        # about 0.3 ms a call, 0.3 s a poll for a thousand shards, so each is made once.
        self._log_paths: dict[tuple[str, int], tuple[Path, Path]] = {}

    def command(self, shards: Sequence[int], packing: Packing | None = None) -> str:
        """What every task of an array of ``shards`` runs (packed: claims them, see
        :mod:`._packed`)."""
        folder = shlex.quote(str(self.job_folder))
        command = f"{self.python} -P -u -m {TASK_MODULE} {folder} --shards {format_shards(shards)}"
        return command if packing is None else f"{command} --packed {packing.workers}"

    def script(self, shards: Sequence[int], packing: Packing | None = None) -> str:
        """The sbatch script of an array whose task ``k`` runs shard ``shards[k]``, or, packed,
        whose tasks (at most ``packing.max_tasks``) share ``shards``."""
        return render_job_script(
            self.parameters,
            command=self.command(shards, packing),
            log_folder=self.log_folder,
            tasks=len(shards) if packing is None else packing.tasks_for(len(shards)),
            environment=self.environment,
        )

    def log_paths(self, array_job_id: str, task: int) -> tuple[Path, Path]:
        """The stdout and stderr files of task ``task`` of array ``array_job_id``."""
        key = (array_job_id, task)
        found = self._log_paths.get(key)
        if found is None:
            paths = JobPaths(self.log_folder, job_id=f"{array_job_id}_{task}", task_id=0)
            found = self._log_paths[key] = (paths.stdout, paths.stderr)
        return found

    def submit(self, shards: Sequence[int], packing: Packing | None = None) -> str:
        """Submit one array whose task ``k`` runs shard ``shards[k]`` (or, packed, whose tasks
        share ``shards``); returns its job id."""
        if not shards:
            raise ConfigurationError("an array needs at least one task")
        ensure_private_dir(self.log_folder, "logs folder", _SUBMIT)
        script_path = self.log_folder / f"array-{uuid.uuid4().hex[:12]}.sh"
        atomic_write(script_path, self.script(shards, packing).encode(), mode=0o600)
        job_id = sbatch_script(self.cli, script_path)
        script_path.rename(self.log_folder / f"{job_id}_submission.sh")
        tasks = len(shards) if packing is None else packing.tasks_for(len(shards))
        log.info(
            "submitted array %s (%d tasks, %d shards) from %s",
            job_id,
            tasks,
            len(shards),
            self.log_folder,
        )
        return job_id


def sbatch_script(cli: SlurmCLI, script: Path) -> str:
    """Submit one job script (not an array) with ``sbatch --parsable``; returns its job id."""
    sbatch = ["sbatch", "--parsable", str(script)]
    out = cli.run(sbatch)
    job_id = out.strip().split(";")[0]
    if not job_id.isdigit():
        raise SlurmCommandError(
            f"could not read a job id from sbatch's answer {out!r}",
            command=sbatch,
            returncode=0,
            stderr="",
        )
    log.info("submitted job %s (%s)", job_id, script)
    return job_id
