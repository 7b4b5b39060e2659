"""Strict reading of settings YAML: duplicate keys refused, every problem kept with its key."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from fromager_dagster.core.errors import ConfigError


class SettingsError(ConfigError):
    """Settings files with problems; ``problems`` holds each as ``<file>: <key>: <what>``."""

    def __init__(self, message: str, *, problems: tuple[str, ...] = (), **fields: Any) -> None:
        super().__init__(message, **fields)
        self.problems = tuple(problems) or (message,)

    def _fields(self) -> dict[str, Any]:
        return {**super()._fields(), "problems": self.problems}


def show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def unknown_key(key: str, allowed: frozenset[str]) -> str:
    close = difflib.get_close_matches(key, allowed, n=1)
    if close:
        return f"unknown key; did you mean {close[0]!r}?"
    return f"unknown key; expected one of {', '.join(sorted(allowed))}"


def key_path(prefix: str, key: object) -> str:
    return f"{prefix}.{key}" if prefix else str(key)


class Reader:
    """Typed access to one YAML document that collects every problem with its key path."""

    def __init__(self, source: Path) -> None:
        self.source = source
        self.problems: list[str] = []

    def add(self, path: str, what: str) -> None:
        self.problems.append(f"{self.source}: {path}: {what}" if path else f"{self.source}: {what}")

    def table(self, value: Any, path: str, allowed: frozenset[str] | None) -> dict[str, Any]:
        """``value`` as a mapping with string keys (null is empty); unknown keys reported."""
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.add(path, f"expected a mapping, got {show(value)}")
            return {}
        result: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                self.add(key_path(path, key), f"keys must be strings, got {show(key)}")
            elif allowed is not None and key not in allowed:
                self.add(key_path(path, key), unknown_key(key, allowed))
            else:
                result[key] = item
        return result

    def section(
        self, data: dict[str, Any], key: str, prefix: str, allowed: frozenset[str] | None
    ) -> dict[str, Any]:
        return self.table(data.get(key), key_path(prefix, key), allowed)

    def _get(
        self,
        data: dict[str, Any],
        key: str,
        prefix: str,
        default: Any,
        ok: Callable[[Any], bool],
        expected: str,
    ) -> Any:
        if key not in data:
            return default
        value = data[key]
        if ok(value):
            return value
        self.add(key_path(prefix, key), f"expected {expected}, got {show(value)}")
        return default

    def boolean(self, data: dict[str, Any], key: str, prefix: str, default: bool) -> bool:
        value: bool = self._get(
            data, key, prefix, default, lambda v: isinstance(v, bool), "true or false"
        )
        return value

    def optional_bool(self, data: dict[str, Any], key: str, prefix: str) -> bool | None:
        value: bool | None = self._get(
            data, key, prefix, None, lambda v: v is None or isinstance(v, bool), "true or false"
        )
        return value

    def optional_str(self, data: dict[str, Any], key: str, prefix: str) -> str | None:
        value: str | None = self._get(
            data, key, prefix, None, lambda v: v is None or isinstance(v, str), "a string"
        )
        return value

    def integer(
        self, data: dict[str, Any], key: str, prefix: str, default: int | None, minimum: int
    ) -> int | None:
        def ok(v: Any) -> bool:
            return (v is None and default is None) or (
                isinstance(v, int) and not isinstance(v, bool) and v >= minimum
            )

        value: int | None = self._get(data, key, prefix, default, ok, f"an integer >= {minimum}")
        return value

    def number(
        self, data: dict[str, Any], key: str, prefix: str, default: float, minimum: float
    ) -> float:
        def ok(v: Any) -> bool:
            return isinstance(v, int | float) and not isinstance(v, bool) and v >= minimum

        return float(self._get(data, key, prefix, default, ok, f"a number >= {minimum}"))

    def strings(self, value: Any, path: str) -> tuple[str, ...]:
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return tuple(value)
        self.add(path, f"expected a list of strings, got {show(value)}")
        return ()

    def string_list(self, data: dict[str, Any], key: str, prefix: str) -> tuple[str, ...]:
        return self.strings(data[key], key_path(prefix, key)) if key in data else ()

    def string_map(self, data: dict[str, Any], key: str, prefix: str) -> dict[str, str]:
        result: dict[str, str] = {}
        path = key_path(prefix, key)
        for name, value in self.section(data, key, prefix, None).items():
            if isinstance(value, str):
                result[name] = value
            else:
                self.add(key_path(path, name), f"expected a string, got {show(value)}")
        return result


class _StrictLoader(yaml.SafeLoader):  # type: ignore[misc]
    """PyYAML's safe loader, but a key written twice in one mapping is an error."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if isinstance(key, str | int | float | bool) and key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} is written twice", key_node.start_mark
            )
        seen.add(key if isinstance(key, str | int | float | bool) else id(key_node))
    loader.flatten_mapping(node)
    return dict(loader.construct_pairs(node))


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,
)


def read_yaml(path: Path, r: Reader) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        r.add("", f"cannot read: {exc}")
        return None
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f"line {mark.line + 1}: " if mark is not None else ""
        r.add("", f"{line}invalid YAML: {exc.problem or exc.context}")
    except yaml.YAMLError as exc:
        r.add("", f"invalid YAML: {exc}")
    return None
