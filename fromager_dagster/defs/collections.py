"""Collections: named sets of requirements and constraints, read from collections.yaml."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from fromager_dagster.core.errors import ConfigError
from fromager_dagster.core.settings import DEFAULT_VARIANT, Settings, default_paths, load_settings

ENV_FILE = "FROMAGER_DAGSTER_COLLECTIONS"
ENV_HOME = "FROMAGER_DAGSTER_HOME"
DEFAULT_SCHEDULE = "0 2 * * *"

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def valid_collection_name(name: str) -> bool:
    """A collection's name: letters, digits, '_', '.', '-', starting with a letter or digit."""
    return bool(_NAME.match(name))


# key -> (expected type description, checker)
_STR_LIST = (
    "a list of strings",
    lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
)
_STR = ("a string", lambda v: isinstance(v, str))
_OPT_STR = ("a string or null", lambda v: v is None or isinstance(v, str))
_BOOL = ("true or false", lambda v: isinstance(v, bool))
_DAYS = (
    "a number of days (0 or more) or null",
    lambda v: v is None or (isinstance(v, int | float) and not isinstance(v, bool) and v >= 0),
)
_FIELDS: dict[str, tuple[str, Any]] = {
    "requirements": _STR_LIST,
    "requirement_files": _STR_LIST,
    "constraints": _STR_LIST,
    "variant": _STR,
    "index_url": _OPT_STR,
    "output_dir": _OPT_STR,
    "sdist_only": _BOOL,
    "exclusive_build": _STR_LIST,
    "flaky_build": _STR_LIST,
    "schedule": _STR,
    "overrides": _OPT_STR,
    "settings_file": _OPT_STR,
    "settings_dir": _OPT_STR,
    "patches_dir": _OPT_STR,
    "test_mode": _BOOL,
    "multiple_versions": _BOOL,
    "skip_constraints": _BOOL,
    "min_release_age": _DAYS,
    "reproducible_check": _BOOL,
}


@dataclass(frozen=True)
class Collection:
    """One collection: what to rebuild, under which constraints, into which output folder."""

    name: str
    requirements: tuple[str, ...] = ()
    requirement_files: tuple[Path, ...] = ()
    constraints: tuple[Path | str, ...] = ()  # paths, or http(s) URLs kept as written
    variant: str = DEFAULT_VARIANT
    index_url: str | None = None
    output_dir: Path = Path("output")
    sdist_only: bool = True
    exclusive_build: tuple[str, ...] = ()
    flaky_build: tuple[str, ...] = ()
    schedule: str = DEFAULT_SCHEDULE
    # fromager's overrides: settings.yaml, settings/<package>.yaml and patches/
    settings_file: Path | None = None
    settings_dir: Path | None = None
    patches_dir: Path | None = None
    # fromager's run modes: the defaults of discovery runs (launchpad, schedule, sensor)
    test_mode: bool = False
    multiple_versions: bool = False
    skip_constraints: bool = False
    min_release_age: float | None = None  # days
    # the wheels' `reproducible` check rebuilds and compares them (defs/reproducible_check.py)
    reproducible_check: bool = False

    def settings(self, variant: str | None = None) -> Settings:
        """The collection's build settings for ``variant`` (default: its own); local files only."""
        return load_settings(
            settings_file=self.settings_file,
            settings_dir=self.settings_dir,
            patches_dir=self.patches_dir,
            variant=variant or self.variant,
        )

    @property
    def ident(self) -> str:
        """The name as Dagster wants it in job, group and op names: ``[A-Za-z0-9_]``."""
        return re.sub(r"[^A-Za-z0-9_]", "_", self.name)

    @property
    def graph_path(self) -> Path:
        return self.output_dir / "work-dir" / "graph.json"


def collections_file() -> Path | None:
    """``$FROMAGER_DAGSTER_COLLECTIONS``, else ``collections.yaml`` in the current folder (the
    project ``dagster dev`` is started in); ``None`` when neither names a file."""
    explicit = os.environ.get(ENV_FILE)
    if explicit:
        return Path(explicit)
    candidate = Path.cwd() / "collections.yaml"
    return candidate if candidate.is_file() else None


def load_collections(path: Path | None = None) -> dict[str, Collection]:
    """Every collection in ``path`` (default: :func:`collections_file`), validated strictly."""
    path = path if path is not None else collections_file()
    if path is None:
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read collections file {path}: {exc}") from exc
    return parse_collections(data, path)


def parse_collections(data: Any, path: Path) -> dict[str, Collection]:
    """Validate the parsed YAML of ``path``; one ConfigError lists every problem."""
    problems: list[str] = []
    if data is None:
        return {}
    if not isinstance(data, Mapping) or set(data) - {"collections"}:
        extra = sorted(set(data) - {"collections"}) if isinstance(data, Mapping) else []
        problems.append(
            "top level: expected a mapping with the single key 'collections'"
            + (f" (unknown keys: {', '.join(map(str, extra))})" if extra else "")
        )
        raise ConfigError(f"{path}: " + "; ".join(problems))
    raw = data.get("collections") or {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{path}: collections: expected a mapping from name to collection")
    base = path.resolve().parent
    result: dict[str, Collection] = {}
    for name, body in raw.items():
        where = f"collections.{name}"
        if not isinstance(name, str) or not _NAME.match(name):
            problems.append(f"{where}: a name is letters, digits, '_', '.', '-'")
            continue
        if not isinstance(body, Mapping):
            problems.append(f"{where}: expected a mapping")
            continue
        good = True
        for key, value in body.items():
            if key not in _FIELDS:
                problems.append(f"{where}.{key}: unknown key (known: {', '.join(sorted(_FIELDS))})")
                good = False
                continue
            expected, ok = _FIELDS[key]
            if not ok(value):
                problems.append(f"{where}.{key}: expected {expected}, got {value!r}")
                good = False
        if not body.get("requirements") and not body.get("requirement_files"):
            problems.append(f"{where}: needs 'requirements' or 'requirement_files'")
            good = False
        if good:
            result[name] = _collection(name, body, base)
    idents = [c.ident for c in result.values()]
    problems.extend(
        f"collections: several names map to the Dagster name {ident!r}"
        for ident in sorted({i for i in idents if idents.count(i) > 1})
    )
    if problems:
        raise ConfigError(f"{path}: " + "; ".join(problems))
    return result


def _collection(name: str, body: Mapping[str, Any], base: Path) -> Collection:
    def paths(key: str) -> tuple[Path, ...]:
        return tuple(base / p for p in body.get(key, []))

    def locations(key: str) -> tuple[Path | str, ...]:
        return tuple(p if "://" in p else base / p for p in body.get(key, []))

    if body.get("output_dir"):
        output = base / body["output_dir"]
    elif os.environ.get(ENV_HOME):
        output = Path(os.environ[ENV_HOME]) / name
    else:
        output = base / "output" / name
    return Collection(
        name=name,
        requirements=tuple(body.get("requirements", [])),
        requirement_files=paths("requirement_files"),
        constraints=locations("constraints"),
        variant=body.get("variant", DEFAULT_VARIANT),
        index_url=body.get("index_url"),
        output_dir=output,
        sdist_only=body.get("sdist_only", True),
        exclusive_build=tuple(body.get("exclusive_build", [])),
        flaky_build=tuple(body.get("flaky_build", [])),
        schedule=body.get("schedule", DEFAULT_SCHEDULE),
        test_mode=body.get("test_mode", False),
        multiple_versions=body.get("multiple_versions", False),
        skip_constraints=body.get("skip_constraints", False),
        min_release_age=body.get("min_release_age"),
        reproducible_check=body.get("reproducible_check", False),
        **_overrides(body, base),
    )


def _overrides(body: Mapping[str, Any], base: Path) -> dict[str, Path | None]:
    """The three settings paths: each as given, else under ``overrides:`` (default: the
    ``overrides/`` folder beside the collections file) where it exists; ``overrides: null``
    (or empty) means no defaults."""
    keys = ("settings_file", "settings_dir", "patches_dir")
    given = [base / body[key] if body.get(key) else None for key in keys]
    if "overrides" not in body:
        found = default_paths(*given, root=base)
    elif body["overrides"]:
        found = default_paths(*given, overrides=base / body["overrides"])
    else:
        found = (given[0], given[1], given[2])
    return dict(zip(keys, found, strict=True))
