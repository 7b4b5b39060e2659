"""GatheredLog: engine progress lines reach the run's log in few events, none lost."""

from __future__ import annotations

import threading
import time

from fromager_dagster.defs.progress_log import GatheredLog


def test_lines_in_quick_succession_leave_together_in_order() -> None:
    events: list[str] = []
    with GatheredLog(events.append, interval=0.2) as log:
        for i in range(50):
            log.line(f"reused pkg{i}==1.0")
    lines = [line for event in events for line in event.splitlines()]
    assert lines == [f"reused pkg{i}==1.0" for i in range(50)]
    assert 1 <= len(events) <= 3  # the first line at once, the rest gathered


def test_first_line_after_a_quiet_spell_is_not_held_back() -> None:
    events: list[tuple[float, str]] = []
    with GatheredLog(lambda text: events.append((time.monotonic(), text)), interval=5) as log:
        sent = time.monotonic()
        log.line("build slow==1.0")
        assert events and events[0][1] == "build slow==1.0"
        assert events[0][0] - sent < 1
        log.line("built slow==1.0 1.0s")
        assert len(events) == 1  # within the interval: held until the next flush
    assert [text for _, text in events] == ["build slow==1.0", "built slow==1.0 1.0s"]


def test_lines_from_many_threads_all_arrive() -> None:
    events: list[str] = []
    with GatheredLog(events.append, interval=0.05) as log:

        def work(n: int) -> None:
            for i in range(100):
                log.line(f"t{n} {i}")

        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    lines = [line for event in events for line in event.splitlines()]
    assert sorted(lines) == sorted(f"t{n} {i}" for n in range(4) for i in range(100))
    for n in range(4):  # each thread's lines keep their order
        mine = [line for line in lines if line.startswith(f"t{n} ")]
        assert mine == [f"t{n} {i}" for i in range(100)]
