"""The CLI's collections.yaml: the one collection a command runs, named from its requirements."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from ..core.credentials import split_credentials, strip_credentials
from ..core.graph import ROOT, DependencyGraph
from ..core.index import ENV_VAR as INDEX_URL_VAR

COLLECTIONS_FILE = "collections.yaml"


def collection_name(requirements: Sequence[Requirement]) -> str:
    """``stevedore``, ``flask-requests``, ``a-b-c-and-4-more``: from the top-level names."""
    names = sorted({str(canonicalize_name(r.name)) for r in requirements}) or ["bootstrap"]
    more = f"-and-{len(names) - 3}-more" if len(names) > 3 else ""
    return "-".join(names[:3]) + more


def write_collection(
    output_dir: Path,
    name: str,
    *,
    requirements: Sequence[str],
    requirement_files: Sequence[str],
    constraints: Sequence[str],
    index_url: str | None,
    variant: str | None = None,
    settings_file: Path | None = None,
    settings_dir: Path | None = None,
    patches_dir: Path | None = None,
) -> Path:
    """Write ``<OUTPUT_DIR>/collections.yaml`` with the one collection of this command.

    The settings paths are written as given (absolute); without them the collection has no
    overrides (the ``overrides/`` folder beside the file is not picked up by accident).
    """

    def located(p: str) -> str:
        return p if "://" in p else str(Path(p).resolve())

    body: dict[str, Any] = {
        "requirements": list(requirements),
        "requirement_files": [located(p) for p in requirement_files],
        "constraints": [located(p) for p in constraints],
        "output_dir": str(output_dir.resolve()),
        "sdist_only": True,  # discovery builds what builds need; the build run does the rest
    }
    if index_url:  # credentials stay out of the file (and the runs' config): see share_...
        body["index_url"] = strip_credentials(index_url)
    if variant:
        body["variant"] = variant
    body["overrides"] = None
    for key, path in (
        ("settings_file", settings_file),
        ("settings_dir", settings_dir),
        ("patches_dir", patches_dir),
    ):
        if path is not None:
            body[key] = str(path.resolve())
    path = output_dir.resolve() / COLLECTIONS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    header = "# Written by the fromager-dagster CLI; `fromager-dagster ui -O` serves it.\n"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(header + yaml.safe_dump({"collections": {name: body}}), encoding="utf-8")
    tmp.replace(path)
    return path


def share_index_credentials(index_url: str | None) -> None:
    """Give this command's Dagster runs (in this process and the step processes it starts)
    the credentials of ``index_url``, which collections.yaml and the run config do not keep:
    through ``$FROMAGER_DAGSTER_INDEX_URL``, where the engine looks them up for the index's
    origin. Nothing is written to disk or to the instance."""
    if index_url and split_credentials(index_url)[1] is not None:
        os.environ[INDEX_URL_VAR] = index_url


def toplevel_of(graph: DependencyGraph) -> list[str]:
    """The graph's top-level requirements as written, else every node's pin."""
    reqs = [e.req for e in graph.nodes[ROOT].edges if e.req_type == "toplevel"]
    return reqs or [key for key in graph.nodes if key]
