"""One exception hierarchy: every exception class of the package derives from ZoopipeHPCError,
is importable from zoopipe_hpc.errors, survives pickling, and no module raises a bare built-in
exception out of a public call."""

from __future__ import annotations

import ast
import importlib
import inspect
import pickle
import pkgutil
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import zoopipe_hpc
from zoopipe_hpc import errors
from zoopipe_hpc.errors import (
    ArgumentTypeError,
    ClosedError,
    ConfigurationError,
    JobConfigError,
    StateError,
    ZoopipeHPCError,
)

PACKAGE = Path(zoopipe_hpc.__file__).parent

#: Exceptions that never leave the module defining them: raised and caught there to steer the
#: code, not errors a caller sees. (BaseException-only classes such as WorkerTerminated are left
#: out by the walk itself.)
CONTROL_FLOW = {
    "zoopipe_hpc.jobs.manifest._Invalid",  # caught by the manifest parser, becomes ManifestError
    "zoopipe_hpc.jobs._ledger._Refused",  # caught by the submission ledger: nothing is submitted
    "zoopipe_hpc.pipe._Cancelled",  # caught by Pipe.run: the run ends CANCELLED
    "zoopipe_hpc.testing.strategies._Interrupted",  # raised at a commit step by the suite only
    # raised by _columnar_plan, caught by ColumnarValidator.compile() in _columnar: no fast path
    "zoopipe_hpc.validation._columnar_plan.NotCompiled",
}

#: Built-in exceptions a module must not raise itself (they carry no file, shard or job, and a
#: caller cannot tell them from a bug); raise the fitting class of zoopipe_hpc.errors instead.
BARE = {
    "Exception",
    "BaseException",
    "RuntimeError",
    "ValueError",
    "TypeError",
    "KeyError",
    "IndexError",
    "LookupError",
    "AttributeError",
    "AssertionError",
}

#: The files still allowed to raise bare built-ins, each with why; keep this list short.
BARE_ALLOWED = {
    # The shipped conformance suites: AssertionError is how a check fails, and the test data
    # raise on request.
    "testing/",
}


# -- the walk ---------------------------------------------------------------------------------


def _modules() -> Iterator[ModuleType]:
    """Every module of the package, but those whose optional extra is not installed."""
    yield zoopipe_hpc
    for info in pkgutil.walk_packages(zoopipe_hpc.__path__, "zoopipe_hpc."):
        if info.name.endswith(".__main__"):
            continue  # importing it would run the command line
        try:
            yield importlib.import_module(info.name)
        except ModuleNotFoundError as exc:
            if exc.name is None or exc.name.split(".")[0] == "zoopipe_hpc":
                raise
            continue  # an optional extra (ray, dask, pyiceberg, ...) is missing


def _exception_classes() -> list[type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for module in _modules():
        for _, value in inspect.getmembers(module, inspect.isclass):
            if (
                issubclass(value, Exception)
                and value.__module__ == module.__name__
                and f"{value.__module__}.{value.__qualname__}" not in CONTROL_FLOW
            ):
                found[f"{value.__module__}.{value.__qualname__}"] = value
    return [found[name] for name in sorted(found)]


CLASSES = _exception_classes()


def test_the_walk_finds_the_classes() -> None:
    names = {cls.__name__ for cls in CLASSES}
    assert {"ZoopipeHPCError", "JobConfigError", "JobError", "ManifestConflict"} <= names
    assert {"PayloadRefused", "SlurmCommandError", "RecordError", "StateError"} <= names


@pytest.mark.parametrize("cls", CLASSES, ids=lambda cls: cls.__qualname__)
def test_every_exception_is_in_the_hierarchy(cls: type[BaseException]) -> None:
    assert issubclass(cls, ZoopipeHPCError), f"{cls.__module__}.{cls.__qualname__}"
    assert getattr(errors, cls.__name__, None) is cls, f"zoopipe_hpc.errors.{cls.__name__}"
    assert cls.__name__ in errors.__all__


def test_kinds_keep_their_builtin_bases() -> None:
    assert issubclass(JobConfigError, ConfigurationError)
    assert issubclass(ConfigurationError, ValueError)
    assert issubclass(ArgumentTypeError, ConfigurationError) and issubclass(
        ArgumentTypeError, TypeError
    )
    assert issubclass(StateError, RuntimeError)
    assert issubclass(ClosedError, StateError) and issubclass(ClosedError, ValueError)


def test_old_import_paths_still_work() -> None:
    from zoopipe_hpc.engines.slurm._cli import SlurmCommandError
    from zoopipe_hpc.engines.slurm._payload import PayloadRefused
    from zoopipe_hpc.jobs import JobConfigError as jobs_config_error
    from zoopipe_hpc.jobs.config import JobConfigError as config_error
    from zoopipe_hpc.jobs.manifest import ManifestConflict, ManifestError
    from zoopipe_hpc.jobs.runner import JobError
    from zoopipe_hpc.progress._layout import RecordError

    assert jobs_config_error is config_error is errors.JobConfigError
    assert SlurmCommandError is errors.SlurmCommandError
    assert PayloadRefused is errors.PayloadRefused
    assert ManifestConflict is errors.ManifestConflict and ManifestError is errors.ManifestError
    assert JobError is errors.JobError and RecordError is errors.RecordError


# -- pickling -----------------------------------------------------------------------------------

#: Arguments for the classes whose __init__ is not the base (message, **details).
SAMPLES: dict[str, tuple[tuple[Any, ...], dict[str, Any]]] = {
    "InputError": (("truncated row",), {"path": "in.csv", "line": 7}),
    "JobConfigError": (
        ("job.yaml", "engine.mem", "expected a size"),
        {"expected": "a Slurm memory size like '2G'", "line": 4},
    ),
    "ManifestError": (("checksum mismatch",), {"path": "job/manifest.json"}),
    "ManifestConflict": (
        (),
        {"path": "job/manifest.json", "expected_version": 3, "actual_version": 4},
    ),
    "RecordError": (("torn record",), {"retry": True}),
    "HookError": (
        (),
        {
            "hook": "AddTag",
            "stage": "pre_validation",
            "error_type": "KeyError",
            "error_message": "'k'",
            "path": "in.csv",
        },
    ),
    "ValidatorError": (
        (),
        {
            "model": "User",
            "error_type": "KeyError",
            "error_message": "'k'",
            "field": "name",
            "validator": "User._name",
            "path": "in.csv",
            "line": 7,
            "index": 5,
        },
    ),
}


def _sample(cls: type[ZoopipeHPCError]) -> ZoopipeHPCError:
    if cls.__init__ is ZoopipeHPCError.__init__:
        return cls(f"a {cls.__name__}", path="/data/x.csv", shard=3, command=["sbatch", "-p"])
    if cls.__name__ not in SAMPLES:
        pytest.fail(f"{cls.__name__} has its own __init__: add its arguments to SAMPLES")
    args, kwargs = SAMPLES[cls.__name__]
    return cls(*args, **kwargs)


@pytest.mark.parametrize(
    "cls",
    [cls for cls in CLASSES if issubclass(cls, ZoopipeHPCError)],
    ids=lambda cls: cls.__qualname__,
)
def test_every_exception_round_trips_through_pickle(cls: type[ZoopipeHPCError]) -> None:
    error = _sample(cls)
    for protocol in (0, pickle.DEFAULT_PROTOCOL, pickle.HIGHEST_PROTOCOL):
        again = pickle.loads(pickle.dumps(error, protocol=protocol))
        assert type(again) is cls
        assert str(again) == str(error) and again.message == error.message
        assert again.args == error.args
        assert again.details == error.details
        assert vars(again) == vars(error)


def test_custom_signatures_keep_their_attributes() -> None:
    conflict = pickle.loads(
        pickle.dumps(errors.ManifestConflict(path="m.json", expected_version=1, actual_version=2))
    )
    assert (conflict.path, conflict.expected_version, conflict.actual_version) == ("m.json", 1, 2)
    config = pickle.loads(pickle.dumps(JobConfigError("j.yaml", "workers", "too few", line=5)))
    assert str(config) == "j.yaml:5: workers: too few"
    assert config.errors == [
        {
            "path": "j.yaml",
            "line": 5,
            "key": "workers",
            "expected": "",
            "message": "j.yaml:5: workers: too few",
        }
    ]
    record = pickle.loads(pickle.dumps(errors.RecordError("torn", retry=True)))
    assert (record.reason, record.retry, str(record)) == ("torn", True, "torn")
    assert isinstance(record, ValueError)


# -- no bare built-in exceptions -------------------------------------------------------------


def _allowed(relative: str) -> bool:
    return any(
        relative == entry or (entry.endswith("/") and relative.startswith(entry))
        for entry in BARE_ALLOWED
    )


def _raised_name(node: ast.Raise) -> str | None:
    target = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
    return target.id if isinstance(target, ast.Name) else None


def _decorator_names(function: ast.FunctionDef | ast.AsyncFunctionDef) -> set[str]:
    names = set()
    for decorator in function.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        if isinstance(target, ast.Attribute):
            names.add(target.attr)
        elif isinstance(target, ast.Name):
            names.add(target.id)
    return names


class _BareRaises(ast.NodeVisitor):
    """Bare raises, but those a protocol requires: ValueError/AssertionError in a pydantic
    validator (pydantic turns them into a ValidationError) and AttributeError in __getattr__."""

    def __init__(self) -> None:
        self.functions: list[ast.FunctionDef | ast.AsyncFunctionDef] = []
        self.found: list[tuple[int, str]] = []

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._function(node)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self._function(node)

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.functions.append(node)
        self.generic_visit(node)
        self.functions.pop()

    def visit_Raise(self, node: ast.Raise) -> None:
        name = _raised_name(node)
        if name in BARE and not self._required(name):
            self.found.append((node.lineno, name))

    def _required(self, name: str) -> bool:
        if not self.functions:
            return False
        function = self.functions[-1]
        validator = any(d.endswith("validator") for d in _decorator_names(function))
        if validator and name in ("ValueError", "AssertionError"):
            return True
        return function.name == "__getattr__" and name == "AttributeError"


def _bare_raises(source: str) -> list[tuple[int, str]]:
    visitor = _BareRaises()
    visitor.visit(ast.parse(source))
    return visitor.found


def test_the_static_check_sees_bare_raises_and_spares_validators() -> None:
    source = (
        "from pydantic import field_validator\n"
        "def f():\n    raise ValueError('x')\n"
        "def g():\n    raise RuntimeError\n"
        "class M:\n"
        "    @field_validator('a')\n"
        "    def _a(cls, v):\n        raise ValueError('bad')\n"
        "def __getattr__(name):\n    raise AttributeError(name)\n"
        "def h():\n    raise ConfigurationError('fine')\n"
    )
    assert _bare_raises(source) == [(3, "ValueError"), (5, "RuntimeError")]


def test_no_module_raises_a_bare_builtin() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if _allowed(relative):
            continue
        for line, name in _bare_raises(path.read_text(encoding="utf-8")):
            offenders.append(f"zoopipe_hpc/{relative}:{line}: raise {name}")
    assert not offenders, "raise a class of zoopipe_hpc.errors instead:\n" + "\n".join(offenders)
