"""Reading job files: YAML that keeps the line of every key, and ``extends:`` merging.

:func:`load_tree` reads a job file and the files it extends, merges them (the including file
wins, mappings merged key by key) and returns the merged data with the *origins*: for every key
and list item, the file and the 1-based line that wrote it, so that an error about a key can name
the place the user has to edit. A problem with the files themselves (missing, not UTF-8, invalid
YAML, duplicate key, an ``extends`` cycle, too large, aliases that expand too far) is a
:class:`~zoopipe_hpc.errors.JobConfigError`.

Files are parsed by libyaml (PyYAML's C parser) where PyYAML was built with it, and composed by
PyYAML's own composer, which keeps the line of every node and counts what aliases expand to:
a job file is a short text, so one larger than :data:`MAX_FILE_BYTES`, or whose aliases
(``*name``) repeat more than :data:`MAX_ALIAS_NODES` nodes in all (the "billion laughs" shape:
nine levels of ten aliases are 10**9 nodes from 700 bytes), is refused before it is walked.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped, unused-ignore]

from ..errors import JobConfigError

__all__ = [
    "EXTENDS_RULE",
    "MAX_ALIAS_NODES",
    "MAX_FILE_BYTES",
    "Loc",
    "Origin",
    "Origins",
    "dotted",
    "load_tree",
    "lookup",
    "resolve_path",
    "show",
]

#: Where a key of the merged configuration was written: (file as displayed, 1-based line).
Origin = tuple[str, int]
#: The location of a key: its path of names and list indices, e.g. ("engine", "setup", 0).
Loc = tuple[str | int, ...]
Origins = dict[Loc, Origin]

EXTENDS_RULE = "a file path or a list of file paths"

#: The largest job file read, in bytes. Job files are a few kilobytes; a larger file is data or
#: a mistake (a MiB takes 0.1 s to load with libyaml, 0.5 s without).
MAX_FILE_BYTES = 1 << 20
#: How many nodes the aliases of one file may repeat in all (each alias counts the nodes of what
#: it names, nested aliases included). Anchors that share an input or engine block repeat tens.
MAX_ALIAS_NODES = 10_000


def show(value: Any) -> str:
    """A value as the user wrote it, short."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif value is None:
        text = "null"
    elif isinstance(value, Path):
        text = repr(str(value))
    else:
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def dotted(loc: Loc) -> str:
    """A location as the user reads it: ``("engine", "setup", 0)`` is ``engine.setup[0]``."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def resolve_path(base: Path, path: str | os.PathLike[str]) -> Path:
    """``path`` with ``~`` expanded, relative to ``base`` unless absolute."""
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else Path(base) / candidate


_STR_TAG = "tag:yaml.org,2002:str"
_NUMBER_TAGS = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")


def _read_yaml(path: Path, display: str) -> tuple[dict[str, Any], Origins]:
    """A YAML mapping and the line of each of its keys."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
            size = os.fstat(f.fileno()).st_size if len(raw) > MAX_FILE_BYTES else len(raw)
    except FileNotFoundError:
        raise JobConfigError(
            display, "", "no such file", expected="an existing YAML job file"
        ) from None
    except IsADirectoryError:
        raise JobConfigError(
            display, "", "is a folder, not a file", expected="a YAML job file"
        ) from None
    except OSError as exc:
        raise JobConfigError(
            display, "", f"cannot read: {exc.strerror}", expected="a readable YAML job file"
        ) from exc
    if len(raw) > MAX_FILE_BYTES:
        limit = f"{MAX_FILE_BYTES >> 20} MiB"
        raise JobConfigError(
            display,
            "",
            f"the file is {max(size, len(raw)):,} bytes, more than the {limit} a job file may "
            "have (a job file names its data, it does not hold it)",
            expected=f"a YAML job file of at most {limit}",
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise JobConfigError(
            display, "", f"not UTF-8 text: {exc.reason} at byte {exc.start}", expected="UTF-8 YAML"
        ) from exc
    loader = _Loader(text, display)
    try:
        node = loader.get_single_node()
        origins: Origins = {}
        if node is not None:
            _walk(node, (), origins, display, set())
        data = loader.construct_document(node) if node is not None else None
    except RecursionError:
        raise JobConfigError(
            display,
            "",
            "nested too deeply for the YAML reader",
            expected="a job file whose mappings and lists nest at most a few hundred levels",
        ) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        column = f" at column {mark.column + 1}" if mark is not None else ""
        context = f" ({exc.context})" if exc.context else ""
        raise JobConfigError(
            display,
            "",
            f"invalid YAML{column}: {exc.problem}{context}",
            expected="valid YAML",
            line=line,
        ) from exc
    except yaml.YAMLError as exc:
        raise JobConfigError(display, "", f"invalid YAML: {exc}", expected="valid YAML") from exc
    finally:
        loader.dispose()
    if data is None:
        return {}, origins
    if not isinstance(data, dict):
        raise JobConfigError(
            display,
            "",
            f"expected a mapping of keys at the top level, got {_yaml_kind(data)}",
            expected="a mapping of keys at the top level",
            line=1,
        )
    return data, origins


class _AliasBudget(yaml.composer.Composer):  # type: ignore[misc]
    """PyYAML's composer, counting the nodes each alias repeats (see :data:`MAX_ALIAS_NODES`).

    An alias is the node it names, shared, so composing costs nothing; walking or copying the
    result as a tree costs what the aliases expand to, which is measured here on the shared
    nodes (each node's expanded size computed once) before anything walks it.
    """

    def __init__(self, display: str) -> None:
        yaml.composer.Composer.__init__(self)
        self._display = display
        self._aliased = 0
        self._sizes: dict[int, int] = {}

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            named = self.anchors.get(event.anchor)
            if named is not None:  # else the composer raises "undefined alias"
                self._count(event, self._expanded(named, set()))
        return yaml.composer.Composer.compose_node(self, parent, index)

    def _count(self, event: Any, size: int) -> None:
        self._aliased += size
        if self._aliased <= MAX_ALIAS_NODES:
            return
        raise JobConfigError(
            self._display,
            "",
            f"the aliases repeat more than {MAX_ALIAS_NODES:,} nodes in all (*{event.anchor} "
            f"here adds {size:,}): aliases of aliases multiply, so the file is refused before "
            "it is read further",
            expected=f"aliases (*name) that repeat at most {MAX_ALIAS_NODES:,} nodes in all",
            line=event.start_mark.line + 1,
        )

    def _expanded(self, node: Any, active: set[int]) -> int:
        """How many nodes ``node`` is as a tree; a recursive alias counts as one node."""
        if isinstance(node, yaml.ScalarNode):
            return 1
        key = id(node)
        known = self._sizes.get(key)
        if known is not None:
            return known
        if key in active:
            return 1
        active.add(key)
        if isinstance(node, yaml.MappingNode):
            children = [child for pair in node.value for child in pair]
        else:
            children = list(node.value)
        size = 1 + sum(self._expanded(child, active) for child in children)
        active.discard(key)
        self._sizes[key] = size
        return size


try:
    from yaml.cyaml import CParser as _CParser  # type: ignore[import-untyped, unused-ignore]
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    _CParser = None

if _CParser is not None:
    from yaml.constructor import SafeConstructor  # type: ignore[import-untyped, unused-ignore]
    from yaml.resolver import Resolver  # type: ignore[import-untyped, unused-ignore]

    class _Loader(_AliasBudget, _CParser, SafeConstructor, Resolver):  # type: ignore[misc]
        """libyaml's parser (with marks), the counting composer, PyYAML's safe constructor."""

        def __init__(self, text: str, display: str) -> None:
            _CParser.__init__(self, text)
            _AliasBudget.__init__(self, display)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)

else:  # pragma: no cover - PyYAML built without libyaml

    class _Loader(_AliasBudget, yaml.SafeLoader):  # type: ignore[misc, no-redef]
        """PyYAML's pure-Python safe loader with the counting composer."""

        def __init__(self, text: str, display: str) -> None:
            yaml.SafeLoader.__init__(self, text)
            _AliasBudget.__init__(self, display)


def _yaml_kind(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"the text {show(value)}"
    return f"{type(value).__name__} {show(value)}"


def _walk(node: Any, loc: Loc, origins: Origins, display: str, active: set[int]) -> None:
    """Record the line of every key and list item, refuse duplicate keys, and read
    ``00:30:00``-like plain scalars as text (not YAML 1.1 base-60 numbers)."""
    if id(node) in active:  # a recursive alias
        return
    active.add(id(node))
    try:
        if isinstance(node, yaml.MappingNode):
            seen: dict[str, int] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    _walk(value_node, loc, origins, display, active)
                    continue
                key = key_node.value
                line = key_node.start_mark.line + 1
                if key in seen and key != "<<":
                    raise JobConfigError(
                        display,
                        dotted((*loc, key)),
                        f"duplicate key (first given at line {seen[key]})",
                        expected="each key once",
                        line=line,
                    )
                seen[key] = line
                origins[(*loc, key)] = (display, line)
                _walk(value_node, (*loc, key), origins, display, active)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                origins[(*loc, index)] = (display, item.start_mark.line + 1)
                _walk(item, (*loc, index), origins, display, active)
        elif (
            isinstance(node, yaml.ScalarNode)
            and node.style is None
            and node.tag in _NUMBER_TAGS
            and ":" in node.value
        ):
            node.tag = _STR_TAG
    finally:
        active.discard(id(node))


def _merge(base: Mapping[str, Any], child: Mapping[str, Any]) -> dict[str, Any]:
    """Mappings merged recursively, the child winning; lists and scalars replaced."""
    merged = dict(base)
    for key, value in child.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _value_at(data: Any, loc: Loc) -> Any:
    for part in loc:
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, list) and isinstance(part, int) and part < len(data):
            data = data[part]
        else:
            return None
    return data


def _merge_origins(base: Origins, child: Origins, child_data: dict[str, Any]) -> Origins:
    # A key the child gives a list or a plain value is replaced whole: what the base said
    # below it is gone. Each base key is looked up by its prefixes (linear in the keys: a
    # list of 15,000 items, compared with every key, took 30 s).
    replaced = {loc for loc in child if not isinstance(_value_at(child_data, loc), dict)}
    merged = {
        loc: where
        for loc, where in base.items()
        if not any(loc[:end] in replaced for end in range(1, len(loc)))
    }
    merged.update(child)
    return merged


def _extends_list(value: Any, display: str, origins: Origins) -> list[str]:
    if value is None:
        return []
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(i, str) and i.strip() for i in items):
        rule = EXTENDS_RULE
        path, line = lookup(origins, ("extends",), display)
        raise JobConfigError(
            path, "extends", f"expected {rule}, got {show(value)}", expected=rule, line=line
        )
    return list(items)


def load_tree(
    path: Path, display: str, chain: tuple[tuple[Path, str], ...] = ()
) -> tuple[dict[str, Any], Origins]:
    """A file merged over the files it extends, and where each key came from."""
    real = path.resolve()
    data, origins = _read_yaml(path, display)
    extends = _extends_list(data.pop("extends", None), display, origins)
    own = {k: v for k, v in origins.items() if k[:1] != ("extends",)}
    merged: dict[str, Any] = {}
    merged_origins: Origins = {}
    for index, reference in enumerate(extends):
        loc: Loc = ("extends", index) if ("extends", index) in origins else ("extends",)
        where, line = lookup(origins, loc, display)
        base_path = resolve_path(path.parent, reference)
        shown = reference if Path(reference).expanduser().is_absolute() else None
        base_display = shown or os.path.normpath(resolve_path(Path(display).parent, reference))
        base_real = base_path.resolve()
        if base_real == real or any(base_real == r for r, _ in chain):
            names = [d for _, d in chain] + [display, base_display]
            raise JobConfigError(
                where,
                "extends",
                f"cycle: {' -> '.join(names)}",
                expected="extends without a cycle",
                line=line,
            )
        if not base_path.is_file():
            looked = os.path.abspath(base_path)
            raise JobConfigError(
                where,
                "extends",
                f"base file {base_display} does not exist"
                + (f" ({looked})" if looked != base_display else ""),
                expected="the path of an existing YAML file, relative to the including file",
                line=line,
            )
        base_data, base_origins = load_tree(base_path, base_display, (*chain, (real, display)))
        merged_origins = _merge_origins(merged_origins, base_origins, base_data)
        merged = _merge(merged, base_data)
    merged_origins = _merge_origins(merged_origins, own, data)
    return _merge(merged, data), merged_origins


def lookup(origins: Origins, loc: Loc, default: str) -> tuple[str, int | None]:
    """Where ``loc`` (or its nearest written parent) was written."""
    for end in range(len(loc), 0, -1):
        where = origins.get(loc[:end])
        if where is not None:
            return where
    return default, None
