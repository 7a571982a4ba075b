"""Models and data builders shared by the tests (importable by worker processes)."""

from __future__ import annotations

import csv
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, field_validator

from zoopipe_hpc.progress._direct_io import read_fresh
from zoopipe_hpc.testing.data import User as User  # the suites' model, shared


class Trigger(BaseModel):
    """A model whose ``name`` can make the worker misbehave on purpose."""

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
        if value == "hog":
            hog = bytearray(600 * 2**20)
            for i in range(0, len(hog), 4096):
                hog[i] = 1
            time.sleep(20)
        if value.startswith("sleep"):
            time.sleep(float(value[5:] or "0.01"))
        return value


class Order(BaseModel):
    """An order of the seeds' three-table example (``tests/integration/test_duckdb_output.py``)."""

    order_id: int
    user_id: int
    amount: float


class Product(BaseModel):
    """A product of the seeds' three-table example."""

    sku: str
    title: str
    price: float


def write_csv(path: Path, rows: list[dict[str, Any]], fieldnames: list[str] | None = None) -> Path:
    names = fieldnames or list(rows[0])
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=names)
        writer.writeheader()
        writer.writerows(rows)
    return path


def users(n: int, bad_every: int = 0) -> list[dict[str, Any]]:
    return [
        {
            "id": i if not (bad_every and i % bad_every == 0) else f"bad{i}",
            "name": f'user {i}, the "{i}th"',
            "score": i / 7,
        }
        for i in range(n)
    ]


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The rows of a JSON-lines file, read as the product reads committed files (fresh, and
    ``ESTALE`` retried: on the shared filesystem a node's client may have just replaced it)."""
    text = read_fresh(path).decode("utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]
