"""Is a built wheel reproducible? Rebuild it in a scratch folder and compare the bytes.

The rebuild is the hermetic build of the graph node (:func:`~.build.builder.build_node`): the same
source archive, the same build-environment wheels (linked into the scratch folder's
repository), the same settings, in the sandbox, in another folder. The result, with the wheel
members that differ, is recorded beside the wheel's provenance
(``wheels-repo/provenance/<wheel>.reproducibility.json``): the reason a package is not
reproducible, which the wheel's asset shows and ``verify --rebuild`` prints.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fromager_dagster.core.build.builder import build_node
from fromager_dagster.core.build.sandbox import Sandbox
from fromager_dagster.core.errors import BuildError
from fromager_dagster.core.graph.model import DependencyGraph, write_atomic
from fromager_dagster.core.layout import OutputLayout
from fromager_dagster.core.plugins import Plugins
from fromager_dagster.core.provenance.statement import provenance_of
from fromager_dagster.core.repository.built import find_source, find_wheel
from fromager_dagster.core.settings.overrides import Settings
from fromager_dagster.core.sources import archives as sources

SUFFIX = ".reproducibility.json"


@dataclass(frozen=True)
class Comparison:
    """A wheel against its rebuild: the hashes, and the members that differ."""

    requirement: str
    wheel: str
    sha256: str
    rebuilt_sha256: str
    differing: tuple[str, ...] = ()  # members whose bytes differ, or in one wheel only
    settings_differ: bool = False  # the rebuild's settings fingerprint is not the build's

    @property
    def reproducible(self) -> bool:
        return self.sha256 == self.rebuilt_sha256

    def reason(self) -> str:
        """Why the wheel is not reproducible, in one sentence ("" when it is)."""
        if self.reproducible:
            return ""
        files = ", ".join(self.differing) or "the archive itself (same members, other bytes)"
        text = f"a rebuild in another folder gives sha256 {self.rebuilt_sha256}; differing: {files}"
        if self.settings_differ:
            text += " (the settings differ from the build's: pass the same settings options)"
        return text

    def compared(self, sandbox: str) -> str:
        """What was compared, in one sentence (for a check's or a command's report)."""
        return (
            f"sha256 of {self.wheel} in wheels-repo/downloads against a rebuild of "
            f"{self.requirement} in a scratch folder under work-dir (the same source archive "
            f"and build-environment wheels, the same settings, sandbox {sandbox}), then, "
            "when they differ, the bytes of every member of the two wheels"
        )


def record_path(layout: OutputLayout, wheel_name: str) -> Path:
    return layout.provenance_dir / f"{wheel_name}{SUFFIX}"


def read_record(layout: OutputLayout, wheel: Path) -> dict[str, Any] | None:
    """The last comparison recorded for ``wheel``, if it is about these bytes."""
    try:
        data = json.loads(record_path(layout, wheel.name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("sha256") != sources.file_sha256(wheel):
        return None
    return data


def recorded(
    graph: DependencyGraph, key: str, layout: OutputLayout, settings: Settings
) -> dict[str, Any] | None:
    """The comparison recorded for node ``key``'s wheel as it is now (None: none, or the
    wheel is missing or was built again since)."""
    node = graph.nodes[key]
    name, version = node.canonicalized_name, node.version
    wheel = find_wheel(layout, name, version, build_tag=settings.build_tag(name, version))
    if wheel is None or wheel.parent != layout.wheels_downloads:
        return None
    return read_record(layout, wheel)


def differing_members(first: Path, second: Path) -> list[str]:
    """The members of two wheels whose bytes (or presence) differ, sorted."""
    with zipfile.ZipFile(first) as a, zipfile.ZipFile(second) as b:
        names_a, names_b = set(a.namelist()), set(b.namelist())
        differ = names_a ^ names_b
        differ |= {n for n in names_a & names_b if a.read(n) != b.read(n)}
    return sorted(differ)


def _link_or_copy(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dest)
    except OSError:
        shutil.copy2(src, dest)


def rebuild_and_compare(
    graph: DependencyGraph,
    key: str,
    layout: OutputLayout,
    *,
    isolate: bool | Sandbox,
    settings: Settings,
    plugins: Plugins,
) -> Comparison:
    """Rebuild ``key``'s wheel (in ``layout``'s repository) in a scratch folder under
    ``work-dir`` with ``settings`` and ``plugins``, compare it with the wheel, record the
    result and remove the scratch folder."""
    node = graph.nodes[key]
    name, version = node.canonicalized_name, node.version
    wheel = find_wheel(layout, name, version, build_tag=settings.build_tag(name, version))
    if wheel is None or wheel.parent != layout.wheels_downloads:
        raise BuildError(
            f"no wheel built in {layout.wheels_downloads} to compare; build it first",
            package=name,
            version=version,
            step="reproducibility",
        )
    archive = find_source(layout, name, version, node.download_url)
    layout.work_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f"rebuild-{name}-", dir=layout.work_dir))
    try:
        other = OutputLayout(scratch / "out").ensure()
        _link_or_copy(archive, other.sdists_downloads / archive.name)
        for root, dest in zip(layout.wheel_roots, other.wheel_roots, strict=True):
            for path in root.glob("*.whl"):
                if path != wheel:
                    _link_or_copy(path, dest / path.name)
        rebuilt = build_node(
            graph, key, layout=other, isolate=isolate, settings=settings, plugins=plugins
        )
        original, again = provenance_of(layout, wheel), provenance_of(other, rebuilt.path)
        settings_differ = (
            original is not None
            and again is not None
            and _fingerprint(original.statement) != _fingerprint(again.statement)
        )
        sha256 = sources.sha256_file(wheel)
        differ = () if rebuilt.sha256 == sha256 else differing_members(wheel, rebuilt.path)
        result = Comparison(
            requirement=key,
            wheel=wheel.name,
            sha256=sha256,
            rebuilt_sha256=rebuilt.sha256,
            differing=tuple(differ),
            settings_differ=settings_differ and rebuilt.sha256 != sha256,
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    record = {**asdict(result), "reproducible": result.reproducible, "reason": result.reason()}
    record["checked"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    layout.provenance_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(record_path(layout, wheel.name), json.dumps(record, indent=2) + "\n")
    return result


def _fingerprint(statement: dict[str, Any]) -> str:
    definition = (statement.get("predicate") or {}).get("buildDefinition") or {}
    return str((definition.get("internalParameters") or {}).get("settings_fingerprint", ""))


__all__ = [
    "Comparison",
    "differing_members",
    "read_record",
    "rebuild_and_compare",
    "record_path",
    "recorded",
]
