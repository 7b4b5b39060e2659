"""Bootstrap: discover and build a whole dependency tree from source in parallel.

Its public names are below; each is imported from its module when first used, so that
importing one module of the engine does not import every package it names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fromager_dagster.core.public_names import lazy_names

if TYPE_CHECKING:
    from .failures import FailureRecord, classify, write_failure_report
    from .run import BootstrapFailed, BootstrapOptions, BootstrapResult, bootstrap
    from .second_pass import SecondPass, blocked_failures, plan_second_pass

#: The public names, and the module of this package that defines each.
_MODULES = {
    "BootstrapFailed": "run",
    "BootstrapOptions": "run",
    "BootstrapResult": "run",
    "FailureRecord": "failures",
    "SecondPass": "second_pass",
    "blocked_failures": "second_pass",
    "bootstrap": "run",
    "classify": "failures",
    "plan_second_pass": "second_pass",
    "write_failure_report": "failures",
}
__all__ = [
    "BootstrapFailed",
    "BootstrapOptions",
    "BootstrapResult",
    "FailureRecord",
    "SecondPass",
    "blocked_failures",
    "bootstrap",
    "classify",
    "plan_second_pass",
    "write_failure_report",
]
__getattr__ = lazy_names(__name__, _MODULES)
