"""The exception hierarchy of zoopipe_hpc.

Every exception the package raises on purpose derives from :class:`ZoopipeHPCError`. Each one
carries the facts a user needs to act (file, line, shard, job, log file) as attributes and in its
message, and survives pickling so that it can travel from a worker process or a compute node back
to the coordinator unchanged.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ZoopipeHPCError",
    "ConfigurationError",
    "InputError",
    "SchemaError",
    "OutputError",
    "CommitError",
    "ShardFailedError",
    "JobConfigError",
]


class ZoopipeHPCError(Exception):
    """Base class of every error raised by zoopipe_hpc."""

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = dict(details)
        for key, value in details.items():
            setattr(self, key, value)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.message, self.details))

    def __str__(self) -> str:
        return self.message


def _rebuild(cls: type[ZoopipeHPCError], message: str, details: dict[str, Any]) -> ZoopipeHPCError:
    error = cls.__new__(cls)
    ZoopipeHPCError.__init__(error, message, **details)
    return error


class ConfigurationError(ZoopipeHPCError, ValueError):
    """A parameter or a combination of parameters is invalid."""


class InputError(ZoopipeHPCError):
    """An input cannot be read: missing, unreadable, truncated or malformed.

    Attributes: ``path`` (the file) and, where there is one, ``line``.
    """

    def __init__(self, message: str, *, path: str, line: int | None = None, **details: Any) -> None:
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"{where}: {message}", path=path, line=line, **details)


class SchemaError(ZoopipeHPCError):
    """The schema model cannot be imported, pickled or used.

    Attributes, when the model was named by text: ``reference`` (``module:Name``) and
    ``expected`` (what would have been valid).
    """


class OutputError(ZoopipeHPCError):
    """An output cannot be written. Attribute: ``path``."""


class CommitError(ZoopipeHPCError):
    """The staged result could not be committed to its target; the target was left untouched."""


class ShardFailedError(ZoopipeHPCError):
    """One or more shards failed; nothing was committed.

    Attributes: ``failures`` maps a shard index to its failure reason.
    """


class JobConfigError(ZoopipeHPCError):
    """A job file (or a stored job configuration) is unreadable or invalid.

    Attributes: ``path`` (the YAML file the problem is in), ``key`` (dotted, e.g. ``engine.mem``;
    empty for a problem with the whole file), ``expected`` (what would have been valid),
    ``line`` (1-based, where known) and ``errors`` (every problem found, as dicts with the same
    keys plus ``message``; the message of the exception is the first one).
    """

    path: str
    key: str
    expected: str
    line: int | None
    errors: list[dict[str, Any]]

    def __init__(
        self,
        path: str,
        key: str,
        problem: str,
        *,
        expected: str = "",
        line: int | None = None,
        errors: list[dict[str, Any]] | None = None,
    ) -> None:
        where = path if line is None else f"{path}:{line}"
        message = f"{where}: {key}: {problem}" if key else f"{where}: {problem}"
        if errors is None:
            errors = [
                {"path": path, "line": line, "key": key, "expected": expected, "message": message}
            ]
        super().__init__(message, path=path, key=key, expected=expected, line=line, errors=errors)
