"""The pruning rule alone: every owner passed, in a run begun after the recording, without using it."""

from __future__ import annotations

from pathlib import Path

from llm_replay.model.runs import RunOutcome, TestPass, prunable, written_before_run

A, B = ("a" * 32, 0), ("b" * 32, 0)
EARLIER, LATER = "2026-01-01T00:00:00+00:00", "2026-01-02T00:00:00+00:00"


def _pass(*used) -> TestPass:
    return TestPass("run", LATER, frozenset(used))


def test_a_recording_goes_only_when_every_owner_passed_without_it(tmp_path: Path) -> None:
    (tmp_path / "t.py").write_text("")
    index = [(A, ("t.py::one", "t.py::two"), EARLIER), (B, ("t.py::one",), EARLIER)]
    assert prunable(index, {"t.py::one": _pass()}, tmp_path) == [B], "two has not passed yet: A stays"
    assert prunable(index, {"t.py::one": _pass(), "t.py::two": _pass()}, tmp_path) == [A, B]
    assert prunable(index, {"t.py::one": _pass(), "t.py::two": _pass(A)}, tmp_path) == [B]
    assert prunable(index, {"t.py::one": _pass(), "t.py::other": _pass(B)}, tmp_path) == [], "a test whose pass used B owns it too"
    assert prunable([(A, (), EARLIER)], {"t.py::one": _pass()}, tmp_path) == [], "a recording no test owns goes only when named"
    assert prunable(index, {"t.py::one": _pass(), "t.py::two": _pass()}, tmp_path, among={"t.py::two"}) == [A]
    assert prunable([(A, ("t.py::one",), LATER)], {"t.py::one": _pass()}, tmp_path) == [], "written after that pass began"


def test_owners_whose_file_is_gone_hold_nothing(tmp_path: Path) -> None:
    assert prunable([(A, ("deleted.py::test",), EARLIER)], {}, tmp_path) == [A]


def test_an_imported_recording_is_never_prunable_even_when_its_source_file_is_gone(tmp_path: Path) -> None:
    """``llm-replay import`` stores the source YAML's path as the owner: no node id, so no test that can pass without it."""
    assert prunable([(A, ("vcr_cassettes/test_chat.yaml",), EARLIER)], {}, tmp_path) == []
    assert prunable([(A, ("/elsewhere/test_chat.yaml", "t.py::one"), EARLIER)], {"t.py::one": _pass()}, tmp_path) == [], "replayed since"


def test_a_pass_counts_only_for_recordings_written_a_full_stamp_unit_before_its_run_began() -> None:
    assert written_before_run("2026-01-01T00:00:00+00:00", "2026-01-01T00:00:01+00:00")
    assert not written_before_run("2026-01-01T00:00:00+00:00", "2026-01-01T00:00:00.900000+00:00"), "stamped to the second"
    assert written_before_run("2026-01-01T00:00:00.100+00:00", "2026-01-01T00:00:00.101000+00:00"), "to the millisecond"
    assert not written_before_run("2026-01-01T00:00:00.100+00:00", "2026-01-01T00:00:00.100900+00:00")
    assert not written_before_run("", LATER) and not written_before_run("2026-01-01T00:00:00", LATER), "unreadable or naive: kept"


def test_a_test_passes_when_every_phase_passed_and_a_whole_file_shows_deleted_tests() -> None:
    outcome = RunOutcome()
    outcome.add_collected(["t.py::ok", "t.py::bad", "t.py::skipped", "u.py::x"], narrowed=["u.py"], broken=[])
    for nodeid, call in (("t.py::ok", "passed"), ("t.py::bad", "passed"), ("t.py::skipped", "skipped")):
        outcome.add_report(nodeid, "setup", "passed")
        outcome.add_report(nodeid, "call", call)
        outcome.add_report(nodeid, "teardown", "failed" if nodeid == "t.py::bad" else "passed", (((A[0], 0, 2),), False, False, True))
    assert outcome.passes() == {"t.py::ok": frozenset({A})}
    assert outcome.replays() == {A: 6}
    assert outcome.vanished(["t.py::renamed", "u.py::other", "t.py::ok"]) == {"t.py::renamed"}, "u.py was narrowed with ::"
