"""Top-level requirements and constraints: reading files, evaluating markers, intersecting."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import requests
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

from fromager_dagster.core.credentials import redact_url
from fromager_dagster.core.errors import ConfigError
from fromager_dagster.core.http import RetryingSession, fetch, make_session


def parse_requirement(text: str, *, source: str = "command line") -> Requirement:
    """Parse one requirement line; a ConfigError names where it came from."""
    try:
        return Requirement(text)
    except InvalidRequirement as exc:
        raise ConfigError(f"{source}: invalid requirement {text!r}: {exc}") from exc


def marker_holds(req: Requirement, extras: Iterable[str] = ("",)) -> bool:
    """True when the requirement applies to this interpreter for any of ``extras``."""
    if req.marker is None:
        return True
    return any(req.marker.evaluate({"extra": extra}) for extra in extras)


def _read_lines(location: str, session: requests.Session | None = None) -> list[tuple[str, str]]:
    """(where, line) pairs from a local path or an http(s) URL, comments and blanks removed.

    A URL is fetched with the engine's HTTP policy (retries, whole bodies, credentials kept
    out of messages)."""
    shown = redact_url(location)
    if location.startswith(("http://", "https://")):
        client = session if session is not None else make_session()
        url = client.add_credentials(location) if isinstance(client, RetryingSession) else location
        try:
            response = fetch(client, url)
        except requests.RequestException as exc:
            raise ConfigError(f"cannot read {shown}: {exc}") from exc
        if response.status_code != 200:
            raise ConfigError(
                f"cannot read {shown}: HTTP {response.status_code} {response.reason}".rstrip()
            )
        try:
            text = response.content.decode(response.encoding or "utf-8")
        except (UnicodeDecodeError, LookupError) as exc:
            raise ConfigError(f"cannot read {shown}: it is not UTF-8 text ({exc})") from exc
    else:
        try:
            text = Path(location).read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(
                f"cannot read {location}: it is not UTF-8 text (byte {exc.start}); save it as UTF-8"
            ) from exc
        except OSError as exc:
            raise ConfigError(f"cannot read {location}: {exc.strerror or exc}") from exc
    lines = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split(" #", 1)[0].strip() if " #" in raw else raw.strip()
        if not line or line.startswith("#"):
            continue
        lines.append((f"{shown}:{number}", line))
    return lines


def read_requirement_files(
    paths: Sequence[str | os.PathLike[str]], *, _including: tuple[str, ...] = ()
) -> list[Requirement]:
    """Requirements from ``-r`` files (nested ``-r`` allowed), markers not yet evaluated.

    A file that includes itself, directly or through others, is a ConfigError naming the
    chain of files."""
    result: list[Requirement] = []
    for path in paths:
        location = os.fspath(path)
        key = location if "://" in location else os.path.realpath(location)
        if key in _including:
            chain = " -> ".join([*_including[_including.index(key) :], key])
            raise ConfigError(
                f"{location}: requirements files include each other ({chain}); "
                "remove one of the -r lines"
            )
        for where, line in _read_lines(location):
            if line.startswith(("-r ", "--requirement ")):
                nested = line.split(None, 1)[1].strip()
                base = Path(location).parent
                result.extend(
                    read_requirement_files([str(base / nested)], _including=(*_including, key))
                )
                continue
            if line.startswith("-"):
                raise ConfigError(f"{where}: unsupported option {line.split()[0]!r} in file")
            result.append(parse_requirement(line, source=where))
    return result


def toplevel_requirements(
    args: Sequence[str], files: Sequence[str | os.PathLike[str]]
) -> list[Requirement]:
    """Arguments then ``-r`` files, keeping only those whose markers hold here."""
    reqs = [parse_requirement(arg) for arg in args]
    reqs.extend(read_requirement_files(files))
    if not reqs:
        raise ConfigError("no requirements given: pass package names or -r FILE")
    return [req for req in reqs if marker_holds(req)]


@dataclass(frozen=True)
class Constraint:
    """The intersection of every constraint line given for one package."""

    name: NormalizedName
    specifier: SpecifierSet
    lines: tuple[str, ...]

    @property
    def blocked(self) -> bool:
        """``<0`` (or anything that admits no version at all) blocks the package."""
        return any(
            spec.operator == "<" and Version(spec.version) <= Version("0")
            for spec in self.specifier
        )

    def __str__(self) -> str:
        return f"{self.name}{self.specifier}" if len(self.lines) > 1 else self.lines[0]


@dataclass(frozen=True)
class Constraints:
    """Per-package constraints from one or more ``-c`` files."""

    by_name: dict[NormalizedName, Constraint] = field(default_factory=dict)

    def get(self, name: str) -> Constraint | None:
        return self.by_name.get(canonicalize_name(name))

    @classmethod
    def from_lines(cls, entries: Iterable[tuple[str, str]]) -> Constraints:
        by_name: dict[NormalizedName, Constraint] = {}
        for where, line in entries:
            req = parse_requirement(line, source=where)
            if req.extras or req.url:
                raise ConfigError(f"{where}: a constraint has no extras and no URL: {line!r}")
            if not marker_holds(req):
                continue
            name = canonicalize_name(req.name)
            text = str(req)
            previous = by_name.get(name)
            if previous is None:
                by_name[name] = Constraint(name, req.specifier, (text,))
            else:
                by_name[name] = Constraint(
                    name, previous.specifier & req.specifier, (*previous.lines, text)
                )
        return cls(by_name)

    @classmethod
    def from_files(
        cls, paths: Sequence[str | os.PathLike[str]], *, session: requests.Session | None = None
    ) -> Constraints:
        """Constraints from files or URLs (fetched with ``session``, else a new one)."""
        entries: list[tuple[str, str]] = []
        for path in paths:
            entries.extend(_read_lines(os.fspath(path), session))
        return cls.from_lines(entries)
