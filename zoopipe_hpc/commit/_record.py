"""The commit record and what settles it: publishing a record's entries, and finishing or
undoing the runs that dead processes left next to a target (see ``transaction.py``)."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..errors import CommitError
from ..progress._direct_io import read_fresh
from ._locks import locked_all
from ._staging import RECORD_FILE, TRANSACTION_FILE, StagingArea, owner_is_dead, run_folders
from .strategies import CommitStrategy, standalone_strategy

__all__ = [
    "RECORD_FORMAT",
    "any_external_landed",
    "clean_leftovers",
    "lock_paths",
    "publish_record",
    "read_record",
    "settle_record",
]

log = logging.getLogger(__name__)

RECORD_FORMAT = "zoopipe-hpc-commit/1"
#: Strategies whose target lives in the committing process (an in-memory sink): a record left by
#: a dead process is settled without them.
PROCESS_LOCAL = frozenset({"python"})
_PUBLISH_ATTEMPTS = 3


def _no_step(name: str) -> None:
    """No test hook."""


def read_record(path: Path) -> dict[str, Any] | None:
    try:
        record = json.loads(read_fresh(path))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise CommitError(
            f"the commit record {path} cannot be read ({exc}); its run's targets may be "
            "partly published: look at the record and the staging folder next to it",
            path=str(path),
        ) from exc
    if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT:
        raise CommitError(f"{path} is not a commit record", path=str(path))
    return record


def lock_paths(record: dict[str, Any]) -> list[Path]:
    """The targets whose commit locks a record's publication takes: the files (a catalog
    orders concurrent commits itself, and a table's writers must not wait on each other)."""
    return [Path(t["key"]) for t in record["targets"] if not t.get("external")]


def any_external_landed(record: dict[str, Any], strategies: Mapping[str, CommitStrategy]) -> bool:
    """Whether any catalog target of a record already has the run (True when unsure)."""
    for item in record["targets"]:
        if not item.get("external"):
            continue
        strategy = strategies.get(item["key"])
        if strategy is None and item["entry"].get("kind") in PROCESS_LOCAL:
            continue  # its consumer died with the process: it decides nothing
        alone = standalone_strategy(item["entry"].get("kind")) if strategy is None else None
        if strategy is None and alone is None:
            return True
        try:
            if strategy is not None and strategy.landed(item["entry"]):
                return True
            if alone is not None and alone.landed_alone(item["entry"]):
                return True
        except Exception as exc:  # noqa: BLE001 - cannot tell: treat as landed, finish it later
            log.error("cannot tell whether %s has run %s: %s", item["name"], record["run_id"], exc)
            return True
    return False


def settle_record(
    record: dict[str, Any],
    strategies: Mapping[str, CommitStrategy],
    step: Callable[[str], None] = _no_step,
) -> bool:
    """Finish (True) or undo (False) the run of a commit record whose process died; the
    caller discards the run's staging folders afterwards."""
    with locked_all(lock_paths(record)):
        if record.get("state") != "decided" and not any_external_landed(record, strategies):
            log.warning("undoing run %s: it died before its commit was decided", record["run_id"])
            return False
        log.warning("finishing the commit of run %s from its record", record["run_id"])
        publish_record(record, strategies, step=step)
        return True


def publish_record(
    record: dict[str, Any],
    strategies: Mapping[str, CommitStrategy],
    external: bool | None = None,
    step: Callable[[str], None] = _no_step,
) -> None:
    """Publish the entries of a record (all, or only the catalog ones / only the files); the
    caller holds the locks. Each entry is idempotent."""
    for index, item in enumerate(record["targets"]):
        if external is not None and bool(item.get("external")) is not external:
            continue
        entry = item["entry"]
        strategy = strategies.get(item["key"])
        if strategy is None and entry.get("kind") in PROCESS_LOCAL:
            log.warning(
                "run %s: %s lived in a process that is gone; skipped",
                record["run_id"],
                item["name"],
            )
            continue
        alone = standalone_strategy(entry.get("kind")) if strategy is None else None
        if alone is not None:
            publish: Callable[[dict[str, Any]], None] = alone.publish_alone
        elif strategy is None:
            raise CommitError(
                f"run {record['run_id']}: {item['name']} needs its adapter to be finished; "
                f"rerun the job that wrote it (commit record {record['primary']})",
                path=item["key"],
            )
        else:
            publish = strategy.publish
        if item.get("external"):
            publish(entry)  # a catalog retries conflicts itself; a failure is reported as is
        else:
            _retrying(publish, entry, item["name"])
        log.info("committed %s (run %s)", item["name"], record["run_id"])
        step(f"published:{index}")


def _retrying(publish: Callable[[dict[str, Any]], None], entry: dict[str, Any], name: str) -> None:
    for attempt in range(_PUBLISH_ATTEMPTS):
        try:
            publish(entry)
            return
        except (OSError, CommitError) as exc:
            if attempt + 1 == _PUBLISH_ATTEMPTS:
                raise
            log.warning("publishing %s failed (%s); retrying", name, exc)
            time.sleep(0.2 * (attempt + 1))


def clean_leftovers(
    target: str | os.PathLike[str],
    *,
    keep: set[Path] | frozenset[Path] = frozenset(),
    strategies: Mapping[str, CommitStrategy] | None = None,
) -> list[Path]:
    """Finish or discard the runs of ``target`` whose owner is provably gone.

    A dead run's folders with a commit record are published from the record (all of the run's
    targets, under their locks); without one they are discarded (with the run's folders next
    to its other targets). A live run's folders, and ``keep``, are left alone. Returns the
    folders removed.
    """
    removed: list[Path] = []
    for folder in run_folders(Path(target).absolute()):
        if folder in keep or not folder.exists() or not owner_is_dead(folder):
            continue
        removed.extend(_settle_dead_run(folder, strategies or {}))
    return removed


def _settle_dead_run(folder: Path, strategies: Mapping[str, CommitStrategy]) -> list[Path]:
    try:
        description = json.loads(read_fresh(folder / TRANSACTION_FILE))
        primary = Path(description["primary"])
        folders = [Path(p) for p in description["folders"]]
    except FileNotFoundError:
        primary, folders = folder, [folder]  # a folder of an older version: nothing to finish
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning(
            "leaving the staging folder %s alone: unreadable %s (%s)", folder, TRANSACTION_FILE, exc
        )
        return []
    record = read_record(primary / RECORD_FILE)
    if record is not None:
        settle_record(record, strategies)
    removed = []
    for path in [*[p for p in folders if p != primary], primary]:
        if path.exists():
            StagingArea.discard_folder(path)
            removed.append(path)
            log.info("removed leftover staging folder %s", path)
    return removed
