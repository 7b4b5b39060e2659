"""``download_source`` settings: a package's source archive fetched from a templated URL.

fromager's syntax: ``download_source.url`` and ``download_source.destination_filename`` are
``string.Template`` strings over ``${version}`` and ``${canonicalized_name}`` (``$$`` is a
literal ``$``). The version still comes from the resolver (the index, constraints); only the
archive comes from the URL. Nothing publishes a hash for it, so the sha256 of what was
downloaded is recorded in the returned ``DistFile``.
"""

from __future__ import annotations

import dataclasses
import string
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

import requests
from packaging.utils import canonicalize_name
from packaging.version import Version

from fromager_dagster.core.errors import ConfigError, SourceError
from fromager_dagster.core.index.distributions import DistFile
from fromager_dagster.core.package_id import package_key
from fromager_dagster.core.plugins import Plugins
from fromager_dagster.core.resolve.resolver import ResolvedPackage
from fromager_dagster.core.settings.overrides import PackageSettings, Settings
from fromager_dagster.core.sources.archives import download, sha256_file

#: The names a ``download_source`` template may use.
TEMPLATE_VARIABLES = ("version", "canonicalized_name")
_ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".tar", ".zip")


def template_problems(template: str) -> list[str]:
    """What is wrong with a ``download_source`` template (empty list: nothing)."""
    parsed = string.Template(template)
    if not parsed.is_valid():
        return [f"{template!r} has a '$' that is not followed by a name; write '$$' for a '$'"]
    unknown = sorted(set(parsed.get_identifiers()) - set(TEMPLATE_VARIABLES))
    return [
        f"{template!r} uses ${{{name}}}; only {', '.join(f'${{{v}}}' for v in TEMPLATE_VARIABLES)} "
        "are known"
        for name in unknown
    ]


def _expand(template: str, key: str, pkg: PackageSettings, values: dict[str, str]) -> str:
    problems = template_problems(template)
    if problems:
        where = pkg.source_file or f"settings of {pkg.name}"
        raise ConfigError(f"{where}: download_source.{key}: {problems[0]}", package=pkg.name)
    return string.Template(template).substitute(values)


def source_url_for(
    pkg: PackageSettings, name: str, version: Version | str
) -> tuple[str, str] | None:
    """``(url, filename)`` of the archive the settings point at, or None without a template.

    The filename is ``destination_filename`` expanded, else the URL's last path segment; it
    must be a plain file name ending in an archive suffix that can be unpacked.
    """
    template = pkg.download_source.url
    if template is None:
        return None
    values = {"version": str(version), "canonicalized_name": str(canonicalize_name(name))}
    url = _expand(template, "url", pkg, values)
    if urlsplit(url).scheme not in ("http", "https"):
        raise ConfigError(
            f"{pkg.source_file or f'settings of {pkg.name}'}: download_source.url: {url!r} is "
            "not an http(s) URL",
            package=pkg.name,
        )
    wanted = pkg.download_source.destination_filename
    if wanted is not None:
        filename, key = _expand(wanted, "destination_filename", pkg, values), "destination_filename"
    else:
        filename, key = unquote(PurePosixPath(urlsplit(url).path).name), "url"
    where = pkg.source_file or f"settings of {pkg.name}"
    if not filename or filename != PurePosixPath(filename).name or "\\" in filename:
        raise ConfigError(
            f"{where}: download_source.{key}: {filename!r} is not a plain file name; "
            "set download_source.destination_filename",
            package=pkg.name,
        )
    if not filename.lower().endswith(_ARCHIVE_SUFFIXES):
        raise ConfigError(
            f"{where}: download_source.{key}: {filename!r} is not a source archive "
            f"({', '.join(_ARCHIVE_SUFFIXES)}); set download_source.destination_filename",
            package=pkg.name,
        )
    return url, filename


def download_from_url(
    session: requests.Session,
    *,
    name: str,
    version: Version | str,
    url: str,
    filename: str,
    dest_dir: Path,
    sha256: str | None = None,
    timeout: float = 60.0,
) -> tuple[Path, DistFile]:
    """Download ``url`` to ``dest_dir/filename``; return the path and a DistFile with its sha256.

    Without ``sha256`` (the usual case: nothing publishes one) the file is always downloaded
    again and its hash recorded; with it (from an earlier run's record) the download is
    verified and an existing matching file reused. Errors are ``sources.download``'s.
    """
    file = DistFile(
        name=canonicalize_name(name),
        version=Version(str(version)),
        filename=filename,
        url=url,
        kind="sdist",
        sha256=sha256,
        requires_python=None,
    )
    path = download(session, file, dest_dir, timeout=timeout)
    return path, dataclasses.replace(file, sha256=sha256_file(path))


def download_override(
    session: requests.Session, pkg: ResolvedPackage, settings: PackageSettings, dest_dir: Path
) -> tuple[Path, ResolvedPackage] | None:
    """Fetch ``pkg``'s archive from its settings' ``download_source`` instead of the index.

    None when the settings have no ``download_source.url``. Otherwise the archive's path and
    ``pkg`` with its ``source`` replaced by the URL, file name and recorded sha256.
    """
    target = source_url_for(settings, pkg.name, pkg.version)
    if target is None:
        return None
    url, filename = target
    path, file = download_from_url(
        session, name=pkg.name, version=pkg.version, url=url, filename=filename, dest_dir=dest_dir
    )
    return path, dataclasses.replace(pkg, source=file)


def fetch_source(
    session: requests.Session,
    pkg: ResolvedPackage,
    dest_dir: Path,
    *,
    settings: Settings,
    plugins: Plugins,
    log: Path,
) -> Path:
    """The source archive of ``pkg`` in ``dest_dir``: a ``download_source`` plugin's, else
    from the settings' ``download_source.url``, else ``pkg``'s file from the index
    (hash-verified). A bootstrap and the builder both download here. SourceError when ``pkg``
    is a wheel (a pre-built one) and neither a plugin nor the settings give a source."""
    name, version = pkg.name, str(pkg.version)
    step = plugins.override(name, "download_source")
    if step is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        return step(
            name=name,
            version=pkg.version,
            url=pkg.source.url,
            dest_dir=dest_dir,
            settings=settings,
            session=session,
            log=log,
        )
    found = download_override(session, pkg, settings.package(name), dest_dir)
    if found is not None:
        return found[0]
    if pkg.source.kind != "sdist":
        raise SourceError(
            f"{package_key(name, version)} resolves to the wheel {pkg.source.filename}, which the "
            "settings take pre-built (pre_built, or resolver_dist.include_wheels): there is no "
            "source to download; set them to false to build it from source",
            package=name,
            version=version,
        )
    return download(session, pkg.source, dest_dir)
