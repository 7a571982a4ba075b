"""A detached job's follow-up Slurm jobs: the commit step (afterok) and the recover step
(afternotok), rendered by the same job-script function as the array and submitted after it.
"""

from __future__ import annotations

import shlex
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path

from ..engines.slurm import SlurmCLI
from ..engines.slurm._submitter import sbatch_script
from ..engines.slurm.parameters import SlurmParameters, render_job_script
from ._ownership import RECOVER_TOKEN, JobLike
from .config import JobConfig
from .manifest import Manifest

__all__ = ["finish_job_scripts", "submit_finish_jobs"]


def submit_finish_jobs(handle: JobLike) -> dict[str, str]:
    """Submit the commit step (afterok) and the recovery step (afternotok) as Slurm jobs.

    They depend on the job's current arrays, so the target is committed, retried or rolled
    back by Slurm itself, whether or not anyone is still logged in. The recover job owns the
    job's retries from now on.
    """
    directory = handle.directory
    manifest = directory.read()
    config = JobConfig.from_resolved(manifest.config)
    # The arrays of the shards still to run: after a retry, not the earlier array, whose
    # failed task would make afterok impossible (and the commit job be killed with it).
    current = sorted(
        {
            s.submissions[-1].split("_")[0]
            for s in manifest.shards
            if s.submissions and s.state != "completed"
        }
    )
    token = uuid.uuid4().hex
    scripts = finish_job_scripts(config, directory.path, current, token=token)

    def own(m: Manifest) -> None:  # before sbatch: the new recover job may start at once
        m.retry_owner = {"kind": "detached", "token": token, "job": ""}

    directory.update(own, what="retries owned by the next recover job")
    cli = SlurmCLI()
    jobs: dict[str, str] = {}
    for step, script in scripts.items():
        path = directory.path / "logs" / f"{step}-{token[:12]}.sh"
        path.write_text(script)
        jobs[step] = sbatch_script(cli, path)

    def change(m: Manifest) -> None:
        m.finish_jobs = jobs
        if m.retry_owner.get("token") == token:
            m.retry_owner = {**m.retry_owner, "job": jobs["recover"]}

    directory.update(change, what=f"finish jobs {jobs} after arrays {current}")
    return jobs


def finish_job_scripts(
    config: JobConfig, path: Path, arrays: Sequence[str], *, token: str
) -> dict[str, str]:
    """The sbatch scripts of a detached job's commit (afterok) and recover (afternotok) jobs.

    Rendered like the array's (``render_job_script``), with the array's partition, account,
    qos, constraint, extra directives and setup lines, one CPU, and ``engine.finish_time`` and
    ``engine.finish_mem``; their logs are ``logs/<step>-<job id>.out``. The recover job gets
    ``token``, which makes it the owner of the retries (see ``retry_owner``).
    """
    parameters = SlurmParameters.validate_kwargs(**config.engine.slurm_parameters())
    python = shlex.quote(sys.executable)
    logs = path / "logs"
    scripts: dict[str, str] = {}
    for step, condition in (("commit", "afterok"), ("recover", "afternotok")):
        own = parameters.for_follow_up(
            job_name=f"{config.name}-{step}",
            time=config.engine.finish_time,
            mem=config.engine.finish_mem,
        )
        scripts[step] = render_job_script(
            own,
            command=f"{python} -m zoopipe_hpc.cli _{step} {shlex.quote(str(path))}",
            log_folder=logs,
            tasks=None,
            environment={
                "ZOOPIPE_HPC_JOB_FOLDER": str(path),
                **({RECOVER_TOKEN: token} if step == "recover" else {}),
            },
            log_file=logs / f"{step}-%j.out",
            directives={
                "dependency": f"{condition}:{':'.join(arrays)}",
                "kill-on-invalid-dep": "yes",
                "chdir": str(path),
            },
        )
    return scripts
