"""Choosing versions: a thin resolvelib provider over the index, honouring constraints."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import resolvelib
from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import InvalidVersion, Version

from fromager_dagster.core.errors import ResolutionError
from fromager_dagster.core.index.distributions import DistFile, best_wheel, wheel_tag_rank
from fromager_dagster.core.package_id import PackageId
from fromager_dagster.core.resolve.requirements import Constraint, Constraints
from fromager_dagster.core.settings.sections import ResolverDist


class PackageFinder(Protocol):
    """What the resolver needs from an index: the usable files of one project."""

    def files(self, name: str) -> list[DistFile]: ...


@dataclass(frozen=True)
class ResolvedPackage:
    """One chosen version of a package and its file: an sdist to build, or a wheel taken as is."""

    name: NormalizedName
    version: Version
    source: DistFile
    constraint: Constraint | None

    @property
    def id(self) -> PackageId:
        return PackageId(self.name, self.version)

    @property
    def key(self) -> str:
        return self.id.key


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
    """Per package: which index, which of its files are candidates, how old a release must be.

    ``dists`` gives a package's ``resolver_dist`` settings: ``include_sdists`` (sdists are
    candidates), ``include_wheels`` (wheels are candidates, and a version with one is taken
    pre-built) and ``ignore_platform`` (any wheel counts, not only those this interpreter can
    install). A ``prebuilt`` package takes wheels only. The defaults take the newest sdist from
    the main index, whatever its age.
    """

    prebuilt: Callable[[NormalizedName], bool] = lambda _name: False
    min_release_age: Callable[[NormalizedName], float | None] = lambda _name: None  # days
    finder: Callable[[NormalizedName], PackageFinder | None] = lambda _name: None  # None: main
    dists: Callable[[NormalizedName], ResolverDist] = lambda _name: ResolverDist()
    now: datetime | None = None  # default: the time of each lookup

    def too_new(self, name: NormalizedName, file: DistFile) -> bool:
        days = self.min_release_age(name)
        if not days or file.upload_time is None:
            return False  # an index without upload times cannot prove a release is young
        now = self.now or datetime.now(UTC)
        return now - file.upload_time < timedelta(days=days)

    def rule(self, name: NormalizedName) -> DistRule:
        """Which kinds of ``name``'s files are candidates."""
        dist = self.dists(name)
        if self.prebuilt(name):
            return DistRule(False, True, dist.ignore_platform, prebuilt=True)
        return DistRule(dist.include_sdists, dist.include_wheels, dist.ignore_platform)

    def candidates(
        self, name: NormalizedName, files: Sequence[DistFile]
    ) -> dict[Version, DistFile]:
        """The file each version of ``name`` would come from: its best wheel when wheels are
        candidates and it has one, else its sdist when sdists are candidates.

        ResolutionError (naming the package and the resolver_dist keys) when the rule can never
        give a candidate, or when ``files`` is not empty but none of them is one.
        """
        rule = self.rule(name)
        by_version: dict[Version, list[DistFile]] = {}
        for file in files:
            by_version.setdefault(file.version, []).append(file)
        chosen: dict[Version, DistFile] = {}
        for version, group in by_version.items():
            wheel = best_wheel(group, ignore_platform=rule.ignore_platform) if rule.wheels else None
            sdist = next((f for f in group if f.kind == "sdist"), None) if rule.sdists else None
            if (pick := wheel or sdist) is not None:
                chosen[version] = pick
        if not chosen and (files or not (rule.sdists or rule.wheels)):
            raise _no_candidate(name, files, rule)
        return chosen


@dataclass(frozen=True)
class DistRule:
    """Which kinds of a package's files are candidates (from its resolver_dist settings)."""

    sdists: bool
    wheels: bool
    ignore_platform: bool
    prebuilt: bool = False

    @property
    def kind(self) -> str:
        """The candidates' kind, for messages."""
        if self.prebuilt:
            return "pre-built wheel"
        return {(True, False): "sdist", (False, True): "wheel"}.get(
            (self.sdists, self.wheels), "sdist or wheel"
        )


def _no_candidate(
    name: NormalizedName, files: Sequence[DistFile], rule: DistRule
) -> ResolutionError:
    """One line: what the index has, the settings that exclude all of it, what to change."""
    flag = {True: "true", False: "false"}
    if rule.prebuilt:
        using = (
            f"pre_built (wheels only), resolver_dist.ignore_platform={flag[rule.ignore_platform]}"
        )
    else:
        using = (
            f"resolver_dist include_sdists={flag[rule.sdists]}, "
            f"include_wheels={flag[rule.wheels]}, ignore_platform={flag[rule.ignore_platform]}"
        )
    sdists = sum(f.kind == "sdist" for f in files)
    wheels = [f for f in files if f.kind == "wheel"]
    fitting = sum(wheel_tag_rank(f.filename) is not None for f in wheels)
    has = f"{_count(sdists, 'sdist')} and {_count(len(wheels), 'wheel')}"
    if wheels:
        has += f" ({fitting} installable here)"
    fixes = []
    if rule.prebuilt and sdists:
        fixes.append("pre_built: false for this variant")
    elif not rule.sdists and (sdists or not files):
        fixes.append("resolver_dist.include_sdists: true")
    if not rule.wheels and (wheels or not files):
        fixes.append("resolver_dist.include_wheels: true")
    elif rule.wheels and wheels and not rule.ignore_platform:
        fixes.append("resolver_dist.ignore_platform: true")
    return ResolutionError(
        f"{name}: no file on the index is a candidate under {using}: the index has {has}; "
        f"set {' or '.join(fixes) or 'other resolver_dist values'}",
        package=name,
    )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


#: A package's candidate file by version, and those versions newest first.
_Choices = tuple[dict[Version, DistFile], tuple[Version, ...]]


class _Provider(resolvelib.AbstractProvider):  # type: ignore[type-arg]
    def __init__(
        self, choices: Callable[[NormalizedName], _Choices], constraints: Constraints
    ) -> None:
        self._choices = choices
        self._constraints = constraints

    def identify(self, requirement_or_candidate: Any) -> NormalizedName:
        return canonicalize_name(requirement_or_candidate.name)

    def get_preference(self, identifier: Any, *_args: Any, **_kwargs: Any) -> Any:
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
        by_version, newest_first = self._choices(identifier)
        # the constraint first: in a pinned tree it turns down all versions but one
        specifiers = [s for s in (constraint.specifier if constraint else None,) if s]
        specifiers += [r.specifier for r in reqs if r.specifier]
        pinned = _pinned_release(constraint)
        if pinned is not None:  # only versions of that release can match: check just those
            newest_first = tuple(v for v in newest_first if _release_key(v) == pinned)
        matches = []
        for version in newest_first:
            if version in bad:
                continue
            if not prereleases and version.is_prerelease:
                continue  # what every specifier would say, and all an empty one checks
            if not all(s.contains(version, prereleases=prereleases) for s in specifiers):
                continue
            matches.append(_Candidate(identifier, version, by_version[version]))
        return matches

    def is_satisfied_by(self, requirement: Requirement, candidate: _Candidate) -> bool:
        return requirement.specifier.contains(candidate.version, prereleases=True)

    def get_dependencies(
        self,
        candidate: _Candidate,  # noqa: ARG002  resolvelib passes it by name
    ) -> Iterable[Requirement]:
        return ()


def _pinned_release(constraint: Constraint | None) -> tuple[int, tuple[int, ...]] | None:
    """The epoch and release (trailing zeros dropped) that a constraint of one ``==V``
    (without ``.*``) admits; None for any other constraint. A version of another release
    cannot match it, whatever its pre, post, dev or local parts: the full check still runs
    on those that share the release."""
    if constraint is None or len(constraint.specifier) != 1:
        return None
    (spec,) = constraint.specifier
    if spec.operator != "==" or spec.version.endswith(".*"):
        return None
    try:
        return _release_key(Version(spec.version))
    except InvalidVersion:
        return None


@functools.lru_cache(maxsize=65536)
def _release_key(version: Version) -> tuple[int, tuple[int, ...]]:
    release = list(version.release)
    while len(release) > 1 and release[-1] == 0:
        release.pop()
    return version.epoch, tuple(release)


class Resolver:
    """Picks the newest version of each requirement that every constraint admits.

    A version is a candidate when it has a file the policy admits (by default an sdist; see
    SourcePolicy) that is old enough under the policy.
    """

    def __init__(
        self, finder: PackageFinder, constraints: Constraints, policy: SourcePolicy | None = None
    ) -> None:
        self._finder = finder
        self._constraints = constraints
        self._policy = policy or SourcePolicy()
        self._lock = threading.Lock()
        self._choices: dict[NormalizedName, _Choices] = {}

    def choices(self, name: NormalizedName) -> dict[Version, DistFile]:
        """The file each version would be built (or taken pre-built) from."""
        return dict(self._ordered_choices(name)[0])

    def _ordered_choices(self, name: NormalizedName) -> _Choices:
        """:meth:`choices` and its versions newest first, worked out once per package (the
        resolver asks again for every requirement naming it)."""
        with self._lock:
            known = self._choices.get(name)
        if known is None:
            finder = self._policy.finder(name) or self._finder
            files = [f for f in finder.files(name) if not self._policy.too_new(name, f)]
            by_version = self._policy.candidates(name, files)
            found = (by_version, tuple(sorted(by_version, reverse=True)))
            with self._lock:
                known = self._choices.setdefault(name, found)
        return known

    def resolve(self, requirement: Requirement) -> ResolvedPackage:
        """Resolve one requirement on its own (build and install edges)."""
        return self.resolve_together([requirement])[canonicalize_name(requirement.name)]

    def newest(self, name: str) -> ResolvedPackage | None:
        """What a bootstrap would choose today for a bare requirement on ``name``: the newest
        version the constraints admit (a pre-release only where a constraint asks for one)
        that has a file the source policy takes and is old enough; None when there is none
        (or a constraint blocks the package). Index errors are raised."""
        try:
            return self.resolve(Requirement(str(canonicalize_name(name))))
        except ResolutionError:
            return None

    def resolve_all(self, requirement: Requirement) -> list[ResolvedPackage]:
        """Every version ``requirement`` and the constraints admit, newest first
        (``--multiple-versions``); ResolutionError when there is none."""
        name = canonicalize_name(requirement.name)
        provider = _Provider(self._ordered_choices, self._constraints)
        matches = provider.find_matches(name, {name: iter([requirement])}, {name: iter(())})
        if not matches:
            raise self._impossible([_Cause(requirement)])
        constraint = self._constraints.get(name)
        return [ResolvedPackage(name, c.version, c.source, constraint) for c in matches]

    def resolve_together(
        self, requirements: Sequence[Requirement]
    ) -> dict[NormalizedName, ResolvedPackage]:
        """Resolve requirements that must agree (the top level): one version per package."""
        provider = _Provider(self._ordered_choices, self._constraints)
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
        kind = self._policy.rule(canonical).kind
        versions = sorted(self.choices(canonical))
        if not versions:
            return f"no usable {kind}s"
        shown = ", ".join(str(v) for v in versions[-5:])
        return f"{len(versions)} {kind} versions, newest {shown}"


@dataclass(frozen=True)
class _Cause:
    requirement: Requirement
