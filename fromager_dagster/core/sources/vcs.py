"""Git sources: clone a repository at an exact commit and turn it into a reproducible sdist.

A package comes from git when its requirement says so (``name @ git+URL@ref``, pip's syntax,
optionally ``#subdirectory=path``) or when its settings do (``git_options.url`` and
``git_options.ref``; fromager's ``submodules`` and ``submodule_paths`` apply to both forms).
The clone's tree is packed by ``sources.repack_sdist`` into
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
import subprocess
import threading
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import InvalidVersion, Version

from fromager_dagster.core.errors import (
    ConfigError,
    FromagerDagsterError,
    ResolutionError,
    SourceError,
)
from fromager_dagster.core.index.distributions import DistFile
from fromager_dagster.core.resolve.requirements import Constraints
from fromager_dagster.core.resolve.resolver import ResolvedPackage
from fromager_dagster.core.settings.overrides import PackageSettings, Settings, override_name
from fromager_dagster.core.sources.archives import repack_sdist, sha256_file

#: The keys ``git_options`` may have: fromager's two, and this project's ``url`` and ``ref``.
GIT_OPTION_KEYS = ("url", "ref", "submodules", "submodule_paths")


@dataclass(frozen=True)
class GitSource:
    """Where a package's source lives in git. ``ref`` None means the default branch."""

    url: str
    ref: str | None = None
    submodules: bool | tuple[str, ...] = False
    subdirectory: str | None = None

    def display(self) -> str:
        """``URL@ref`` with any password in the URL hidden, for messages and logs."""
        return f"{redact(self.url)}@{self.ref or 'HEAD'}"


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


def redact(url: str) -> str:
    """``url`` with the password (or token) of its user part replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


# -- where the source is -------------------------------------------------------------------


def parse_git_url(text: str) -> GitSource:
    """``git+URL[@ref][#subdirectory=path]`` -> GitSource; ConfigError if it is not one."""
    if not text.startswith("git+"):
        raise ConfigError(f"{text!r} is not a git URL: expected git+https://..., git+file://...")
    rest, _, fragment = text[len("git+") :].partition("#")
    parts = urlsplit(rest)
    path, ref = parts.path, None
    if "@" in path:
        path, _, ref = path.rpartition("@")
        ref = unquote(ref) or None
    subdirectory = None
    for item in filter(None, fragment.split("&")):
        key, _, value = item.partition("=")
        if key == "subdirectory" and value:
            subdirectory = value.strip("/")
            if ".." in subdirectory.split("/"):
                raise ConfigError(f"{text!r}: subdirectory must stay inside the repository")
    if not parts.scheme or not path:
        raise ConfigError(f"{text!r} is not a git URL: expected git+SCHEME://HOST/PATH[@ref]")
    return GitSource(urlunsplit(parts._replace(path=path)), ref, False, subdirectory)


def git_options(pkg: PackageSettings) -> tuple[str | None, str | None, bool | tuple[str, ...]]:
    """``(url, ref, submodules)`` from ``pkg.git_options``; ConfigError lists every bad key."""
    options: Mapping[str, Any] = pkg.git_options
    where = f"{pkg.source_file or f'settings of {pkg.name}'}: git_options"
    problems = [
        f"unknown key {key!r} (expected one of {', '.join(GIT_OPTION_KEYS)})"
        for key in options
        if key not in GIT_OPTION_KEYS
    ]
    url, ref = options.get("url"), options.get("ref")
    submodules, paths = options.get("submodules", False), options.get("submodule_paths", [])
    for key, value in (("url", url), ("ref", ref)):
        if value is not None and (not isinstance(value, str) or not value):
            problems.append(f"{key} must be a non-empty string")
    if not isinstance(submodules, bool):
        problems.append("submodules must be true or false")
    if not isinstance(paths, list | tuple) or not all(isinstance(p, str) for p in paths):
        problems.append("submodule_paths must be a list of paths")
    if ref is not None and url is None:
        problems.append("ref needs url")
    if problems:
        raise ConfigError(f"{where}: " + "; ".join(problems), package=pkg.name)
    chosen: bool | tuple[str, ...] = tuple(paths) if paths else bool(submodules)
    return url, ref, chosen


def git_source(req: Requirement, settings: Settings) -> GitSource | None:
    """The git source of ``req``: its own ``git+`` URL, else its settings' ``git_options.url``.

    None when the package comes from the index. A requirement with a URL that is not git is
    a ConfigError (only git URLs are supported as direct references).
    """
    pkg = settings.package(req.name)
    url, ref, submodules = git_options(pkg)
    if req.url:
        if not req.url.startswith("git+"):
            raise ConfigError(
                f"{req}: only git+ URLs are supported as direct references; for an archive "
                "URL use download_source.url in the package's settings",
                package=canonicalize_name(req.name),
            )
        found = parse_git_url(req.url)
        return GitSource(found.url, found.ref, submodules, found.subdirectory)
    if url is None:
        return None
    return GitSource(url.removeprefix("git+"), ref, submodules)


# -- git itself ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Git:
    """Runs git for one package's source, logging everything to ``log``."""

    source: GitSource
    package: str
    log: Path

    def __call__(self, args: Sequence[str], *, cwd: Path | None) -> str:
        """Run ``git ARGS``; return stdout. SourceError names the package, URL and ref."""
        environ = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true", "LC_ALL": "C"}
        argv = ["git", "-c", "advice.detachedHead=false", *args]
        try:
            done = subprocess.run(
                argv, cwd=cwd, env=environ, capture_output=True, text=True, check=False
            )
        except FileNotFoundError as exc:
            raise SourceError(
                f"git is not installed; install git to fetch {self.package} from "
                f"{self.source.display()}",
                package=self.package,
            ) from exc
        with self.log.open("a", encoding="utf-8") as out:
            shown = " ".join(redact(a) for a in argv)
            out.write(f"$ {shown}\n{redact(done.stdout)}{redact(done.stderr)}")
        if done.returncode != 0:
            last = [line for line in done.stderr.splitlines() if line.strip()]
            reason = redact(last[-1].strip()) if last else f"exit status {done.returncode}"
            raise self.error(f"git {args[0]}: {reason}")
        return done.stdout

    def error(self, reason: str) -> SourceError:
        return SourceError(
            f"could not fetch {self.package} from {self.source.display()}: {reason}",
            package=self.package,
            log_path=str(self.log),
        )


def clone_at(source: GitSource, dest: Path, *, log: Path, package: str) -> tuple[Path, str]:
    """Clone ``source`` into ``dest`` (replaced) and check out its exact commit.

    ``ref`` may be a branch, a tag, a full or abbreviated commit, any other ref the remote
    has (fetched on its own), or None (the default branch). Submodules are checked out as
    ``source.submodules`` says. Returns ``(dest, commit sha)``; ``log`` gets git's output.
    """
    if dest.exists():
        shutil.rmtree(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    git = _Git(source, package, log)
    git(["clone", "--no-checkout", "--quiet", "--", source.url, str(dest)], cwd=None)
    commit = _resolve_ref(git, dest)
    git(["checkout", "--quiet", "--force", "--detach", commit], cwd=dest)
    if source.submodules:
        allow = ["-c", "protocol.file.allow=always"] if source.url.startswith("file:") else []
        paths = list(source.submodules) if isinstance(source.submodules, tuple) else []
        git([*allow, "submodule", "update", "--init", "--recursive", "--", *paths], cwd=dest)
    return dest, commit


def _resolve_ref(git: _Git, repo: Path) -> str:
    ref = git.source.ref
    candidates = (
        ["HEAD"] if ref is None else [f"refs/remotes/origin/{ref}", f"refs/tags/{ref}", ref]
    )
    for candidate in candidates:
        try:
            verify = ["rev-parse", "--verify", "--quiet", "--end-of-options"]
            return git([*verify, f"{candidate}^{{commit}}"], cwd=repo).strip()
        except SourceError:
            continue
    if ref is not None:  # a ref no branch or tag reaches, e.g. refs/pull/1/head
        try:
            git(["fetch", "--quiet", "origin", "--end-of-options", ref], cwd=repo)
            return git(["rev-parse", "--verify", "FETCH_HEAD^{commit}"], cwd=repo).strip()
        except SourceError:
            pass
    raise git.error(f"no branch, tag or commit {ref!r} in the repository")


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
        tags = _Git(source, package, log)(["tag", "--points-at", commit], cwd=clone)
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
