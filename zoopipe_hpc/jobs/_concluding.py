"""How a job ends: the shards' outcomes recorded, then one commit of every target, or none.

:class:`JobConcluder` adds to a :class:`JobReader` the steps that conclude a job from its
directory, in whatever process gets there (the attached ``run``, a ``resume``, the detached
commit or recover job): record the outcomes, commit through the job's run transaction (or
finish a commit that was decided before a crash), or roll back. Each step is idempotent.
"""

from __future__ import annotations

import logging

from ..engines.base import WorkerResult
from ..errors import JobError, ZoopipeHPCError
from ._reading import JobReader
from .manifest import JobState, Manifest

__all__ = ["JobConcluder"]

log = logging.getLogger(__name__)


class JobConcluder(JobReader):
    """A job that can be concluded: committed, marked failed, or rolled back."""

    def _conclude(self, results: list[WorkerResult]) -> bool:
        """Record the shards' outcomes; commit if all succeeded. Idempotent."""
        manifest = self.manifest()
        if manifest.state.is_final:
            return manifest.state is JobState.COMMITTED
        if manifest.state is JobState.COMMITTING and self._finish_decided_commit(manifest):
            return True

        def record(m: Manifest) -> None:
            for result in results:
                shard = m.shards[result.pipe_index]
                shard.state = result.status.value
                shard.attempt_id = result.report.attempt_id
                shard.message = result.message

        failed = [r for r in results if not r.succeeded or r.outcome is None]
        if failed:
            summary = "; ".join(f"shard {r.pipe_index}: {r.message}" for r in failed)

            def fail(m: Manifest) -> None:
                record(m)
                m.state = JobState.FAILED
                m.message = f"{len(failed)} of {len(results)} shards failed: {summary}"

            self.directory.update(fail, what="shards failed; staged parts kept for retry")
            log.error("job %s failed: %s", self.path.name, summary)
            return False

        def committing(m: Manifest) -> None:
            record(m)
            m.state = JobState.COMMITTING

        manifest = self.directory.update(committing, what="all shards completed; committing")
        transaction = self._merger_for(manifest).transaction
        try:
            transaction.begin()  # this process may not be the one that began it
            self._merger_for(manifest).on_finish(None, results)
        except ZoopipeHPCError as exc:
            if transaction.state == "decided":
                # Decided: the record is kept, and resume (or the next run) finishes it.
                unfinished = f"commit decided but not finished: {exc}"

                def decided(m: Manifest) -> None:
                    m.message = unfinished

                self.directory.update(decided, what="commit decided, publishing failed")
                log.error("job %s: %s", self.path.name, exc)
                return False
            reason = f"commit failed, targets untouched: {exc}"

            def commit_failed(m: Manifest) -> None:
                m.state = JobState.ROLLED_BACK
                m.message = reason

            self.directory.update(commit_failed, what="commit failed; rolled back")
            log.error("job %s: commit failed: %s", self.path.name, exc)
            return False

        def committed(m: Manifest) -> None:
            m.state = JobState.COMMITTED
            m.message = ""

        self.directory.update(committed, what="committed")
        return True

    def _finish_decided_commit(self, manifest: Manifest) -> bool:
        """A process that was committing died after the decision: finish from the record."""
        if not self._merger_for(manifest).transaction.recover(keep_undone=True):
            return False  # no record, or undone with the parts kept: commit again

        def committed(m: Manifest) -> None:
            m.state = JobState.COMMITTED
            m.message = "committed (finished from the commit record after a crash)"

        self.directory.update(committed, what="commit finished from its record")
        return True

    def _record_outcomes(self, results: list[WorkerResult]) -> None:
        """Record each shard's outcome and leave the job's state as it is."""

        def change(m: Manifest) -> None:
            for result in results:
                shard = m.shards[result.pipe_index]
                shard.state = result.status.value
                shard.attempt_id = result.report.attempt_id
                shard.message = result.message

        self.directory.update(change, what="shard outcomes recorded")

    def roll_back(self, reason: str) -> None:
        """Give up: discard the staged parts; the targets stay as they were."""
        manifest = self.manifest()
        if manifest.state.is_final:
            return
        self._merger_for(manifest).on_error(None, JobError(reason))

        def rolled_back(m: Manifest) -> None:
            m.state = JobState.ROLLED_BACK
            m.message = reason

        self.directory.update(rolled_back, what="rolled back")
