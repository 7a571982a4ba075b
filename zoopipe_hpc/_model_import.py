"""Importing a schema model named by text: ``"package.module:Name"`` or ``"path/to/file.py:Name"``.

One implementation for the two places a model is named by text: :class:`~zoopipe_hpc.pipe.Pipe`
(``schema_model="models:User"``, through :func:`resolve_model`) and the ``schema:`` key of a job
file (``JobConfig.make_pipe``, which gives the job file's folder as ``base``). Every failure is a
:class:`~zoopipe_hpc.errors.SchemaError` whose message says what was looked for and where, with
the attributes ``reference`` (the text) and ``expected`` (what would have been valid); a job file
turns it into a ``JobConfigError`` at the line of its ``schema:`` key.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import os
import re
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from pydantic import BaseModel

from .errors import SchemaError

__all__ = ["MODEL_RULE", "import_model", "is_model_reference", "resolve_model"]

#: What a model reference looks like, in words.
MODEL_RULE = "'module:Model' or 'path/to/file.py:Model'"

_MODULE = re.compile(r"^[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*$")
_ATTRIBUTE = re.compile(r"^[A-Za-z_]\w*$")
_SHOWN = 80  # characters of a value shown in a message


def is_model_reference(text: str) -> bool:
    """True when ``text`` has the shape of a model reference (it is not imported)."""
    target, colon, attribute = text.rpartition(":")
    good_target = target.endswith(".py") or bool(_MODULE.match(target))
    return bool(colon and good_target and _ATTRIBUTE.match(attribute))


def resolve_model(model: type[BaseModel] | str | None) -> type[BaseModel] | None:
    """A model class, or a model reference imported now, with a clear error if it fails."""
    if model is None or (isinstance(model, type) and issubclass(model, BaseModel)):
        return model
    if not isinstance(model, str) or not is_model_reference(model):
        raise SchemaError(
            f"schema_model must be a pydantic BaseModel subclass or {MODEL_RULE}, got {model!r}",
            reference=model if isinstance(model, str) else repr(model),
            expected=f"a pydantic BaseModel subclass or {MODEL_RULE}",
        )
    return import_model(model)


def import_model(
    reference: str, *, base: Path | None = None, base_name: str = "the base folder"
) -> type[BaseModel]:
    """The pydantic model ``reference`` names, imported now.

    Without ``base`` a module is imported from ``sys.path`` and a relative file is taken from
    the current folder. With ``base`` (called ``base_name`` in messages), a relative file is
    taken from ``base``, and a module is imported with ``base`` first on ``sys.path``; a module
    of the same name imported earlier from another folder (another job file's ``models.py``) is
    dropped first, so that each caller gets the module next to its own files.
    """
    if not is_model_reference(reference):
        raise _error(reference, f"expected {MODEL_RULE}, got {_show(reference)}", MODEL_RULE)
    target, _, attribute = reference.rpartition(":")
    if target.endswith(".py"):
        file = Path(target).expanduser()
        if not file.is_absolute():
            file = (base if base is not None else Path.cwd()) / file
        module = _import_file(reference, file)
    else:
        module = _import_module(reference, target, base, base_name)
    missing = object()
    model = getattr(module, attribute, missing)
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        where = getattr(module, "__file__", None) or target
        found = "nothing" if model is missing else f"{type(model).__name__} {_show(model)}"
        raise _error(
            reference,
            f"module {target!r} ({where}) has no pydantic model named {attribute!r} "
            f"(found {found})",
            f"{MODEL_RULE} naming a pydantic BaseModel subclass",
        )
    return model


def _error(reference: str, problem: str, expected: str) -> SchemaError:
    return SchemaError(problem, reference=reference, expected=expected)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


def _import_module(reference: str, name: str, base: Path | None, base_name: str) -> ModuleType:
    if base is None:
        try:
            return importlib.import_module(name)
        except Exception as exc:
            raise _error(
                reference,
                f"cannot import module {name!r} for the schema model {reference!r} (looked on "
                f"sys.path): {type(exc).__name__}: {exc}",
                f"an importable {MODEL_RULE}",
            ) from exc
    top = name.split(".")[0]
    local = (base / f"{top}.py").is_file() or (base / top).is_dir()
    cached = sys.modules.get(top)
    if local and cached is not None and _is_user_module(cached) and not _lives_in(cached, base):
        for loaded in [m for m in sys.modules if m == top or m.startswith(top + ".")]:
            del sys.modules[loaded]
    importlib.invalidate_caches()
    with _on_sys_path(base):
        try:
            return importlib.import_module(name)
        except Exception as exc:
            raise _error(
                reference,
                f"cannot import module {name!r} (looked in {base}, {base_name}, and on "
                f"sys.path): {type(exc).__name__}: {exc}",
                f"an importable {MODEL_RULE}",
            ) from exc


def _import_file(reference: str, file: Path) -> ModuleType:
    """Import a ``.py`` file as a module of its own (its folder on ``sys.path`` meanwhile)."""
    if not file.is_file():
        raise _error(
            reference, f"schema file {str(file)!r} does not exist", f"an existing {MODEL_RULE}"
        )
    stem = re.sub(r"\W", "_", file.stem)
    digest = hashlib.sha256(str(file).encode()).hexdigest()[:10]
    name = f"_zoopipe_job_schema_{stem}_{digest}"
    cached = sys.modules.get(name)
    if cached is not None and getattr(cached, "__file__", None) == str(file):
        return cached
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise _error(
            reference, f"cannot import {str(file)!r} as a module", f"a Python file {MODEL_RULE}"
        )
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    with _on_sys_path(file.parent):
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            sys.modules.pop(name, None)
            raise _error(
                reference,
                f"cannot import schema file {str(file)!r}: {type(exc).__name__}: {exc}",
                f"an importable {MODEL_RULE}",
            ) from exc
    return module


@contextlib.contextmanager
def _on_sys_path(folder: Path) -> Iterator[None]:
    """``folder`` first on ``sys.path`` for the duration of a ``with`` block."""
    entry = str(folder)
    sys.path.insert(0, entry)
    try:
        yield
    finally:
        if sys.path and sys.path[0] == entry:
            del sys.path[0]
        elif entry in sys.path:
            sys.path.remove(entry)


def _module_locations(module: ModuleType) -> list[str]:
    locations = [str(p) for p in getattr(module, "__path__", None) or []]
    file = getattr(module, "__file__", None)
    if file:
        locations.append(str(file))
    return locations


def _lives_in(module: ModuleType, folder: Path) -> bool:
    root = folder.resolve()
    return any(Path(p).resolve().is_relative_to(root) for p in _module_locations(module))


def _is_user_module(module: ModuleType) -> bool:
    """True for a module from a plain folder (not the standard library, not installed)."""
    if module.__name__ in sys.builtin_module_names or module.__name__ in sys.stdlib_module_names:
        return False
    locations = _module_locations(module)
    if not locations:
        return False
    roots = {
        os.path.abspath(sysconfig.get_paths()[k])
        for k in ("stdlib", "platstdlib", "purelib", "platlib")
    }
    return not any(os.path.abspath(p).startswith(root) for p in locations for root in roots)
