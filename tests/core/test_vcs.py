"""Tests for fromager_dagster.core.sources.vcs against local git repositories made in tmp_path."""

from __future__ import annotations

import re
import subprocess
import tarfile
from pathlib import Path

import pytest
import requests
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from fromager_dagster.core.errors import ConfigError, ResolutionError, SourceError
from fromager_dagster.core.resolve.requirements import Constraints
from fromager_dagster.core.settings.overrides import PackageSettings, Settings
from fromager_dagster.core.sources import archives as sources
from fromager_dagster.core.sources.git import (
    GitSource,
    clone_at,
    git_options,
    git_source,
    parse_git_url,
    redact,
)
from fromager_dagster.core.sources.unpacking import unpack
from fromager_dagster.core.sources.vcs import GitSources, sdist_from_git, version_from_source
from tests.fixtures.packages import FixturePackage, sdist_members

_GIT_ID = ["-c", "user.name=Fixture", "-c", "user.email=fixture@example.invalid"]


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *_GIT_ID, "-c", "protocol.file.allow=always", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def write_tree(pkg: FixturePackage, root: Path) -> None:
    for rel, text in sdist_members(pkg).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")


def commit_all(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def origin(tmp_path: Path) -> dict[str, str]:
    """A repository of fx-git: 1.0 tagged v1.0 on main, 1.1 on branch next, 1.2 under a
    ref no branch or tag reaches. Returns the commits and the file:// URL."""
    repo = tmp_path / "origin"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    write_tree(FixturePackage("fx-git", version="1.0"), repo)
    first = commit_all(repo, "1.0")
    git(repo, "tag", "v1.0")
    git(repo, "checkout", "-q", "-b", "next")
    write_tree(FixturePackage("fx-git", version="1.1"), repo)
    second = commit_all(repo, "1.1")
    write_tree(FixturePackage("fx-git", version="1.2"), repo)
    hidden = commit_all(repo, "1.2")
    git(repo, "update-ref", "refs/custom/hidden", hidden)
    git(repo, "reset", "-q", "--hard", second)
    git(repo, "checkout", "-q", "main")
    return {"url": repo.as_uri(), "v1.0": first, "next": second, "hidden": hidden}


def _version_in(tree: Path) -> str:
    lines = (tree / "PKG-INFO").read_text().splitlines()
    return next(line.split(": ", 1)[1] for line in lines if line.startswith("Version: "))


# -- parsing -----------------------------------------------------------------------------------


def test_parse_git_url_splits_url_ref_and_subdirectory() -> None:
    found = parse_git_url("git+https://git.example.invalid/org/repo.git@v1.0#subdirectory=python")
    assert found == GitSource("https://git.example.invalid/org/repo.git", "v1.0", False, "python")
    user = parse_git_url("git+ssh://git@git.example.invalid/org/repo.git")
    assert (user.url, user.ref) == ("ssh://git@git.example.invalid/org/repo.git", None)
    assert parse_git_url("git+file:///srv/repo@refs/pull/1/head").ref == "refs/pull/1/head"
    with pytest.raises(ConfigError, match="is not a git URL"):
        parse_git_url("https://example.invalid/fx-1.0.tar.gz")
    with pytest.raises(ConfigError, match="must stay inside"):
        parse_git_url("git+file:///srv/repo#subdirectory=../etc")


def test_redact_hides_tokens_in_urls() -> None:
    assert redact("https://bot:s3cret@git.example.invalid/r.git") == (
        "https://bot:***@git.example.invalid/r.git"
    )
    assert redact("https://git.example.invalid/r.git") == "https://git.example.invalid/r.git"


def test_git_source_from_requirement_then_settings_form() -> None:
    settings = Settings(
        packages={
            canonicalize_name("fx-set"): PackageSettings(
                name=canonicalize_name("fx-set"),
                git_options={"url": "git+file:///srv/fx-set", "ref": "v2", "submodules": True},
            ),
            canonicalize_name("fx-req"): PackageSettings(
                name=canonicalize_name("fx-req"), git_options={"submodule_paths": ["vendor/a"]}
            ),
        }
    )
    req = Requirement("fx-req @ git+file:///srv/fx-req@main")
    assert git_source(req, settings) == GitSource("file:///srv/fx-req", "main", ("vendor/a",))
    assert git_source(Requirement("fx-set>=1"), settings) == GitSource(
        "file:///srv/fx-set", "v2", True
    )
    assert git_source(Requirement("fx-index"), settings) is None
    with pytest.raises(ConfigError, match="only git\\+ URLs are supported"):
        git_source(Requirement("fx-x @ https://example.invalid/fx-1.0.tar.gz"), settings)


def test_bad_git_options_are_reported_together() -> None:
    pkg = PackageSettings(
        name=canonicalize_name("fx-bad"),
        git_options={"branch": "main", "ref": "v1", "submodules": "yes"},
        source_file=Path("overrides/settings/fx_bad.yaml"),
    )
    with pytest.raises(ConfigError) as info:
        git_options(pkg)
    message = str(info.value)
    assert message.startswith("overrides/settings/fx_bad.yaml: git_options: ")
    assert "unknown key 'branch'" in message
    assert "submodules must be true or false" in message
    assert "ref needs url" in message


# -- cloning -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ref", "expected", "version"),
    [
        ("v1.0", "v1.0", "1.0"),
        ("next", "next", "1.1"),
        (None, "v1.0", "1.0"),
        ("refs/custom/hidden", "hidden", "1.2"),
    ],
)
def test_clone_at_checks_out_the_exact_commit(
    origin: dict[str, str], tmp_path: Path, ref: str | None, expected: str, version: str
) -> None:
    dest, commit = clone_at(
        GitSource(origin["url"], ref),
        tmp_path / "clone",
        log=tmp_path / "git.log",
        package="fx-git",
    )
    assert commit == origin[expected]
    assert _version_in(dest) == version
    assert git(dest, "rev-parse", "HEAD") == commit


def test_clone_at_accepts_full_and_abbreviated_commits(
    origin: dict[str, str], tmp_path: Path
) -> None:
    for n, ref in enumerate((origin["next"], origin["next"][:10])):
        dest, commit = clone_at(
            GitSource(origin["url"], ref), tmp_path / f"c{n}", log=tmp_path / "git.log", package="x"
        )
        assert (commit, _version_in(dest)) == (origin["next"], "1.1")


def test_bad_ref_is_a_source_error_naming_package_url_and_ref(
    origin: dict[str, str], tmp_path: Path
) -> None:
    with pytest.raises(SourceError) as info:
        clone_at(
            GitSource(origin["url"], "v9.9"),
            tmp_path / "c",
            log=tmp_path / "git.log",
            package="fx-git",
        )
    assert info.value.package == "fx-git"
    assert f"{origin['url']}@v9.9" in info.value.message
    assert "no branch, tag or commit 'v9.9'" in info.value.message


def test_missing_repository_is_a_source_error_from_git(tmp_path: Path) -> None:
    url = (tmp_path / "nowhere").as_uri()
    with pytest.raises(SourceError, match=r"could not fetch fx-git from .*nowhere@main: git clone"):
        clone_at(GitSource(url, "main"), tmp_path / "c", log=tmp_path / "git.log", package="fx-git")
    assert "$ git" in (tmp_path / "git.log").read_text()


def test_missing_git_is_a_source_error(
    origin: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(SourceError, match="git is not installed; install git to fetch fx-git"):
        clone_at(
            GitSource(origin["url"]), tmp_path / "c", log=tmp_path / "git.log", package="fx-git"
        )


def test_submodules_are_checked_out_only_when_asked(tmp_path: Path) -> None:
    sub = tmp_path / "sub"
    sub.mkdir()
    git(sub, "init", "-q", "-b", "main")
    (sub / "data.txt").write_text("vendored\n")
    commit_all(sub, "data")
    repo = tmp_path / "top"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    write_tree(FixturePackage("fx-sub", version="3.0"), repo)
    git(repo, "submodule", "add", "-q", sub.as_uri(), "vendor/sub")
    commit_all(repo, "with submodule")
    downloads = tmp_path / "downloads"
    for submodules in (False, True):
        made = sdist_from_git(
            GitSource(repo.as_uri(), "main", submodules),
            name="fx-sub",
            downloads_dir=downloads / str(submodules),
            work_dir=tmp_path / "work",
            log=tmp_path / "git.log",
        )
        with tarfile.open(made.archive) as tar:
            names = tar.getnames()
        assert ("fx_sub-3.0/vendor/sub/data.txt" in names) is submodules
        assert not any(n.endswith("/.git") or "/.git/" in n for n in names)


# -- versions and sdists -------------------------------------------------------------------------


def test_version_from_source_reads_static_metadata_then_tags(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\ndynamic = ["version"]\n')
    assert version_from_source(tmp_path) is None
    assert version_from_source(tmp_path, tags=["release", "v2.3", "x-2.10"]) == Version("2.10")
    (tmp_path / "setup.cfg").write_text("[metadata]\nversion = attr: x.__version__\n")
    assert version_from_source(tmp_path) is None
    (tmp_path / "setup.cfg").write_text("[metadata]\nversion = 0.4\n")
    assert version_from_source(tmp_path, tags=["v9"]) == Version("0.4")
    (tmp_path / "PKG-INFO").write_text("Metadata-Version: 2.1\nName: x\nVersion: 5.0\n")
    assert version_from_source(tmp_path) == Version("5.0")


def test_sdist_from_git_is_reproducible_and_looks_like_a_downloaded_sdist(
    origin: dict[str, str], tmp_path: Path
) -> None:
    downloads = tmp_path / "sdists-repo" / "downloads"
    made = [
        sdist_from_git(
            GitSource(origin["url"], "next"),
            name="FX_Git",
            downloads_dir=downloads,
            work_dir=tmp_path / "work",
            log=tmp_path / "git.log",
            source_date_epoch=315532800,
        )
        for _ in range(2)
    ]
    first, again = made
    assert first.archive == downloads / "fx_git-1.1.tar.gz"
    assert (first.sha256, first.commit) == (again.sha256, again.commit)
    assert first.sha256 == sources.sha256_file(first.archive)
    assert first.download_url == f"git+{origin['url']}@{origin['next']}"
    assert (first.name, first.version) == ("fx-git", Version("1.1"))
    with tarfile.open(first.archive) as tar:
        names = tar.getnames()
    assert "fx_git-1.1/PKG-INFO" in names and "fx_git-1.1/fixture.json" in names
    assert not any(".git" in n.split("/") for n in names)
    assert list((tmp_path / "work").iterdir()) == []  # the clone is gone


def test_sdist_from_git_takes_a_dynamic_version_from_the_tag(tmp_path: Path) -> None:
    repo = tmp_path / "dyn"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    write_tree(FixturePackage("fx-dyn", version="0"), repo)
    (repo / "PKG-INFO").unlink()
    pyproject = (repo / "pyproject.toml").read_text().replace('version = "0"\n', "")
    (repo / "pyproject.toml").write_text(
        pyproject.replace('dynamic = ["', 'dynamic = ["version", "')
    )
    commit_all(repo, "dynamic")
    source = GitSource(repo.as_uri(), "main")
    args = {"name": "fx-dyn", "downloads_dir": tmp_path / "dl", "work_dir": tmp_path / "w"}
    with pytest.raises(SourceError, match="cannot tell the version of fx-dyn"):
        sdist_from_git(source, log=tmp_path / "git.log", **args)  # type: ignore[arg-type]
    git(repo, "tag", "v2.3.1")
    made = sdist_from_git(source, log=tmp_path / "git.log", **args)  # type: ignore[arg-type]
    assert made.archive.name == "fx_dyn-2.3.1.tar.gz"
    with tarfile.open(made.archive) as tar:
        member = tar.extractfile("fx_dyn-2.3.1/PKG-INFO")
        assert member is not None and b"Version: 2.3.1" in member.read()


def test_sdist_from_git_refuses_another_project(origin: dict[str, str], tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="is project 'fx-git', not fx-other"):
        sdist_from_git(
            GitSource(origin["url"], "v1.0"),
            name="fx-other",
            downloads_dir=tmp_path / "dl",
            work_dir=tmp_path / "w",
            log=tmp_path / "git.log",
        )


def test_subdirectory_is_the_sdist_root(tmp_path: Path) -> None:
    repo = tmp_path / "mono"
    (repo / "python").mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    write_tree(FixturePackage("fx-mono", version="4.0"), repo / "python")
    (repo / "README").write_text("top level, not packaged\n")
    commit_all(repo, "mono")
    source = parse_git_url(f"git+{repo.as_uri()}@main#subdirectory=python")
    made = sdist_from_git(
        source,
        name="fx-mono",
        downloads_dir=tmp_path / "dl",
        work_dir=tmp_path / "w",
        log=tmp_path / "git.log",
    )
    with tarfile.open(made.archive) as tar:
        names = tar.getnames()
    assert "fx_mono-4.0/pyproject.toml" in names and "fx_mono-4.0/README" not in names
    assert made.download_url.endswith("@" + git(repo, "rev-parse", "HEAD") + "#subdirectory=python")


# -- resolving ------------------------------------------------------------------------------------


def _git_sources(tmp_path: Path, constraints: Constraints | None = None) -> GitSources:
    return GitSources(
        Settings(),
        constraints or Constraints(),
        downloads_dir=tmp_path / "sdists-repo" / "downloads",
        work_dir=tmp_path / "work-dir",
        logs_dir=tmp_path / "work-dir" / "logs",
    )


def test_git_sources_resolve_to_a_package_the_pipeline_can_download_and_unpack(
    origin: dict[str, str], tmp_path: Path
) -> None:
    git_sources = _git_sources(tmp_path)
    req = Requirement(f"fx-git @ git+{origin['url']}@v1.0")
    pkg = git_sources.resolve(req)
    assert pkg is not None and pkg is not git_sources.resolve(req)
    assert (pkg.key, pkg.source.url) == ("fx-git==1.0", f"git+{origin['url']}@{origin['v1.0']}")
    assert git_sources.resolve(Requirement("fx-index>=1")) is None
    log = (tmp_path / "work-dir" / "logs" / "fx-git-git.log").read_text()
    assert log.count("git -c advice.detachedHead=false clone") == 1  # memoised
    # the archive is where sources.download looks, with the hash it promises: no request made
    archive = sources.download(
        requests.Session(), pkg.source, tmp_path / "sdists-repo" / "downloads"
    )
    tree = unpack(archive, tmp_path / "work-dir")
    assert (tree / "fixture.json").is_file() and _version_in(tree) == "1.0"


def test_git_version_outside_the_constraint_is_a_resolution_error(
    origin: dict[str, str], tmp_path: Path
) -> None:
    constraints = Constraints.from_lines([("c.txt:1", "fx-git<1.1")])
    with pytest.raises(
        ResolutionError, match=re.escape("version 1.1, which the constraint fx-git<1.1")
    ):
        _git_sources(tmp_path, constraints).resolve(
            Requirement(f"fx-git @ git+{origin['url']}@next")
        )
    settings = Settings(
        packages={
            canonicalize_name("fx-git"): PackageSettings(
                name=canonicalize_name("fx-git"), git_options={"url": origin["url"], "ref": "next"}
            )
        }
    )
    by_settings = GitSources(
        settings,
        Constraints(),
        downloads_dir=tmp_path / "dl",
        work_dir=tmp_path / "w",
        logs_dir=tmp_path / "logs",
    )
    pkg = by_settings.resolve(Requirement("fx-git>=1.1"))
    assert pkg is not None and str(pkg.version) == "1.1"
    with pytest.raises(ResolutionError, match="does not satisfy the requirement fx-git>=2"):
        by_settings.resolve(Requirement("fx-git>=2"))
