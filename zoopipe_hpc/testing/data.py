"""Schema models and sample data used by the conformance suites.

Worker processes import the models from here by name (they are pickled by reference), so this
module imports neither pytest nor the suites.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, field_validator

__all__ = ["Record", "User", "Trigger", "users", "write_csv", "read_jsonl"]

#: One record or row: field name to value.
Record = dict[str, Any]


class User(BaseModel):
    """A plain record: ``users(n, bad_every=k)`` makes every k-th one invalid."""

    id: int
    name: str
    score: float


class Trigger(BaseModel):
    """A model whose ``name`` makes the worker misbehave on purpose.

    ``boom`` raises, ``sigkill`` and ``sigsegv`` kill the worker with that signal, and
    ``sleep<seconds>`` (``sleep0.05``) slows validation down; any other name is valid.
    """

    id: int
    name: str

    @field_validator("name")
    @classmethod
    def _act(cls, value: str) -> str:
        if value == "boom":
            raise RuntimeError("boom requested by the test data")
        if value == "sigkill":
            os.kill(os.getpid(), signal.SIGKILL)
        if value == "sigsegv":
            os.kill(os.getpid(), signal.SIGSEGV)
        if value.startswith("sleep"):
            time.sleep(float(value[5:] or "0.01"))
        return value


def users(n: int, bad_every: int = 0) -> list[dict[str, Any]]:
    """``n`` :class:`User` rows; with ``bad_every=k``, rows 0, k, 2k... have an invalid id."""
    return [
        {
            "id": i if not (bad_every and i % bad_every == 0) else f"bad{i}",
            "name": f'user {i}, the "{i}th"',
            "score": i / 7,
        }
        for i in range(n)
    ]


def write_csv(
    path: Path, rows: Sequence[dict[str, Any]], fieldnames: Sequence[str] | None = None
) -> Path:
    """Write ``rows`` as a CSV file with a header line; returns ``path``."""
    names = list(fieldnames or rows[0])
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=names)
        writer.writeheader()
        writer.writerows(rows)
    return path


def read_jsonl(path: Path) -> list[Record]:
    """The objects of a JSON Lines file, blank lines skipped."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
