"""SQL output (issue 14) on a real SQLite file: the seeds' three pipes writing three tables of
one database, committed in one transaction (DDL included) and recorded by run id."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from _support import Order, Product, Trigger, User, users, write_csv

from zoopipe_hpc import CSVInputAdapter, Pipe, PipeManager, SQLOutputAdapter
from zoopipe_hpc.adapters.base import BaseOutputAdapter
from zoopipe_hpc.errors import CommitError, ConfigurationError
from zoopipe_hpc.testing import CommitStrategyConformance

pytest.importorskip("sqlalchemy")

REPO = Path(__file__).resolve().parents[2]
TABLES = ("users", "orders", "products")


def _inputs(folder: Path, n: int = 30) -> None:
    write_csv(folder / "users.csv", users(n, bad_every=10))
    write_csv(
        folder / "orders.csv",
        [{"order_id": i, "user_id": i % 7, "amount": i * 1.5} for i in range(n)],
    )
    write_csv(
        folder / "products.csv",
        [{"sku": f"sku-{i}", "title": f"product {i}", "price": i / 4} for i in range(n)],
    )


def _pipes(folder: Path, mode: str) -> list[Pipe]:
    """The seed example's three pipes, each into a table of ``folder/analytics.db``."""
    url = f"sqlite:///{folder / 'analytics.db'}"
    models = {"users": User, "orders": Order, "products": Product}
    return [
        Pipe(
            input_adapter=CSVInputAdapter(folder / f"{table}.csv"),
            output_adapter=SQLOutputAdapter(url, table_name=table, mode=mode),
            schema_model=models[table],
        )
        for table in TABLES
    ]


def _seed_pipes(folder: Path, mode: str = "replace") -> list[Pipe]:
    _inputs(folder)
    return _pipes(folder, mode)


def _read(database: Path) -> dict[str, list[tuple[Any, ...]] | None]:
    if not database.exists():
        return dict.fromkeys(TABLES)
    with sqlite3.connect(database) as connection:
        names = {r[0] for r in connection.execute("SELECT name FROM sqlite_master")}
        return {
            t: (
                connection.execute(f'SELECT * FROM "{t}" ORDER BY rowid').fetchall()
                if t in names
                else None
            )
            for t in TABLES
        }


def _runs(database: Path) -> int:
    with sqlite3.connect(database) as connection:
        return int(connection.execute("SELECT count(*) FROM _zoopipe_runs").fetchone()[0])


def test_the_seed_example_writes_all_three_tables(tmp_path: Path) -> None:
    database = tmp_path / "analytics.db"
    assert PipeManager(_seed_pipes(tmp_path)).run(timeout=120)
    tables = _read(database)
    assert tables["users"] == [
        (i, f'user {i}, the "{i}th"', i / 7) for i in range(30) if i % 10 != 0
    ]
    assert tables["orders"] == [(i, i % 7, i * 1.5) for i in range(30)]
    assert tables["products"] == [(f"sku-{i}", f"product {i}", i / 4) for i in range(30)]
    assert _runs(database) == 1


def test_a_failing_third_pipe_leaves_all_three_tables_as_they_were(tmp_path: Path) -> None:
    database = tmp_path / "analytics.db"
    assert PipeManager(_seed_pipes(tmp_path)).run(timeout=120)
    before = _read(database)
    pipes = _pipes(tmp_path, "replace")
    bad = write_csv(
        tmp_path / "bad.csv", [{"id": i, "name": "sigkill" if i == 3 else "ok"} for i in range(6)]
    )
    pipes[2] = Pipe(CSVInputAdapter(bad), pipes[2].output_adapter, Trigger)
    assert PipeManager(pipes).run(timeout=120) is False
    assert _read(database) == before


def test_a_failing_load_undoes_the_tables_replaced_before_it(tmp_path: Path) -> None:
    """The third table's rows do not fit it: the first two, already dropped and created again
    inside the transaction, are back as they were (SQLite's DDL is transactional)."""
    database = tmp_path / "analytics.db"
    assert PipeManager(_seed_pipes(tmp_path, mode="append")).run(timeout=120)
    before = _read(database)
    pipes = _pipes(tmp_path, "replace")
    other = write_csv(tmp_path / "other.csv", [{"id": i, "name": "x"} for i in range(4)])
    table = SQLOutputAdapter(f"sqlite:///{database}", table_name="products", mode="append")
    pipes[2] = Pipe(CSVInputAdapter(other), table, Trigger)  # columns products does not have
    manager = PipeManager(pipes)
    assert manager.run(timeout=120) is False
    assert isinstance(manager.error, CommitError)
    assert "products" in str(manager.error) and "rolled back" in str(manager.error)
    assert _read(database) == before
    assert _runs(database) == 1


def test_replace_and_append(tmp_path: Path) -> None:
    database = tmp_path / "analytics.db"
    assert PipeManager(_seed_pipes(tmp_path, mode="append")).run(timeout=120)
    once = _read(database)
    assert PipeManager(_pipes(tmp_path, "append")).run(timeout=120)
    assert _read(database) == {t: (once[t] or []) * 2 for t in TABLES}
    assert PipeManager(_pipes(tmp_path, "replace")).run(timeout=120)
    assert _read(database) == once
    assert _runs(database) == 3


_CHILD = textwrap.dedent(
    """
    import os, sys
    sys.path.insert(0, {tests!r})
    sys.path.insert(0, {integration!r})
    from pathlib import Path
    from zoopipe_hpc import PipeManager
    from zoopipe_hpc.commit import transaction
    from test_sql_output import _pipes

    def die_at(name):
        if name == {step!r}:
            os.kill(os.getpid(), 9)

    transaction._step = die_at
    ok = PipeManager(_pipes(Path({folder!r}), "append")).run(timeout=120)
    sys.exit(3 if ok else 4)
    """
)


def _child(folder: Path, step: str) -> str:
    return _CHILD.format(
        tests=str(REPO / "tests"),
        integration=str(REPO / "tests" / "integration"),
        step=step,
        folder=str(folder),
    )


@pytest.mark.parametrize("step", ["recorded-prepared", "recorded"])
def test_a_run_killed_during_its_commit_is_settled_by_the_next_run_once(
    tmp_path: Path, step: str
) -> None:
    database = tmp_path / "analytics.db"
    assert PipeManager(_seed_pipes(tmp_path, mode="append")).run(timeout=120)
    once = _read(database)
    child = subprocess.run(
        [sys.executable, "-c", _child(tmp_path, step)], capture_output=True, text=True, timeout=180
    )
    assert child.returncode == -9, child.stderr
    assert PipeManager(_pipes(tmp_path, "append")).run(timeout=120)
    copies = 3 if step == "recorded" else 2
    assert _read(database) == {t: (once[t] or []) * copies for t in TABLES}
    assert _runs(database) == copies


def test_two_concurrent_runs_on_one_database_both_land(tmp_path: Path) -> None:
    database = tmp_path / "analytics.db"
    _inputs(tmp_path)
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _child(tmp_path, "never")], stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    for child in children:
        _, stderr = child.communicate(timeout=300)
        assert child.returncode == 3, stderr
    assert _runs(database) == 2
    assert _read(database)["orders"] == [(i, i % 7, i * 1.5) for i in range(30)] * 2


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="identifier"):
        SQLOutputAdapter("sqlite:///a.db", table_name="a b")
    with pytest.raises(ConfigurationError, match="staging_dir"):
        SQLOutputAdapter("postgresql://u:secret@host/db", table_name="t")
    adapter = SQLOutputAdapter("postgresql://u:secret@h/db", table_name="t", staging_dir="/tmp")
    assert "secret" not in adapter.describe()


class _SQLTable(CommitStrategyConformance):
    mode = "replace"

    def make_adapter(self, tmp_path: Path) -> BaseOutputAdapter:
        return SQLOutputAdapter(tmp_path / "db.sqlite", table_name="rows", mode=self.mode)

    def read_target(self, adapter: BaseOutputAdapter) -> list[dict[str, Any]]:
        if not isinstance(adapter, SQLOutputAdapter) or adapter.database is None:
            raise TypeError(adapter)
        if not adapter.database.exists():
            return []
        with sqlite3.connect(adapter.database) as connection:
            names = {r[0] for r in connection.execute("SELECT name FROM sqlite_master")}
            if "rows" not in names:
                return []
            result = connection.execute("SELECT id, name FROM rows ORDER BY rowid")
            return [{"id": i, "name": n} for i, n in result.fetchall()]


class TestSQLiteReplace(_SQLTable):
    pass


class TestSQLiteAppend(_SQLTable):
    mode = "append"
    appends = True
