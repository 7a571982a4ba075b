"""The description of a run, shared by ``PipeManager``, ``Pipe.run()`` and durable jobs.

A :class:`RunLayout` says which pipes run and which of their outputs go to which target (each
pipe's own output; the shards of one pipe into one merged target; or numbered targets). It holds
no run id and touches no file. :meth:`RunLayout.plan` makes a :class:`RunPlan` for one run:
the :class:`~zoopipe_hpc.commit.transaction.Transaction` with every target, and the pipes the
workers run, whose outputs are the targets' staged parts. The same layout and run id always
make the same plan, so a durable job's commit step (another process, maybe another node)
rebuilds exactly the plan its shards ran.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ._paths import Role, check_distinct
from .commit.transaction import Slot, Transaction
from .errors import ConfigurationError

if TYPE_CHECKING:
    from .adapters.base import BaseOutputAdapter
    from .pipe import Pipe

__all__ = ["OutputGroup", "RunLayout", "RunPlan"]

OUTPUT = "output"
ERRORS = "errors"


@dataclass(frozen=True)
class OutputGroup:
    """One target (``adapter``) and the pipe outputs that are its parts, in part order."""

    adapter: BaseOutputAdapter
    slots: tuple[Slot, ...]
    what: str


@dataclass
class RunPlan:
    """One run: the pipes the workers run and the transaction that commits their outputs."""

    pipes: list[Pipe]
    transaction: Transaction

    @property
    def run_id(self) -> str:
        return self.transaction.run_id


class RunLayout:
    """Which pipes a run has, and how their outputs map onto targets."""

    def __init__(self, pipes: Sequence[Pipe], groups: Sequence[OutputGroup]) -> None:
        self.pipes = list(pipes)
        self.groups = list(groups)
        for group in self.groups:
            for slot in group.slots:
                if not 0 <= slot.pipe_index < len(self.pipes):
                    raise ConfigurationError(f"{group.what}: no pipe {slot.pipe_index}")
        check_distinct(self.roles())

    def roles(self) -> list[Role]:
        """Every path the run reads or writes, with its role (inputs once per file)."""
        roles: list[Role] = []
        inputs: set[str] = set()
        for index, pipe in enumerate(self.pipes):
            for path in _input_paths(pipe):
                if str(path) not in inputs:
                    inputs.add(str(path))
                    roles.append(Role(f"pipes[{index}] input", path, "input"))
        for group in self.groups:
            roles.append(Role(group.what, group.adapter.path, "output"))
        return roles

    @classmethod
    def of_pipes(cls, pipes: Sequence[Pipe]) -> RunLayout:
        """Every pipe writes its own targets (``PipeManager([a, b])``, ``Pipe.run()``)."""
        groups = []
        for index, pipe in enumerate(pipes):
            groups.append(
                OutputGroup(pipe.output_adapter, (Slot(index, OUTPUT),), f"pipes[{index}] output")
            )
            if pipe.error_output_adapter is not None:
                groups.append(
                    OutputGroup(
                        pipe.error_output_adapter,
                        (Slot(index, ERRORS),),
                        f"pipes[{index}] error output",
                    )
                )
        return cls(pipes, groups)

    @classmethod
    def sharded(cls, pipe: Pipe, shards: Sequence[Pipe], merge: bool) -> RunLayout:
        """The shards of ``pipe``: merged into its targets, or (``merge=False``) each shard
        into numbered targets ``<stem>.part-NNNNN<suffix>``, published together."""
        if not merge:
            numbered = []
            for index, shard in enumerate(shards):
                errors = pipe.error_output_adapter
                numbered.append(
                    shard.with_outputs(
                        pipe.output_adapter.numbered(index),
                        errors.numbered(index) if errors is not None else None,
                    )
                )
            return cls.of_pipes(numbered)
        count = len(shards)
        groups = [
            OutputGroup(
                pipe.output_adapter,
                tuple(Slot(i, OUTPUT) for i in range(count)),
                f"output {pipe.output_adapter.describe()}",
            )
        ]
        if pipe.error_output_adapter is not None:
            groups.append(
                OutputGroup(
                    pipe.error_output_adapter,
                    tuple(Slot(i, ERRORS) for i in range(count)),
                    f"error output {pipe.error_output_adapter.describe()}",
                )
            )
        return cls(shards, groups)

    def plan(
        self, run_id: str | None = None, job_dir: str | os.PathLike[str] | None = None
    ) -> RunPlan:
        """The plan of one run (``run_id``: a durable job's; default a new one)."""
        transaction = Transaction(run_id, job_dir)
        outputs: list[dict[str, BaseOutputAdapter]] = [{} for _ in self.pipes]
        for group in self.groups:
            target = transaction.add(group.adapter, group.slots, group.what)
            sole = len(group.slots) == 1
            for part, slot in enumerate(group.slots):
                outputs[slot.pipe_index][slot.role] = group.adapter.as_part(
                    target.staging, part, sole=sole
                )
        pipes = []
        for index, (pipe, parts) in enumerate(zip(self.pipes, outputs, strict=True)):
            if OUTPUT not in parts:
                raise ConfigurationError(f"pipes[{index}] has no output in the run's layout")
            planned = pipe.with_outputs(parts[OUTPUT], parts.get(ERRORS))
            planned.pipe_index = index
            pipes.append(planned)
        return RunPlan(pipes, transaction)


def _input_paths(pipe: Pipe) -> list[Path]:
    """The files a pipe's input adapter reads (one, or several for a multi-file input)."""
    adapter = pipe.input_adapter
    paths = getattr(adapter, "paths", None)
    if paths is not None:
        return [Path(p) for p in paths]
    path = getattr(adapter, "path", None)
    return [Path(path)] if path is not None else []
