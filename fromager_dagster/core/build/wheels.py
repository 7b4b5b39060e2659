"""Built wheels: reproducible finalisation with a build tag, and reading what they declare."""

from __future__ import annotations

import base64
import contextlib
import csv
import email
import email.message
import hashlib
import io
import os
import tempfile
import time
import zipfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING

from packaging.markers import UndefinedEnvironmentName
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion

from fromager_dagster.core.errors import BuildError

if TYPE_CHECKING:
    from fromager_dagster.core.build.wheel_extras import WheelExtras

_CHUNK = 1024 * 1024
_ZIP_MIN_EPOCH = 315532800  # 1980-01-01T00:00:00Z, the earliest date a zip entry can hold
_ZIP_MAX_EPOCH = 4354819198  # 2107-12-31T23:59:58Z, the latest
_SIGNATURES = ("RECORD.jws", "RECORD.p7s")
_OWN_FILES = frozenset({"RECORD", "WHEEL", "METADATA", *_SIGNATURES})  # extras cannot replace


def _dist_info_dir(wheel: Path, names: Iterable[str], wanted: str) -> str:
    """The ``*.dist-info`` directory holding ``wanted``; the wheel's own if there are several."""
    dirs = sorted(
        {
            top
            for top, _, rest in (n.partition("/") for n in names)
            if top.endswith(".dist-info") and rest == wanted
        }
    )
    if len(dirs) > 1:
        try:
            own = parse_wheel_filename(wheel.name)[0]
        except InvalidWheelFilename:
            own = None
        dirs = [d for d in dirs if canonicalize_name(d.rsplit("-", 1)[0]) == own]
    if len(dirs) != 1:
        raise BuildError(f"{wheel.name} has no single .dist-info directory with a {wanted} file")
    return dirs[0]


def _zip_date_time(epoch: int) -> tuple[int, int, int, int, int, int]:
    year, month, day, hour, minute, second = time.gmtime(
        min(max(epoch, _ZIP_MIN_EPOCH), _ZIP_MAX_EPOCH)
    )[:6]
    return year, month, day, hour, minute, second


def _with_build_line(text: str, build_tag: int) -> str:
    """``WHEEL`` text with its ``Build:`` line replaced by (or extended with) ``build_tag``."""
    line = f"Build: {build_tag}"
    lines = text.splitlines()
    builds = [i for i, old in enumerate(lines) if old.lower().startswith("build:")]
    if builds:
        lines[builds[0]] = line
        lines = [old for i, old in enumerate(lines) if i not in builds[1:]]
    else:
        while lines and not lines[-1].strip():
            lines.pop()
        lines.append(line)
    return "\n".join(lines) + "\n"


def _with_headers(text: str, headers: Iterable[tuple[str, str]]) -> str:
    """``METADATA`` text with ``headers`` added after its last header, before the blank line
    and body; a header already there with the same value is not written twice."""
    lines = text.splitlines(keepends=True)
    end = next((i for i, line in enumerate(lines) if not line.strip("\r\n")), len(lines))
    head = email.message_from_string("".join(lines[:end]))
    present = {(key.lower(), str(value).strip()) for key, value in head.items()}
    newline = "\r\n" if lines and lines[0].endswith("\r\n") else "\n"
    added: list[str] = []
    for key, value in headers:
        if (key.lower(), value) not in present:
            present.add((key.lower(), value))
            added.append(f"{key}: {value}{newline}")
    if end and not lines[end - 1].endswith("\n"):
        lines[end - 1] += newline
    return "".join([*lines[:end], *added, *lines[end:]])


def _check_extras(extras: WheelExtras, dist_info: str) -> dict[str, bytes]:
    """The extra files keyed by their path in the wheel; BuildError for an unusable one."""
    for key, value in extras.metadata_headers:
        if not key.replace("-", "").isalnum() or any(c in value for c in "\r\n"):
            raise BuildError(f"cannot add the METADATA header {key!r}: {value!r}")
    files: dict[str, bytes] = {}
    for rel, data in extras.files.items():
        path = PurePosixPath(rel)
        if (
            not rel
            or "\\" in rel
            or path.is_absolute()
            or any(part in {"", ".", ".."} for part in rel.split("/"))
            or rel in _OWN_FILES
        ):
            raise BuildError(f"cannot add {rel!r} to {dist_info}: not a new relative file path")
        files[f"{dist_info}/{rel}"] = bytes(data)
    return files


def _record_hash(digest: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def finalize_wheel(  # noqa: PLR0912, PLR0915  one pass over the wheel's members
    built: Path,
    dest_dir: Path,
    *,
    build_tag: int = 0,
    source_date_epoch: int = 0,
    extras: WheelExtras | None = None,
) -> Path:
    """Rewrite the wheel a backend built into ``dest_dir`` as a deterministic, build-tagged one.

    The result is ``<dist>-<version>-<build_tag>-<tags>.whl`` (name, version and tags spelled
    as in ``built``), its ``WHEEL`` has a ``Build: <build_tag>`` line, its ``RECORD`` is
    regenerated (RECORD signatures are dropped: they no longer match) and the zip is
    deterministic: no directory entries, files sorted with the ``.dist-info`` ones last and
    ``RECORD`` the very last, dates from ``source_date_epoch`` (clamped to the zip range),
    modes 0o644 or 0o755, deflated. The same input gives the same bytes. Returns the path.

    ``extras`` (see ``wheel_extras``) adds headers to ``METADATA`` after its last header (one
    already there with the same value is kept once) and files under the ``.dist-info``
    directory (mode 0o644; one of the same name is replaced; RECORD lists them).
    """
    if build_tag < 0:
        raise BuildError(f"build tag must be a non-negative integer, not {build_tag}")
    try:
        parse_wheel_filename(built.name)
    except InvalidWheelFilename as exc:
        raise BuildError(f"the backend produced a wheel with an invalid name: {exc}") from exc
    parts = built.name[: -len(".whl")].split("-")
    filename = "-".join([parts[0], parts[1], str(build_tag), *parts[-3:]]) + ".whl"
    date_time = _zip_date_time(source_date_epoch)

    dest_dir.mkdir(parents=True, exist_ok=True)
    final = dest_dir / filename
    fd, tmp_name = tempfile.mkstemp(dir=dest_dir, prefix=f".{filename}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with (
            os.fdopen(fd, "wb") as raw,
            zipfile.ZipFile(built) as zin,
            zipfile.ZipFile(raw, "w", compression=zipfile.ZIP_DEFLATED) as zout,
        ):
            infos = {}
            for info in zin.infolist():
                if info.is_dir():
                    continue
                if info.filename in infos:
                    raise BuildError(f"{built.name} lists {info.filename} twice")
                infos[info.filename] = info
            dist_info = _dist_info_dir(built, infos, "WHEEL")
            wheel_file, record_file = f"{dist_info}/WHEEL", f"{dist_info}/RECORD"
            metadata_file = f"{dist_info}/METADATA"
            added = _check_extras(extras, dist_info) if extras is not None else {}
            headers = extras.metadata_headers if extras is not None else ()
            if headers and metadata_file not in infos:
                raise BuildError(f"{built.name} has no {metadata_file} to add headers to")
            dropped = {record_file, *(f"{dist_info}/{sig}" for sig in _SIGNATURES)}
            order = sorted(
                {n for n in infos if n not in dropped} | set(added),
                key=lambda n: (n.startswith(f"{dist_info}/"), n),
            )

            def entry(name: str, mode: int) -> zipfile.ZipInfo:
                zinfo = zipfile.ZipInfo(name, date_time)
                zinfo.compress_type = zipfile.ZIP_DEFLATED
                zinfo.create_system = 3  # Unix, so installers honour the mode
                zinfo.external_attr = mode << 16
                return zinfo

            rows: list[tuple[str, str, str]] = []
            for name in order:
                executable = name not in added and (infos[name].external_attr >> 16) & 0o111
                digest, size = hashlib.sha256(), 0
                with zout.open(entry(name, 0o755 if executable else 0o644), "w") as out:
                    source: IO[bytes]
                    if name in added:
                        source = io.BytesIO(added[name])
                    elif name == wheel_file:
                        text = zin.read(name).decode("utf-8")
                        source = io.BytesIO(_with_build_line(text, build_tag).encode("utf-8"))
                    elif name == metadata_file and headers:
                        text = zin.read(name).decode("utf-8")
                        source = io.BytesIO(_with_headers(text, headers).encode("utf-8"))
                    else:
                        source = zin.open(name)
                    with source:
                        while chunk := source.read(_CHUNK):
                            digest.update(chunk)
                            size += len(chunk)
                            out.write(chunk)
                rows.append((name, _record_hash(digest.digest()), str(size)))
            rows.append((record_file, "", ""))
            record = io.StringIO()
            csv.writer(record, lineterminator="\n").writerows(rows)
            zout.writestr(entry(record_file, 0o644), record.getvalue().encode("utf-8"))
        os.replace(tmp, final)
    except (zipfile.BadZipFile, UnicodeDecodeError) as exc:
        tmp.unlink(missing_ok=True)
        raise unreadable_wheel(built, exc) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return final


def unreadable_wheel(wheel: Path, exc: BaseException) -> BuildError:
    """The error for a wheel file that is not a readable wheel, naming its package and
    version (from its file name) and what to do."""
    package = version = None
    with contextlib.suppress(InvalidWheelFilename, InvalidVersion):
        name, parsed, _, _ = parse_wheel_filename(wheel.name)
        package, version = str(name), str(parsed)
    return BuildError(
        f"cannot read the wheel {wheel}: {exc}; it is not a valid wheel: delete it and run "
        "the command again (it will be built or downloaded again)",
        package=package,
        version=version,
    )


def read_metadata(wheel: Path) -> email.message.Message:
    """The parsed ``.dist-info/METADATA`` of ``wheel``; BuildError if it is missing."""
    try:
        with zipfile.ZipFile(wheel) as zf:
            dist_info = _dist_info_dir(wheel, zf.namelist(), "METADATA")
            data = zf.read(f"{dist_info}/METADATA")
    except (zipfile.BadZipFile, OSError) as exc:
        raise unreadable_wheel(wheel, exc) from exc
    return email.message_from_bytes(data)


def install_requirements(
    metadata: email.message.Message, *, extras: Iterable[str] = ()
) -> list[Requirement]:
    """The ``Requires-Dist`` entries that apply to this interpreter with the given extras.

    A requirement without a marker always applies; one with a marker applies when it holds
    for the running interpreter with ``extra`` set to any requested extra (or to ``""`` when
    none is requested). File order, without duplicates.
    """
    package = str(metadata.get("Name", "")) or None
    wanted: list[str] = sorted({canonicalize_name(e) for e in extras}) or [""]
    found: dict[str, Requirement] = {}
    for line in metadata.get_all("Requires-Dist") or []:
        try:
            req = Requirement(str(line))
        except InvalidRequirement as exc:
            raise BuildError(
                f"the wheel metadata has an invalid Requires-Dist {str(line)!r}: {exc}",
                package=package,
            ) from exc
        try:
            holds = req.marker is None or any(req.marker.evaluate({"extra": e}) for e in wanted)
        except UndefinedEnvironmentName as exc:
            raise BuildError(
                f"the wheel metadata has a marker that cannot be evaluated: {str(line)!r}",
                package=package,
            ) from exc
        if holds:
            found.setdefault(str(req), req)
    return list(found.values())


def wheel_top_level_modules(wheel: Path) -> list[str]:
    """Sorted top-level import names: ``top_level.txt`` if present, else from the file list.

    Without ``top_level.txt``: directories holding an ``__init__.py`` and top-level ``.py``
    files or extension modules, ignoring ``.dist-info`` and ``.data``.
    """
    try:
        with zipfile.ZipFile(wheel) as zf:
            names = zf.namelist()
            try:
                dist_info: str | None = _dist_info_dir(wheel, names, "top_level.txt")
            except BuildError:
                dist_info = None
            listed = zf.read(f"{dist_info}/top_level.txt") if dist_info else None
    except (zipfile.BadZipFile, OSError) as exc:
        raise unreadable_wheel(wheel, exc) from exc
    if listed is not None:
        return sorted({m.strip() for m in listed.decode("utf-8").splitlines() if m.strip()})
    modules: set[str] = set()
    for name in names:
        parts = name.split("/")
        if parts[0].endswith((".dist-info", ".data")):
            continue
        if len(parts) == 2 and parts[1] == "__init__.py":
            modules.add(parts[0])
        elif len(parts) == 1 and parts[0].endswith((".py", ".so", ".pyd")):
            modules.add(parts[0].split(".", 1)[0])
    return sorted(modules)
