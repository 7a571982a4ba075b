"""The engine conformance suite on the real local Slurm cluster, plus Slurm-only behaviour."""

from __future__ import annotations

from pathlib import Path

import pytest
from _support import User, read_jsonl, users, write_csv
from engine_conformance import EngineConformance

from zoopipe_hpc import CSVInputAdapter, JSONOutputAdapter, Pipe, PipeManager
from zoopipe_hpc.engines.slurm import SlurmEngine
from zoopipe_hpc.errors import ConfigurationError

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm_cluster")]


def slurm_engine(tmp_path: Path, **kwargs) -> SlurmEngine:  # type: ignore[no-untyped-def]
    options = {"time": "00:05:00", "mem": "300M", "poll_interval": 0.3, "stale_after": 6.0}
    options.update(kwargs)
    return SlurmEngine(folder=tmp_path / "jobs", **options)


class TestSlurmEngine(EngineConformance):
    timeout = 180.0

    @pytest.fixture
    def engine(self, tmp_path: Path) -> SlurmEngine:
        return slurm_engine(tmp_path)


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
        "submitit.core._submit",
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
