"""The ``--wide`` table of ``throughput.py``: a realistic 16-column CSV with ``NA`` markers.

Ints and floats with missing values written ``NA``, categorical strings (a ``Literal`` and a
string ``Enum``), a timestamp ending in ``Z``, a date, a bool, an optional text and a UUID;
every 33rd record has a quantity that is not an integer (about 3 % invalid rows).
"""

from __future__ import annotations

import datetime as dt
import enum
import os
import random
import uuid
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator

#: Every ``INVALID_EVERY``-th record is invalid (``qty`` is ``"x..."``).
INVALID_EVERY = 33
NULL = "NA"


class Tier(enum.StrEnum):
    FREE = "free"
    BASIC = "basic"
    PRO = "pro"
    ENTERPRISE = "enterprise"


Status = Literal["new", "paid", "shipped", "returned", "cancelled"]
Country = Literal["DE", "FR", "ES", "IT", "NL", "PL", "US", "GB"]


class WideRecord(BaseModel):
    """The model both engines validate the wide CSV against (zoopipe_hpc: ``NA`` is null)."""

    order_id: int
    customer_id: int
    qty: int | None
    unit_price: float | None
    discount: float | None
    tax: float | None
    weight_kg: float | None
    rating: int | None
    status: Status
    tier: Tier
    country: Country
    created_at: dt.datetime
    ship_date: dt.date
    gift: bool
    note: str | None
    order_uuid: uuid.UUID


def _na(value: Any) -> Any:
    return None if value == NULL else value


#: ``X | None`` that also takes the text ``NA`` as None: ZooPipe's CSV reader has no null
#: markers, so its model turns them into None itself (a before-validator per optional field).
NAInt = Annotated[int | None, BeforeValidator(_na)]
NAFloat = Annotated[float | None, BeforeValidator(_na)]
NAStr = Annotated[str | None, BeforeValidator(_na)]


class WideRecordNA(BaseModel):
    """:class:`WideRecord` for ZooPipe: the same fields, ``NA`` mapped to None by the model."""

    order_id: int
    customer_id: int
    qty: NAInt
    unit_price: NAFloat
    discount: NAFloat
    tax: NAFloat
    weight_kg: NAFloat
    rating: NAInt
    status: Status
    tier: Tier
    country: Country
    created_at: dt.datetime
    ship_date: dt.date
    gift: bool
    note: NAStr
    order_uuid: uuid.UUID


COLUMNS = list(WideRecord.model_fields)
STATUSES = ["new", "paid", "shipped", "returned", "cancelled"]
COUNTRIES = ["DE", "FR", "ES", "IT", "NL", "PL", "US", "GB"]
WORDS = ["fragile", "leave at door", "gift wrap", "call first", "express", "back entrance"]


def _maybe(rng: random.Random, text: str, missing: float = 0.05) -> str:
    return NULL if rng.random() < missing else text


def ensure_wide_csv(rows: int, data_dir: Path, seed: int) -> tuple[Path, int]:
    """(path, invalid rows) of the wide CSV, generated once and reused afterwards."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / f"wide-{rows}-s{seed}.csv"
    invalid = sum(1 for i in range(rows) if i % INVALID_EVERY == INVALID_EVERY // 2)
    if path.exists():
        return path, invalid
    rng = random.Random(seed)
    start = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    tiers = [t.value for t in Tier]
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as out:
        out.write(",".join(COLUMNS) + "\n")
        for i in range(rows):
            created = start + dt.timedelta(seconds=31 * i, microseconds=(i * 7919) % 1_000_000)
            qty = _maybe(rng, str(rng.randint(1, 50)))
            if i % INVALID_EVERY == INVALID_EVERY // 2:
                qty = "x" + qty
            note = _maybe(rng, rng.choice(WORDS), missing=0.7)
            fields = [
                str(i),
                str(rng.randint(1, 200_000)),
                qty,
                _maybe(rng, f"{rng.uniform(0.5, 999):.2f}"),
                _maybe(rng, f"{rng.random() * 0.3:.3f}", missing=0.3),
                _maybe(rng, f"{rng.uniform(0, 80):.2f}"),
                _maybe(rng, f"{rng.uniform(0.01, 40):.3f}", missing=0.1),
                _maybe(rng, str(rng.randint(1, 5)), missing=0.4),
                rng.choice(STATUSES),
                rng.choice(tiers),
                rng.choice(COUNTRIES),
                created.isoformat().replace("+00:00", "Z"),
                (created.date() + dt.timedelta(days=rng.randint(0, 9))).isoformat(),
                "true" if rng.random() < 0.1 else "false",
                f'"{note}"' if "," in note else note,
                str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            ]
            out.write(",".join(fields) + "\n")
    os.replace(tmp, path)
    return path, invalid


def run_pyarrow_wide(source: Path, target: Path) -> dict[str, Any]:
    """Plain pyarrow, no validation: the wide CSV read with typed columns and ``NA`` as null
    (the timestamp as ``timestamp[us, UTC]``), written to Parquet."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    types = {
        "order_id": pa.int64(),
        "customer_id": pa.int64(),
        "qty": pa.string(),  # holds the invalid values: pyarrow would stop on them
        "unit_price": pa.float64(),
        "discount": pa.float64(),
        "tax": pa.float64(),
        "weight_kg": pa.float64(),
        "rating": pa.int64(),
        "status": pa.string(),
        "tier": pa.string(),
        "country": pa.string(),
        "created_at": pa.timestamp("us", tz="UTC"),
        "ship_date": pa.date32(),
        "gift": pa.bool_(),
        "note": pa.string(),
        "order_uuid": pa.string(),
    }
    options = pacsv.ConvertOptions(column_types=types, null_values=[NULL], strings_can_be_null=True)
    reader = pacsv.open_csv(source, convert_options=options)
    rows = 0
    with pq.ParquetWriter(target, reader.schema) as writer:
        for batch in reader:
            writer.write_batch(batch)
            rows += batch.num_rows
    return {"success": rows, "errors": 0}
