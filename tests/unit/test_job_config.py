"""Job files: loading, extends, validation errors, and the pipe they build."""

from __future__ import annotations

import json
import pickle
import textwrap
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from zoopipe_hpc import JSONOutputAdapter, ParquetOutputAdapter
from zoopipe_hpc.adapters import CSVInputAdapter, JSONInputAdapter
from zoopipe_hpc.engines.slurm.parameters import SlurmParameters
from zoopipe_hpc.jobs.config import (
    DataSpec,
    EngineSpec,
    JobConfig,
    JobConfigError,
    load_job_file,
)
from zoopipe_hpc.jobs.submission import dry_run
from zoopipe_hpc.report import PipeStatus

MODELS = """
from pydantic import BaseModel


class Person(BaseModel):
    id: int
    name: str
    score: float
"""

USERS_CSV = "id,name,score\n1,ann,1.5\n2,bob,2.5\nthree,cy,3.5\n4,dee,x\n5,eve,5.0\n"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def minimal(name: str = "job", **extra: str) -> str:
    lines = [
        f"name: {name}",
        "input: {format: csv, path: in.csv}",
        "output: {format: jsonl, path: out.jsonl}",
    ]
    lines += [f"{key}: {value}" for key, value in extra.items()]
    return "\n".join(lines) + "\n"


def load_error(path: Path) -> JobConfigError:
    with pytest.raises(JobConfigError) as info:
        load_job_file(path)
    return info.value


# -- a whole job -----------------------------------------------------------------------------


FULL = """
name: clean-users
input:  {format: csv, path: data/users.csv}
output: {format: parquet, path: out/users.parquet}
errors: {format: jsonl, path: out/users.errors.jsonl}
schema: "models:Person"        # module:attribute, importable next to the job file
workers: 3
engine:
  kind: slurm
  partition: debug
  time: "00:30:00"
  mem: 2G
  max_retries: 2
"""


def test_full_file_loads_with_every_key(tmp_path: Path) -> None:
    job = write(tmp_path / "jobs" / "clean.yaml", FULL)
    config = load_job_file(job)
    assert config.name == "clean-users"
    assert config.input == DataSpec(format="csv", path="data/users.csv")
    assert config.output.format == "parquet"
    assert config.errors is not None and config.errors.format == "jsonl"
    assert config.schema_ == "models:Person"
    assert config.workers == 3
    assert config.engine.kind == "slurm"
    assert config.engine.max_retries == 2
    assert config.engine.slurm_parameters() == {
        "partition": "debug",
        "time": "00:30:00",
        "mem": "2G",
    }
    assert config.base_dir == job.parent.absolute()
    assert config.source == job.absolute()
    assert config.jobs_path() == job.parent.absolute() / "zoopipe-jobs"


def test_defaults(tmp_path: Path) -> None:
    config = load_job_file(write(tmp_path / "job.yaml", minimal()))
    assert config.errors is None
    assert config.schema_ is None
    assert config.workers == 1
    assert config.engine == EngineSpec()
    assert config.engine.kind == "local"
    assert config.engine.max_retries == 0
    assert config.engine.slurm_parameters() == {}
    assert config.jobs_dir == "zoopipe-jobs"
    assert config.input.options == {}


def test_make_pipe_runs_on_a_tiny_csv_with_a_schema_next_to_the_job_file(tmp_path: Path) -> None:
    folder = tmp_path / "project"
    write(folder / "models.py", MODELS)
    write(folder / "data" / "users.csv", USERS_CSV)
    job = write(folder / "clean.yaml", FULL)
    (folder / "out").mkdir()  # output folders must exist, as for any Pipe
    pipe = load_job_file(job).make_pipe()
    assert pipe.schema_model is not None and pipe.schema_model.__name__ == "Person"
    report = pipe.run()
    assert report.status is PipeStatus.COMPLETED
    assert (report.total_processed, report.success_count, report.error_count) == (5, 3, 2)
    rows = pq.read_table(folder / "out" / "users.parquet").to_pylist()
    assert rows == [
        {"id": 1, "name": "ann", "score": 1.5},
        {"id": 2, "name": "bob", "score": 2.5},
        {"id": 5, "name": "eve", "score": 5.0},
    ]
    errors = [json.loads(line) for line in (folder / "out" / "users.errors.jsonl").open()]
    assert [e["line"] for e in errors] == [4, 5]
    assert errors[0]["record"]["id"] == "three"


def test_schema_from_a_python_file_relative_to_the_job_file(tmp_path: Path) -> None:
    write(tmp_path / "schemas" / "people.py", MODELS)
    write(tmp_path / "in.csv", USERS_CSV)
    config = load_job_file(
        write(tmp_path / "job.yaml", minimal(schema='"schemas/people.py:Person"'))
    )
    pipe = config.make_pipe()
    assert pipe.schema_model is not None and pipe.schema_model.__name__ == "Person"
    assert pipe.run().success_count == 3
    assert config.resolved()["schema"] == f"{tmp_path / 'schemas' / 'people.py'}:Person"
    assert JobConfig.from_resolved(config.resolved()).make_pipe().schema_model is not None


def test_each_job_folder_gets_its_own_models_module(tmp_path: Path) -> None:
    for folder, field in (("a", "alpha"), ("b", "beta")):
        write(
            tmp_path / folder / "models.py",
            f"from pydantic import BaseModel\n\nclass Row(BaseModel):\n    {field}: int\n",
        )
        write(tmp_path / folder / "job.yaml", minimal(schema='"models:Row"'))
    first = load_job_file(tmp_path / "a" / "job.yaml").make_pipe().schema_model
    second = load_job_file(tmp_path / "b" / "job.yaml").make_pipe().schema_model
    again = load_job_file(tmp_path / "b" / "job.yaml").make_pipe().schema_model
    assert isinstance(first, type) and list(first.model_fields) == ["alpha"]
    assert isinstance(second, type) and list(second.model_fields) == ["beta"]
    assert again is second  # imported once, not again for each make_pipe


def test_data_specs_build_the_right_adapters(tmp_path: Path) -> None:
    base = tmp_path
    csv_in = DataSpec(format="csv", path="a.csv", options={"delimiter": ";"}).input_adapter(base)
    assert isinstance(csv_in, CSVInputAdapter) and csv_in.delimiter == ";"
    assert csv_in.path == tmp_path / "a.csv"
    nd = DataSpec(format="ndjson", path="x.data").output_adapter(base)
    assert isinstance(nd, JSONOutputAdapter) and nd.format == "jsonl"
    array = DataSpec(format="json", path="x.data").output_adapter(base)
    assert isinstance(array, JSONOutputAdapter) and array.format == "json"
    lines_in = DataSpec(format="jsonl", path="/abs/x.json").input_adapter(base)
    assert isinstance(lines_in, JSONInputAdapter) and lines_in.format == "jsonl"
    assert lines_in.path == Path("/abs/x.json")
    parquet = DataSpec(format="parquet", path="p", options={"compression": "zstd"})
    out = parquet.output_adapter(base)
    assert isinstance(out, ParquetOutputAdapter) and out.compression == "zstd"


# -- paths -----------------------------------------------------------------------------------


def test_relative_paths_resolve_against_the_job_files_folder_not_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "jobs" / "job.yaml", minimal(jobs_dir="../runs"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_job_file("../jobs/job.yaml")
    pipe = config.make_pipe()
    assert pipe.input_adapter.path == tmp_path / "elsewhere" / ".." / "jobs" / "in.csv"
    assert pipe.input_adapter.path.resolve() == (tmp_path / "jobs" / "in.csv").resolve()
    resolved = config.resolved()
    assert Path(resolved["input"]["path"]).is_absolute()
    assert Path(resolved["output"]["path"]).resolve() == (tmp_path / "jobs" / "out.jsonl").resolve()
    assert config.jobs_path().is_absolute()
    assert config.jobs_path().resolve() == (tmp_path / "runs").resolve()


def test_absolute_paths_stay_as_written(tmp_path: Path) -> None:
    target = tmp_path / "abs" / "out.parquet"
    config = load_job_file(
        write(
            tmp_path / "job.yaml",
            f"""
            name: j
            input: {{format: csv, path: in.csv}}
            output: {{format: parquet, path: "{target}"}}
            """,
        )
    )
    assert config.make_pipe().output_adapter.path == target


# -- extends ---------------------------------------------------------------------------------


def test_extends_deep_merges_and_the_child_wins(tmp_path: Path) -> None:
    write(
        tmp_path / "site" / "base.yaml",
        """
        workers: 8
        input: {format: csv, path: base.csv, options: {delimiter: ";"}}
        engine:
          kind: slurm
          partition: batch
          mem: 4G
          setup: ["module load python", "source venv/bin/activate"]
          extra: {mail-type: END, exclusive: true}
        """,
    )
    job = write(
        tmp_path / "jobs" / "job.yaml",
        """
        extends: ../site/base.yaml
        name: child
        input: {path: mine.csv}
        output: {format: jsonl, path: out.jsonl}
        engine:
          mem: 2G
          setup: ["module load other"]
          extra: {exclusive: false}
        """,
    )
    config = load_job_file(job)
    assert config.workers == 8
    assert config.input == DataSpec(format="csv", path="mine.csv", options={"delimiter": ";"})
    assert config.engine.slurm_parameters() == {
        "partition": "batch",
        "mem": "2G",
        "extra": {"mail-type": "END", "exclusive": False},  # mappings merge
        "setup": ["module load other"],  # lists are replaced
    }


def test_extends_chain_and_list_applied_in_order(tmp_path: Path) -> None:
    write(tmp_path / "site.yaml", "workers: 2\njobs_dir: /site/jobs\nengine: {max_retries: 1}\n")
    write(tmp_path / "group" / "group.yaml", "extends: ../site.yaml\nworkers: 4\n")
    write(tmp_path / "group" / "big.yaml", "workers: 16\nengine: {max_retries: 3}\n")
    write(tmp_path / "group" / "small.yaml", "workers: 1\n")
    job = write(
        tmp_path / "job.yaml",
        minimal() + "extends: [group/group.yaml, group/small.yaml, group/big.yaml]\n",
    )
    config = load_job_file(job)
    assert config.workers == 16  # the last base wins among bases
    assert config.engine.max_retries == 3
    assert config.jobs_dir == "/site/jobs"  # from the grand-parent
    write(tmp_path / "job2.yaml", minimal(workers="5") + "extends: group/group.yaml\n")
    assert load_job_file(tmp_path / "job2.yaml").workers == 5  # the child wins over the chain


def test_diamond_is_not_a_cycle(tmp_path: Path) -> None:
    write(tmp_path / "root.yaml", "workers: 3\n")
    write(tmp_path / "a.yaml", "extends: root.yaml\n")
    write(tmp_path / "b.yaml", "extends: root.yaml\n")
    job = write(tmp_path / "job.yaml", minimal() + "extends: [a.yaml, b.yaml]\n")
    assert load_job_file(job).workers == 3


def test_null_drops_an_inherited_value(tmp_path: Path) -> None:
    write(
        tmp_path / "base.yaml",
        """
        errors: {format: jsonl, path: err.jsonl}
        input: {format: csv, path: in.csv, options: {delimiter: ";"}}
        engine: {kind: slurm, partition: debug, mem: 2G}
        """,
    )
    job = write(
        tmp_path / "job.yaml",
        """
        extends: base.yaml
        name: j
        errors: null
        input: {format: jsonl, path: in.jsonl, options: null}
        output: {format: jsonl, path: out.jsonl}
        engine: {mem: null}
        """,
    )
    config = load_job_file(job)
    assert config.errors is None
    assert config.input.options == {}
    assert config.engine.slurm_parameters() == {"partition": "debug"}


def test_extends_cycle_names_the_files(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", "extends: b.yaml\n")
    write(tmp_path / "b.yaml", "extends: a.yaml\n")
    job = write(tmp_path / "job.yaml", minimal() + "extends: a.yaml\n")
    error = load_error(job)
    assert error.key == "extends"
    assert "cycle" in str(error)
    assert f"{tmp_path / 'a.yaml'} -> {tmp_path / 'b.yaml'} -> {tmp_path / 'a.yaml'}" in str(error)
    assert error.path == str(tmp_path / "b.yaml")
    assert error.line == 1
    write(tmp_path / "self.yaml", minimal() + "extends: self.yaml\n")
    assert "cycle" in str(load_error(tmp_path / "self.yaml"))


def test_missing_base_file(tmp_path: Path) -> None:
    job = write(tmp_path / "job.yaml", minimal() + "extends: [site/base.yaml]\n")
    error = load_error(job)
    assert error.key == "extends"
    assert error.path == str(job)
    assert error.line == 4
    assert str(error).startswith(f"{job}:4: extends: base file ")
    assert str(tmp_path / "site" / "base.yaml") in str(error)
    assert "does not exist" in str(error)


def test_extends_must_be_a_path_or_a_list_of_paths(tmp_path: Path) -> None:
    error = load_error(write(tmp_path / "job.yaml", minimal() + "extends: {a: 1}\n"))
    assert error.key == "extends"
    assert "expected a file path or a list of file paths" in str(error)


def test_an_invalid_value_in_a_base_file_names_the_base_file(tmp_path: Path) -> None:
    base = write(tmp_path / "site.yaml", "engine:\n  kind: slurm\n  mem: lots\n")
    error = load_error(write(tmp_path / "job.yaml", "extends: site.yaml\n" + minimal()))
    assert error.path == str(base)
    assert error.line == 3
    assert error.key == "engine.mem"
    assert f"inherited by {tmp_path / 'job.yaml'}" in str(error)


# -- errors ----------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    error = load_error(tmp_path / "nope.yaml")
    assert error.path == str(tmp_path / "nope.yaml")
    assert "no such file" in str(error)


def test_bad_yaml_names_the_file_and_line(tmp_path: Path) -> None:
    job = write(
        tmp_path / "job.yaml",
        """
        name: j
        input: {format: csv, path: in.csv}
        output: {format: jsonl
        workers: 2
        """,
    )
    error = load_error(job)
    assert error.path == str(job)
    assert error.key == ""
    assert error.line is not None and error.line >= 3
    assert str(error).startswith(f"{job}:{error.line}: invalid YAML at column ")
    tabbed = write(tmp_path / "tab.yaml", "name: j\nengine:\n\tkind: slurm\n")
    assert load_error(tabbed).line == 3


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    error = load_error(write(tmp_path / "job.yaml", "- a\n- b\n"))
    assert "expected a mapping of keys at the top level, got a list" in str(error)


def test_duplicate_keys_are_refused(tmp_path: Path) -> None:
    error = load_error(write(tmp_path / "job.yaml", minimal() + "workers: 2\nworkers: 3\n"))
    assert error.key == "workers"
    assert error.line == 5
    assert "duplicate key (first given at line 4)" in str(error)


def test_unknown_key_lists_the_allowed_keys(tmp_path: Path) -> None:
    job = write(tmp_path / "job.yaml", minimal() + "wokers: 4\n")
    error = load_error(job)
    assert error.key == "wokers"
    assert error.line == 4
    assert "unknown key (did you mean 'workers'?)" in str(error)
    for key in ("name", "input", "output", "errors", "schema", "workers", "engine", "extends"):
        assert key in error.expected
    assert "base_dir" not in str(error)
    nested = load_error(
        write(tmp_path / "n.yaml", minimal() + "engine: {kind: slurm, memory: 2G}\n")
    )
    assert nested.key == "engine.memory"
    assert "did you mean 'mem'?" in str(nested)
    assert "partition" in str(nested) and "max_retries" in str(nested)
    data = load_error(write(tmp_path / "d.yaml", minimal() + "errors: {format: csv, file: e}\n"))
    assert data.key == "errors.file"  # unknown keys first: "path" is missing because of it
    assert "allowed keys here: format, path, options" in str(data)
    assert [e["key"] for e in data.errors] == ["errors.file", "errors.path"]


def test_loader_keys_cannot_be_given(tmp_path: Path) -> None:
    error = load_error(write(tmp_path / "job.yaml", minimal() + "base_dir: /elsewhere\n"))
    assert error.key == "base_dir"
    assert "set from the job file's location" in str(error)


def test_wrong_types_say_what_was_expected(tmp_path: Path) -> None:
    error = load_error(write(tmp_path / "job.yaml", minimal(workers="many")))
    assert str(error) == (
        f"{tmp_path / 'job.yaml'}:4: workers: expected an integer >= 1, got 'many'"
    )
    assert error.expected == "an integer >= 1"
    assert load_error(write(tmp_path / "b.yaml", minimal(workers="true"))).key == "workers"
    assert "got 0" in str(load_error(write(tmp_path / "z.yaml", minimal(workers="0"))))
    spec = load_error(
        write(tmp_path / "s.yaml", "name: j\ninput: data.csv\noutput: {format: csv, path: o}\n")
    )
    assert spec.key == "input"
    assert "expected a mapping with 'format' and 'path'" in str(spec)
    assert "got 'data.csv'" in str(spec)
    fmt = load_error(
        write(
            tmp_path / "f.yaml",
            "name: j\ninput: {format: xls, path: a}\noutput: {format: csv, path: o}\n",
        )
    )
    assert fmt.key == "input.format"
    assert "expected one of 'csv', 'jsonl', 'ndjson', 'json', 'parquet', 'arrow', got 'xls'" in str(
        fmt
    )


def test_missing_required_keys_all_reported(tmp_path: Path) -> None:
    job = write(tmp_path / "job.yaml", "input: {format: csv}\nworkers: 0\n")
    error = load_error(job)
    keys = [e["key"] for e in error.errors]
    assert keys == ["name", "input.path", "output", "workers"]
    assert error.key == "name"
    assert "required key is missing" in str(error)
    assert "(and 3 more: input.path, output, workers)" in str(error)
    assert error.errors[1]["line"] == 1  # where input is
    assert all(e["message"].startswith(str(job)) for e in error.errors)


def test_name_must_be_usable_as_a_folder_and_job_name(tmp_path: Path) -> None:
    error = load_error(write(tmp_path / "job.yaml", minimal(name='"my job/1"')))
    assert error.key == "name"
    assert "letters, digits" in str(error) and "got 'my job/1'" in str(error)
    assert load_error(write(tmp_path / "long.yaml", minimal(name="a" * 65))).key == "name"
    assert load_job_file(write(tmp_path / "ok.yaml", minimal(name="a" * 64))).name == "a" * 64


def test_schema_syntax(tmp_path: Path) -> None:
    error = load_error(write(tmp_path / "job.yaml", minimal(schema='"models.User"')))
    assert error.key == "schema"
    assert "expected 'module:Model' or 'path/to/file.py:Model'" in str(error)


def test_adapter_options_are_checked(tmp_path: Path) -> None:
    job = write(
        tmp_path / "job.yaml",
        "name: j\ninput: {format: csv, path: a, options: {delimeter: ';'}}\n"
        "output: {format: csv, path: o}\n",
    )
    error = load_error(job)
    assert error.key == "input.options.delimeter"
    assert "unknown option 'delimeter' for a csv input" in str(error)
    assert (
        "block_size, delimiter, encoding, false_values, fieldnames, generate_ids, null_values, "
        "quote_char, quotechar, skip_rows, true_values"
    ) in str(error)
    bad = write(
        tmp_path / "bad.yaml",
        "name: j\ninput: {format: csv, path: a, options: {delimiter: ';;'}}\n"
        "output: {format: csv, path: o}\n",
    )
    error = load_error(bad)
    assert error.key == "input.options"
    assert "single characters" in str(error)
    internal = write(
        tmp_path / "i.yaml",
        "name: j\ninput: {format: csv, path: a}\n"
        "output: {format: json, path: o, options: {format: x}}\n",
    )
    assert "allowed options: compression, compression_level, indent" in str(load_error(internal))


def test_output_may_not_overwrite_the_input(tmp_path: Path) -> None:
    job = write(
        tmp_path / "job.yaml",
        "name: j\ninput: {format: csv, path: a.csv}\noutput: {format: csv, path: ./a.csv}\n",
    )
    error = load_error(job)
    assert error.key == "output.path"
    assert "overwrite the input" in str(error)


# -- the engine ------------------------------------------------------------------------------


def engine_error(tmp_path: Path, engine: str) -> JobConfigError:
    return load_error(write(tmp_path / "job.yaml", minimal() + "engine:\n" + engine))


def test_bad_slurm_memory(tmp_path: Path) -> None:
    error = engine_error(tmp_path, "  kind: slurm\n  mem: lots\n")
    assert error.key == "engine.mem"
    assert error.line == 6
    assert str(error) == (
        f"{tmp_path / 'job.yaml'}:6: engine.mem: expected a Slurm memory size like '2G', got 'lots'"
    )


def test_bad_slurm_time(tmp_path: Path) -> None:
    error = engine_error(tmp_path, "  kind: slurm\n  time: half an hour\n")
    assert error.key == "engine.time"
    assert "engine.time: expected a Slurm time limit like '00:30:00'" in str(error)
    assert "got 'half an hour'" in str(error)


def test_unquoted_slurm_time_is_not_read_as_a_base_60_number(tmp_path: Path) -> None:
    config = load_job_file(
        write(tmp_path / "job.yaml", minimal() + "engine: {kind: slurm, time: 01:30:00}\n")
    )
    assert config.engine.slurm_parameters()["time"] == "01:30:00"
    assert SlurmParameters(**config.engine.slurm_parameters()).minutes == 90


def test_other_slurm_keys_are_validated(tmp_path: Path) -> None:
    error = engine_error(tmp_path, "  kind: slurm\n  cpus_per_task: 0\n")
    assert error.key == "engine.cpus_per_task"
    assert "expected an integer >= 1, got 0" in str(error)
    error = engine_error(tmp_path, "  kind: slurm\n  extra: {array: 1-3}\n")
    assert error.key == "engine.extra"
    assert "--array is set by the engine" in str(error)
    error = engine_error(tmp_path, "  kind: slurm\n  setup: [ok, [no]]\n")
    assert error.key == "engine.setup[1]"
    assert error.line == 6
    error = engine_error(tmp_path, "  kind: slurm\n  max_retries: -1\n")
    assert error.key == "engine.max_retries"
    error = engine_error(tmp_path, "  kind: cluster\n")
    assert error.key == "engine.kind"
    assert "expected 'local' or 'slurm', got 'cluster'" in str(error)


def test_slurm_values_are_coerced_like_slurm_parameters(tmp_path: Path) -> None:
    config = load_job_file(
        write(
            tmp_path / "job.yaml",
            minimal() + "engine: {kind: slurm, cpus_per_task: '4', time: 90, gres: 'gpu:1'}\n",
        )
    )
    assert config.engine.slurm_parameters() == {"cpus_per_task": 4, "time": 90, "gres": "gpu:1"}


def test_local_engine_refuses_slurm_keys(tmp_path: Path) -> None:
    error = engine_error(tmp_path, "  partition: debug\n")
    assert error.key == "engine.partition"
    assert "only applies to kind: slurm" in str(error)
    assert "kind: local" in str(error)
    explicit = engine_error(tmp_path, "  kind: local\n  max_retries: 1\n  mem: 2G\n")
    assert explicit.key == "engine.mem"
    ok = load_job_file(
        write(tmp_path / "ok.yaml", minimal() + "engine: {kind: local, max_retries: 1}\n")
    )
    assert ok.engine.max_retries == 1 and ok.engine.slurm_parameters() == {}


def test_engine_spec_keys_are_the_slurm_parameters() -> None:
    # finish_time and finish_mem are the follow-up jobs' time and mem (SlurmParameters too);
    # max_tasks and workers_per_task are SlurmEngine's packing.
    others = {"kind", "max_retries", "finish_time", "finish_mem", "max_tasks", "workers_per_task"}
    slurm_keys = set(EngineSpec.model_fields) - others
    assert slurm_keys == set(SlurmParameters.model_fields)
    assert "folder" not in EngineSpec.model_fields


# -- the schema ------------------------------------------------------------------------------


def test_schema_import_failure_names_the_module(tmp_path: Path) -> None:
    job = write(tmp_path / "job.yaml", minimal(schema='"no_such_models_here:User"'))
    config = load_job_file(job)  # imported when the pipe is built, not when the file is read
    with pytest.raises(JobConfigError) as info:
        config.make_pipe()
    error = info.value
    assert error.key == "schema"
    assert error.path == str(job)
    assert error.line == 4
    assert "cannot import module 'no_such_models_here'" in str(error)
    assert "ModuleNotFoundError" in str(error)
    assert str(tmp_path) in str(error)


def test_schema_module_that_raises_or_lacks_the_model(tmp_path: Path) -> None:
    write(tmp_path / "broken_models_x.py", "raise RuntimeError('nope')\n")
    config = load_job_file(write(tmp_path / "job.yaml", minimal(schema='"broken_models_x:User"')))
    with pytest.raises(JobConfigError, match="broken_models_x.*RuntimeError: nope"):
        config.make_pipe()
    write(tmp_path / "thin_models_x.py", "User = 3\n")
    config = load_job_file(write(tmp_path / "job2.yaml", minimal(schema='"thin_models_x:User"')))
    with pytest.raises(JobConfigError, match="has no pydantic model named 'User'"):
        config.make_pipe()
    config = load_job_file(write(tmp_path / "job3.yaml", minimal(schema='"gone.py:User"')))
    with pytest.raises(JobConfigError, match="gone.py' does not exist") as info:
        config.make_pipe()
    assert info.value.key == "schema"


# -- resolved configurations -----------------------------------------------------------------


def test_resolved_round_trip(tmp_path: Path) -> None:
    write(
        tmp_path / "site.yaml", "engine: {kind: slurm, setup: [a, b], extra: {exclusive: true}}\n"
    )
    job = write(
        tmp_path / "jobs" / "job.yaml",
        "extends: ../site.yaml\n"
        + minimal(schema='"models:Person"', workers="2")
        + "errors: {format: csv, path: err.csv, options: {delimiter: ';'}}\n"
        + "engine: {mem: 2G, max_retries: 1}\n",
    )
    config = load_job_file(job)
    resolved = config.resolved()
    assert json.loads(json.dumps(resolved)) == resolved  # JSON-able
    assert resolved["engine"] == {
        "kind": "slurm",
        "max_retries": 1,
        "mem": "2G",
        "extra": {"exclusive": True},
        "setup": ["a", "b"],
    }
    assert resolved["base_dir"] == str(job.parent.absolute())
    assert resolved["source"] == str(job.absolute())
    assert resolved["errors"]["path"] == str(job.parent / "err.csv")
    again = JobConfig.from_resolved(json.loads(json.dumps(resolved)))
    assert again.resolved() == resolved
    assert again.engine.slurm_parameters() == config.engine.slurm_parameters()
    assert again.jobs_path() == config.jobs_path()
    assert again.base_dir == config.base_dir


def test_from_resolved_with_the_kind_overridden_to_local(tmp_path: Path) -> None:
    job = write(tmp_path / "job.yaml", minimal() + "engine: {kind: slurm, mem: 2G}\n")
    resolved = load_job_file(job).resolved()
    resolved["engine"]["kind"] = "local"
    config = JobConfig.from_resolved(resolved)
    assert config.engine.kind == "local" and config.engine.slurm_parameters() == {}


def test_from_resolved_errors_are_job_config_errors(tmp_path: Path) -> None:
    resolved = load_job_file(write(tmp_path / "job.yaml", minimal())).resolved()
    resolved["workers"] = -1
    with pytest.raises(JobConfigError) as info:
        JobConfig.from_resolved(resolved)
    assert info.value.key == "workers"
    assert info.value.path == str(tmp_path / "job.yaml")
    with pytest.raises(JobConfigError):
        JobConfig.from_resolved([])  # type: ignore[arg-type]


# -- the error itself ------------------------------------------------------------------------


def test_job_config_error_pickles_with_its_attributes(tmp_path: Path) -> None:
    error = engine_error(tmp_path, "  kind: slurm\n  mem: lots\n")
    clone = pickle.loads(pickle.dumps(error))
    assert type(clone) is JobConfigError
    assert str(clone) == str(error)
    assert (clone.path, clone.key, clone.expected, clone.line) == (
        error.path,
        error.key,
        error.expected,
        error.line,
    )
    assert clone.errors == error.errors
    built = JobConfigError("jobs/clean.yaml", "engine.mem", "expected x, got 'y'", expected="x")
    assert str(built) == "jobs/clean.yaml: engine.mem: expected x, got 'y'"
    assert pickle.loads(pickle.dumps(built)).errors == built.errors


def test_arrow_files_and_zoopipe_csv_options_in_a_job_file(tmp_path: Path) -> None:
    from zoopipe_hpc import ArrowInputAdapter, ArrowOutputAdapter

    job = write(
        tmp_path / "job.yaml",
        "name: j\n"
        'input: {format: csv, path: in.csv, options: {skip_rows: 1, quotechar: "\'"}}\n'
        "output: {format: arrow, path: out.arrow}\n",
    )
    config = load_job_file(job)
    pipe = config.make_pipe()
    assert isinstance(pipe.output_adapter, ArrowOutputAdapter)
    assert isinstance(pipe.input_adapter, CSVInputAdapter)
    assert (pipe.input_adapter.skip_rows, pipe.input_adapter.quotechar) == (1, "'")
    back = DataSpec(format="arrow", path="out.arrow").input_adapter(tmp_path)
    assert isinstance(back, ArrowInputAdapter)


def test_packing_keys_reach_the_slurm_engine_and_are_refused_locally(tmp_path: Path) -> None:
    for bad, expected in (("0", "an integer >= 1"), ("true", "an integer >= 1"), ("two", "")):
        error = engine_error(tmp_path, f"  kind: slurm\n  max_tasks: {bad}\n")
        assert error.key == "engine.max_tasks" and error.line == 6, str(error)
        assert expected in str(error)
    local = engine_error(tmp_path, "  kind: local\n  workers_per_task: 2\n")
    assert local.key == "engine.workers_per_task" and "only applies to kind: slurm" in str(local)
    job = write(
        tmp_path / "packed.yaml",
        minimal() + "workers: 240\nengine: {kind: slurm, max_tasks: 12, workers_per_task: 4}\n",
    )
    config = load_job_file(job)
    resolved = config.resolved()
    assert resolved["engine"]["max_tasks"] == 12 and resolved["engine"]["workers_per_task"] == 4
    assert JobConfig.from_resolved(resolved).engine == config.engine
    assert "max_tasks" not in config.engine.slurm_parameters()  # not an sbatch option
    # Run locally, the stored Slurm job drops its packing with its Slurm parameters.
    local_copy = {**resolved, "engine": {**resolved["engine"], "kind": "local"}}
    assert JobConfig.from_resolved(local_copy).engine.max_tasks is None
    [(what, script)] = dry_run(config)
    assert what == "array of 240 shards"
    assert "#SBATCH --array=0-11%12" in script and "--shards 0-239 --packed 4" in script
