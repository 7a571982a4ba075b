"""Array tasks run by the test itself, as real processes, in place of Slurm's control plane.

:class:`LocalArray` is the engine's door to Slurm (a :class:`SlurmCLI`) for tests that run
without a cluster: ``sbatch`` keeps the job script the engine's own submission code wrote and
answers a job id, and the test starts that script's task command for the tasks it chooses
(:meth:`LocalArray.start_task`: ``python -P -u -m zoopipe_hpc.engines.slurm ...`` with
``SLURM_ARRAY_JOB_ID``, ``SLURM_ARRAY_TASK_ID`` and ``SLURM_RESTART_COUNT`` set by hand).
``sacct`` tells what those processes are doing (a task not started is PENDING), ``scontrol
show config`` gives a site's configuration, ``scancel`` stops the processes.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from zoopipe_hpc.engines.slurm import SlurmCLI, SlurmCommandError

__all__ = ["LocalArray", "SCONTROL_CONFIG"]

#: ``scontrol show config`` of a small site (the lines around the limits the engine reads, in
#: the layout Slurm prints them).
SCONTROL_CONFIG = """\
Configuration data as of 2026-12-01T23:58:10
AccountingStorageType   = accounting_storage/slurmdbd
ClusterName             = testcluster
DefMemPerCPU            = 500
JobRequeue              = 1
KillWait                = 30 sec
MaxArraySize            = 1001
MaxJobCount             = 10000
MaxStepCount            = 40000
MinJobAge               = 300 sec
SchedulerType           = sched/backfill
SlurmctldParameters     = enable_configless
"""

_ARRAY = re.compile(r"^#SBATCH --array=0-(\d+)", re.MULTILINE)


class LocalArray(SlurmCLI):
    def __init__(self, config: str = SCONTROL_CONFIG, *, autostart: bool = False) -> None:
        super().__init__(retries=0)
        self.config = config
        #: Start every task of an array as soon as it is submitted (as an idle cluster would).
        self.autostart = autostart
        self.scripts: dict[str, Path] = {}
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.cancelled: set[str] = set()
        self._texts: dict[str, str] = {}
        self._next_job = 4200

    def available(self, tool: str = "sbatch") -> bool:
        return tool in self.TOOLS

    def run(self, args: Sequence[str], *, check: bool = True) -> str:
        tool = args[0]
        self.calls[tool] += 1
        if list(args[:3]) == ["scontrol", "show", "config"]:
            return self.config
        if tool == "sbatch":
            job = str(self._next_job)
            self._next_job += 1
            script = Path(args[-1])
            self.scripts[job] = script.with_name(f"{job}_submission.sh")
            self._texts[job] = script.read_text()
            if self.autostart:
                for task in range(self.tasks(job)):
                    self.start_task(job, task)
            return f"{job}\n"
        if tool == "sacct":
            return self._sacct(args)
        if tool == "scancel":
            for key, process in self.processes.items():
                if key.partition("_")[0] in args[1:] and process.poll() is None:
                    self.cancelled.add(key)
                    process.send_signal(signal.SIGTERM)
            return ""
        raise SlurmCommandError(f"not run in a local array: {list(args)}", command=list(args))

    def adopt(self, job: str, script: Path) -> None:
        """Take over array ``job``, submitted by another process (e.g. one that died since)
        whose job script is ``script``; later submissions get higher job ids."""
        self.scripts[job] = script
        self._texts[job] = script.read_text()
        self._next_job = max(self._next_job, int(job) + 1)

    def script_text(self, job: str) -> str:
        """The job script ``sbatch`` was given for ``job`` (an array's, or a single job's)."""
        return self._texts[job]

    def tasks(self, job: str) -> int:
        """How many tasks the job's script asks for."""
        match = _ARRAY.search(self._texts[job])
        if match is None:
            raise AssertionError(f"{self.scripts[job]} is not an array")
        return int(match.group(1)) + 1

    def command(self, job: str) -> tuple[list[str], dict[str, str]]:
        """The task command of the job's script and the variables the script exports."""
        text = self._texts[job]
        exports: dict[str, str] = {}
        command: list[str] = []
        for line in text.splitlines():
            if line.startswith("export "):
                key, _, value = line[len("export ") :].partition("=")
                exports[key] = shlex.split(value)[0]
            if line.startswith("srun "):
                words = shlex.split(line)
                command = words[words.index(sys.executable) :]
        if not command:
            raise AssertionError(f"{self.scripts[job]} runs no task command")
        return command, exports

    def start_task(self, job: str, task: int, restart: int = 0) -> subprocess.Popen[bytes]:
        """Run task ``task`` of array ``job`` as Slurm would (its command, its variables)."""
        command, exports = self.command(job)
        env = {
            **os.environ,
            **exports,
            "SLURM_ARRAY_JOB_ID": job,
            "SLURM_ARRAY_TASK_ID": str(task),
            "SLURM_RESTART_COUNT": str(restart),
            "SLURMD_NODENAME": f"local{task}",
        }
        log = self.scripts[job].with_name(f"{job}_{task}_{restart}.local.err")
        with open(log, "ab") as stderr:
            process = subprocess.Popen(command, env=env, stderr=stderr)
        self.processes[f"{job}_{task}"] = process
        return process

    def _sacct(self, args: Sequence[str]) -> str:
        jobs = args[args.index("-j") + 1].split(",")
        rows = []
        for job in jobs:
            if job not in self.scripts:
                continue
            for task in range(self.tasks(job)):
                process = self.processes.get(f"{job}_{task}")
                code = None if process is None else process.poll()
                if process is None:
                    state, exit_code = "PENDING", "0:0"
                elif code is None:
                    state, exit_code = "RUNNING", "0:0"
                elif f"{job}_{task}" in self.cancelled:
                    state, exit_code = "CANCELLED", f"0:{-code if code < 0 else 0}"
                elif code == 0:
                    state, exit_code = "COMPLETED", "0:0"
                elif code < 0:
                    state, exit_code = "FAILED", f"0:{-code}"
                else:
                    state, exit_code = "FAILED", f"{code}:0"
                rows.append(f"{job}_{task}|{state}|{exit_code}|local{task}|{exit_code}")
        return "\n".join(rows) + "\n"
