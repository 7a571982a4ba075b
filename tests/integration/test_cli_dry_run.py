"""``zoopipe-hpc run --dry-run``: every script that would be submitted, nothing submitted.

No Slurm is needed: a dry run never calls sbatch (the cluster tests show the scripts run).
"""

from __future__ import annotations

from pathlib import Path

from test_cli_jobs import cli, make_job

SITE = """  partition: debug
  account: acct42
  qos: normal
  constraint: fast
  time: "00:05:00"
  mem: 300M
  max_retries: 2
  finish_time: "00:10:00"
  finish_mem: 600M
  setup: ["echo site-setup"]"""


def sections(output: str) -> dict[str, str]:
    """The printed scripts by their header (``array of 3 shards``, ``commit job``, ...)."""
    found: dict[str, str] = {}
    for chunk in output.split("# ---- ")[1:]:
        header, _, script = chunk.partition("\n")
        found[header.split(":")[0]] = script
    return found


def _files(folder: Path) -> list[Path]:
    """What is in ``folder``, less Python's bytecode cache (importing the job's model module
    may write one, wherever PYTHONDONTWRITEBYTECODE is not set)."""
    return sorted(p.relative_to(folder) for p in folder.rglob("*") if "__pycache__" not in p.parts)


def test_dry_run_prints_the_array_and_both_follow_ups_and_creates_nothing(tmp_path: Path) -> None:
    job = make_job(tmp_path, [f"n{i}" for i in range(30)], kind="slurm", extra=SITE)
    before = _files(tmp_path)
    done = cli("run", "--dry-run", "--detach", job, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert _files(tmp_path) == before
    assert not (tmp_path / "zoopipe-jobs").exists()
    assert "nothing was submitted and no job directory was created" in done.stdout
    scripts = sections(done.stdout)
    assert list(scripts) == ["array of 3 shards", "commit job", "recover job"]
    array, commit, recover = scripts.values()
    assert "#SBATCH --array=0-2%3" in array and "#SBATCH --time=5" in array
    assert "#SBATCH --mem=300M" in array and "-m zoopipe_hpc.engines.slurm" in array
    folder = tmp_path / "zoopipe-jobs" / "t-<run id>"
    for script in scripts.values():
        for line in (
            "#SBATCH --partition=debug",
            "#SBATCH --account=acct42",
            "#SBATCH --qos=normal",
            "#SBATCH --constraint=fast",
            "echo site-setup",
        ):
            assert line in script, (line, script)
    for step, script in (("commit", commit), ("recover", recover)):
        assert "--array" not in script
        assert "#SBATCH --time=10" in script and "#SBATCH --mem=600M" in script
        assert "#SBATCH --cpus-per-task=1" in script
        assert f"#SBATCH --job-name=t-{step}" in script
        # The placeholder path (with '<', '>' and a space) is quoted; a real one is not.
        assert f"#SBATCH --output='{folder}/logs/{step}-%j.out'" in script
        assert f"-m zoopipe_hpc.cli _{step} '{folder}'" in script
    assert "#SBATCH --dependency='afterok:<array job id>'" in commit
    assert "#SBATCH --dependency='afternotok:<array job id>'" in recover
    assert "ZOOPIPE_HPC_RECOVER_TOKEN='<token>'" in recover

    attached = sections(cli("run", "--dry-run", job, cwd=tmp_path).stdout)
    assert list(attached) == ["array of 3 shards"]
    assert not (tmp_path / "zoopipe-jobs").exists()


def test_dry_run_of_a_local_job_and_a_bad_finish_time(tmp_path: Path) -> None:
    job = make_job(tmp_path, ["a", "b", "c"])
    done = cli("run", "--dry-run", job, cwd=tmp_path)
    assert done.returncode == 0 and "the local engine submits nothing" in done.stdout
    assert not (tmp_path / "zoopipe-jobs").exists()
    refused = cli("run", "--dry-run", "--detach", job, cwd=tmp_path)
    assert refused.returncode == 2 and "--detach needs the Slurm engine" in refused.stderr

    job.write_text(job.read_text() + '  finish_time: "00:10:00"\n')
    local = cli("run", "--dry-run", job, cwd=tmp_path)
    assert local.returncode == 2 and "engine.finish_time" in local.stderr
    slurm = make_job(tmp_path, ["a"], kind="slurm", extra='  finish_time: "soon"')
    bad = cli("run", "--dry-run", slurm, cwd=tmp_path)
    assert bad.returncode == 2, bad.stdout + bad.stderr
    assert "engine.finish_time" in bad.stderr and "Slurm time limit" in bad.stderr


def test_the_internal_steps_are_not_in_the_help(tmp_path: Path) -> None:
    helped = cli("--help", cwd=tmp_path)
    assert helped.returncode == 0
    assert "_commit" not in helped.stdout and "_recover" not in helped.stdout
    assert "SUPPRESS" not in helped.stdout and "status" in helped.stdout
    assert "--dry-run" in cli("run", "--help", cwd=tmp_path).stdout
