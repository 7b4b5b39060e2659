"""Where the package index URL comes from: option, environment, pip's config, pip's default."""

from __future__ import annotations

import configparser
import os
import sys
from pathlib import Path
from urllib.parse import urlsplit

from fromager_dagster.core.credentials import (
    origin,
    redact_url,
    split_credentials,
    with_credentials,
)
from fromager_dagster.core.errors import ConfigError

__all__ = ["ENV_VAR", "GLOBAL_CONFIG_FILES", "configured_credentials", "resolve_index_url"]

ENV_VAR = "FROMAGER_DAGSTER_INDEX_URL"
#: Machine-wide pip configuration files, lowest priority first.
GLOBAL_CONFIG_FILES: tuple[Path, ...] = (Path("/etc/xdg/pip/pip.conf"), Path("/etc/pip.conf"))
_HINT = f"pass --index-url or set {ENV_VAR}"


def resolve_index_url(explicit: str | None = None) -> str:
    """The index URL to use, ending with "/".

    First of: ``explicit`` (the --index-url option), ``$FROMAGER_DAGSTER_INDEX_URL``,
    ``$PIP_INDEX_URL``, ``index-url`` from pip's configuration files, pip's built-in default.
    A URL without credentials gets those configured for its origin
    (:func:`configured_credentials`), so stored configuration can keep the URL bare.
    """
    url = _chosen(explicit)
    if split_credentials(url)[1] is None:
        url = with_credentials(url, configured_credentials(url))
    return url


def configured_credentials(url: str) -> tuple[str, str] | None:
    """The (user, password) that configuration gives for ``url``'s scheme, host and port:
    from ``$FROMAGER_DAGSTER_INDEX_URL``, ``$PIP_INDEX_URL``, ``$PIP_EXTRA_INDEX_URL`` or pip's
    ``index-url`` / ``extra-index-url`` settings (netrc is read by the HTTP client itself)."""
    wanted = origin(url)
    for candidate in _configured_urls():
        clean, found = split_credentials(candidate)
        if found is not None and origin(clean) == wanted:
            return found
    return None


def _configured_urls() -> list[str]:
    urls = [os.environ.get(ENV_VAR, ""), os.environ.get("PIP_INDEX_URL", "")]
    urls += os.environ.get("PIP_EXTRA_INDEX_URL", "").split()
    urls += _pip_config_urls()
    return [u.strip() for u in urls if u and u.strip()]


def _chosen(explicit: str | None) -> str:
    candidates = (
        ("--index-url", explicit),
        (ENV_VAR, os.environ.get(ENV_VAR)),
        ("PIP_INDEX_URL", os.environ.get("PIP_INDEX_URL")),
    )
    for source, value in candidates:
        if value and value.strip():
            return _checked(value, source)
    from_config = _from_pip_config()
    if from_config is not None:
        return _checked(*from_config)
    default = _pip_default()
    if default is None:
        raise ConfigError(f"no package index URL is configured: {_HINT}")
    return _checked(default, "pip's default")


def _checked(url: str, source: str) -> str:
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(
            f"index URL {redact_url(url)!r} (from {source}) is not an http(s) URL; "
            f"{_HINT} to one that is"
        )
    return url if url.endswith("/") else url + "/"


def _config_files() -> list[Path]:
    """pip's configuration files in pip's load order; later files override earlier ones.

    Like pip, ``$PIP_CONFIG_FILE`` is loaded last (it overrides the others) and setting it to
    ``os.devnull`` disables every configuration file.
    """
    env_file = os.environ.get("PIP_CONFIG_FILE")
    if env_file == os.devnull:
        return []
    home = Path.home()
    xdg_home = os.environ.get("XDG_CONFIG_HOME") or str(home / ".config")
    files = [*GLOBAL_CONFIG_FILES, home / ".pip" / "pip.conf", Path(xdg_home) / "pip" / "pip.conf"]
    venv = os.environ.get("VIRTUAL_ENV") or (sys.prefix if sys.prefix != sys.base_prefix else None)
    if venv:
        files.append(Path(venv) / "pip.conf")
    if env_file:
        files.append(Path(env_file))
    return files


def _pip_config_urls() -> list[str]:
    """Every ``index-url`` and ``extra-index-url`` in pip's configuration files."""
    urls: list[str] = []
    for path in _config_files():
        parser = configparser.RawConfigParser()
        try:
            with path.open(encoding="utf-8") as f:
                parser.read_file(f)
        except (OSError, configparser.Error, UnicodeDecodeError):
            continue
        for section in parser.sections():
            for key in ("index-url", "index_url", "extra-index-url", "extra_index_url"):
                urls += parser.get(section, key, fallback="").split()
    return urls


def _from_pip_config() -> tuple[str, str] | None:
    """(url, where) of the configured ``index-url``; ``[install]`` beats ``[global]`` as in pip."""
    found: dict[str, tuple[str, str]] = {}
    for path in _config_files():
        parser = configparser.RawConfigParser()
        try:
            with path.open(encoding="utf-8") as f:
                parser.read_file(f)
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
        except (configparser.Error, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read pip configuration file {path}: {exc}") from exc
        for section in ("global", "install"):
            if not parser.has_section(section):
                continue
            for key in ("index-url", "index_url"):
                value = parser.get(section, key, fallback="").strip()
                if value:
                    found[section] = (value, f"{path} [{section}] index-url")
    return found.get("install") or found.get("global")


def _pip_default() -> str | None:
    try:
        from pip._internal.models.index import PyPI
    except ImportError:
        return None
    url = getattr(PyPI, "simple_url", None)
    return str(url) if url else None
