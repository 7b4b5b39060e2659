"""A package's log: one file across discovery and the build, a header per stage, and each
process's output capped with its head and tail kept."""

from __future__ import annotations

from pathlib import Path

#: MiB of one process's output a log keeps by default (half from its start, half from its end).
DEFAULT_KEEP_LOG_MB = 16

_CUT = "\n[fromager-dagster: {cut} bytes of output cut here; the first and last {kept} kept]\n"


def start_stage(log: Path, stage: str, *, fresh: bool = False) -> None:
    """Write the header of ``stage`` (``"discovery of a==1 from URL"``...) to ``log``:
    appended after what earlier stages wrote, or (``fresh``) as the first line of a new log."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w" if fresh else "a", encoding="utf-8") as out:
        if not fresh and out.tell() > 0:
            out.write("\n")
        out.write(f"# ===== {stage} =====\n")


def keep_head_and_tail(log: Path, start: int, keep_bytes: int) -> bool:
    """Cut what was written to ``log`` after byte ``start`` down to ``keep_bytes``: its first
    and last halves, with a line saying how much was cut between them. True when it cut."""
    try:
        size = log.stat().st_size
    except OSError:
        return False
    written = size - start
    if keep_bytes <= 0 or written <= keep_bytes:
        return False
    head = keep_bytes // 2
    tail = keep_bytes - head
    with log.open("r+b") as out:
        out.seek(size - tail)
        end = out.read(tail)
        out.seek(start + head)
        out.write(_CUT.format(cut=written - head - tail, kept=_size(head)).encode())
        out.write(end)
        out.truncate()
    return True


def _size(n: int) -> str:
    return f"{n // (1024 * 1024)} MiB" if n >= 1024 * 1024 else f"{n} bytes"
