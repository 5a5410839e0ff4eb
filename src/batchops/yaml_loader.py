"""Strict, safe YAML reading for configs.

PyYAML's SafeLoader still accepts duplicate keys (last one wins silently), reads `no`/`on`/`yes`
as booleans (YAML 1.1) and expands aliases without limit (billion laughs). Configs are small and
hand-written, so we refuse all three with a message that names the line.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from batchops.errors import ConfigError

MAX_CONFIG_BYTES = 1_000_000


# libyaml's parser when PyYAML was built with it: parsing 101 provider files took 1.3 s of the 200-DAG
# parse in pure Python. Construction (and so the checks below) stays in Python either way.
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _refuse_aliases(root) -> None:
    """An alias makes the composed graph share a node: refuse the first node reached twice, before anything
    is constructed (an alias bomb is a small graph whose construction would be huge)."""
    seen: set[int] = set()
    pending = [root]
    while pending:
        node = pending.pop()
        if id(node) in seen:
            raise yaml.constructor.ConstructorError(
                None, None, "YAML aliases (*name) are not allowed in BatchOps configs; write the value out "
                "(the anchored value is here)", node.start_mark)
        seen.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            pending.extend(node.value)
        elif isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                pending.extend((key, value))


class StrictSafeLoader(_SafeLoader):
    """SafeLoader with YAML 1.2 booleans, no duplicate keys and no aliases."""

    def construct_document(self, node):
        _refuse_aliases(node)
        return super().construct_document(node)

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping", node.start_mark,
                    f"duplicate key {key!r} (first at line {seen[key].line + 1}); keep one", key_node.start_mark,
                )
            seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


# Only true/false are booleans (YAML 1.2); `no`, `on`, `yes`, `off` stay strings.
StrictSafeLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
StrictSafeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def read_yaml_file(path: Path) -> dict[str, Any]:
    """Read one config file into a mapping, or raise ConfigError naming the file and line."""
    display = str(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ConfigError(display, "(file)", f"cannot read: {exc.strerror}") from exc
    if size > MAX_CONFIG_BYTES:
        raise ConfigError(display, "(file)", f"{size} bytes is larger than the {MAX_CONFIG_BYTES} allowed")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(display, "(file)", f"not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    try:
        document = yaml.load(text, Loader=StrictSafeLoader)  # noqa: S506 - StrictSafeLoader is a SafeLoader
    except yaml.YAMLError as exc:
        raise ConfigError(display, "(yaml)", _describe_yaml_error(exc)) from exc
    if document is None:
        raise ConfigError(display, "(file)", "the file is empty")
    if not isinstance(document, dict):
        raise ConfigError(display, "(file)", f"expected a mapping at the top level, got {type(document).__name__}")
    return document


def _describe_yaml_error(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    if "could not determine a constructor" in problem:
        problem = "custom YAML tags (such as !!python/object) are not allowed; use plain values"
    return f"{where}{problem}"
