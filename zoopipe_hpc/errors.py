"""The exception hierarchy of zoopipe_hpc.

Every exception the package raises on purpose derives from :class:`ZoopipeHPCError` and is
defined here (the modules that raise it import it back, so its older import path still works).
Each one carries the facts a user needs to act (file, line, shard, job, log file) as attributes
and in its message, and survives pickling so that it can travel from a worker process or a
compute node back to the coordinator unchanged.

Classes that replace a built-in exception also derive from it, so that ``except ValueError``
(or ``RuntimeError``, ``TypeError``) keeps catching what it caught before:

* :class:`ConfigurationError` (a ``ValueError``): a parameter is invalid; :class:`JobConfigError`
  (a job file) and :class:`ArgumentTypeError` (also a ``TypeError``) are kinds of it.
* :class:`StateError` (a ``RuntimeError``): the call is not possible now (already running, not
  started, already committed); :class:`ClosedError` (also a ``ValueError``, as for a closed
  file) when the object was closed.

This module imports nothing from the package, so that every module can import it.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ZoopipeHPCError",
    "ConfigurationError",
    "ArgumentTypeError",
    "JobConfigError",
    "StateError",
    "ClosedError",
    "PipeIndexError",
    "InputError",
    "SchemaError",
    "ValidatorError",
    "HookError",
    "OutputError",
    "CommitError",
    "ShardFailedError",
    "JobError",
    "ManifestError",
    "ManifestConflict",
    "PayloadRefused",
    "SlurmCommandError",
    "PipeAlreadyRan",
    "RecordError",
    "PipeTimeoutError",
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
    # Not cls(...): a subclass's __init__ may take other arguments than (message, **details).
    error = cls.__new__(cls)
    ZoopipeHPCError.__init__(error, message, **details)
    return error


# -- parameters ------------------------------------------------------------------------------


class ConfigurationError(ZoopipeHPCError, ValueError):
    """A parameter or a combination of parameters is invalid."""


class ArgumentTypeError(ConfigurationError, TypeError):
    """An argument, or what a subclass's hook returned, is of the wrong type (also a
    ``TypeError``)."""


class JobConfigError(ConfigurationError):
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


# -- state -----------------------------------------------------------------------------------


class StateError(ZoopipeHPCError, RuntimeError):
    """The call is not possible in the object's present state: it is already running, was not
    started, or was already committed (also a ``RuntimeError``)."""


class PipeIndexError(ZoopipeHPCError, IndexError):
    """No pipe has that index (also an ``IndexError``)."""


class PipeTimeoutError(ZoopipeHPCError, TimeoutError):
    """``Pipe.run(timeout=...)`` expired: the run was stopped (ABORTED) and its outputs
    discarded (also a ``TimeoutError``)."""


class ClosedError(StateError, ValueError):
    """The object was closed (also a ``ValueError``, like I/O on a closed file)."""


# -- data ------------------------------------------------------------------------------------


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


class ValidatorError(ZoopipeHPCError):
    """A validator of the schema model raised something other than ``ValueError`` or
    ``AssertionError`` (a ``KeyError``, ``ZeroDivisionError``, ``RecursionError``...).

    pydantic turns only those two (and its own errors) into a validation error; anything else
    is a bug in the model's code, not bad data, so the pipe stops instead of writing an error
    record for every row the bug touches. Attributes: ``path`` and ``line`` of the row that
    raised (None until the pipe knows them), ``field`` (dotted for a nested model's field; None
    for a model validator or when it cannot be told), ``validator`` (``Model.function``, or
    None), ``model``, ``error_type`` and ``error_message`` (the original exception's type name
    and text) and ``index`` (the row's position in the rows given to the validator).
    """

    path: str | None
    line: int | None
    field: str | None
    validator: str | None
    model: str
    error_type: str
    error_message: str
    index: int | None

    def __init__(
        self,
        *,
        model: str,
        error_type: str,
        error_message: str,
        field: str | None = None,
        validator: str | None = None,
        path: str | None = None,
        line: int | None = None,
        index: int | None = None,
    ) -> None:
        where = path if line is None or path is None else f"{path}:{line}"
        what = f"the validator {validator}" if validator else f"a validator of {model}"
        if field:
            what += f" of field {field!r}"
        cause = f"{error_type}: {error_message}" if error_message else error_type
        message = (
            f"{what} raised {cause}. A validator rejects a record by raising ValueError or "
            "AssertionError; any other exception is a bug in the model, so the run stops"
        )
        super().__init__(
            f"{where}: {message}" if where else message,
            path=path,
            line=line,
            field=field,
            validator=validator,
            model=model,
            error_type=error_type,
            error_message=error_message,
            index=index,
        )

    def at(self, path: str, line: int | None) -> ValidatorError:
        """The same error, naming the file and line of the row that raised."""
        details = {**self.details, "path": path, "line": line}
        return ValidatorError(**details)


class HookError(ZoopipeHPCError):
    """A pipeline hook raised; the pipe stops (its outputs are discarded) after the hooks'
    ``teardown`` ran.

    Attributes: ``hook`` (the hook's class name), ``stage`` (``setup``, ``pre_validation``,
    ``post_validation`` or ``teardown``), ``path`` (the batch's source, when a batch was being
    processed), ``error_type`` and ``error_message`` (the original exception's type and text).
    """

    hook: str
    stage: str
    path: str | None
    error_type: str
    error_message: str

    def __init__(
        self,
        *,
        hook: str,
        stage: str,
        error_type: str,
        error_message: str,
        path: str | None = None,
    ) -> None:
        cause = f"{error_type}: {error_message}" if error_message else error_type
        where = f" on a batch of {path}" if path else ""
        super().__init__(
            f"the {stage} hook {hook} raised {cause}{where}; the pipe stops",
            hook=hook,
            stage=stage,
            path=path,
            error_type=error_type,
            error_message=error_message,
        )


class OutputError(ZoopipeHPCError):
    """An output cannot be written. Attribute: ``path``."""


class CommitError(ZoopipeHPCError):
    """The staged result could not be committed to its target; the target was left untouched."""


class ShardFailedError(ZoopipeHPCError):
    """One or more shards failed; nothing was committed.

    Attributes: ``failures`` maps a shard index to its failure reason.
    """


class RecordError(ZoopipeHPCError, ValueError):
    """A buffer does not hold a valid progress record.

    ``retry`` is true when re-reading may help (the record looks torn or was caught mid-update);
    false when the content is definitely not a record we can use (never written, other format,
    other version). ``reason`` is the message.
    """

    reason: str
    retry: bool

    def __init__(self, reason: str, *, retry: bool) -> None:
        super().__init__(reason, reason=reason, retry=retry)


# -- durable jobs ----------------------------------------------------------------------------


class JobError(ZoopipeHPCError):
    """A job operation is not possible in the job's present state."""


class ManifestError(ZoopipeHPCError):
    """A job manifest is missing, unreadable, tampered with or invalid.

    Attributes: ``path`` (the manifest file) and ``reason`` (what is wrong, also in the message).
    """

    path: str
    reason: str

    def __init__(self, reason: str, *, path: str, **details: Any) -> None:
        message = f"{path}: {reason}" if path else reason
        super().__init__(message, path=path, reason=reason, **details)


class ManifestConflict(ZoopipeHPCError):
    """Another process changed the job since the caller read it; nothing was written.

    Attributes: ``path`` (the manifest file), ``expected_version`` (the version the caller read)
    and ``actual_version`` (the version found on disk).
    """

    path: str
    expected_version: int
    actual_version: int

    def __init__(self, *, path: str, expected_version: int, actual_version: int) -> None:
        super().__init__(
            f"{path}: the job was changed by another process (expected manifest version "
            f"{expected_version}, found {actual_version}); nothing was written. Read the job "
            f"again and retry the operation if it still applies.",
            path=path,
            expected_version=expected_version,
            actual_version=actual_version,
        )


# -- engines ---------------------------------------------------------------------------------


class PayloadRefused(ZoopipeHPCError):
    """A payload was not loaded because it could have been tampered with."""


class SlurmCommandError(ZoopipeHPCError):
    """A Slurm command failed. Attributes: ``command``, ``returncode``, ``stderr``."""


class PipeAlreadyRan(ZoopipeHPCError):
    """Dask resubmitted a pipe whose first run was lost with its worker: it is not run twice."""
