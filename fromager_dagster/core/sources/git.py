"""Git: where a package's source is (its requirement's ``git+`` URL or its settings'
``git_options``) and a clone of it checked out at an exact commit."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from fromager_dagster.core.errors import ConfigError, SourceError
from fromager_dagster.core.settings.overrides import PackageSettings, Settings

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
class Git:
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
    git = Git(source, package, log)
    git(["clone", "--no-checkout", "--quiet", "--", source.url, str(dest)], cwd=None)
    commit = _resolve_ref(git, dest)
    git(["checkout", "--quiet", "--force", "--detach", commit], cwd=dest)
    if source.submodules:
        allow = ["-c", "protocol.file.allow=always"] if source.url.startswith("file:") else []
        paths = list(source.submodules) if isinstance(source.submodules, tuple) else []
        git([*allow, "submodule", "update", "--init", "--recursive", "--", *paths], cwd=dest)
    return dest, commit


def _resolve_ref(git: Git, repo: Path) -> str:
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
