"""Running an ``add_extra_metadata_to_wheels`` override on a built wheel's ``.dist-info``."""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path

from packaging.utils import NormalizedName
from packaging.version import Version

from fromager_dagster.core.errors import BuildError
from fromager_dagster.core.plugins.protocols import AddExtraMetadataToWheels
from fromager_dagster.core.settings.overrides import Settings

#: Where ``add_extra_metadata`` writes what an ``add_extra_metadata_to_wheels`` override returns.
PLUGIN_METADATA_FILE = "fromager-dagster-plugin-metadata.json"


def add_extra_metadata(
    built_wheel: Path,
    plugin: AddExtraMetadataToWheels,
    *,
    name: NormalizedName,
    version: Version,
    source_dir: Path,
    settings: Settings,
    extra_environ: Mapping[str, str],
    log: Path,
) -> Path:
    """Let ``plugin`` add to the ``.dist-info`` of ``built_wheel`` (rewritten in place).

    The plugin sees the unpacked ``.dist-info`` folder and may add or change files there;
    data it returns is written to :data:`PLUGIN_METADATA_FILE` (sorted JSON). Call it on the
    backend's wheel before ``wheels.finalize_wheel``, which regenerates RECORD.
    """
    try:
        with zipfile.ZipFile(built_wheel) as zin:
            infos = [i for i in zin.infolist() if not i.is_dir()]
            dist_infos = sorted(
                {
                    top
                    for top, _, rest in (i.filename.partition("/") for i in infos)
                    if top.endswith(".dist-info") and rest == "WHEEL"
                }
            )
            if len(dist_infos) != 1:
                raise BuildError(
                    f"{built_wheel.name} has no single .dist-info folder",
                    package=name,
                    version=str(version),
                    log_path=str(log),
                )
            top = dist_infos[0]
            with tempfile.TemporaryDirectory(prefix="plugin-metadata-") as tmp:
                dist_info_dir = Path(tmp) / top
                dist_info_dir.mkdir()
                for info in infos:
                    if info.filename.startswith(f"{top}/"):
                        target = Path(tmp) / info.filename
                        target.parent.mkdir(parents=True, exist_ok=True)
                        target.write_bytes(zin.read(info))
                data = plugin(
                    name=name,
                    version=version,
                    source_dir=source_dir,
                    dist_info_dir=dist_info_dir,
                    settings=settings,
                    extra_environ=extra_environ,
                    log=log,
                )
                if data:
                    (dist_info_dir / PLUGIN_METADATA_FILE).write_text(
                        json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8"
                    )
                _rewrite(built_wheel, zin, infos, top, dist_info_dir)
    except zipfile.BadZipFile as exc:
        raise BuildError(
            f"cannot read the wheel {built_wheel.name}: {exc}", package=name, version=str(version)
        ) from exc
    return built_wheel


def _rewrite(
    wheel: Path,
    zin: zipfile.ZipFile,
    infos: list[zipfile.ZipInfo],
    top: str,
    dist_info_dir: Path,
) -> None:
    """Write ``wheel`` again: its members outside ``top`` as they were, ``top`` from disk."""
    original = {i.filename: i for i in infos}
    fd, tmp_name = tempfile.mkstemp(dir=wheel.parent, prefix=f".{wheel.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as raw, zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as zout:
            for info in infos:
                if not info.filename.startswith(f"{top}/"):
                    zout.writestr(info, zin.read(info))
            for path in sorted(p for p in dist_info_dir.rglob("*") if p.is_file()):
                arcname = f"{top}/{path.relative_to(dist_info_dir).as_posix()}"
                info = original.get(arcname) or zipfile.ZipInfo(arcname, (1980, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                if arcname not in original:
                    info.external_attr = 0o644 << 16
                zout.writestr(info, path.read_bytes())
        os.replace(tmp, wheel)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
