"""Applying the overrides folder's patch files to an unpacked source tree with GNU patch."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from fromager_dagster.core.errors import PatchError
from fromager_dagster.core.package_id import package_key

#: ``--forward``: a patch that looks already applied is a failure, not a silent reversal.
#: No ``.orig`` backups or ``.rej`` files: they would end up in the re-packed sdist.
_OPTIONS = ("-p1", "--batch", "--forward", "--no-backup-if-mismatch", "--reject-file=-")
_FILE = re.compile(r"^(?:checking|patching) file (?P<file>.+?)\s*$")
_HUNK = re.compile(r"^Hunk #(?P<hunk>\d+) FAILED at (?P<line>\d+)")
_DELETE = re.compile(r"would delete the file (?P<file>.+?),?$")


def _patch_program() -> str:
    for candidate in ("/usr/bin/patch", shutil.which("patch")):
        if candidate and Path(candidate).is_file():
            return candidate
    raise PatchError("GNU patch is not installed; install it (apt-get install patch)")


def _run(program: str, patch: Path, source_dir: Path, *, dry_run: bool) -> tuple[int, str]:
    env = {**os.environ, "LC_ALL": "C"}
    env.pop("POSIXLY_CORRECT", None)
    args = [program, *_OPTIONS, *(["--dry-run"] if dry_run else []), "-i", str(patch)]
    proc = subprocess.run(
        args,
        cwd=source_dir,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        timeout=300,
        check=False,
    )
    return proc.returncode, proc.stdout


def failure_reasons(output: str) -> list[str]:
    """What went wrong, from GNU patch's output: each failed hunk with its file and line."""
    reasons: list[str] = []
    current = "?"
    lines = output.splitlines()
    for index, line in enumerate(lines):
        if found := _FILE.match(line):
            current = found["file"]
        elif found := _HUNK.match(line):
            reasons.append(f"hunk #{found['hunk']} FAILED at line {found['line']} of {current}")
        elif line.startswith("Reversed (or previously applied) patch detected"):
            reasons.append(f"{current} looks already patched (reversed or previously applied)")
        elif found := _DELETE.search(line):
            reasons.append(f"it deletes {found['file']}, which does not exist")
        elif line.startswith("can't find file to patch"):
            target = next((t[5:] for t in lines[index:] if t.startswith("|--- ")), "")
            target = target.split("\t")[0].strip().partition("/")[2] or "a file"  # -p1
            reasons.append(f"{target} does not exist (wrong -p level or file?)")
    if not reasons:
        first = next((line.strip() for line in lines if line.strip()), "no output")
        reasons.append(first.removeprefix("patch: **** "))
    return reasons


def apply_patches(
    source_dir: Path, patches: Sequence[Path], *, log: Path, package: str, version: str
) -> list[Path]:
    """Apply ``patches`` in order to ``source_dir`` with ``patch -p1``; return those applied.

    Each patch is first tried with ``--dry-run``, so one that does not apply leaves the tree
    as the previous patch left it. ``applying patch <file>`` and patch's output are appended
    to ``log``. A failure raises PatchError naming the patch file, the failed hunks and
    ``package==version``.
    """
    if not patches:
        return []
    program = _patch_program()
    log.parent.mkdir(parents=True, exist_ok=True)
    applied: list[Path] = []
    with log.open("a", encoding="utf-8") as out:
        for patch in patches:
            out.write(f"applying patch {patch}\n")
            out.flush()
            code, output = _run(program, patch.resolve(), source_dir, dry_run=True)
            if code == 0:
                code, output = _run(program, patch.resolve(), source_dir, dry_run=False)
            out.write(output)
            out.flush()
            if code != 0:
                reasons = "; ".join(failure_reasons(output))
                raise PatchError(
                    f"patch {patch} does not apply to {package_key(package, version)}: {reasons}; "
                    "update the patch or move it to a folder for the versions it fits",
                    package=package,
                    version=version,
                    log_path=str(log),
                )
            applied.append(patch)
    return applied
