"""Colliding paths: any two of a run's inputs, outputs and error outputs that are one file, after
``..``, symbolic links and hard links, are refused before anything is read or written; every
set of distinct files runs.

The files are a few real names in a temporary folder; each path a user could give is drawn as
one *spelling* of one of them (plain, ``./x/../name``, a symlink to it, a symlink to its folder,
a hard link), so the ground truth (which file it is) is known.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from _support import User, users, write_csv
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zoopipe_hpc import CSVInputAdapter, CSVOutputAdapter, JSONOutputAdapter, Pipe, PipeManager
from zoopipe_hpc._paths import FileIdentity, Role, collisions
from zoopipe_hpc.errors import ConfigurationError
from zoopipe_hpc.jobs.config import load_job_file

FILES = ["a.csv", "b.csv", "c.jsonl", "d.jsonl"]
SPELLINGS = ["plain", "dotdot", "symlink", "dirlink", "hardlink"]


def _spell(root: Path, name: str, how: str) -> Path:
    """A path naming ``root/real/name`` (which may not exist yet) spelled ``how``."""
    real = root / "real" / name
    if how == "plain":
        return real
    if how == "dotdot":
        return root / "real" / "sub" / ".." / name
    if how == "dirlink":
        return root / "linked" / name
    if how == "symlink":
        link = root / "links" / f"sym-{name}"
        if not link.is_symlink():
            link.symlink_to(real)
        return link
    # A hard link needs an existing file: make the real file first (an empty CSV header).
    if not real.exists():
        real.write_text("id,name,score\n")
    link = root / "links" / f"hard-{name}"
    if not link.exists():
        os.link(real, link)
    return link


def _layout(root: Path) -> None:
    (root / "real" / "sub").mkdir(parents=True, exist_ok=True)
    (root / "links").mkdir(exist_ok=True)
    if not (root / "linked").exists():
        (root / "linked").symlink_to(root / "real")


paths = st.tuples(st.sampled_from(FILES), st.sampled_from(SPELLINGS))


@settings(max_examples=120, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(paths, st.sampled_from(["input", "output"])), min_size=2, max_size=5))
def test_collisions_are_exactly_the_same_files(tmp_path: Path, chosen: list) -> None:  # type: ignore[type-arg]
    root = tmp_path / f"case-{abs(hash(tuple(chosen)))}"
    root.mkdir()
    _layout(root)
    roles = [
        Role(f"{kind} {i}", _spell(root, name, how), kind)
        for i, ((name, how), kind) in enumerate(chosen)
    ]
    truth = [(name, kind) for (name, _), kind in chosen]
    expected = {
        (i, j)
        for i in range(len(truth))
        for j in range(i + 1, len(truth))
        if truth[i][0] == truth[j][0] and "output" in (truth[i][1], truth[j][1])
    }
    found = {(roles.index(a), roles.index(b)) for a, b in collisions(roles)}
    assert found == expected, [str(r.path) for r in roles]


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(source=paths, output=paths, errors=paths)
def test_a_pipe_refuses_colliding_paths_and_runs_distinct_ones(
    tmp_path: Path, source: tuple[str, str], output: tuple[str, str], errors: tuple[str, str]
) -> None:
    root = tmp_path / f"run-{abs(hash((source, output, errors)))}"
    root.mkdir()
    _layout(root)
    real_input = root / "real" / source[0]
    write_csv(real_input, users(12, bad_every=5))
    before = real_input.read_bytes()
    input_path = _spell(root, *source)
    output_path = _spell(root, *output)
    errors_path = _spell(root, *errors)
    pipe = Pipe(
        CSVInputAdapter(input_path),
        CSVOutputAdapter(output_path)
        if output[0].endswith(".csv")
        else JSONOutputAdapter(output_path),
        User,
        JSONOutputAdapter(errors_path),
    )
    names = [source[0], output[0], errors[0]]
    if len(set(names)) < 3:
        with pytest.raises(ConfigurationError, match="same file"):
            pipe.run()
        with pytest.raises(ConfigurationError, match="same file"):
            PipeManager.parallelize_pipe(pipe, workers=2)
        assert real_input.read_bytes() == before, "the input is never touched"
    else:
        report = pipe.run()
        assert report.success_count + report.error_count == 12
        assert real_input.read_bytes() == before


def test_a_job_file_refuses_a_symlink_or_hard_link_to_its_input(tmp_path: Path) -> None:
    write_csv(tmp_path / "in.csv", users(3))
    (tmp_path / "alias.csv").symlink_to(tmp_path / "in.csv")
    os.link(tmp_path / "in.csv", tmp_path / "hard.csv")
    (tmp_path / "out").mkdir()
    for spelled in ("alias.csv", "hard.csv", "./out/../in.csv"):
        job = tmp_path / "job.yaml"
        job.write_text(
            "name: j\nschema: _support:User\n"
            "input: {format: csv, path: in.csv}\n"
            f"output: {{format: csv, path: '{spelled}'}}\n"
        )
        with pytest.raises(ConfigurationError, match="the output would overwrite the input"):
            load_job_file(job)
    assert FileIdentity.of(tmp_path / "alias.csv").same_as(FileIdentity.of(tmp_path / "in.csv"))


def test_two_pipes_of_one_manager_on_one_output_are_refused(tmp_path: Path) -> None:
    a = write_csv(tmp_path / "a.csv", users(3))
    b = write_csv(tmp_path / "b.csv", users(3))
    out = tmp_path / "out.jsonl"
    with pytest.raises(ConfigurationError, match="same file"):
        PipeManager(
            [
                Pipe(CSVInputAdapter(a), JSONOutputAdapter(out), User),
                Pipe(
                    CSVInputAdapter(b), JSONOutputAdapter(tmp_path / "x" / ".." / "out.jsonl"), User
                ),
            ]
        )
    with pytest.raises(ConfigurationError, match="would overwrite"):
        PipeManager(
            [
                Pipe(CSVInputAdapter(a), JSONOutputAdapter(out), User),
                Pipe(CSVInputAdapter(b), CSVOutputAdapter(a), User),
            ]
        )
    assert not out.exists()
