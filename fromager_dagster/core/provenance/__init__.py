"""Proof of what was built from what: provenance, signatures, SBOMs, verification.

Its public names are below; each is imported from its module when first used, so that
importing one module of the engine does not import every package it names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fromager_dagster.core.public_names import lazy_names

if TYPE_CHECKING:
    from .collection_sbom import write_collection_sbom
    from .reproducibility import read_record, rebuild_and_compare, record_path, recorded
    from .signing import SIGNING_KEY_ENV, load_public_key
    from .statement import RunInfo, provenance_of
    from .verify import verify_output

#: The public names, and the module of this package that defines each.
_MODULES = {
    "RunInfo": "statement",
    "SIGNING_KEY_ENV": "signing",
    "load_public_key": "signing",
    "provenance_of": "statement",
    "read_record": "reproducibility",
    "rebuild_and_compare": "reproducibility",
    "record_path": "reproducibility",
    "recorded": "reproducibility",
    "verify_output": "verify",
    "write_collection_sbom": "collection_sbom",
}
__all__ = [
    "SIGNING_KEY_ENV",
    "RunInfo",
    "load_public_key",
    "provenance_of",
    "read_record",
    "rebuild_and_compare",
    "record_path",
    "recorded",
    "verify_output",
    "write_collection_sbom",
]
__getattr__ = lazy_names(__name__, _MODULES)
