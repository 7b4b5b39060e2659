"""The test-mode failure report: fromager's file name, schema and failure types."""

from __future__ import annotations

import datetime as dt
import json
import pickle
import re
from pathlib import Path

from fromager_dagster.core.bootstrap.failures import (
    DEPENDENCY_EXTRACTION_STEP,
    FailureRecord,
    classify,
    failure_report_path,
    write_failure_report,
)
from fromager_dagster.core.errors import (
    BuildError,
    ConfigError,
    IndexAccessError,
    ResolutionError,
    SourceError,
)

FIELDS = ["package", "version", "exception_type", "exception_message", "failure_type"]


def test_report_schema_field_by_field(tmp_path: Path) -> None:
    failures = [
        ResolutionError("no version satisfies fx-a>=2", package="fx-a"),
        BuildError(
            "PEP 517 hook build_wheel exited with status 1",
            package="fx-b",
            version="1.0",
            step="build_wheel",
            exit_code=1,
        ),
        BuildError(
            "exited with status 2",
            package="fx-c",
            version="2.0",
            step="get_requires_for_build_wheel",
        ),
        BuildError(
            "bad Requires-Dist", package="fx-d", version="3", step=DEPENDENCY_EXTRACTION_STEP
        ),
        RuntimeError("boom"),
    ]
    path = write_failure_report(tmp_path / "work-dir", failures)
    assert path.parent == tmp_path / "work-dir"
    assert re.fullmatch(r"test-mode-failures-\d{8}-\d{6}-\d{6}\.json", path.name)
    data = json.loads(path.read_text())
    assert list(data) == ["failures"]
    rows = data["failures"]
    assert [list(row) for row in rows] == [FIELDS] * 5
    assert rows[0] == {
        "package": "fx-a",
        "version": None,
        "exception_type": "ResolutionError",
        "exception_message": "no version satisfies fx-a>=2",
        "failure_type": "resolution",
    }
    assert rows[1] == {
        "package": "fx-b",
        "version": "1.0",
        "exception_type": "BuildError",
        "exception_message": "PEP 517 hook build_wheel exited with status 1",
        "failure_type": "bootstrap",
    }
    assert rows[2]["failure_type"] == "hook"
    assert rows[3]["failure_type"] == "dependency_extraction"
    assert rows[4] == {
        "package": "",
        "version": None,
        "exception_type": "RuntimeError",
        "exception_message": "boom",
        "failure_type": "bootstrap",
    }
    # written atomically: nothing but the report is left in the folder
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_records_and_defaults(tmp_path: Path) -> None:
    record = FailureRecord.from_exception(
        SourceError("cannot unpack"), package="fx-e", version="0.1"
    )
    assert (record.package, record.version, record.failure_type) == ("fx-e", "0.1", "bootstrap")
    # an error's own package wins over the fallback, a ConfigError is a bootstrap failure
    named = FailureRecord.from_exception(ConfigError("bad", package="fx-f"), package="other")
    assert named.package == "fx-f" and named.exception_type == "ConfigError"
    path = write_failure_report(tmp_path, [record])
    assert json.loads(path.read_text())["failures"][0]["package"] == "fx-e"
    assert pickle.loads(pickle.dumps(record)) == record


def test_classify_by_name() -> None:
    assert classify("ResolutionError", None) == "resolution"
    assert classify("BuildError", "prepare_metadata_for_build_wheel") == "hook"
    assert classify("BuildError", "post_build") == "hook"
    assert classify("BuildError", "build_wheel") == "bootstrap"
    assert classify("HashMismatchError", "download") == "bootstrap"


def test_report_name_is_fromagers_timestamp(tmp_path: Path) -> None:
    moment = dt.datetime(2026, 1, 2, 3, 4, 5, 6789, tzinfo=dt.UTC)
    assert (
        failure_report_path(tmp_path, moment).name
        == "test-mode-failures-20260102-030405-006789.json"
    )


def test_rewriting_a_report_in_place(tmp_path: Path) -> None:
    """More failures rewrite an earlier report at its own path, atomically, in the same schema."""
    first = FailureRecord("fx-a", "1.0", "BuildError", "build_wheel failed", "bootstrap")
    later = FailureRecord("fx-b", None, "ResolutionError", "no version", "resolution")
    path = write_failure_report(tmp_path, [first])
    again = write_failure_report(tmp_path, [first, later], path=path)
    assert again == path
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
    rows = json.loads(path.read_text())["failures"]
    assert [list(row) for row in rows] == [FIELDS, FIELDS]
    assert rows[1] == {
        "package": "fx-b",
        "version": None,
        "exception_type": "ResolutionError",
        "exception_message": "no version",
        "failure_type": "resolution",
    }


def test_a_package_the_index_lacks_is_a_resolution_failure() -> None:
    exc = IndexAccessError("package fx-nothing not found on index", package="fx-nothing")
    record = FailureRecord.from_exception(exc)
    assert (record.package, record.failure_type) == ("fx-nothing", "resolution")
