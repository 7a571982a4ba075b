"""Starting a durable job: :func:`submit` makes its directory, stages it and submits it;
:func:`dry_run` shows what it would submit (every script), and submits nothing.
"""

from __future__ import annotations

import time

import yaml  # type: ignore[import-untyped, unused-ignore]

from ..commit._staging import new_run_id
from ..coordinators.file_merge import FileMergeCoordinator
from ..engines.slurm import SlurmEngine
from ..engines.slurm._payload import PayloadStore
from ..engines.slurm.task import shard_payload_name
from ..errors import ConfigurationError
from ..manager import PipeManager
from ._ownership import this_process
from .config import JobConfig
from .follow_up import finish_job_scripts, submit_finish_jobs
from .handle import JobHandle
from .manifest import Manifest, ShardRecord

__all__ = ["dry_run", "submit"]


def submit(config: JobConfig, *, engine: str | None = None, detach: bool = False) -> JobHandle:
    """Create the job directory, stage the shards and submit them; returns at once."""
    kind = _engine_kind(config, engine, detach)
    run_id = new_run_id()
    path = config.jobs_path() / f"{config.name}-{run_id}"
    plan = PipeManager.shard_layout(config.make_pipe(), config.workers).plan(run_id, path)
    # Pickled before anything is made: code that cannot reach the nodes fails the submission
    # here, with nothing created and nothing submitted.
    store = PayloadStore(path)
    bodies = [store.pack(shard_payload_name(i), p) for i, p in enumerate(plan.pipes)]
    resolved = config.resolved()
    resolved["engine"]["kind"] = kind
    attached_slurm = kind == "slurm" and not detach
    handle = JobHandle(path)
    handle.directory.create(
        Manifest(
            job_id=path.name,
            name=config.name,
            engine=kind,
            run_id=run_id,
            config=resolved,
            shards=[
                ShardRecord(index=i, source=p.input_adapter.describe(), submissions=[])
                for i, p in enumerate(plan.pipes)
            ],
            created=time.time(),
            # An attached run retries its shards itself; a detached job's recover job does.
            retry_owner=this_process() if attached_slurm else {},
        )
    )
    (path / "progress").mkdir(mode=0o700, exist_ok=True)
    if kind == "local":
        handle._claim_local_run()  # before anything runs: a watcher sees a live runner
    # For people: the config as resolved (extends applied, absolute paths). The manifest's
    # checksummed copy is the one zoopipe-hpc reads.
    (path / "job.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False))
    merger = FileMergeCoordinator(plan.transaction)
    handle._merger = merger
    merger.on_start(None)
    store.create()
    for index, body in enumerate(bodies):
        store.write(shard_payload_name(index), body)
    if kind == "slurm":
        slurm = handle._slurm_engine(handle.manifest())
        handle._engine = slurm
        slurm.start_from_payloads(len(plan.pipes))  # the payloads written just above
        if detach:
            submit_finish_jobs(handle)
            handle._engine = None  # Slurm drives it now: this handle only watches
    else:
        handle._run_local(list(range(len(plan.pipes))))
    return handle


def _engine_kind(config: JobConfig, engine: str | None, detach: bool) -> str:
    kind = engine or config.engine.kind
    if kind not in ("local", "slurm"):
        raise ConfigurationError(f"engine must be 'local' or 'slurm', got {kind!r}")
    if detach and kind != "slurm":
        raise ConfigurationError(
            "--detach needs the Slurm engine: with local processes, nothing would be left to "
            "finish the job after this command returns"
        )
    return kind


def dry_run(
    config: JobConfig, *, engine: str | None = None, detach: bool = False
) -> list[tuple[str, str]]:
    """What :func:`submit` would hand to ``sbatch``, as (what, script) in submission order.

    Nothing is submitted and no job directory is made; the scripts name the job directory as
    ``<jobs_dir>/<name>-<run id>`` and the array as ``<array job id>``. The job file is checked
    as ``submit`` checks it (the schema model is imported, the pipe pickled for the nodes: code
    that cannot travel is refused). A local job submits nothing: [].
    """
    kind = _engine_kind(config, engine, detach)
    pipe = config.make_pipe()
    if kind != "slurm":
        return []
    path = config.jobs_path() / f"{config.name}-<run id>"
    PayloadStore(path).pack(shard_payload_name(0), pipe)  # refuses code that cannot travel
    slurm = SlurmEngine(
        folder=path.parent,
        job_folder=path,
        max_tasks=config.engine.max_tasks,
        workers_per_task=config.engine.workers_per_task,
        **config.engine.slurm_parameters(),
    )
    scripts = [(f"array of {config.workers} shards", slurm.job_script(config.workers))]
    if detach:
        arrays = ["<array job id>"]
        for step, script in finish_job_scripts(config, path, arrays, token="<token>").items():
            scripts.append((f"{step} job", script))
    return scripts
