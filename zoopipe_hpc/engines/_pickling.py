"""Pickling a pipe for another machine: cloudpickle, with the user's own modules by value.

Classes and functions of ``__main__`` (a script, a notebook cell) always travel by value with
cloudpickle. Everything else is pickled by reference (module and name) unless its module is
registered to travel by value. :func:`pickle_for_nodes` registers every module of the user's
own code (:mod:`._user_code`) that the pickle reaches, not only the model's: it pickles, notes
each user module that was still referenced by name (a base class from a second module, a
helper a hook calls, a nested model of a local package), registers those and pickles again,
until no user module is left by reference. So the compute nodes need no copy of the user's
source, whatever the submitter's working directory.

A compiled extension of the user's own cannot travel by value: it stays by reference, and the
pickle is refused (:class:`~zoopipe_hpc.errors.ConfigurationError`, naming the module and what
to do) unless its folder is one of the ``sys.path`` folders the task puts back.
"""

from __future__ import annotations

import io
import pickle
import sys
import types
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cloudpickle

from ..errors import ConfigurationError
from ._user_code import is_compiled, is_users_own, module_root, submitter_sys_path

__all__ = ["PickledPipe", "dumps_with_user_code", "pickle_for_nodes"]

_NAMED = (type, types.FunctionType, types.BuiltinFunctionType, types.ModuleType)


@dataclass(frozen=True)
class PickledPipe:
    """A pickle for the compute nodes, and what it needs there."""

    data: bytes
    #: The user's modules pickled by value (their code is in ``data``).
    by_value: tuple[str, ...]
    #: The user's compiled modules the nodes import (from ``sys_path``).
    by_reference: tuple[str, ...]
    #: The submitter's folders of user code, put on ``sys.path`` before unpickling.
    sys_path: tuple[str, ...]


class _Recorder(cloudpickle.Pickler):  # type: ignore[misc]  # cloudpickle has no types
    """A cloudpickle pickler that notes the user modules it still pickles by reference."""

    def __init__(self, file: io.BytesIO, seen: set[str]) -> None:
        super().__init__(file)
        self.seen = seen
        self.found: dict[str, types.ModuleType] = {}

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, _NAMED):
            name = obj.__name__ if isinstance(obj, types.ModuleType) else obj.__module__
            if isinstance(name, str) and name not in self.seen and name not in self.found:
                module = sys.modules.get(name)
                if module is not None and is_users_own(module):
                    self.found[name] = module
        return super().reducer_override(obj)


def _dump(obj: Any, seen: set[str]) -> tuple[bytes, dict[str, types.ModuleType]]:
    buffer = io.BytesIO()
    recorder = _Recorder(buffer, seen)
    recorder.dump(obj)
    return buffer.getvalue(), recorder.found


def pickle_for_nodes(
    obj: Any,
    what: str,
    sys_path: Sequence[str] | None = None,
    *,
    check_compiled: bool = True,
    hint: Sequence[str] = (),
) -> PickledPipe:
    """Pickle ``obj`` (``what`` names it in errors, e.g. the job and shard) with every user
    module it reaches by value; ``sys_path`` defaults to :func:`submitter_sys_path`.

    ``check_compiled``: refuse a compiled module of the user's that is not importable from
    ``sys_path`` (the nodes could not import it). ``hint``: modules to send by value from the
    start (the previous shard's ``by_value``), so that the shards of one pipe after the first
    are pickled once instead of once per round.
    """
    folders = tuple(submitter_sys_path() if sys_path is None else sys_path)
    already = set(cloudpickle.list_registry_pickle_by_value())
    by_value: dict[str, types.ModuleType] = {}
    by_reference: dict[str, types.ModuleType] = {}
    try:
        for name in hint:
            module = sys.modules.get(name)
            if module is not None and name not in already and not is_compiled(module):
                cloudpickle.register_pickle_by_value(module)
                by_value[name] = module
        while True:
            try:
                data, found = _dump(obj, already | set(by_value) | set(by_reference))
            except (pickle.PicklingError, TypeError, AttributeError, RecursionError) as exc:
                raise ConfigurationError(
                    f"{what}: cannot be pickled for the compute nodes: {type(exc).__name__}: "
                    f"{exc} (your modules sent by value: {sorted(by_value) or 'none'}); an "
                    f"object such as an open file, a lock or a connection cannot travel: create "
                    f"it inside the hook or validator instead of at module level",
                    what=what,
                    modules=sorted(by_value),
                ) from exc
            if not found:
                break
            for name, module in found.items():
                if is_compiled(module):
                    by_reference[name] = module
                else:
                    cloudpickle.register_pickle_by_value(module)
                    by_value[name] = module
    finally:
        for module in by_value.values():
            cloudpickle.unregister_pickle_by_value(module)
    for name, module in by_reference.items() if check_compiled else ():
        root = module_root(module)
        if root not in folders:
            raise ConfigurationError(
                f"{what}: module {name!r} ({module.__file__}) is compiled code of your own: it "
                f"cannot travel by value and is not importable from a folder the tasks put on "
                f"sys.path ({list(folders) or 'none'}); install it into the environment the "
                f"nodes run ({sys.prefix}), or put its folder {root} on the shared filesystem "
                f"and on sys.path (PYTHONPATH), owned by you and not writable by group or others",
                what=what,
                module=name,
            )
    return PickledPipe(data, tuple(sorted(by_value)), tuple(sorted(by_reference)), folders)


def dumps_with_user_code(obj: Any) -> bytes:
    """``cloudpickle.dumps(obj)``, with every user module it reaches travelling by value (for
    workers that share this machine's ``sys.path``: Ray, Dask)."""
    return pickle_for_nodes(obj, f"a {type(obj).__name__}", check_compiled=False).data
