"""DuckDB output (issue 14): the seeds' three pipes writing three tables of one DuckDB file.

Every table a run writes to one database is loaded in one DuckDB transaction, with the run id
recorded in ``_zoopipe_runs``: a failing pipe leaves every table as it was, a run that died
after its decision is finished by the next run without loading it twice, and two runs on one
database queue on its commit lock.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from _support import Order, Product, Trigger, User, users, write_csv

from zoopipe_hpc import CSVInputAdapter, DuckDBOutputAdapter, Pipe, PipeManager
from zoopipe_hpc.adapters.base import BaseOutputAdapter
from zoopipe_hpc.commit import transaction
from zoopipe_hpc.errors import CommitError, ConfigurationError
from zoopipe_hpc.testing import CommitStrategyConformance

duckdb = pytest.importorskip("duckdb")

REPO = Path(__file__).resolve().parents[2]
TABLES = ("users", "orders", "products")


def _inputs(folder: Path, n: int = 30) -> dict[str, Path]:
    return {
        "users": write_csv(folder / "users.csv", users(n, bad_every=10)),
        "orders": write_csv(
            folder / "orders.csv",
            [{"order_id": i, "user_id": i % 7, "amount": i * 1.5} for i in range(n)],
        ),
        "products": write_csv(
            folder / "products.csv",
            [{"sku": f"sku-{i}", "title": f"product {i}", "price": i / 4} for i in range(n)],
        ),
    }


def _seed_pipes(folder: Path, mode: str = "replace") -> list[Pipe]:
    """The seed document's "Different Pipelines in Parallel" example, in ``folder``."""
    _inputs(folder)
    return _pipes(folder, mode)


def _pipes(folder: Path, mode: str) -> list[Pipe]:
    """The seed example's pipes on the inputs ``_inputs`` wrote in ``folder``."""
    inputs = {table: folder / f"{table}.csv" for table in TABLES}
    database = folder / "analytics.duckdb"
    return [
        Pipe(
            input_adapter=CSVInputAdapter(inputs["users"]),
            output_adapter=DuckDBOutputAdapter(database, table_name="users", mode=mode),
            schema_model=User,
        ),
        Pipe(
            input_adapter=CSVInputAdapter(inputs["orders"]),
            output_adapter=DuckDBOutputAdapter(database, table_name="orders", mode=mode),
            schema_model=Order,
        ),
        Pipe(
            input_adapter=CSVInputAdapter(inputs["products"]),
            output_adapter=DuckDBOutputAdapter(database, table_name="products", mode=mode),
            schema_model=Product,
        ),
    ]


def _read(database: Path) -> dict[str, list[tuple[Any, ...]] | None]:
    """Every table of the seed example (None: missing), rows in insertion order."""
    if not database.exists():
        return dict.fromkeys(TABLES)
    with duckdb.connect(str(database), read_only=True) as connection:
        names = {row[0] for row in connection.execute("SHOW TABLES").fetchall()}
        return {
            table: (
                connection.execute(f'SELECT * FROM "{table}" ORDER BY rowid').fetchall()
                if table in names
                else None
            )
            for table in TABLES
        }


def _runs(database: Path) -> list[str]:
    with duckdb.connect(str(database), read_only=True) as connection:
        return [r[0] for r in connection.execute("SELECT run_id FROM _zoopipe_runs").fetchall()]


def test_the_seed_example_writes_all_three_tables(tmp_path: Path) -> None:
    database = tmp_path / "analytics.duckdb"
    manager = PipeManager(pipes=_seed_pipes(tmp_path))
    manager.start()
    manager.wait()
    assert manager.error is None
    tables = _read(database)
    assert tables["users"] == [
        (i, f'user {i}, the "{i}th"', i / 7) for i in range(30) if i % 10 != 0
    ]
    assert tables["orders"] == [(i, i % 7, i * 1.5) for i in range(30)]
    assert tables["products"] == [(f"sku-{i}", f"product {i}", i / 4) for i in range(30)]
    assert len(_runs(database)) == 1
    assert not list((tmp_path / ".zoopipe-staging").glob("*.run-*"))


def test_a_failing_third_pipe_leaves_all_three_tables_as_they_were(tmp_path: Path) -> None:
    database = tmp_path / "analytics.duckdb"
    assert PipeManager(_seed_pipes(tmp_path)).run(timeout=120)
    before = _read(database)
    pipes = _seed_pipes(tmp_path, mode="append")
    bad = write_csv(
        tmp_path / "bad.csv", [{"id": i, "name": "sigkill" if i == 3 else "ok"} for i in range(6)]
    )
    pipes[2] = Pipe(CSVInputAdapter(bad), pipes[2].output_adapter, Trigger)  # its worker dies
    manager = PipeManager(pipes)
    assert manager.run(timeout=120) is False
    assert _read(database) == before
    assert len(_runs(database)) == 1


def test_a_failing_load_undoes_the_tables_replaced_before_it(tmp_path: Path) -> None:
    """The third table's rows do not fit it: the first two, already replaced inside the
    DuckDB transaction, are back as they were, and the run is not recorded."""
    database = tmp_path / "analytics.duckdb"
    assert PipeManager(_seed_pipes(tmp_path, mode="append")).run(timeout=120)
    before = _read(database)
    pipes = _pipes(tmp_path, "replace")
    other = write_csv(tmp_path / "other.csv", [{"id": i, "name": "x"} for i in range(4)])
    table = DuckDBOutputAdapter(database, table_name="products", mode="append")
    pipes[2] = Pipe(CSVInputAdapter(other), table, Trigger)  # columns products does not have
    manager = PipeManager(pipes)
    assert manager.run(timeout=120) is False
    assert isinstance(manager.error, CommitError)
    assert "products" in str(manager.error) and "rolled back" in str(manager.error)
    assert _read(database) == before
    assert len(_runs(database)) == 1


def test_replace_and_append(tmp_path: Path) -> None:
    database = tmp_path / "analytics.duckdb"
    assert PipeManager(_seed_pipes(tmp_path, mode="append")).run(timeout=120)
    once = _read(database)
    assert PipeManager(_seed_pipes(tmp_path, mode="append")).run(timeout=120)
    twice = _read(database)
    for table in TABLES:
        assert twice[table] == (once[table] or []) * 2, table
    assert PipeManager(_seed_pipes(tmp_path, mode="replace")).run(timeout=120)
    assert _read(database) == once
    assert len(_runs(database)) == 3


_CHILD = textwrap.dedent(
    """
    import os, sys
    sys.path.insert(0, {tests!r})
    sys.path.insert(0, {integration!r})
    from pathlib import Path
    from zoopipe_hpc import PipeManager
    from zoopipe_hpc.commit import transaction
    from test_duckdb_output import _pipes

    def die_at(name):
        if name == {step!r}:
            os.kill(os.getpid(), 9)

    transaction._step = die_at
    ok = PipeManager(_pipes(Path({folder!r}), "append")).run(timeout=120)
    sys.exit(3 if ok else 4)  # the step was never reached
    """
)


@pytest.mark.parametrize("step", ["recorded-prepared", "recorded", "published:1"])
def test_a_run_killed_during_its_commit_is_settled_by_the_next_run_once(
    tmp_path: Path, step: str
) -> None:
    database = tmp_path / "analytics.duckdb"
    assert PipeManager(_seed_pipes(tmp_path, mode="append")).run(timeout=120)
    once = _read(database)
    code = _CHILD.format(
        tests=str(REPO / "tests"),
        integration=str(REPO / "tests" / "integration"),
        step=step,
        folder=str(tmp_path),
    )
    child = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=180
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    decided = step != "recorded-prepared"
    assert _read(database) == ({t: (once[t] or []) * 2 for t in TABLES} if decided else once)
    # The next run settles the dead one first (finished once, or undone), then appends.
    assert PipeManager(_seed_pipes(tmp_path, mode="append")).run(timeout=120)
    copies = 3 if decided else 2
    assert _read(database) == {t: (once[t] or []) * copies for t in TABLES}
    assert len(_runs(database)) == copies
    assert not list((tmp_path / ".zoopipe-staging").glob("*.run-*"))


@pytest.mark.parametrize("step", ["recorded-prepared", "published:0", "recorded"])
def test_a_dead_run_is_settled_from_its_record_alone(tmp_path: Path, step: str) -> None:
    """What settles a dead run need not write its tables: the entries are enough (here, the
    leftovers of one table are cleaned with no adapter at all, as ``zoopipe-hpc`` does)."""
    database = tmp_path / "analytics.duckdb"
    assert PipeManager(_seed_pipes(tmp_path, mode="append")).run(timeout=120)
    once = _read(database)
    code = _CHILD.format(
        tests=str(REPO / "tests"),
        integration=str(REPO / "tests" / "integration"),
        step=step,
        folder=str(tmp_path),
    )
    child = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=180
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert transaction.clean_leftovers(tmp_path / "analytics.duckdb#orders")
    landed = step != "recorded-prepared"
    assert _read(database) == {t: (once[t] or []) * (2 if landed else 1) for t in TABLES}
    assert len(_runs(database)) == (2 if landed else 1)
    assert not list((tmp_path / ".zoopipe-staging").glob("*.run-*"))


def test_two_concurrent_runs_on_one_database_both_land(tmp_path: Path) -> None:
    """DuckDB has one writer per file: the second run waits on the database's commit lock."""
    database = tmp_path / "analytics.duckdb"
    code = _CHILD.format(
        tests=str(REPO / "tests"),
        integration=str(REPO / "tests" / "integration"),
        step="never",
        folder=str(tmp_path),
    )
    _inputs(tmp_path)
    children = [
        subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    for child in children:
        _, stderr = child.communicate(timeout=300)
        assert child.returncode == 3, stderr  # ran to its end
    assert len(_runs(database)) == 2
    assert _read(database)["orders"] == [(i, i % 7, i * 1.5) for i in range(30)] * 2


def test_a_commit_waits_for_another_program_holding_the_database(tmp_path: Path) -> None:
    """A DuckDB writer outside zoopipe_hpc holds DuckDB's own file lock: the commit retries."""
    database = tmp_path / "analytics.duckdb"
    pipes = _seed_pipes(tmp_path)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb, time; c = duckdb.connect({str(database)!r}); print('held', "
            "flush=True); time.sleep(2)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert PipeManager(pipes).run(timeout=120)
    finally:
        holder.wait(timeout=30)
    assert len(_runs(database)) == 1


@pytest.mark.parametrize("merge", [True, False])
def test_the_shards_of_one_pipe_load_one_table_or_one_table_each(
    tmp_path: Path, merge: bool
) -> None:
    database = tmp_path / "analytics.duckdb"
    source = write_csv(tmp_path / "in.csv", users(400))
    pipe = Pipe(CSVInputAdapter(source), DuckDBOutputAdapter(database, table_name="users"), User)
    assert PipeManager.parallelize_pipe(pipe, workers=2, merge=merge).run(timeout=120)
    expected = [(i, f'user {i}, the "{i}th"', i / 7) for i in range(400)]
    with duckdb.connect(str(database), read_only=True) as connection:
        names = sorted(r[0] for r in connection.execute("SHOW TABLES").fetchall())
        tables = [n for n in names if n.startswith("users")]
        rows = [
            row
            for name in tables
            for row in connection.execute(f"SELECT * FROM {name} ORDER BY rowid").fetchall()
        ]
    assert tables == (["users"] if merge else ["users_part_00000", "users_part_00001"])
    assert rows == expected
    assert len(_runs(database)) == 1


def test_importing_the_package_does_not_import_duckdb() -> None:
    code = (
        "import sys, zoopipe_hpc; zoopipe_hpc.DuckDBOutputAdapter; print('duckdb' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert out.stdout.strip() == "False"


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="identifier"):
        DuckDBOutputAdapter("a.duckdb", table_name="users; drop")
    with pytest.raises(ConfigurationError, match="mode"):
        DuckDBOutputAdapter("a.duckdb", table_name="users", mode="upsert")
    with pytest.raises(ConfigurationError, match="_zoopipe_runs"):
        DuckDBOutputAdapter("a.duckdb", table_name="_zoopipe_runs")


class _DuckDBTable(CommitStrategyConformance):
    mode = "replace"

    def make_adapter(self, tmp_path: Path) -> BaseOutputAdapter:
        return DuckDBOutputAdapter(tmp_path / "db.duckdb", table_name="rows", mode=self.mode)

    def read_target(self, adapter: BaseOutputAdapter) -> list[dict[str, Any]]:
        if not isinstance(adapter, DuckDBOutputAdapter):
            raise TypeError(adapter)
        if not adapter.database.exists():
            return []
        with duckdb.connect(str(adapter.database), read_only=True) as connection:
            names = {row[0] for row in connection.execute("SHOW TABLES").fetchall()}
            if "rows" not in names:
                return []
            result = connection.execute("SELECT id, name FROM rows ORDER BY rowid")
            return [{"id": i, "name": n} for i, n in result.fetchall()]


class TestDuckDBReplace(_DuckDBTable):
    pass


class TestDuckDBAppend(_DuckDBTable):
    mode = "append"
    appends = True
