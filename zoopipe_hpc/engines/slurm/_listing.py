"""The names a folder got since it was last read, without reading it when it did not change.

The Slurm engine finds each shard's progress record (and a requeued task's next one) in the
job's progress folder, which holds two files per shard that ever ran: listing it at every poll
costs O(shards). :class:`FolderListing` reads it only when it may hold a new name, and hands
out each name once (the names seen before are set aside by a set difference, not one by one
in Python), so a poll that finds nothing new costs one ``stat`` of the folder:

* a name is made or removed in a folder only with a new modification time of the folder, so
  an unchanged ``st_mtime_ns`` means no new name, except within one tick of the filesystem's
  clock (a folder changed twice within a tick keeps its first mtime): after each change of
  the mtime the folder is listed once more, at the first look :data:`SETTLE` seconds or more
  after the change was seen;
* a client whose attribute cache serves an old mtime (NFS ``acdirmax``) is caught up with by a
  listing at least every :data:`RELIST_EVERY` seconds, whatever the mtime says.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path

__all__ = ["FolderListing", "RELIST_EVERY", "SETTLE"]

#: Seconds after a change of the folder's mtime during which an unchanged mtime is not trusted.
SETTLE = 1.0
#: The longest time between two listings, whatever the folder's mtime says.
RELIST_EVERY = 10.0


class FolderListing:
    """Hands out each entry of ``folder`` once (see the module); ``clock``: seconds."""

    def __init__(self, folder: Path, clock: Callable[[], float]) -> None:
        self.folder = folder
        self._clock = clock
        self._seen: set[str] = set()
        self._mtime_ns: int | None = None
        self._moved_at = -math.inf
        self._listed_at = -math.inf

    def relist_due(self) -> bool:
        """Whether the last listing is :data:`RELIST_EVERY` seconds old or more."""
        return self._clock() - self._listed_at >= RELIST_EVERY

    def new_entries(self) -> list[tuple[str, str]]:
        """``(name, path)`` of the entries not handed out before, by name; [] without listing
        the folder when its mtime says nothing can be new."""
        now = self._clock()
        mtime = os.stat(self.folder).st_mtime_ns
        if mtime != self._mtime_ns:
            self._mtime_ns = mtime
            self._moved_at = now
        elif now - self._listed_at < RELIST_EVERY and (
            now - self._moved_at < SETTLE or self._listed_at - self._moved_at >= SETTLE
        ):
            # Listed since the change (within the tick: once more when SETTLE is over).
            return []
        self._listed_at = now
        fresh = set(os.listdir(self.folder)) - self._seen
        self._seen |= fresh
        prefix = os.path.join(self.folder, "")
        return [(name, prefix + name) for name in sorted(fresh)]
