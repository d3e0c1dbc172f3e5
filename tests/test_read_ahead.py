"""The read-ahead warms a window of the tests about to run: the whole window in a serial session, and about
what a pytest-xdist worker runs of it when the scheduler hands it runs of a few tests."""

from __future__ import annotations

from pathlib import Path

from llm_replay.engine.read_ahead import WINDOW, ReadAhead
from llm_replay.stores.sqlite import SQLiteCache


class WindowsSeen(SQLiteCache):
    """A read-only cassette that remembers each window it was warmed for."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, readonly=True)
        self.windows: list[list[str]] = []

    def warm(self, test_ids):
        self.windows.append(list(test_ids))
        super().warm(test_ids)


ORDER = [f"t.py::test[{n}]" for n in range(4 * WINDOW)]


def test_a_serial_session_warms_whole_windows_in_order(tmp_path: Path) -> None:
    store, ahead = WindowsSeen(tmp_path / "c.sqlite3"), ReadAhead(ORDER)
    for test in ORDER:
        ahead.before(store, test)
    assert store.windows == [ORDER[start : start + WINDOW] for start in range(0, len(ORDER), WINDOW)]
    ahead.before(store, "t.py::test_asked_for_by_name")  # outside the collected order: warmed alone
    assert store.windows[-1] == ["t.py::test_asked_for_by_name"]
    store.close()


def test_a_worker_given_runs_of_a_few_tests_reads_about_what_it_runs(tmp_path: Path) -> None:
    store, ahead = WindowsSeen(tmp_path / "c.sqlite3"), ReadAhead(ORDER)
    ran = [test for start in range(0, len(ORDER), 8) for test in ORDER[start : start + 3]]  # 3 of every 8: xdist's other workers run the rest
    for test in ran:
        ahead.before(store, test)
    warmed = [test for window in store.windows for test in window]
    assert set(ran) <= set(warmed), "every test it ran was warmed"
    assert len(warmed) <= 2 * len(ran) + WINDOW, f"it read {len(warmed)} tests' recordings ahead to run {len(ran)}"
    store.close()
