"""Git sources turned into reproducible sdists: the version of a commit's tree, its archive,
and the resolver's view of them (:mod:`.git` finds and clones the source).

A package comes from git when its requirement says so (``name @ git+URL@ref``, pip's syntax,
optionally ``#subdirectory=path``) or when its settings do (``git_options.url`` and
``git_options.ref``; fromager's ``submodules`` and ``submodule_paths`` apply to both forms).
The clone's tree is packed by ``repack.repack_sdist`` into
``sdists-repo/downloads/<name>-<version>.tar.gz`` and described by a ``DistFile`` whose URL is
``git+URL@<commit>`` and whose sha256 is the archive's, so ``sources.download`` finds it in
place and the rest of the pipeline treats it like an sdist from the index.
"""

from __future__ import annotations

import configparser
import email.parser
import hashlib
import os
import shutil
import threading
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import InvalidVersion, Version

from fromager_dagster.core.errors import FromagerDagsterError, ResolutionError, SourceError
from fromager_dagster.core.index.distributions import DistFile
from fromager_dagster.core.resolve.requirements import Constraints
from fromager_dagster.core.resolve.resolver import ResolvedPackage
from fromager_dagster.core.settings.layout import override_name
from fromager_dagster.core.settings.overrides import Settings
from fromager_dagster.core.sources.archives import sha256_file
from fromager_dagster.core.sources.git import Git, GitSource, clone_at, git_source
from fromager_dagster.core.sources.repack import repack_sdist


@dataclass(frozen=True)
class GitSdist:
    """The sdist made from one commit of a git source."""

    name: NormalizedName
    version: Version
    commit: str
    archive: Path
    sha256: str
    source: GitSource

    @property
    def download_url(self) -> str:
        """``git+URL@<commit>`` (plus ``#subdirectory=``): what graph.json records."""
        url = f"git+{self.source.url}@{self.commit}"
        if self.source.subdirectory:
            url += f"#subdirectory={self.source.subdirectory}"
        return url

    def dist_file(self) -> DistFile:
        return DistFile(
            name=self.name,
            version=self.version,
            filename=self.archive.name,
            url=self.download_url,
            kind="sdist",
            sha256=self.sha256,
            requires_python=None,
        )


# -- what version the tree is ---------------------------------------------------------------


def _static_version(source_dir: Path) -> str | None:
    pkg_info = source_dir / "PKG-INFO"
    if pkg_info.is_file():
        parsed = email.parser.HeaderParser().parsestr(pkg_info.read_text(encoding="utf-8"))
        if parsed.get("Version"):
            return str(parsed["Version"])
    pyproject = source_dir / "pyproject.toml"
    if pyproject.is_file():
        project = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {})
        if isinstance(project.get("version"), str):
            return str(project["version"])
    setup_cfg = source_dir / "setup.cfg"
    if setup_cfg.is_file():
        parser = configparser.ConfigParser(interpolation=None)
        parser.read(setup_cfg, encoding="utf-8")
        value = parser.get("metadata", "version", fallback="").strip()
        if value and ":" not in value:  # not "attr: pkg.__version__" nor "file: VERSION"
            return value
    return None


def version_from_source(source_dir: Path, *, tags: Sequence[str] = ()) -> Version | None:
    """The version a source tree declares statically, else the one its commit is tagged with.

    Looks at ``PKG-INFO``, then ``[project].version`` in pyproject.toml, then a literal
    ``[metadata] version`` in setup.cfg; then at ``tags`` (``v1.2``, ``1.2``,
    ``name-1.2``), taking the highest that parses. None when there is nothing to go by
    (a dynamic version on an untagged commit).
    """
    try:
        text = _static_version(source_dir)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, configparser.Error):
        text = None
    if text is not None:
        try:
            return Version(text)
        except InvalidVersion:
            return None
    found = []
    for tag in tags:
        for candidate in (tag, tag.removeprefix("v"), tag.rpartition("-")[2].removeprefix("v")):
            try:
                found.append(Version(candidate))
                break
            except InvalidVersion:
                continue
    return max(found) if found else None


def _project_name(source_dir: Path) -> str | None:
    pyproject = source_dir / "pyproject.toml"
    try:
        project = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {})
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    name = project.get("name")
    return name if isinstance(name, str) else None


def _drop_git_metadata(tree: Path) -> None:
    for dirpath, dirnames, filenames in os.walk(tree):
        if ".git" in dirnames:
            dirnames.remove(".git")
            shutil.rmtree(Path(dirpath, ".git"))
        if ".git" in filenames:  # a submodule's pointer to its git dir
            Path(dirpath, ".git").unlink()


def sdist_from_git(
    source: GitSource,
    *,
    name: str,
    downloads_dir: Path,
    work_dir: Path,
    log: Path,
    source_date_epoch: int = 0,
) -> GitSdist:
    """Clone ``source``, find its version and write ``<downloads_dir>/<name>-<version>.tar.gz``.

    The archive holds the tree at the commit (or its ``subdirectory``) without ``.git``, with
    a ``PKG-INFO`` added when the tree has none (so version tools like setuptools-scm find
    the version without git), packed reproducibly: the same commit gives the same bytes.
    SourceError when git fails, the ref does not exist, the tree is another project, or its
    version cannot be told without building it.
    """
    package = canonicalize_name(name)
    key = hashlib.sha256(repr(source).encode()).hexdigest()[:12]
    clone = work_dir / f".git-{override_name(package)}-{key}"
    try:
        _, commit = clone_at(source, clone, log=log, package=package)
        tags = Git(source, package, log)(["tag", "--points-at", commit], cwd=clone)
        tree = clone / source.subdirectory if source.subdirectory else clone
        if not tree.is_dir():
            raise SourceError(
                f"{source.display()} has no folder {source.subdirectory!r} at commit {commit}",
                package=package,
            )
        declared = _project_name(tree)
        if declared is not None and canonicalize_name(declared) != package:
            raise SourceError(
                f"{source.display()} is project {declared!r}, not {package}; "
                "check the URL or the requirement's name",
                package=package,
            )
        version = version_from_source(tree, tags=tags.split())
        if version is None:
            raise SourceError(
                f"cannot tell the version of {package} at {source.display()} (commit "
                f"{commit[:12]}) without building it: set a static version in pyproject.toml "
                "or point ref at a version tag",
                package=package,
            )
        _drop_git_metadata(clone)
        if not (tree / "PKG-INFO").is_file():
            (tree / "PKG-INFO").write_text(
                f"Metadata-Version: 2.1\nName: {package}\nVersion: {version}\n", encoding="utf-8"
            )
        archive = downloads_dir / f"{override_name(package)}-{version}.tar.gz"
        repack_sdist(
            tree, archive, name=package, version=str(version), source_date_epoch=source_date_epoch
        )
    finally:
        shutil.rmtree(clone, ignore_errors=True)
    return GitSdist(package, version, commit, archive, sha256_file(archive), source)


class GitSources:
    """Resolves requirements whose source is git, one clone per (URL, ref) per run; thread-safe."""

    def __init__(
        self,
        settings: Settings,
        constraints: Constraints,
        *,
        downloads_dir: Path,
        work_dir: Path,
        logs_dir: Path,
        source_date_epoch: int = 0,
    ) -> None:
        self._settings = settings
        self._constraints = constraints
        self._downloads = downloads_dir
        self._work = work_dir
        self._logs = logs_dir
        self._epoch = source_date_epoch
        self._lock = threading.Lock()
        self._locks: dict[tuple[str, GitSource], threading.Lock] = {}
        self._done: dict[tuple[str, GitSource], GitSdist | FromagerDagsterError] = {}

    def source_for(self, req: Requirement) -> GitSource | None:
        return git_source(req, self._settings)

    def resolve(self, req: Requirement) -> ResolvedPackage | None:
        """The package ``req`` resolves to from git, or None when it comes from the index.

        ResolutionError when the version found does not satisfy the requirement's specifier
        or the package's constraint.
        """
        source = self.source_for(req)
        if source is None:
            return None
        name = canonicalize_name(req.name)
        made = self.sdist(name, source)
        constraint = self._constraints.get(name)
        if not req.specifier.contains(made.version, prereleases=True):
            raise ResolutionError(
                f"{name} from {source.display()} is version {made.version}, which does not "
                f"satisfy the requirement {req}",
                package=name,
            )
        if constraint is not None and not constraint.specifier.contains(
            made.version, prereleases=True
        ):
            raise ResolutionError(
                f"{name} from {source.display()} is version {made.version}, which the "
                f"constraint {constraint} excludes; change the ref or the constraint",
                package=name,
            )
        return ResolvedPackage(name, made.version, made.dist_file(), constraint)

    def sdist(self, name: NormalizedName, source: GitSource) -> GitSdist:
        """The sdist of ``source`` (made once per run; a failure is remembered too)."""
        key = (name, source)
        with self._lock:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._done:
                try:
                    self._done[key] = sdist_from_git(
                        source,
                        name=name,
                        downloads_dir=self._downloads,
                        work_dir=self._work,
                        log=self._logs / f"{name}-git.log",
                        source_date_epoch=self._epoch,
                    )
                except FromagerDagsterError as exc:
                    self._done[key] = exc
            found = self._done[key]
        if isinstance(found, FromagerDagsterError):
            raise found
        return found
