"""Choosing versions: a thin resolvelib provider over the index, honouring constraints."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import resolvelib
from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

from .errors import ResolutionError
from .index import DistFile, best_wheel
from .requirements import Constraint, Constraints


class PackageFinder(Protocol):
    """What the resolver needs from an index: the usable files of one project."""

    def files(self, name: str) -> list[DistFile]: ...


@dataclass(frozen=True)
class ResolvedPackage:
    """One chosen version of a package and the source archive it will be built from."""

    name: NormalizedName
    version: Version
    source: DistFile
    constraint: Constraint | None

    @property
    def key(self) -> str:
        return f"{self.name}=={self.version}"


@dataclass(frozen=True)
class _Candidate:
    name: NormalizedName
    version: Version
    source: DistFile


def _allows_prereleases(req: Requirement, constraint: Constraint | None) -> bool:
    if req.specifier.prereleases:
        return True
    return bool(constraint is not None and constraint.specifier.prereleases)


@dataclass(frozen=True)
class SourcePolicy:
    """Per package: which index, whether its wheel is taken pre-built, how old a release must be.

    The defaults take the newest sdist from the main index, whatever its age.
    """

    prebuilt: Callable[[NormalizedName], bool] = lambda name: False
    min_release_age: Callable[[NormalizedName], float | None] = lambda name: None  # days
    finder: Callable[[NormalizedName], PackageFinder | None] = lambda name: None  # None: main
    now: datetime | None = None  # default: the time of each lookup

    def too_new(self, name: NormalizedName, file: DistFile) -> bool:
        days = self.min_release_age(name)
        if not days or file.upload_time is None:
            return False  # an index without upload times cannot prove a release is young
        now = self.now or datetime.now(UTC)
        return now - file.upload_time < timedelta(days=days)


class _Provider(resolvelib.AbstractProvider):  # type: ignore[type-arg]
    def __init__(
        self, choices: Callable[[NormalizedName], dict[Version, DistFile]], constraints: Constraints
    ) -> None:
        self._choices = choices
        self._constraints = constraints

    def identify(self, requirement_or_candidate: Any) -> NormalizedName:
        return canonicalize_name(requirement_or_candidate.name)

    def get_preference(self, identifier: Any, *args: Any, **kwargs: Any) -> Any:
        return identifier

    def find_matches(
        self,
        identifier: Any,
        requirements: Mapping[Any, Iterator[Requirement]],
        incompatibilities: Mapping[Any, Iterator[_Candidate]],
    ) -> list[_Candidate]:
        reqs = list(requirements[identifier])
        bad = {c.version for c in incompatibilities[identifier]}
        constraint = self._constraints.get(identifier)
        if constraint is not None and constraint.blocked:
            return []
        prereleases = any(_allows_prereleases(r, constraint) for r in reqs)
        by_version = self._choices(identifier)
        matches = []
        for version in sorted(by_version, reverse=True):
            if version in bad:
                continue
            if not all(r.specifier.contains(version, prereleases=prereleases) for r in reqs):
                continue
            if constraint is not None and not constraint.specifier.contains(
                version, prereleases=prereleases
            ):
                continue
            matches.append(_Candidate(identifier, version, by_version[version]))
        return matches

    def is_satisfied_by(self, requirement: Requirement, candidate: _Candidate) -> bool:
        return requirement.specifier.contains(candidate.version, prereleases=True)

    def get_dependencies(self, candidate: _Candidate) -> Iterable[Requirement]:
        return ()


class Resolver:
    """Picks the newest version of each requirement that every constraint admits.

    A version is a candidate when it has an sdist (or, for a pre-built package, a wheel this
    interpreter can install) that is old enough under the policy.
    """

    def __init__(
        self, finder: PackageFinder, constraints: Constraints, policy: SourcePolicy | None = None
    ) -> None:
        self._finder = finder
        self._constraints = constraints
        self._policy = policy or SourcePolicy()

    def choices(self, name: NormalizedName) -> dict[Version, DistFile]:
        """The file each version would be built (or taken pre-built) from."""
        finder = self._policy.finder(name) or self._finder
        files = [f for f in finder.files(name) if not self._policy.too_new(name, f)]
        if self._policy.prebuilt(name):
            by_version: dict[Version, list[DistFile]] = {}
            for file in files:
                by_version.setdefault(file.version, []).append(file)
            best = {v: best_wheel(group) for v, group in by_version.items()}
            return {v: w for v, w in best.items() if w is not None}
        chosen: dict[Version, DistFile] = {}
        for file in files:
            if file.kind == "sdist":
                chosen.setdefault(file.version, file)
        return chosen

    def resolve(self, requirement: Requirement) -> ResolvedPackage:
        """Resolve one requirement on its own (build and install edges)."""
        return self.resolve_together([requirement])[canonicalize_name(requirement.name)]

    def resolve_all(self, requirement: Requirement) -> list[ResolvedPackage]:
        """Every version ``requirement`` and the constraints admit, newest first
        (``--multiple-versions``); ResolutionError when there is none."""
        name = canonicalize_name(requirement.name)
        provider = _Provider(self.choices, self._constraints)
        matches = provider.find_matches(name, {name: iter([requirement])}, {name: iter(())})
        if not matches:
            raise self._impossible([_Cause(requirement)])
        constraint = self._constraints.get(name)
        return [ResolvedPackage(name, c.version, c.source, constraint) for c in matches]

    def resolve_together(
        self, requirements: Sequence[Requirement]
    ) -> dict[NormalizedName, ResolvedPackage]:
        """Resolve requirements that must agree (the top level): one version per package."""
        provider = _Provider(self.choices, self._constraints)
        resolver: resolvelib.Resolver[Any, Any, Any] = resolvelib.Resolver(
            provider, resolvelib.BaseReporter()
        )
        try:
            result = resolver.resolve(requirements)
        except resolvelib.ResolutionImpossible as exc:
            raise self._impossible(list(exc.causes)) from exc
        except resolvelib.ResolutionError as exc:
            raise ResolutionError(f"resolution failed: {exc}") from exc
        return {
            name: ResolvedPackage(name, c.version, c.source, self._constraints.get(name))
            for name, c in result.mapping.items()
        }

    def _impossible(self, causes: Sequence[Any]) -> ResolutionError:
        names = sorted({canonicalize_name(c.requirement.name) for c in causes})
        parts = []
        for name in names:
            specs = sorted(
                {
                    str(c.requirement)
                    for c in causes
                    if canonicalize_name(c.requirement.name) == name
                }
            )
            constraint = self._constraints.get(name)
            if constraint is not None:
                if constraint.blocked:
                    return ResolutionError(
                        f"{name} is blocked by constraint {constraint}; remove it from the "
                        "constraints or drop the requirements on it",
                        package=name,
                    )
                specs.append(f"constraint {constraint}")
            available = self._available(name)
            parts.append(f"{name}: {' and '.join(specs)} (index has {available})")
        return ResolutionError(
            "no version satisfies " + "; ".join(parts),
            package=names[0] if len(names) == 1 else None,
        )

    def _available(self, name: str) -> str:
        canonical = canonicalize_name(name)
        kind = "pre-built wheel" if self._policy.prebuilt(canonical) else "sdist"
        versions = sorted(self.choices(canonical))
        if not versions:
            return f"no usable {kind}s"
        shown = ", ".join(str(v) for v in versions[-5:])
        return f"{len(versions)} {kind} versions, newest {shown}"


@dataclass(frozen=True)
class _Cause:
    requirement: Requirement
