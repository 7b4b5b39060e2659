"""Checking an output folder's wheels against their provenance.

For every wheel built into ``wheels-repo/downloads``: its provenance file is there and is an
in-toto Statement v1 with an SLSA Provenance v1 predicate; its subject is the wheel, with the
wheel's sha256; the source archive it names is in ``sdists-repo/downloads`` with the recorded
sha256; each patch is at its path with its sha256; each build-environment wheel is in the
repository with its sha256 and, when it was built here, has provenance itself (the chain
closes); and, given a public key, the envelope's signature is the key's. Pre-built wheels
(``wheels-repo/prebuilt``) are taken as published and have no provenance.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from fromager_dagster.core.layout import OutputLayout
from fromager_dagster.core.provenance import signing
from fromager_dagster.core.provenance.statement import (
    BUILD_ENV,
    PATCH,
    SOURCE,
    provenance_path,
    read_provenance,
)
from fromager_dagster.core.sources import archives as sources

if TYPE_CHECKING:  # cryptography is imported where a key is read (signing), not at start-up
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


@dataclass(frozen=True)
class Problem:
    """One thing that does not match: the file it is about and what is wrong."""

    path: str
    message: str

    def line(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass
class Report:
    wheels: int = 0
    signed: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        signed = f", {self.signed} signature(s) checked" if self.signed else ""
        if self.ok:
            return f"verified {self.wheels} wheel(s) against their provenance{signed}: no problem"
        return (
            f"{len(self.problems)} problem(s) in {self.wheels} wheel(s) checked{signed}; "
            "rebuild the wheels named (or restore the files) and run verify again"
        )


class _Hashes:
    def __init__(self) -> None:
        self._known: dict[Path, str] = {}

    def of(self, path: Path) -> str:
        if path not in self._known:
            self._known[path] = sources.file_sha256(path)
        return self._known[path]


def verify_output(layout: OutputLayout, *, public_key: Ed25519PublicKey | None = None) -> Report:
    """Every problem of ``layout``'s built wheels with their provenance, in wheel order."""
    report = Report()
    hashes = _Hashes()
    folder = layout.wheels_downloads
    wheels = sorted(folder.glob("*.whl")) if folder.is_dir() else []
    for wheel in wheels:
        report.wheels += 1
        report.problems += _check_wheel(layout, wheel, hashes, public_key, report)
    return report


def _find_wheel(layout: OutputLayout, filename: str) -> Path | None:
    for root in layout.wheel_roots:
        if (root / filename).is_file():
            return root / filename
    return None


def _check_wheel(  # noqa: PLR0912  one check per branch, each naming what is wrong
    layout: OutputLayout,
    wheel: Path,
    hashes: _Hashes,
    public_key: Ed25519PublicKey | None,
    report: Report,
) -> list[Problem]:
    found: list[Problem] = []
    name = wheel.name
    path = provenance_path(layout, name)
    if not path.is_file():
        return [Problem(name, f"no provenance ({path} is missing); rebuild the wheel")]
    try:
        prov = read_provenance(path)
    except (OSError, ValueError) as exc:
        return [Problem(str(path), f"not a readable provenance file: {exc}")]
    if public_key is not None:
        if prov.envelope is None:
            found.append(Problem(str(path), "not signed, but a verification key was given"))
        elif signing.verify(prov.envelope, public_key):
            report.signed += 1
        else:
            found.append(Problem(str(path), "bad signature: not signed by the key given"))
    subject, digest = prov.subject
    if subject != name:
        found.append(Problem(str(path), f"its subject is {subject!r}, not {name!r}"))
    actual = hashes.of(wheel)
    if actual != digest:
        found.append(
            Problem(name, f"sha256 {actual} differs from its provenance's {digest or '(none)'}")
        )
    for dep in prov.dependencies(SOURCE):
        archive = layout.sdists_downloads / str(dep.get("name", ""))
        want = (dep.get("digest") or {}).get("sha256", "")
        if not archive.is_file():
            found.append(Problem(name, f"source archive {archive} is missing"))
        elif hashes.of(archive) != want:
            found.append(
                Problem(
                    name,
                    f"source archive {archive} has sha256 {hashes.of(archive)}, "
                    f"provenance says {want}",
                )
            )
    for dep in prov.dependencies(PATCH):
        uri = str(dep.get("uri", ""))
        patch = Path(unquote(urlsplit(uri).path)) if uri.startswith("file:") else Path(uri)
        want = (dep.get("digest") or {}).get("sha256", "")
        if not patch.is_file():
            found.append(Problem(name, f"patch {patch} is missing"))
        elif hashes.of(patch) != want:
            found.append(
                Problem(
                    name, f"patch {patch} has sha256 {hashes.of(patch)}, provenance says {want}"
                )
            )
    for dep in prov.dependencies(BUILD_ENV):
        filename = str(dep.get("name", ""))
        want = (dep.get("digest") or {}).get("sha256", "")
        env_wheel = _find_wheel(layout, filename)
        if env_wheel is None:
            found.append(Problem(name, f"build-environment wheel {filename} is missing"))
        elif hashes.of(env_wheel) != want:
            found.append(
                Problem(
                    name,
                    f"build-environment wheel {filename} has sha256 "
                    f"{hashes.of(env_wheel)}, provenance says {want}",
                )
            )
        elif (
            env_wheel.parent == layout.wheels_downloads
            and not provenance_path(layout, filename).is_file()
        ):
            found.append(Problem(name, f"build-environment wheel {filename} has no provenance"))
    return found
