"""What a job file's keys expect, and the translation of pydantic's errors into words.

Every key of a job file has one sentence saying what it expects (:data:`EXPECTED`), used in every
error about that key. A validator of the schema words a problem itself with :func:`problem`;
:func:`translate` turns all of pydantic's errors for a file into one
:class:`~zoopipe_hpc.errors.JobConfigError` that names the file and the line that wrote the key
(a base file's line when the key was inherited), the dotted key, the problem and what was
expected.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any, get_args

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticCustomError

from .._model_import import MODEL_RULE
from ..errors import JobConfigError
from ._yaml import EXTENDS_RULE, Loc, Origins, dotted, lookup, show

__all__ = ["EXPECTED", "LOADER_KEYS", "NAME_RULE", "parse_key", "problem", "translate"]

#: pydantic's error type for the problems the schema words itself.
_OWN_ERROR = "job_config"
#: Keys a job file may not set: the loader derives them from the file's location.
LOADER_KEYS = ("base_dir", "source")

NAME_RULE = (
    "a name of 1 to 64 letters, digits, '.', '_' or '-' starting with a letter or digit "
    "(it names folders and Slurm jobs)"
)
_DATA_RULE = "a mapping with 'format' and 'path' (and optionally 'options')"
#: What each key expects, in words; used for every error about that key.
EXPECTED: dict[str, str] = {
    "name": NAME_RULE,
    "input": _DATA_RULE,
    "output": _DATA_RULE,
    "errors": f"{_DATA_RULE}, or null",
    "format": "one of 'csv', 'jsonl', 'ndjson', 'json', 'parquet', 'arrow'",
    "path": "a file path (text)",
    "options": "a mapping of adapter options",
    "schema": MODEL_RULE,
    "workers": "an integer >= 1",
    "engine": "a mapping with 'kind' ('local' or 'slurm') and engine options",
    "kind": "'local' or 'slurm'",
    "max_retries": "an integer >= 0",
    "max_tasks": "an integer >= 1 (array tasks the shards are packed onto)",
    "workers_per_task": "an integer >= 1 (shards a packed task runs at once)",
    "jobs_dir": "a folder path (text)",
    "extends": EXTENDS_RULE,
    "partition": "a Slurm partition name (text)",
    "time": (
        "a Slurm time limit like '00:30:00' (MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS) "
        "or a whole number of minutes"
    ),
    "mem": "a Slurm memory size like '2G'",
    "cpus_per_task": "an integer >= 1",
    "exclusive": "true or false (whole nodes: --exclusive)",
    "nodes": "1 (one node per task)",
    "account": "a Slurm account name (text)",
    "qos": "a Slurm QOS name (text)",
    "constraint": "a Slurm constraint (text)",
    "gres": "a Slurm GRES specification like 'gpu:1' (text)",
    "array_parallelism": "an integer >= 1",
    "job_name": "a Slurm job name (text)",
    "extra": "a mapping of further sbatch options to values (not those the engine sets itself)",
    "setup": "a list of shell lines",
    "signal_delay_s": "an integer >= 0 (seconds)",
}
#: Fallbacks by pydantic error type, for keys not in EXPECTED.
_EXPECTED_BY_TYPE: dict[str, str] = {
    "string_type": "text",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "list_type": "a list",
    "path_type": "a path",
}


def problem(expected: str, message: str, key: str = "") -> PydanticCustomError:
    """A validation error the schema words itself; ``key`` is relative to the failing model."""
    # "message" goes last: pydantic substitutes the context into the template in order.
    return PydanticCustomError(
        _OWN_ERROR, "{message}", {"key": key, "expected": expected, "message": message}
    )


def parse_key(key: str) -> Loc:
    """The location a dotted key names: ``engine.setup[0]`` is ``("engine", "setup", 0)``."""
    parts: list[str | int] = []
    for piece in key.split("."):
        if not piece:
            continue
        name, *indices = piece.split("[")
        if name:
            parts.append(name)
        parts.extend(int(index.rstrip("]")) for index in indices)
    return tuple(parts)


def _model_at(root: type[BaseModel], loc: Loc) -> type[BaseModel] | None:
    model = root
    for part in loc:
        found: type[BaseModel] | None = None
        for name, field in model.model_fields.items():
            if (field.alias or name) == part:
                found = _model_in(field.annotation)
                break
        if found is None:
            return None
        model = found
    return model


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in get_args(annotation):
        found = _model_in(argument)
        if found is not None:
            return found
    return None


def _allowed_keys(root: type[BaseModel], model: type[BaseModel]) -> list[str]:
    keys = [
        field.alias or name for name, field in model.model_fields.items() if name not in LOADER_KEYS
    ]
    return [*keys, "extends"] if model is root else keys


def _describe(root: type[BaseModel], error: Mapping[str, Any]) -> tuple[Loc, str, str]:
    """The dotted location, the problem in words and what was expected, of one pydantic error."""
    loc: Loc = tuple(error["loc"])
    kind = error["type"]
    context = error.get("ctx") or {}
    if kind == _OWN_ERROR:
        return (
            (*loc, *parse_key(str(context.get("key", "")))),
            context["message"],
            context["expected"],
        )
    field = next((p for p in reversed(loc) if isinstance(p, str)), "")
    if kind == "extra_forbidden":
        model = _model_at(root, loc[:-1])
        allowed = _allowed_keys(root, model) if model is not None else []
        unknown = str(loc[-1])
        close = difflib.get_close_matches(unknown, allowed, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        listed = ", ".join(allowed)
        return loc, f"unknown key{hint}; allowed keys here: {listed}", f"one of: {listed}"
    expected = EXPECTED.get(field) or _EXPECTED_BY_TYPE.get(kind) or str(error["msg"])
    if kind == "missing":
        return loc, f"required key is missing; expected {expected}", expected
    return loc, f"expected {expected}, got {show(error.get('input'))}", expected


def translate(
    exc: ValidationError, display: str, origins: Origins, root: type[BaseModel]
) -> JobConfigError:
    """One JobConfigError for all of pydantic's errors validating ``root`` (the job file's
    model): the first in the message, all in ``errors``; each is located in the file (base file
    or job file) that wrote its key. Unknown keys come first, then the others in pydantic's
    (field) order."""
    entries: list[dict[str, Any]] = []
    problems: list[str] = []
    # An unknown key first: it is often a misspelt key, which pydantic also reports as missing.
    errors = sorted(exc.errors(include_url=False), key=lambda e: e["type"] != "extra_forbidden")
    for error in errors:
        loc, words, expected = _describe(root, error)
        path, line = lookup(origins, loc, display)
        if path != display:
            words += f" (inherited by {display})"
        key = dotted(loc)
        problems.append(words)
        # The error's own entry: its message is worded as the error itself would word it.
        entries.extend(JobConfigError(path, key, words, expected=expected, line=line).errors)
    first = entries[0]
    words = problems[0]
    if len(entries) > 1:
        others = ", ".join(e["key"] or e["path"] for e in entries[1:])
        words += f" (and {len(entries) - 1} more: {others})"
    return JobConfigError(
        first["path"],
        first["key"],
        words,
        expected=first["expected"],
        line=first["line"],
        errors=entries,
    )
