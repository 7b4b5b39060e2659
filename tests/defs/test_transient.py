"""Which failures a wheel asset retries: the engine's own verdict first."""

from __future__ import annotations

import pickle

from fromager_dagster.core.errors import BuildError, IndexAccessError, SourceError, is_transient


def test_a_missing_file_is_not_retried_but_a_broken_transfer_is() -> None:
    missing = SourceError(
        "could not download x: HTTP status 404 (the file is not there)", transient=False
    )
    assert not is_transient(missing)
    assert not is_transient(pickle.loads(pickle.dumps(missing)))  # as it crosses processes
    assert is_transient(SourceError("could not download x: the download broke off"))
    assert not is_transient(IndexAccessError("package x not found on index", transient=False))
    assert is_transient(IndexAccessError("could not read page: HTTP 503", transient=True))
    assert not is_transient(BuildError("hook failed", exit_code=1))
