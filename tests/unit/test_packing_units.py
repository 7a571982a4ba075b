"""Packed Slurm arrays, the parts without processes: the site's limits, how shards are packed,
what Slurm's answer means for a packed shard, and the engine's parameters."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from _local_array import LocalArray

from zoopipe_hpc.engines.slurm import SlurmEngine
from zoopipe_hpc.engines.slurm._claims import ClaimBoard
from zoopipe_hpc.engines.slurm._limits import DEFAULT_LIMITS, SiteLimits, parse_site_limits
from zoopipe_hpc.engines.slurm._packed import node_cpus
from zoopipe_hpc.engines.slurm._packing import PACKED, Packing, choose_packing, packed_state
from zoopipe_hpc.engines.slurm._state import TaskState
from zoopipe_hpc.engines.slurm._watch import Shard
from zoopipe_hpc.engines.slurm.parameters import SlurmParameters
from zoopipe_hpc.errors import ConfigurationError
from zoopipe_hpc.progress import ProgressReader, ProgressWriter

# The head of `scontrol show config` on a Slurm 25.05 site (as its administrators published
# it), with the limits the engine reads among the other settings, in Slurm's layout.
SCONTROL_25_05 = """\
Configuration data as of 2025-11-03T10:12:41
AccountingStorageBackupHost = (null)
AccountingStorageEnforce = associations,limits,qos,safe
AccountingStorageType   = accounting_storage/slurmdbd
CompleteWait            = 0 sec
JobAcctGatherFrequency  = 30
JobAcctGatherType       = jobacct_gather/linux
JobRequeue              = 0
KillWait                = 30 sec
MaxArraySize            = 11000
MaxBatchRequeue         = 5
MaxJobCount             = 65000
MaxStepCount            = 40000
MinJobAge               = 300 sec
PreemptMode             = OFF
PreemptType             = (null)
PriorityDecayHalfLife   = 7-00:00:00
SchedulerType           = sched/backfill
SelectType              = select/cons_tres
SelectTypeParameters    = CR_CORE_MEMORY
SlurmctldHost[0]        = kmgmt1(10.150.0.23)
SlurmctldHost[1]        = kmgmt2(10.150.0.2)
SlurmctldParameters     = enable_configless,rl_enable,rl_bucket_size=40,rl_refill_rate=4
SlurmctldPort           = 6817
TaskPlugin              = task/cgroup,task/affinity

Cgroup Support Configuration:
AllowedRAMSpace         = 100.0%
"""


def test_site_limits_are_read_from_scontrol_show_config() -> None:
    limits = parse_site_limits(SCONTROL_25_05)
    assert limits == SiteLimits(
        max_array_size=11000,
        max_job_count=65000,
        min_job_age=300,
        rate_limit_per_minute=240.0,  # rl_refill_rate=4 every (default) 1 s
        rate_limit_bucket=40,
    )


def test_missing_limits_keep_slurms_defaults_and_bad_ones_name_their_line() -> None:
    assert parse_site_limits("Configuration data as of now\nMaxArraySize = 4\n") == SiteLimits(
        max_array_size=4
    )
    assert parse_site_limits("") == DEFAULT_LIMITS == SiteLimits(1001, 10000, 300)
    with pytest.raises(ConfigurationError, match=r"line 3: MaxJobCount is 'lots'"):
        parse_site_limits("Configuration data\nMaxArraySize = 10\nMaxJobCount = lots\n")


def test_engine_reads_the_limits_once(tmp_path: Path) -> None:
    cli = LocalArray(config=SCONTROL_25_05)
    engine = SlurmEngine(folder=tmp_path, cli=cli)
    assert engine.max_array_size() == 11000
    assert engine.site_limits().max_job_count == 65000
    assert cli.calls["scontrol"] == 1


def test_a_sites_rate_limit_is_read_and_the_budget_stays_within_half_of_it(
    tmp_path: Path,
) -> None:
    """``SlurmctldParameters=rl_enable,...`` (Slurm 23.02+): requests a minute per user."""
    strict = "MaxArraySize = 100\nSlurmctldParameters = enable_configless,rl_enable,"
    strict += "rl_bucket_size=6,rl_refill_rate=1,rl_refill_period=20\n"
    limits = parse_site_limits(strict)
    assert limits.rate_limit_per_minute == 3.0 and limits.rate_limit_bucket == 6
    defaults = parse_site_limits("SlurmctldParameters = rl_enable\n")
    assert defaults.rate_limit_per_minute == 120.0 and defaults.rate_limit_bucket == 30
    assert parse_site_limits("SlurmctldParameters = enable_configless\n").rate_limit_bucket is None
    with pytest.raises(ConfigurationError, match="line 1: rl_refill_period is 'x'"):
        parse_site_limits("SlurmctldParameters = rl_enable,rl_refill_period=x\n")
    engine = SlurmEngine(folder=tmp_path, cli=LocalArray(config=strict))
    engine.site_limits()
    assert engine._budget.per_minute == 1.5 and engine._budget.capacity == 3
    roomy = SlurmEngine(folder=tmp_path, cli=LocalArray(config="SlurmctldParameters = rl_enable\n"))
    roomy.site_limits()
    assert roomy._budget.per_minute == 4.0 and roomy._budget.capacity == 10


def choose(shards: int, limits: SiteLimits = DEFAULT_LIMITS, **kwargs: object) -> Packing | None:
    options: dict[str, object] = {"max_tasks": None, "workers_per_task": None}
    options.update(kwargs)
    parameters = options.pop("parameters", SlurmParameters())
    return choose_packing(shards, parameters=parameters, limits=limits, **options)  # type: ignore[arg-type]


def test_one_shard_per_task_unless_asked_or_past_the_sites_limits(
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert choose(1001) is None
    assert choose(5, max_tasks=2) == Packing(2, 1)
    assert choose(5, max_tasks=2, parameters=SlurmParameters(cpus_per_task=8)) == Packing(2, 8)
    assert choose(5, max_tasks=2, workers_per_task=3) == Packing(2, 3)
    # Whole nodes: every CPU the node gives the task, counted in the task (0).
    assert choose(5, max_tasks=2, parameters=SlurmParameters(exclusive=True)) == Packing(2, 0)
    assert choose(5, max_tasks=2, parameters=SlurmParameters(nodes=1)) == Packing(2, 0)
    whole = SlurmParameters(extra={"exclusive": True})
    assert choose(5, max_tasks=2, parameters=whole) == Packing(2, 0)
    with caplog.at_level(logging.INFO, logger="zoopipe_hpc.engines.slurm.engine"):
        assert choose(50_000) == Packing(1000, 1)  # a tenth of MaxJobCount, within MaxArraySize
        assert "50000 shards are more than the site allows" in caplog.text
        assert choose(600, SiteLimits(max_job_count=500)) == Packing(50, 1)
        assert choose(5, SiteLimits(max_array_size=3), max_tasks=8) == Packing(3, 1)
        assert "MaxArraySize=3" in caplog.text
    assert Packing(12, 2).tasks_for(240) == 12 and Packing(12, 2).tasks_for(5) == 5


def test_packing_parameters_are_checked(tmp_path: Path) -> None:
    for bad in ({"max_tasks": 0}, {"workers_per_task": -1}, {"max_tasks": True}):
        with pytest.raises(ConfigurationError, match="must be 1 or more"):
            SlurmEngine(folder=tmp_path, **bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="nodes"):
        SlurmEngine(folder=tmp_path, nodes=2)


def test_job_script_dry_run_shows_the_packed_array(tmp_path: Path) -> None:
    cli = LocalArray()
    script = SlurmEngine(folder=tmp_path, cli=cli, max_tasks=12, exclusive=True).job_script(240)
    assert "#SBATCH --array=0-11%12" in script
    assert "#SBATCH --exclusive" in script
    assert "--shards 0-239 --packed 0" in script
    # Past MaxArraySize (Slurm's default 1001 while the site's are not read), the engine packs
    # by itself; a dry run asks Slurm nothing.
    script = SlurmEngine(folder=tmp_path, cli=cli).job_script(20_000)
    assert "#SBATCH --array=0-999%1000" in script and "--shards 0-19999 --packed 1" in script
    assert "--packed" not in SlurmEngine(folder=tmp_path, cli=cli).job_script(1001)
    assert cli.total_calls() == 0
    site = SlurmEngine(folder=tmp_path, cli=LocalArray(config=SCONTROL_25_05))
    site.site_limits()
    assert "--packed" not in site.job_script(10_000)  # within this site's MaxArraySize=11000


def test_node_cpus_follow_slurm_then_the_affinity_mask(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLURM_CPUS_ON_NODE", "64")
    assert node_cpus() == 64
    monkeypatch.delenv("SLURM_CPUS_ON_NODE")
    assert node_cpus() == len(os.sched_getaffinity(0))


def packed_shard(index: int = 0, job: str = "55") -> Shard:
    shard = Shard(index, packed=True)
    shard.submissions.append((job, PACKED))
    return shard


def test_a_packed_shard_without_a_record_is_pending_while_any_task_is(tmp_path: Path) -> None:
    shard = packed_shard()
    assert shard.job_id == "55_*"
    assert packed_state(shard, {}, tmp_path) is None  # Slurm does not know the array yet
    states = {
        "55_0": TaskState("55_0", "COMPLETED"),
        "55_1": TaskState("55_1", "RUNNING", node="n2"),
        "56_0": TaskState("56_0", "FAILED"),
    }
    assert packed_state(shard, states, tmp_path) == TaskState("55_*", "PENDING")
    states["55_1"] = TaskState("55_1", "COMPLETED")
    unclaimed = packed_state(shard, states, tmp_path)
    assert unclaimed is not None and unclaimed.state == "UNCLAIMED" and not unclaimed.active
    assert "before one claimed this shard" in unclaimed.describe()
    # From squeue, ended tasks vanish: an empty answer means every task ended.
    assert packed_state(shard, {}, tmp_path, missing_is_gone=True) == unclaimed


def test_a_claimed_shard_follows_its_claimants_task(tmp_path: Path) -> None:
    (tmp_path / "progress").mkdir(mode=0o700)
    ClaimBoard(tmp_path, "55-1-r0", [0]).open().claim(0)
    shard = packed_shard()
    states = {"55_0": TaskState("55_0", "COMPLETED"), "55_1": TaskState("55_1", "FAILED")}
    assert packed_state(shard, states, tmp_path) == states["55_1"]
    assert shard.job_id == "55_1" and shard.restart_of("55-1-r2") == 2
    assert shard.restart_of("55-0-r0") is None  # no other task's records count now
    assert packed_state(shard, {}, tmp_path, missing_is_gone=True) == TaskState("55_1", "GONE")


def test_a_pinned_shard_whose_task_runs_sees_its_own_failure_at_once(tmp_path: Path) -> None:
    shard = packed_shard()
    assert shard.restart_of("55-3-r1") == 1 and shard.restart_of("54-3-r1") is None
    shard.pin_task("55-3-r1")
    assert shard.submissions[-1] == ("55", 3)
    states = {"55_3": TaskState("55_3", "RUNNING", node="n1")}
    assert packed_state(shard, states, None) == states["55_3"]  # no record: still running
    record = tmp_path / "progress-00000.55-3-r1.rec"
    with ProgressWriter(record, "55-3-r1") as writer:
        writer.start()
        shard.reader = ProgressReader(record, expected_attempt_id="55-3-r1")
        shard.reader.poll()
        assert packed_state(shard, states, None) == states["55_3"]  # running: nothing to say
        writer.fail("RuntimeError: boom")
    shard.reader.poll()
    # The task goes on with its other shards, but this one is over: the engine may retry it.
    failed = packed_state(shard, states, None)
    assert failed == TaskState("55_3", "SHARD_FAILED", "", "n1") and not failed.active
    assert "failed this shard (the task goes on" in failed.describe()


def test_resubmitting_no_shards_of_a_packed_engine_submits_nothing(tmp_path: Path) -> None:
    cli = LocalArray()
    engine = SlurmEngine(folder=tmp_path, cli=cli, max_tasks=2)
    engine.attach(tmp_path / "job", [["4200_*"], ["4200_1"]])
    assert [s.packed for s in engine._shards] == [True, False]
    assert engine._shards[0].job_id == "4200_*" and engine._shards[1].job_id == "4200_1"
    assert engine.resubmit([]) == []
    assert cli.calls["sbatch"] == 0
