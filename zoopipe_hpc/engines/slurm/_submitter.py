"""Submitting one sbatch array through submitit, with sbatch called through our SlurmCLI."""

from __future__ import annotations

import logging
import shlex
import sys
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from submitit.core.utils import DelayedSubmission, JobPaths

from ...errors import ConfigurationError, SlurmCommandError
from ._cli import SlurmCLI
from .parameters import SlurmParameters, render_job_script

__all__ = ["ArraySubmitter", "sbatch_script"]

log = logging.getLogger(__name__)


class ArraySubmitter:
    """Writes submitit's per-task pickles and job script, then runs ``sbatch --parsable``.

    The tasks run ``python -m submitit.core._submit <log folder>``, submitit's own runner, which
    loads the task's pickle (a call of ``fn`` with that task's arguments) and runs it.
    """

    def __init__(
        self,
        log_folder: Path,
        parameters: SlurmParameters,
        cli: SlurmCLI,
        python: str | None = None,
        environment: dict[str, str] | None = None,
    ) -> None:
        self.log_folder = log_folder
        self.parameters = parameters
        self.cli = cli
        self.python = python or shlex.quote(sys.executable)
        self.environment = dict(environment or {})

    @property
    def command(self) -> str:
        return f"{self.python} -u -m submitit.core._submit {shlex.quote(str(self.log_folder))}"

    def script(self, tasks: int) -> str:
        return render_job_script(
            self.parameters,
            command=self.command,
            log_folder=self.log_folder,
            tasks=tasks,
            environment=self.environment,
        )

    def log_paths(self, array_job_id: str, task: int) -> tuple[Path, Path]:
        paths = JobPaths(self.log_folder, job_id=f"{array_job_id}_{task}", task_id=0)
        return paths.stdout, paths.stderr

    def submit(self, fn: Callable[..., Any], calls: Sequence[tuple[Any, ...]]) -> str:
        """Submit one array whose task ``k`` runs ``fn(*calls[k])``; returns the array job id."""
        if not calls:
            raise ConfigurationError("an array needs at least one task")
        staging = JobPaths.get_first_id_independent_folder(self.log_folder)
        staging.mkdir(parents=True, exist_ok=True)
        pickles = []
        for args in calls:
            delayed = DelayedSubmission(fn, *args)
            delayed.set_timeout(self.parameters.minutes, 0)
            path = staging / f"{uuid.uuid4().hex}.pkl"
            delayed.dump(path)
            pickles.append(path)
        script_path = staging / f"array-{uuid.uuid4().hex[:12]}.sh"
        script_path.write_text(self.script(len(calls)))
        sbatch = ["sbatch", "--parsable", str(script_path)]
        out = self.cli.run(sbatch)
        job_id = out.strip().split(";")[0]
        if not job_id.isdigit():
            raise SlurmCommandError(
                f"could not read a job id from sbatch's answer {out!r}",
                command=sbatch,
                returncode=0,
                stderr="",
            )
        for task, pickle_path in enumerate(pickles):
            paths = JobPaths(self.log_folder, job_id=f"{job_id}_{task}", task_id=0)
            paths.move_temporary_file(pickle_path, "submitted_pickle")
        script_path.rename(self.log_folder / f"{job_id}_submission.sh")
        log.info("submitted array %s (%d tasks) from %s", job_id, len(calls), self.log_folder)
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
