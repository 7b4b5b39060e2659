"""What each step's override must return (checked and normalised) and the error it raises."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement

from fromager_dagster.core.errors import (
    BuildError,
    FromagerDagsterError,
    ResolutionError,
    SourceError,
)
from fromager_dagster.core.index.distributions import DistFile


def _existing_file(value: Any) -> Path:
    if not isinstance(value, str | os.PathLike) or not Path(value).is_file():
        raise TypeError(f"expected the path of an existing file, got {value!r}")
    return Path(value)


def _existing_dir(value: Any) -> Path:
    if not isinstance(value, str | os.PathLike) or not Path(value).is_dir():
        raise TypeError(f"expected the path of an existing directory, got {value!r}")
    return Path(value)


def _wheel_file(value: Any) -> Path:
    path = _existing_file(value)
    if not path.name.endswith(".whl"):
        raise TypeError(f"expected a .whl file, got {path.name!r}")
    return path


def _requirement_strings(value: Any) -> list[str]:
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise TypeError(f"expected a list of requirement strings, got {value!r}")
    result = []
    for item in value:
        text = str(item) if isinstance(item, Requirement) else item
        if not isinstance(text, str):
            raise TypeError(f"expected requirement strings, got {item!r}")
        try:
            Requirement(text)
        except InvalidRequirement as exc:
            raise TypeError(f"invalid requirement {text!r}: {exc}") from exc
        result.append(text)
    return result


def _json_mapping(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(f"expected a mapping or None, got {value!r}")
    data = dict(value)
    try:
        json.dumps(data, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"expected JSON-serialisable data: {exc}") from exc
    return data


def _environ(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise TypeError(f"expected a mapping of str to str or None, got {value!r}")
    return dict(value)


def _dist_files(value: Any) -> list[DistFile]:
    if not isinstance(value, Iterable) or not all(isinstance(f, DistFile) for f in value):
        raise TypeError(f"expected DistFile values, got {value!r}")
    return sorted(value, key=lambda f: (f.version, f.kind, f.filename))


@dataclass(frozen=True)
class StepKind:
    error: type[FromagerDagsterError]
    check: Callable[[Any], Any]


STEP_KINDS: dict[str, StepKind] = {
    "find_candidates": StepKind(ResolutionError, _dist_files),
    "download_source": StepKind(SourceError, _existing_file),
    "prepare_source": StepKind(SourceError, _existing_dir),
    "get_build_system_dependencies": StepKind(BuildError, _requirement_strings),
    "get_build_backend_dependencies": StepKind(BuildError, _requirement_strings),
    "get_build_sdist_dependencies": StepKind(BuildError, _requirement_strings),
    "build_sdist": StepKind(SourceError, _existing_file),
    "build_wheel": StepKind(BuildError, _wheel_file),
    "add_extra_metadata_to_wheels": StepKind(BuildError, _json_mapping),
    "update_extra_environ": StepKind(BuildError, _environ),
}
