"""The engine conformance suite on the real local Slurm cluster, plus Slurm-only behaviour."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from _frontends import wait_until
from _support import Trigger, User, read_jsonl, users, write_csv

from zoopipe_hpc import CSVInputAdapter, CSVOutputAdapter, JSONOutputAdapter, Pipe, PipeManager
from zoopipe_hpc.engines import BaseEngine
from zoopipe_hpc.engines.slurm import SlurmEngine
from zoopipe_hpc.errors import ConfigurationError
from zoopipe_hpc.testing import EngineConformance

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm_cluster")]


def slurm_engine(tmp_path: Path, **kwargs) -> SlurmEngine:  # type: ignore[no-untyped-def]
    options = {"time": "00:05:00", "mem": "300M", "poll_interval": 0.3, "stale_after": 6.0}
    options.update(kwargs)
    return SlurmEngine(folder=tmp_path / "jobs", **options)


@pytest.mark.on_shared_fs  # the engine's promises, the job folder on the shared filesystem
class TestSlurmEngine(EngineConformance):
    timeout = 180.0

    def make_engine(self, tmp_path: Path) -> BaseEngine:
        return slurm_engine(tmp_path)


class TestPackedSlurmEngine(EngineConformance):
    """The same promises with the shards packed onto 3 array tasks of 2 workers each."""

    timeout = 240.0

    def make_engine(self, tmp_path: Path) -> BaseEngine:
        return slurm_engine(tmp_path, max_tasks=3, workers_per_task=2)


def one_row_shards(path: Path, rows: int) -> Path:
    """A CSV whose ``parallelize_pipe(workers=rows)`` gives one row per shard: fixed-width rows
    and no final newline, so every cut of the even split lands on a row's end."""
    lines = [f"{i:05d},n{i:05d}" for i in range(rows)]
    path.write_text("id,name\n" + "\n".join(lines))
    return path


def test_240_one_row_shards_on_at_most_12_packed_tasks_in_order(tmp_path: Path):
    source = one_row_shards(tmp_path / "in.csv", 240)
    engine = slurm_engine(tmp_path, max_tasks=12, workers_per_task=2)
    pipe = Pipe(CSVInputAdapter(source), JSONOutputAdapter(tmp_path / "out.jsonl"), Trigger)
    manager = PipeManager.parallelize_pipe(pipe, workers=240, engine=engine)
    assert "--array=0-11%12" in engine.job_script(240)
    assert manager.run(timeout=600), manager.error
    assert [r["id"] for r in read_jsonl(tmp_path / "out.jsonl")] == list(range(240))
    assert [r.total_processed for r in manager.pipe_reports] == [1] * 240
    [array] = {r.extra["slurm_job_id"].split("_")[0] for r in manager.pipe_reports}
    ran = {r.extra["slurm_job_id"] for r in manager.pipe_reports}

    def listed() -> set[str] | None:
        sacct = subprocess.run(
            ["sacct", "-j", array, "-X", "--noheader", "--parsable2", "--format=JobID,State"],
            capture_output=True,
            text=True,
            check=True,
        )
        tasks = {line.split("|")[0] for line in sacct.stdout.splitlines() if line.strip()}
        return tasks if ran <= tasks else None

    # slurmctld sends finished tasks to slurmdbd in batches: sacct lists them a moment later.
    tasks = wait_until(f"sacct to list the tasks of array {array}", listed, 60, 1.0)
    assert 1 <= len(tasks) <= 12, tasks
    assert engine.slurm_calls()["sbatch"] == 1


def test_twelve_shards_across_three_nodes_equal_one_local_pipe(tmp_path: Path):
    source = write_csv(tmp_path / "in.csv", users(6000, bad_every=37))
    Pipe(
        CSVInputAdapter(source),
        JSONOutputAdapter(tmp_path / "local.jsonl"),
        User,
        error_output_adapter=JSONOutputAdapter(tmp_path / "local_err.jsonl"),
    ).run()
    engine = slurm_engine(tmp_path)
    pipe = Pipe(
        CSVInputAdapter(source),
        JSONOutputAdapter(tmp_path / "slurm.jsonl"),
        User,
        error_output_adapter=JSONOutputAdapter(tmp_path / "slurm_err.jsonl"),
    )
    manager = PipeManager.parallelize_pipe(pipe, workers=12, engine=engine)
    assert manager.run(timeout=300), manager.error
    assert (tmp_path / "slurm.jsonl").read_bytes() == (tmp_path / "local.jsonl").read_bytes()
    assert (tmp_path / "slurm_err.jsonl").read_bytes() == (
        tmp_path / "local_err.jsonl"
    ).read_bytes()
    # Each task publishes its Slurm node name in its progress record.
    assert {r.host for r in manager.pipe_reports} == {"n1", "n2", "n3"}
    assert len(read_jsonl(tmp_path / "slurm.jsonl")) == manager.report.success_count
    calls = engine.slurm_calls()
    assert calls["sbatch"] == 1, calls


def test_compressed_outputs_of_an_array_decompress_to_the_local_plain_files(tmp_path: Path):
    """Six array tasks write gzip and zstd parts; the commit's merge of their frames reads
    back as exactly the plain files of one local pipe (the CSV header once)."""
    import gzip

    import zstandard

    source = write_csv(tmp_path / "in.csv", users(3000, bad_every=41))
    Pipe(
        CSVInputAdapter(source),
        CSVOutputAdapter(tmp_path / "local.csv"),
        User,
        error_output_adapter=JSONOutputAdapter(tmp_path / "local_err.jsonl"),
    ).run()
    pipe = Pipe(
        CSVInputAdapter(source),
        CSVOutputAdapter(tmp_path / "slurm.csv.gz"),
        User,
        error_output_adapter=JSONOutputAdapter(tmp_path / "slurm_err.jsonl.zst"),
    )
    manager = PipeManager.parallelize_pipe(pipe, workers=6, engine=slurm_engine(tmp_path))
    assert manager.run(timeout=300), manager.error
    plain = gzip.decompress((tmp_path / "slurm.csv.gz").read_bytes())
    assert plain == (tmp_path / "local.csv").read_bytes()
    with zstandard.open(tmp_path / "slurm_err.jsonl.zst", "rb") as f:
        assert f.read() == (tmp_path / "local_err.jsonl").read_bytes()


def test_job_script_dry_run_and_parameter_validation(tmp_path: Path):
    engine = SlurmEngine(
        folder=tmp_path,
        partition="debug",
        time="1-00:00:00",
        mem="2G",
        account="proj",
        qos="normal",
        constraint="skylake",
        gres="gpu:1",
        array_parallelism=4,
        extra={"mail-type": "END", "exclusive": True},
        setup=["module load python"],
    )
    script = engine.job_script(10)
    for line in (
        "#SBATCH --array=0-9%4",
        "#SBATCH --partition=debug",
        "#SBATCH --time=1440",
        "#SBATCH --mem=2G",
        "#SBATCH --account=proj",
        "#SBATCH --qos=normal",
        "#SBATCH --constraint=skylake",
        "#SBATCH --gres=gpu:1",
        "#SBATCH --mail-type=END",
        "#SBATCH --exclusive",
        "module load python",
        "-P -u -m zoopipe_hpc.engines.slurm",
        "--shards 0-9",
    ):
        assert line in script, line
    with pytest.raises(ConfigurationError, match="valid keys.*partition"):
        SlurmEngine(partiton="debug")
    with pytest.raises(ConfigurationError, match="time"):
        SlurmEngine(time="soon")
    with pytest.raises(ConfigurationError, match="mem"):
        SlurmEngine(mem="lots")
    with pytest.raises(ConfigurationError, match="array"):
        SlurmEngine(extra={"array": "0-3"})


def test_arrays_larger_than_max_array_size_are_split_each_from_zero(tmp_path: Path, monkeypatch):  # type: ignore[no-untyped-def]
    source = write_csv(tmp_path / "in.csv", users(700))
    engine = slurm_engine(tmp_path)
    monkeypatch.setattr(engine, "max_array_size", lambda: 3)
    pipe = Pipe(CSVInputAdapter(source), JSONOutputAdapter(tmp_path / "out.jsonl"), User)
    manager = PipeManager.parallelize_pipe(pipe, workers=7, engine=engine)
    assert manager.run(timeout=300), manager.error
    assert engine.slurm_calls()["sbatch"] == 3
    tasks = [r.extra["slurm_job_id"].split("_")[1] for r in manager.pipe_reports]
    assert tasks == ["0", "1", "2", "0", "1", "2", "0"]
    assert [r["id"] for r in read_jsonl(tmp_path / "out.jsonl")] == list(range(700))


SCRIPT = """
import sys
from pydantic import BaseModel, field_validator
from zoopipe_hpc import CSVInputAdapter, CSVOutputAdapter, JSONOutputAdapter, Pipe, PipeManager
from zoopipe_hpc.engines.slurm import SlurmEngine
from row_models import Loud  # a module next to this script, not installed anywhere


class Quiet(BaseModel):  # defined in __main__
    id: int
    name: str

    @field_validator("name")
    @classmethod
    def lower(cls, value):
        return value.lower() + "."


folder = sys.argv[1]
pipes = [
    Pipe(CSVInputAdapter(folder + "/in.csv"), JSONOutputAdapter(folder + "/quiet.jsonl"), Quiet),
    Pipe(CSVInputAdapter(folder + "/in.csv"), JSONOutputAdapter(folder + "/loud.jsonl"), Loud),
]
engine = SlurmEngine(folder=folder + "/jobs", time="00:05:00", mem="300M", poll_interval=0.3)
manager = PipeManager(pipes, engine=engine)
ok = manager.run(timeout=240)
print(manager.error)
sys.exit(0 if ok else 1)
"""

MODULE = """
from pydantic import BaseModel, field_validator


class Loud(BaseModel):
    id: int
    name: str

    @field_validator("name")
    @classmethod
    def upper(cls, value):
        return value.upper() + "!"
"""


def test_models_from_main_and_from_a_module_next_to_the_script_travel(tmp_path: Path):
    """Neither the script's __main__ nor its neighbour module is importable on the nodes."""
    import subprocess
    import sys

    code = tmp_path / "code"
    code.mkdir()
    (code / "row_models.py").write_text(MODULE)
    (code / "pipeline.py").write_text(SCRIPT)
    data = tmp_path / "data"
    data.mkdir()
    write_csv(data / "in.csv", [{"id": i, "name": f"Nn{i}"} for i in range(30)])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = subprocess.run(
        [sys.executable, str(code / "pipeline.py"), str(data)],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    quiet = read_jsonl(data / "quiet.jsonl")
    loud = read_jsonl(data / "loud.jsonl")
    assert quiet[:2] == [{"id": 0, "name": "nn0."}, {"id": 1, "name": "nn1."}]
    assert loud[:2] == [{"id": 0, "name": "NN0!"}, {"id": 1, "name": "NN1!"}]
