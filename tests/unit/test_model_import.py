"""A schema model named by text: one import shared by Pipe and job files, with one wording."""

from __future__ import annotations

import pickle
import textwrap
from pathlib import Path

import pytest

from zoopipe_hpc import pipe
from zoopipe_hpc._model_import import import_model, is_model_reference, resolve_model
from zoopipe_hpc.errors import JobConfigError, SchemaError
from zoopipe_hpc.jobs.config import load_job_file

MODELS = """
from pydantic import BaseModel


class Person(BaseModel):
    id: int


NotAModel = 3
"""


def _models(folder: Path, name: str) -> Path:
    path = folder / f"{name}.py"
    path.write_text(textwrap.dedent(MODELS), encoding="utf-8")
    return path


def test_pipe_uses_the_shared_import() -> None:
    assert pipe.resolve_model is resolve_model


def test_references_by_shape() -> None:
    assert is_model_reference("pkg.models:Person")
    assert is_model_reference("models/people.py:Person")
    for bad in ("Person", "pkg.models:", ":Person", "pkg models:Person", "pkg.models:Per-son"):
        assert not is_model_reference(bad), bad


def test_a_module_that_cannot_be_imported_is_named_with_its_reference() -> None:
    with pytest.raises(SchemaError) as info:
        resolve_model("no_such_module_here:Person")
    error = info.value
    assert str(error).startswith(
        "cannot import module 'no_such_module_here' for the schema model "
        "'no_such_module_here:Person' (looked on sys.path): ModuleNotFoundError"
    )
    assert error.details["reference"] == "no_such_module_here:Person"
    assert "importable" in error.details["expected"]
    again = pickle.loads(pickle.dumps(error))
    assert str(again) == str(error) and again.details == error.details


def test_a_missing_or_wrong_attribute_says_what_was_found(tmp_path: Path) -> None:
    file = _models(tmp_path, "people_models_a")
    with pytest.raises(
        SchemaError, match=r"has no pydantic model named 'Nobody' \(found nothing\)"
    ):
        resolve_model(f"{file}:Nobody")
    with pytest.raises(SchemaError, match=r"named 'NotAModel' \(found int 3\)"):
        resolve_model(f"{file}:NotAModel")


def test_bad_values_name_the_parameter() -> None:
    for bad in (dict, 3, "Person"):
        with pytest.raises(SchemaError, match="schema_model must be a pydantic BaseModel subclass"):
            resolve_model(bad)  # type: ignore[arg-type]
    assert resolve_model(None) is None


def test_a_file_reference_imports_the_file(tmp_path: Path) -> None:
    file = _models(tmp_path, "people_models_b")
    model = resolve_model(f"{file}:Person")
    assert model is not None and model.__name__ == "Person"
    assert import_model("people_models_b.py:Person", base=tmp_path) is model  # imported once
    with pytest.raises(SchemaError, match="gone.py' does not exist"):
        import_model("gone.py:Person", base=tmp_path)


def test_a_job_file_words_the_same_error_at_its_schema_line(tmp_path: Path) -> None:
    (tmp_path / "in.csv").write_text("id\n1\n", encoding="utf-8")
    job = tmp_path / "job.yaml"
    job.write_text(
        "name: j\n"
        "input: {format: csv, path: in.csv}\n"
        "output: {format: jsonl, path: out.jsonl}\n"
        'schema: "gone.py:Person"\n',
        encoding="utf-8",
    )
    with pytest.raises(SchemaError) as shared:
        import_model("gone.py:Person", base=tmp_path)
    with pytest.raises(JobConfigError) as info:
        load_job_file(job).make_pipe()
    assert str(info.value) == f"{job}:4: schema: {shared.value}"
    assert info.value.expected == shared.value.details["expected"]
    assert isinstance(info.value.__cause__, SchemaError)
