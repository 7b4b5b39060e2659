"""The HTTP client policy of every request the engine makes: retries, whole bodies, credentials.

One session type (:func:`make_session`) serves index pages, file downloads and constraints
URLs. urllib3 retries connection errors and 429/5xx before a response exists; once it does,
a body that breaks off (``IncompleteRead``, a broken chunked encoding, a corrupt gzip stream,
fewer bytes than ``Content-Length``) is retried here with the same backoff (:func:`fetch`,
:func:`download_to`, which resumes with a ``Range`` request where the server allows). Client
errors (404, 403...) are final. Credentials are kept per origin on the session, never in a
URL that could be shown or stored (:mod:`~fromager_dagster.core.credentials`).
"""

from __future__ import annotations

import os
import time
from typing import BinaryIO

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from fromager_dagster.core.credentials import HostCredentials, split_credentials

__all__ = [
    "ENV_RETRIES",
    "ENV_TIMEOUT",
    "BrokenTransfer",
    "HttpStatusError",
    "RetryingSession",
    "download_to",
    "fetch",
    "make_session",
]

#: How many times a request is retried (default 5) and its timeout in seconds (default 30).
ENV_RETRIES = "FROMAGER_DAGSTER_HTTP_RETRIES"
ENV_TIMEOUT = "FROMAGER_DAGSTER_HTTP_TIMEOUT"
_RETRY_STATUSES = (429, 500, 502, 503, 504)
_CHUNK = 64 * 1024  # small enough that a broken body leaves something to resume from


class BrokenTransfer(requests.RequestException):
    """A response body broke off or was corrupt on every attempt."""


class HttpStatusError(requests.HTTPError):
    """The server answered with a status of 400 or more (after any retries of 429/5xx)."""

    def __init__(self, url: str, status: int, reason: str) -> None:
        super().__init__(f"HTTP {status} {reason}".strip())
        self.url, self.status, self.reason = url, status, reason

    @property
    def missing(self) -> bool:
        """404/410: the file is not there, asking again will not help."""
        return self.status in (404, 410)


class RetryingSession(requests.Session):
    """A requests session that knows its retry policy and the credentials of each origin."""

    def __init__(self, *, retries: int, backoff: float, timeout: float) -> None:
        super().__init__()
        self.retries = retries
        self.backoff = backoff
        self.timeout = timeout
        self.credentials = HostCredentials()
        self.auth = self.credentials

    def add_credentials(self, url: str) -> str:
        """Keep the user info of ``url`` for its origin; return ``url`` without it."""
        clean, found = split_credentials(url)
        if found is not None:
            self.credentials.add(clean, found)
        return clean


def _env_number(name: str, default: float) -> float:
    text = os.environ.get(name, "").strip()
    try:
        return float(text) if text else default
    except ValueError:
        return default


def make_session(
    *, retries: int | None = None, backoff: float = 0.5, timeout: float | None = None
) -> RetryingSession:
    """A session that retries connection errors, 429/5xx and broken bodies with exponential
    backoff; ``Retry-After`` is honoured. After the last retry of a status the final response
    is returned (not raised), so callers can report its status.

    ``retries`` and ``timeout`` default to ``$FROMAGER_DAGSTER_HTTP_RETRIES`` (5) and
    ``$FROMAGER_DAGSTER_HTTP_TIMEOUT`` (30 seconds).
    """
    if retries is None:
        retries = max(0, int(_env_number(ENV_RETRIES, 5)))
    if timeout is None:
        timeout = max(0.1, _env_number(ENV_TIMEOUT, 30.0))
    retry = Retry(
        total=retries,
        connect=min(retries, 3),
        read=retries,
        status=retries,
        backoff_factor=backoff,
        status_forcelist=_RETRY_STATUSES,
        allowed_methods=frozenset({"GET", "HEAD"}),
        respect_retry_after_header=True,
        raise_on_status=False,
    )
    adapter = HTTPAdapter(max_retries=retry)
    session = RetryingSession(retries=retries, backoff=backoff, timeout=timeout)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def _policy(session: requests.Session) -> tuple[int, float]:
    """(attempts, backoff) of ``session``: a plain session gets the default policy."""
    retries = getattr(session, "retries", 5)
    return max(1, int(retries) + 1), float(getattr(session, "backoff", 0.5))


def _pause(backoff: float, attempt: int) -> None:
    if backoff > 0:
        time.sleep(min(backoff * (2**attempt), 30.0))


def _expected_length(response: requests.Response) -> int | None:
    """Content-Length, when it counts the bytes we read (no content encoding)."""
    if response.headers.get("Content-Encoding", "identity").lower() not in ("identity", ""):
        return None
    try:
        return int(response.headers["Content-Length"])
    except (KeyError, ValueError):
        return None


_BODY_ERRORS = (
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
    requests.exceptions.ConnectionError,
)


def fetch(
    session: requests.Session,
    url: str,
    *,
    headers: dict[str, str] | None = None,
    timeout: float | None = None,
) -> requests.Response:
    """GET ``url`` with its whole body read and checked against Content-Length.

    A body that breaks off is fetched again (the session's retries, with backoff);
    :class:`BrokenTransfer` after the last attempt. Errors before a response exists come from
    urllib3's retries as requests exceptions. The response may have any status.
    """
    attempts, backoff = _policy(session)
    timeout = timeout if timeout is not None else getattr(session, "timeout", 30.0)
    problem = ""
    for attempt in range(attempts):
        if attempt:
            _pause(backoff, attempt - 1)
        response = session.get(url, headers=headers, timeout=timeout, stream=True)
        try:
            body = response.content
        except _BODY_ERRORS as exc:
            problem = f"the response broke off ({_cause(exc)})"
            response.close()
            continue
        expected = _expected_length(response)
        if expected is not None and len(body) != expected:
            problem = f"the response has {len(body)} of its {expected} bytes"
            continue
        return response
    raise BrokenTransfer(f"{problem}, on each of {attempts} attempts")


def download_to(
    session: requests.Session, url: str, out: BinaryIO, *, timeout: float | None = None
) -> int:
    """Stream ``url`` into ``out`` (a fresh, empty file); return the number of bytes.

    A body that breaks off is resumed with ``Range: bytes=<got>-`` when the server answers
    206 for it, else fetched again from the start; :class:`BrokenTransfer` after the
    session's retries, :class:`HttpStatusError` for a status of 400 or more.
    """
    attempts, backoff = _policy(session)
    timeout = timeout if timeout is not None else getattr(session, "timeout", 30.0)
    got = 0
    problem = ""
    for attempt in range(attempts):
        if attempt:
            _pause(backoff, attempt - 1)
        headers = {"Range": f"bytes={got}-", "Accept-Encoding": "identity"} if got else {}
        with session.get(url, stream=True, timeout=timeout, headers=headers) as response:
            if response.status_code >= 400:
                raise HttpStatusError(url, response.status_code, response.reason or "")
            resumed = got and response.status_code == 206 and _resumes_at(response, got)
            if not resumed:
                out.seek(0)
                out.truncate()
                got = 0
            expected = _expected_length(response)
            total = got + expected if expected is not None else None
            try:
                for chunk in response.iter_content(chunk_size=_CHUNK):
                    out.write(chunk)
                    got += len(chunk)
            except _BODY_ERRORS as exc:
                problem = f"the download broke off after {got} bytes ({_cause(exc)})"
                out.flush()
                continue
            if total is not None and got != total:
                problem = f"the download has {got} of its {total} bytes"
                continue
            out.flush()
            return got
    raise BrokenTransfer(f"{problem}, on each of {attempts} attempts")


def _resumes_at(response: requests.Response, offset: int) -> bool:
    return response.headers.get("Content-Range", "").startswith(f"bytes {offset}-")


def _cause(exc: BaseException) -> str:
    """The innermost reason of a requests/urllib3 exception, short."""
    seen = exc
    while seen.__context__ is not None and isinstance(seen.__context__, Exception):
        seen = seen.__context__
    text = str(seen) or type(seen).__name__
    return f"{type(seen).__name__}: {text}" if type(seen).__name__ not in text else text
