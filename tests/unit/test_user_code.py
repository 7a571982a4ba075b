"""Which code is the user's, which folders go on a task's sys.path, and the by-value pickling
that follows every user module a pipe reaches (zoopipe_hpc/engines/_user_code.py, _pickling.py).
The end-to-end cases, on a simulated compute node: tests/integration/test_user_code_travels.py.
"""

from __future__ import annotations

import importlib
import json
import os
import pickle
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import cloudpickle
import pydantic
import pytest

from zoopipe_hpc.engines import _user_code
from zoopipe_hpc.engines._pickling import pickle_for_nodes
from zoopipe_hpc.engines.slurm._payload import PayloadRefused, PayloadStore
from zoopipe_hpc.errors import ConfigurationError


@pytest.fixture
def user_folder(tmp_path: Path) -> Iterator[Path]:
    """A private folder on sys.path; the modules imported from it are forgotten afterwards."""
    folder = tmp_path / "project"
    folder.mkdir(mode=0o700)
    before = set(sys.modules)
    sys.path.insert(0, str(folder))
    importlib.invalidate_caches()
    yield folder
    sys.path.remove(str(folder))
    for name in set(sys.modules) - before:
        if getattr(sys.modules[name], "__file__", "") and str(folder) in sys.modules[name].__file__:
            del sys.modules[name]


def test_installed_standard_and_own_modules_are_told_apart(user_folder: Path) -> None:
    (user_folder / "tu_mine.py").write_text("X = 1\n")
    assert _user_code.is_users_own(importlib.import_module("tu_mine"))
    assert _user_code.is_users_own(types.ModuleType("made_at_run_time"))
    for installed in (json, os, pydantic, sys, importlib.import_module("zoopipe_hpc.pipe")):
        assert not _user_code.is_users_own(installed), installed


def test_only_private_folders_of_own_code_go_on_the_tasks_sys_path(tmp_path: Path) -> None:
    mine, shared, world = (tmp_path / n for n in ("mine", "group", "world"))
    for folder, mode in ((mine, 0o700), (shared, 0o770), (world, 0o777)):
        folder.mkdir()
        os.chmod(folder, mode)
    site_packages = os.path.dirname(pydantic.__path__[0])
    entries = [
        str(mine),
        str(shared),
        str(world),
        site_packages,
        str(tmp_path / "missing"),
        str(mine),
    ]
    assert _user_code.submitter_sys_path(entries) == [str(mine)]
    assert "writable by group or others" in (_user_code.import_folder_problem(str(shared)) or "")


def test_the_task_adds_the_folders_after_its_own_and_checks_them_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mine, opened = tmp_path / "mine", tmp_path / "opened"
    mine.mkdir(mode=0o700)
    opened.mkdir(mode=0o700)
    os.chmod(opened, 0o777)  # changed since submission
    monkeypatch.setattr(sys, "path", ["/env/lib"])
    added = _user_code.reproduce_sys_path([str(mine), str(opened), str(tmp_path / "gone")], "p")
    assert added == [str(mine)]
    assert sys.path == ["/env/lib", str(mine)]


def test_every_user_module_the_pipe_reaches_goes_by_value(user_folder: Path) -> None:
    (user_folder / "tu_text.py").write_text("def clean(v):\n    return v.strip()\n")
    (user_folder / "tu_base.py").write_text(
        "from pydantic import BaseModel, field_validator\n"
        "from tu_text import clean\n"
        "class Base(BaseModel):\n"
        "    name: str\n"
        "    @field_validator('name')\n"
        "    @classmethod\n"
        "    def _c(cls, v):\n"
        "        return clean(v)\n"
    )
    (user_folder / "tu_models.py").write_text(
        "from tu_base import Base\nclass User(Base):\n    id: int\n"
    )
    model = importlib.import_module("tu_models").User
    pickled = pickle_for_nodes(model, "shard 0", sys_path=[])
    assert pickled.by_value == ("tu_base", "tu_models", "tu_text")
    assert pickled.by_reference == ()
    for name in ("tu_models", "tu_base", "tu_text"):
        del sys.modules[name]
    sys.path.remove(str(user_folder))  # as on a node that cannot see the folder
    try:
        rebuilt = cloudpickle.loads(pickled.data)
        assert rebuilt(id=1, name=" ada ").name == "ada"
    finally:
        sys.path.insert(0, str(user_folder))


def test_an_object_that_cannot_be_pickled_is_a_configuration_error_naming_what(
    user_folder: Path,
) -> None:
    (user_folder / "tu_lock.py").write_text(
        "import threading\nLOCK = threading.Lock()\n"
        "def check(v):\n    with LOCK:\n        return v\n"
    )
    check = importlib.import_module("tu_lock").check
    with pytest.raises(ConfigurationError, match=r"job j, shard-00003: cannot be pickled .*lock"):
        pickle_for_nodes(check, "job j, shard-00003", sys_path=[])


def _store(tmp_path: Path) -> PayloadStore:
    folder = tmp_path / "job"
    folder.mkdir(mode=0o700)
    store = PayloadStore(folder)
    store.create()
    return store


def test_a_payload_whose_json_line_is_not_the_expected_one_is_refused(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.write("shard-00000", b'{"sys_path": "/x"}\n' + pickle.dumps(1))
    with pytest.raises(PayloadRefused, match="first line is not the expected JSON object"):
        store.load("shard-00000")


def test_a_module_the_node_cannot_import_is_named_with_what_was_sent(
    tmp_path: Path, user_folder: Path
) -> None:
    (user_folder / "tu_gone.py").write_text("class Thing:\n    pass\n")
    thing = importlib.import_module("tu_gone").Thing()
    store = _store(tmp_path)
    body = json.dumps({"sys_path": [], "by_value": [], "by_reference": []}).encode()
    store.write("shard-00000", body + b"\n" + pickle.dumps(thing))
    del sys.modules["tu_gone"]
    sys.path.remove(str(user_folder))
    try:
        with pytest.raises(
            ConfigurationError, match=r"needs module 'tu_gone'.*sent by value: none"
        ):
            store.load("shard-00000")
    finally:
        sys.path.insert(0, str(user_folder))
