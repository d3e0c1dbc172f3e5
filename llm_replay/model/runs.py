"""What each test of a run used and whether it passed, and which recordings pruning may delete.

Ownership is judged per test id, never per file or per selection: a recording may go only when every
test that owns it passed, in a run that began after it was written, without using it. So a run of one
node id, a class, a parametrize id, a directory, ``-k``, ``-m``, ``--lf``, ``--deselect`` or xdist can
only ever free what the tests it ran no longer use. Node ids are relative to pytest's rootdir, so a run
from a subdirectory names tests as a run from the top does.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Collection, Iterable, Mapping

if TYPE_CHECKING:  # only named in signatures: the pytest plugin loads this module at start-up
    from .interaction import Key

# recorded_at is kept to the millisecond (to the second in older cassettes): a recording stamped 12:00:00 may have
# been written at 12:00:00.99.
_STAMP_RESOLUTION = timedelta(milliseconds=1)
_OLD_STAMP_RESOLUTION = timedelta(seconds=1)


class RunRecord:
    """One finished run as the bookkeeping remembers it.

    The records here are plain classes: the pytest plugin loads this module at start-up, and defining a NamedTuple
    costs that ~0.5 M instructions (a frozen dataclass more)."""

    __slots__ = ("uid", "started_at", "finished_at", "passed", "checkout")

    def __init__(self, uid: str, started_at: str, finished_at: str, passed: int, checkout: tuple[str, str] | None = None) -> None:
        self.uid, self.started_at, self.finished_at = uid, started_at, finished_at
        self.passed = passed  # tests that passed (setup, call and teardown)
        self.checkout = checkout  # the git branch and commit checked out (engine.history), None outside git


class TestPass:
    """A test's latest pass: the run it was in, when that run began, the recordings the test used, and the git branch
    and commit it ran on (None outside git, or in bookkeeping older than that)."""

    __test__ = False  # not a pytest test class
    __slots__ = ("run_uid", "started_at", "used", "checkout")

    def __init__(self, run_uid: str, started_at: str, used: frozenset[Key], checkout: tuple[str, str] | None = None) -> None:
        self.run_uid, self.started_at, self.used, self.checkout = run_uid, started_at, used, checkout


class TestOutcome:
    """One test of this run as its reports describe it (RunOutcome.tests)."""

    __test__ = False
    __slots__ = ("passed", "called", "used", "refreshed", "writes")

    def __init__(self, passed: bool, called: bool, used: tuple[Key, ...], refreshed: bool, writes: bool) -> None:
        self.passed = passed  # every phase reported so far passed
        self.called = called  # its call phase ran and passed
        self.used = used  # recordings it recorded or replayed
        self.refreshed = refreshed  # it ran in refresh mode: what it used is all it owns now
        self.writes = writes  # it ran in a mode that writes the cassette

    @property
    def complete_pass(self) -> bool:
        """Setup, call and teardown all passed (a skip or an xfail is no pass)."""
        return self.passed and self.called


def _complete_pass(values: tuple) -> bool:
    """``TestOutcome.complete_pass`` of a test's plain tuple (the books keep those): passed, and called."""
    return values[0] and values[1]


# What llm_cache attaches to a test's teardown report, for pytest-xdist to carry to the controller (a plain tuple:
# execnet sends no classes of ours): each recording it recorded (count 0) or replayed (fingerprint, occurrence,
# count), whether it refreshed, whether it ran in a mode that writes the cassette, and whether it read the cassette at
# all (mode off does not: its pass says nothing of what it needs, and the books leave it out).
Usage = tuple[tuple[tuple[str, int, int], ...], bool, bool, bool]


_NOT_REPORTED = (True, False, (), False, False)  # TestOutcome's values before any report
_PHASES = ("setup", "call", "teardown")


def changes_nothing(when: str, outcome: str, usage: Usage | None) -> bool:
    """Whether a report leaves the run's books as they are: a passing setup, or a passing teardown that used nothing
    (a test enters the books with its call's report, which every test that got past its setup has)."""
    return outcome == "passed" and when != "call" and not usage


class RunOutcome:
    """The tests of one run, filled from pytest's reports (on the xdist controller: from every worker's). Books equal
    to themselves only: a plain class, which the plugin's import defines without generating dataclass methods."""

    def __init__(self) -> None:
        # Each test as a plain tuple of TestOutcome's values: a session keeps one per test, and the garbage collector
        # stops looking at a plain tuple of strings and numbers (not at a subclass), so 10,000 add nothing to its
        # full collections.
        self._tests: dict[str, tuple] = {}
        self.collected: set[str] = set()  # every test collected, before deselection
        self.whole_files: set[str] = set()  # files collected whole: a test of theirs not collected is gone
        self._replays: Counter[Key] = Counter()  # every test's replays of each recording, added up (0: recorded)
        # tests whose pytest-xdist worker died running them (reported in none of pytest's phases): what they used never came
        self.crashed: list[str] = []
        self.interrupted = False  # Ctrl-C (or pytest.exit): the test it stopped reported nothing of what it used

    def add_collected(self, nodeids: Iterable[str], narrowed: Iterable[str], broken: Iterable[str]) -> None:
        """The tests collected before deselection; files named with ``::`` (narrowed) or that failed to collect are not whole."""
        for nodeid in nodeids:
            self.collected.add(nodeid)
            self.whole_files.add(nodeid.split("::", 1)[0])
        self.whole_files -= {*narrowed, *broken}

    def vanished(self, owners: Iterable[str]) -> set[str]:
        """Owners this run shows no longer exist: their file was collected whole and they were not in it
        (a deleted or renamed test). They hold nothing: they count as passing without any recording."""
        return {test for test in owners if test not in self.collected and test.split("::", 1)[0] in self.whole_files}

    def add_report(self, nodeid: str, when: str, outcome: str, usage: Usage | None = None) -> None:
        """One phase of one test finished; ``usage`` is what llm_cache attached to its teardown report."""
        if changes_nothing(when, outcome, usage):
            return
        if usage and not usage[3]:  # mode off: calls live, reads no recording; judged as if it had not run
            self._tests.pop(nodeid, None)
            return
        passed, called, used, refreshed, writes = self._tests.get(nodeid, _NOT_REPORTED)  # TestOutcome's fields
        if outcome != "passed":
            passed = False
            if when not in _PHASES:
                self.crashed.append(nodeid)
        elif when == "call":
            called = True
        if usage:
            now_used, now_refreshed, now_writes, _ = usage
            used = tuple(dict.fromkeys(used + tuple((fingerprint, occurrence) for fingerprint, occurrence, _ in now_used)))
            refreshed, writes = refreshed or now_refreshed, writes or now_writes
            for fingerprint, occurrence, count in now_used:
                self._replays[fingerprint, occurrence] += count
        self._tests[nodeid] = (passed, called, used, refreshed, writes)

    @property
    def tests(self) -> dict[str, TestOutcome]:
        """Every test reported so far (made on each call: read it once)."""
        return {nodeid: TestOutcome(*values) for nodeid, values in self._tests.items()}

    def passes(self, vanished: Iterable[str] = ()) -> dict[str, frozenset[Key]]:
        """The tests that passed, with what each used; ``vanished`` tests as passing with nothing."""
        found = {nodeid: frozenset(values[2]) for nodeid, values in self._tests.items() if _complete_pass(values)}  # values[2]: used
        return {**{test: frozenset() for test in vanished}, **found}

    def held(self) -> set[Key]:
        """What the tests that did not pass used: no reason to prune it (a test newer than the recording it replays
        owns nothing, and has no pass, until it passes once)."""
        return {key for values in self._tests.values() if not _complete_pass(values) for key in values[2]}  # values[2]: used

    def replays(self) -> Counter[Key]:
        """How often the run replayed each recording (recorded ones count 0: used, not replayed)."""
        return Counter(self._replays)

    @property
    def refreshes(self) -> bool:
        """Whether some test ran in refresh mode (what it replaced may be deleted at the run's end)."""
        return any(values[3] for values in self._tests.values())  # TestOutcome.refreshed

    @property
    def writes(self) -> bool:
        """Whether some test ran in a mode that writes the cassette."""
        return any(values[4] for values in self._tests.values())  # TestOutcome.writes


def prunable(
    index: Iterable[tuple[Key, tuple[str, ...], str]],
    passes: Mapping[str, TestPass],
    rootdir: Path | None,
    among: Iterable[str] | None = None,
    elsewhere: Collection[str] = (),
) -> list[Key]:
    """The recordings every owner passed without, in runs begun after the recording was written, from (key, owners,
    recorded_at). Owners are the tests stored with the recording plus any test whose latest pass used it. A recording
    no test owns is never prunable (it goes only when named), nor one an owner of which is no pytest node id
    (``path::name``): ``llm-replay import`` stores the source YAML's path, as given, as the owner of what it imported.
    An owner whose test file no longer exists under ``rootdir`` no longer holds it (``rootdir`` None: a cassette other
    checkouts share, where a file missing here may be another branch's, so none is gone), unless its latest pass was made
    ``elsewhere`` (on another branch: its file is absent here, not deleted). ``among``: only recordings owned by one of
    these tests (a run's own tests)."""
    users: dict[Key, set[str]] = {}
    for test, last in passes.items():
        for key in last.used:
            users.setdefault(key, set()).add(test)
    chosen = None if among is None else set(among)
    files: dict[str, bool] = {}
    found = []
    for key, stored, recorded_at in index:
        if not stored or (chosen is not None and chosen.isdisjoint(stored)) or not all(_is_test(owner) for owner in stored):
            continue
        owners = set(stored) | users.get(key, set())
        if all((owner in passes and key not in passes[owner].used) or (owner not in elsewhere and gone(owner, rootdir, files)) for owner in owners) and written_before(
            recorded_at, owners, passes
        ):
            found.append(key)
    return found


def written_before(recorded_at: str, owners: Iterable[str], passes: Mapping[str, TestPass]) -> bool:
    """Whether a recording was written before every owner's latest pass began (else that pass could not have used it)."""
    return all(written_before_run(recorded_at, passes[owner].started_at) for owner in owners if owner in passes)


def written_before_run(recorded_at: str, started_at: str) -> bool:
    """Whether a recording stamped ``recorded_at`` (to the millisecond, or the second) was surely written before a run
    that began at ``started_at``."""
    resolution = _STAMP_RESOLUTION if "." in recorded_at else _OLD_STAMP_RESOLUTION
    try:
        return datetime.fromisoformat(recorded_at) + resolution <= datetime.fromisoformat(started_at)
    except (ValueError, TypeError):
        return False  # an unreadable date is never a reason to delete


def _is_test(owner: str) -> bool:
    """Whether an owner is a pytest node id (every item's has ``::``), not an import's source file: a source file
    going away (the migrated YAML folder deleted, or an import made from a subdirectory) must not free its recordings."""
    return "::" in owner


def gone(test: str, rootdir: Path | None, files: dict[str, bool]) -> bool:
    """A test whose file no longer exists (deleted or renamed) holds nothing. ``files``: what this look found of
    each file so far (one stat per test file, not one per recording)."""
    file = test.split("::", 1)[0]
    if not file or rootdir is None:
        return False
    exists = files.get(file)
    if exists is None:
        exists = files[file] = (rootdir / file).exists()
    return not exists
