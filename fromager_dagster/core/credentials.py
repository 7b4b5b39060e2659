"""Credentials in URLs: taken out before a URL is shown or stored, handed to requests per host.

An index URL may carry ``user:password@``. The engine keeps such credentials only in memory
(:class:`HostCredentials`, a requests auth that answers for the URL's scheme, host and port);
every URL it prints, logs or writes (graph.json, collections.yaml, run config) is stripped of
them (:func:`strip_credentials`) or redacted (:func:`redact_url`, :func:`redact_text`).
"""

from __future__ import annotations

import re
import threading
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import requests
from requests.auth import AuthBase, HTTPBasicAuth
from requests.utils import get_netrc_auth

__all__ = [
    "HostCredentials",
    "origin",
    "redact_text",
    "redact_url",
    "split_credentials",
    "strip_credentials",
    "with_credentials",
]

_REDACTED = "****"
#: ``scheme://user[:password]@`` inside any text (an error message, a log line).
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/@\s'\"]+)@")


def origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of ``url``, the unit credentials are kept for."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is None:
        port = {"http": 80, "https": 443}.get(parts.scheme.lower())
    return parts.scheme.lower(), (parts.hostname or "").lower(), port


def split_credentials(url: str) -> tuple[str, tuple[str, str] | None]:
    """``url`` without its user info, and the (user, password) it carried (``None``: none)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    clean = urlunsplit((parts.scheme, hostport, parts.path, parts.query, parts.fragment))
    return clean, (unquote(user), unquote(password))


def strip_credentials(url: str) -> str:
    """``url`` without ``user:password@``: what graph files and configuration keep."""
    return split_credentials(url)[0]


def redact_url(url: str) -> str:
    """``url`` with its password (or a lone token) replaced by ``****``, for messages."""
    return redact_text(url)


def redact_text(text: str) -> str:
    """``text`` with the secret of every ``scheme://user:password@`` in it replaced."""

    def hide(match: re.Match[str]) -> str:
        user, sep, _ = match["userinfo"].partition(":")
        shown = f"{user}:{_REDACTED}" if sep else _REDACTED
        return f"{match['scheme']}{shown}@"

    return _USERINFO.sub(hide, text) if "@" in text else text


def with_credentials(url: str, credentials: tuple[str, str] | None) -> str:
    """``url`` carrying ``credentials`` (unchanged when ``None`` or it already has some)."""
    if credentials is None or split_credentials(url)[1] is not None:
        return url
    parts = urlsplit(url)
    user, password = (quote(x, safe="") for x in credentials)
    netloc = f"{user}:{password}@{parts.netloc}" if password else f"{user}@{parts.netloc}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


class HostCredentials(AuthBase):
    """A requests auth: HTTP basic credentials for each origin they were given for, netrc's
    for any other (as requests does when no auth is set); nothing for the rest."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_origin: dict[tuple[str, str, int | None], tuple[str, str]] = {}

    def add(self, url: str, credentials: tuple[str, str]) -> None:
        with self._lock:
            self._by_origin[origin(url)] = credentials

    def for_url(self, url: str) -> tuple[str, str] | None:
        with self._lock:
            return self._by_origin.get(origin(url))

    def __bool__(self) -> bool:
        return bool(self._by_origin)

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        url = request.url or ""
        found = self.for_url(url) or get_netrc_auth(url)
        if found is not None:
            request = HTTPBasicAuth(*found)(request)
        return request
