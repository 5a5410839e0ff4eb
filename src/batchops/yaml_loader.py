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


class StrictSafeLoader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans, no duplicate keys and no aliases."""

    def compose_node(self, parent, index):  # noqa: D401 - PyYAML hook
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.constructor.ConstructorError(
                None, None, "YAML aliases (*name) are not allowed in BatchOps configs; write the value out",
                event.start_mark,
            )
        return super().compose_node(parent, index)

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
