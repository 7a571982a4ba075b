"""Which shards the tasks of packed arrays claimed since the last look, without listing a
folder (private).

The tasks of a packed array walk its shards in one order, each claiming the next one nobody
holds (:class:`~._claims.ClaimBoard`): a task moves past a shard only once it is claimed, so
the claimed shards are the first ones of that order. :class:`ClaimFrontier` keeps, per array,
how far the claims have come, and at each look checks the claim of the next shard only: a look
costs one ``lstat`` per array plus a read of each new claim, however many shards the run has,
where listing the progress folder costs O(shards that ever ran). A claim's attempt id names
the record its shard will have (:func:`~.._worker.progress_path`).

A claim taken over by a requeued run of the same task (a later generation) is behind the
frontier: its new record is found by listing the progress folder, as the engine does while a
shard's record is stale or failed, and at least every ``RELIST_EVERY`` seconds.
"""

from __future__ import annotations

from pathlib import Path

from ._claims import claim_owner

__all__ = ["ClaimFrontier"]


class ClaimFrontier:
    """The claims of the packed arrays of the job in ``job_folder``, followed in claim order."""

    def __init__(self, job_folder: Path) -> None:
        self.job_folder = job_folder
        #: Per array with shards not seen claimed: its shards in claim order, and how many of
        #: them were seen claimed.
        self._queues: dict[str, tuple[list[int], int]] = {}

    def follow(self, array: str, shards: list[int]) -> None:
        """Follow the claims of packed array ``array``, whose tasks share ``shards`` (in the
        order they were submitted, which is the order the tasks claim them)."""
        if shards:
            self._queues[array] = (list(shards), 0)

    def started(self) -> set[str]:
        """The arrays whose tasks claimed some of their shards but not all yet."""
        return {array for array, (_, seen) in self._queues.items() if seen}

    def new_claims(self) -> list[tuple[int, str, str]]:
        """``(shard, array, attempt id of its claimant)`` of each claim made since the last
        look (the newest generation of each)."""
        found = []
        for array, (shards, seen) in list(self._queues.items()):
            while seen < len(shards):
                owner = claim_owner(self.job_folder, array, shards[seen])
                if owner is None:
                    break
                found.append((shards[seen], array, owner))
                seen += 1
            if seen == len(shards):
                del self._queues[array]
            else:
                self._queues[array] = (shards, seen)
        return found
