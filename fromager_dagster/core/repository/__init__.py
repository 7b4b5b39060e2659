"""The local repository: what is built, build records and reuse, pre-built wheels, install check.

Its public names are below; each is imported from its module when first used, so that
importing one module of the engine does not import every package it names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fromager_dagster.core.public_names import lazy_names

if TYPE_CHECKING:
    from .built import (
        BuiltWheel,
        build_or_reuse,
        find_source,
        record_built_wheel,
        reusable_wheel,
        take_prebuilt,
        trusted_wheel,
    )
    from .install_check import check_installs
    from .prebuilt import PrebuiltDownload, download_prebuilt_wheel, prebuilt_fallback
    from .records import WheelRepository, reusable_build, write_record

#: The public names, and the module of this package that defines each.
_MODULES = {
    "BuiltWheel": "built",
    "PrebuiltDownload": "prebuilt",
    "WheelRepository": "records",
    "build_or_reuse": "built",
    "check_installs": "install_check",
    "download_prebuilt_wheel": "prebuilt",
    "find_source": "built",
    "prebuilt_fallback": "prebuilt",
    "record_built_wheel": "built",
    "reusable_build": "records",
    "reusable_wheel": "built",
    "take_prebuilt": "built",
    "trusted_wheel": "built",
    "write_record": "records",
}
__all__ = [
    "BuiltWheel",
    "PrebuiltDownload",
    "WheelRepository",
    "build_or_reuse",
    "check_installs",
    "download_prebuilt_wheel",
    "find_source",
    "prebuilt_fallback",
    "record_built_wheel",
    "reusable_build",
    "reusable_wheel",
    "take_prebuilt",
    "trusted_wheel",
    "write_record",
]
__getattr__ = lazy_names(__name__, _MODULES)
