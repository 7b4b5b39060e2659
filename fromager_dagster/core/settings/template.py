"""Templates in settings values: ``$VAR``, ``${VAR}``, ``${VAR:-default}``, ``$$``."""

from __future__ import annotations

import re
from collections.abc import Mapping

_PLACEHOLDER = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|(?P<named>[_a-z][_a-z0-9]*)"
    r"|\{(?P<braced>[_a-z][_a-z0-9]*)(?::-(?P<default>[^}:]*))?\}"
    r"|(?P<invalid>))",
    re.IGNORECASE | re.ASCII,
)
SOURCE_NAMES = frozenset({"version", "canonicalized_name"})


def template_problem(value: str, *, names: frozenset[str] | None = None) -> str | None:
    """Why ``value`` is not a valid template, or ``None`` when it is.

    Without ``names`` (environment values) any variable may be used, with ``${VAR:-default}``,
    but the only ``__dunder__`` name is ``__version__``. With ``names`` (download_source) only
    those names are defined and defaults are not supported.
    """
    for match in _PLACEHOLDER.finditer(value):
        pos = match.start()
        if match["invalid"] is not None:
            if value.startswith("${", pos) and "}" not in value[pos:]:
                return f"unclosed '${{' at position {pos}"
            return (
                f"bad placeholder {value[pos : pos + 12]!r} at position {pos}: expected $NAME, "
                "${NAME}, ${NAME:-default}, or $$ for a literal $"
            )
        name = match["named"] or match["braced"]
        if name is None:
            continue
        if names is not None:
            if name not in names or match["default"] is not None:
                allowed = " or ".join(f"${{{n}}}" for n in sorted(names))
                return f"unknown placeholder {match.group(0)!r}: expected {allowed}"
        elif name.startswith("__") and name.endswith("__") and name != "__version__":
            return f"unknown variable ${{{name}}}: the only __name__ variable is ${{__version__}}"
    return None


def expand_template(value: str, scope: Mapping[str, str]) -> str:
    """Expand ``$VAR``, ``${VAR}``, ``${VAR:-default}`` and ``$$`` in a validated template.

    A variable missing from ``scope`` takes its default (the first one written for that name
    in ``value``, as fromager does), else expands to ``''`` like a shell.
    """
    defaults: dict[str, str] = {}
    for match in _PLACEHOLDER.finditer(value):
        if match["default"] is not None:
            defaults.setdefault(match["braced"], match["default"])

    def substitute(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["named"] or match["braced"]
        if name is None:
            return match.group(0)
        return scope[name] if name in scope else defaults.get(name, "")

    return _PLACEHOLDER.sub(substitute, value)


def fill_source_template(template: str | None, name: str, version: str) -> str | None:
    if template is None:
        return None
    return expand_template(template, {"version": version, "canonicalized_name": name})
