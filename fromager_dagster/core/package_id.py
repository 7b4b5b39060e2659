"""One version of one package: the ``name==version`` that graph keys, logs and records name."""

from __future__ import annotations

from dataclasses import dataclass

from packaging.utils import InvalidName, NormalizedName, canonicalize_name
from packaging.version import InvalidVersion, Version

#: What separates the name from the version in a key.
SEPARATOR = "=="


@dataclass(frozen=True, order=True)
class PackageId:
    """A canonical package name and a version; ordered by name, then version.

    Its :attr:`key` (also its ``str``) is ``name==version``, the key of a graph.json node:
    the name canonicalized, the version as :class:`~packaging.version.Version` prints it.
    """

    name: NormalizedName
    version: Version

    @classmethod
    def of(cls, name: str, version: str | Version) -> PackageId:
        """``name`` canonicalized and ``version`` parsed; ValueError names what is wrong."""
        try:
            parsed = version if isinstance(version, Version) else Version(version)
        except InvalidVersion as exc:
            raise ValueError(f"{name}: {version!r} is not a valid version") from exc
        return cls(canonicalize_name(name), parsed)

    @classmethod
    def parse(cls, key: str) -> PackageId:
        """The package-version of a ``name==version`` key; ValueError names the key."""
        name, sep, version = key.partition(SEPARATOR)
        if not sep:
            raise ValueError(f"{key!r} is not a name==version key (no ==)")
        try:
            canonical = canonicalize_name(name, validate=True)
            return cls(canonical, Version(version))
        except (InvalidName, InvalidVersion, ValueError) as exc:
            raise ValueError(f"{key!r} is not a name==version key ({exc})") from exc

    @property
    def key(self) -> str:
        return f"{self.name}{SEPARATOR}{self.version}"

    def __str__(self) -> str:
        return self.key


def package_key(name: str, version: str | Version) -> str:
    """``name==version`` of a name and a version taken as written (a graph.json file's node,
    an error's fields): the key of :class:`PackageId` when the name is canonical and the
    version normalized, without parsing either."""
    return f"{name}{SEPARATOR}{version}"
