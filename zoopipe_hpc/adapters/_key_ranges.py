"""Database inputs read by one query, split into shards by ranges of a key column.

A shard reads ``SELECT * FROM (<source>) WHERE <key range> ORDER BY key NULLS FIRST``: the
first shard has no lower bound and also takes the rows whose key is NULL, the last has no upper
bound, and each bound in between is bound as a query parameter (never spliced into the SQL).
The bounds are the key's quantiles (the keys at offsets ``i * count / n`` in key order), so a
skewed key still gives shards of about equal size. See ``docs/duckdb.md``.
"""

from __future__ import annotations

import abc
import copy
import os
import re
from collections.abc import Iterator, Sequence
from typing import Any

from ..errors import ConfigurationError, InputError
from .base import BaseInputAdapter, InputBatch, check_workers

__all__ = ["KeyRangeInputAdapter", "IDENTIFIER", "quote"]

#: A plain SQL identifier: the only table and key names accepted (quoted in every query).
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

#: The alias of the source in every query.
_ALIAS = "_zoopipe_source"


def quote(name: str) -> str:
    """``name`` (a checked plain identifier) as a quoted SQL identifier."""
    return f'"{name}"'


def _identifier(what: str, value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not IDENTIFIER.fullmatch(value):
        raise ConfigurationError(
            f"{what} must be a plain SQL identifier (letters, digits, _), got {value!r}"
        )
    return value


class KeyRangeInputAdapter(BaseInputAdapter):
    """Reads the rows of ``table_name`` or of ``query`` in batches of ``batch_size`` rows;
    ``split(n)`` gives ``n`` shards by ranges of column ``key`` (one shard without a key).

    A subclass opens a read-only connection in the process that reads (:meth:`_rows`), and
    writes query parameters its own way (:meth:`_parameter`).
    """

    def __init__(
        self,
        source: str | os.PathLike[str],
        query: str | None,
        table_name: str | None,
        key: str | None,
        batch_size: int,
    ) -> None:
        super().__init__(source)
        if (query is None) == (table_name is None):
            raise ConfigurationError("give exactly one of query= and table_name=")
        if query is not None and (not isinstance(query, str) or not query.strip()):
            raise ConfigurationError(f"query must be a non-empty SQL text, got {query!r}")
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ConfigurationError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.query = query.strip().rstrip(";") if query is not None else None
        self.table_name = _identifier("table_name", table_name)
        self.key = _identifier("key", key)
        self.batch_size = batch_size
        #: This shard's key bounds: rows with ``lower <= key < upper`` (None: unbounded; the
        #: first shard also takes NULL keys). ``None`` for the whole input.
        self._range: tuple[Any, Any, bool] | None = None
        #: True for the extra shards of an input without a key: they read nothing.
        self._empty = False

    # -- what a backend provides ----------------------------------------------------------------

    @abc.abstractmethod
    def _rows(self, sql: str, parameters: Sequence[Any]) -> Iterator[InputBatch]:
        """Run ``sql`` (``parameters`` in the order of their markers) and yield its rows."""

    @abc.abstractmethod
    def _scalars(self, sql: str, parameters: Sequence[Any]) -> tuple[Any, ...]:
        """The first row of ``sql`` (None for no row as a 1-tuple)."""

    @abc.abstractmethod
    def _parameter(self, index: int) -> str:
        """The marker of parameter ``index`` (0-based) in this backend's SQL."""

    # -- queries --------------------------------------------------------------------------------

    def _from(self) -> str:
        if self.table_name is not None:
            return f"{quote(self.table_name)} AS {_ALIAS}"
        return f"({self.query}) AS {_ALIAS}"

    def _what(self) -> dict[str, Any]:
        """What an error names besides the database."""
        if self.table_name is not None:
            return {"table": self.table_name}
        return {"query": self.query}

    def _fail(self, doing: str, exc: BaseException) -> InputError:
        named = f"table {self.table_name}" if self.table_name else f"query {self.query!r}"
        return InputError(f"cannot {doing} {named}: {exc}", path=self.source, **self._what())

    def _shard_sql(self) -> tuple[str, list[Any]]:
        sql = f"SELECT * FROM {self._from()}"
        parameters: list[Any] = []
        if self.key is None:
            return sql, parameters
        column = f"{_ALIAS}.{quote(self.key)}"
        if self._range is not None:
            lower, upper, first = self._range
            where: list[str] = []
            if lower is not None:
                where.append(f"{column} >= {self._parameter(len(parameters))}")
                parameters.append(lower)
            if upper is not None:
                where.append(f"{column} < {self._parameter(len(parameters))}")
                parameters.append(upper)
            clause = " AND ".join(where)
            if first and clause:
                clause = f"{column} IS NULL OR ({clause})"
            elif not first:
                clause = clause or f"{column} IS NOT NULL"
            if clause:
                sql += f" WHERE {clause}"
        return f"{sql} ORDER BY {column} NULLS FIRST", parameters

    # -- BaseInputAdapter -----------------------------------------------------------------------

    def batches(self) -> Iterator[InputBatch]:
        """The rows in batches of at most ``batch_size``, in key order (NULL keys first) when
        there is a key, else in the order the database gives them."""
        self.check()
        if self._empty:
            return
        sql, parameters = self._shard_sql()
        yield from self._rows(sql, parameters)

    def check(self) -> None:
        """Raise :class:`InputError` unless the source can be queried (no row is read)."""
        self._scalars(f"SELECT 1 FROM {self._from()} WHERE 1 = 0", [])

    def max_shards(self, wanted: int) -> int:
        """``wanted`` with a key, 1 without (the rows cannot be divided)."""
        return wanted if self.key is not None else 1

    def split(self, workers: int) -> list[BaseInputAdapter]:
        """``workers`` shards by key ranges at the key's quantiles; without a key, the whole
        input then ``workers - 1`` empty shards."""
        n = check_workers(workers)
        self.check()
        if self.key is None or self._empty or self._range is not None or n == 1:
            return [self] + [self._shard(None, empty=True) for _ in range(n - 1)]
        column = f"{_ALIAS}.{quote(self.key)}"
        (count,) = self._scalars(f"SELECT count({column}) FROM {self._from()}", [])
        count = int(count or 0)
        bounds: list[Any] = []
        for index in range(1, n):
            offset = index * count // n
            if offset >= count:
                bounds.append(bounds[-1] if bounds else None)
                continue
            (value,) = self._scalars(
                f"SELECT {column} FROM {self._from()} WHERE {column} IS NOT NULL "
                f"ORDER BY {column} LIMIT 1 OFFSET {int(offset)}",
                [],
            )
            bounds.append(value)
        if count == 0 or any(b is None for b in bounds):
            # No key values at all: the first shard reads everything (NULL keys), the rest none.
            return [self._shard((None, None, True))] + [
                self._shard(None, empty=True) for _ in range(n - 1)
            ]
        edges = [None, *bounds, None]
        return [self._shard((edges[i], edges[i + 1], i == 0)) for i in range(n)]

    def _shard(self, bounds: tuple[Any, Any, bool] | None, *, empty: bool = False) -> Any:
        shard = copy.copy(self)
        shard._range = bounds
        shard._empty = empty
        return shard

    def _option_text(self) -> str:
        what = (
            f"table_name={self.table_name!r}"
            if self.table_name is not None
            else f"query={self.query!r}"
        )
        key = f", key={self.key!r}" if self.key is not None else ""
        return f"{what}{key}, batch_size={self.batch_size}"

    def describe(self) -> str:
        text = f"{type(self).__name__}({self.source!r}, {self._option_text()})"
        if self._empty:
            return f"{text} (empty shard)"
        if self._range is not None:
            lower, upper, first = self._range
            nulls = "NULL or " if first else ""
            return f"{text} [{nulls}{self.key} in [{lower!r}, {upper!r}))"
        return text
