"""Which recordings a test run used, whether the run was complete, and what pruning may delete.

A run is *complete* when every collected test ran and passed and nothing was deselected: only
then does "not used" mean "not needed". Its *scope* is the whole suite (pytest started in the rootdir
without paths or testpaths) or the test files it collected; recordings made by tests outside the scope are never
counted as unused, so ``pytest tests/test_a.py --llm-prune`` cannot delete ``test_b.py``'s.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

if TYPE_CHECKING:  # only named in signatures: the pytest plugin loads this module at start-up
    from .interaction import Key


@dataclass(frozen=True)
class RunRecord:
    """One finished run as the cassette remembers it."""

    uid: str
    finished_at: str
    complete: bool
    scope: tuple[str, ...] | None  # None: the whole suite; else the test files collected

    def scope_json(self) -> str | None:
        """How the scope is stored."""
        return None if self.scope is None else json.dumps(list(self.scope))

    @classmethod
    def from_row(cls, uid: str, finished_at: str, complete: int, scope: str | None) -> "RunRecord":
        """The record back from its row."""
        return cls(uid, finished_at, bool(complete), None if scope is None else tuple(json.loads(scope)))

    def covers(self, tests: Iterable[str], rootdir: Path) -> bool:
        """Whether this run had the chance to use a recording made by ``tests``.

        A whole-suite run covers everything. A run of some files covers a recording when every
        test that used it lives in one of those files, or in a file that no longer exists.
        """
        if self.scope is None:
            return True
        files = {test.split("::", 1)[0] for test in tests}
        if not files:
            return False
        return all(file in self.scope or not (rootdir / file).exists() for file in files)


@dataclass
class RunOutcome:
    """What pytest reports about a run, boiled down to: complete or not, and why not."""

    whole_suite: bool
    collected_files: set[str] = field(default_factory=set)
    collected: int = 0
    deselected: int = 0
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    collection_errors: int = 0
    distributed: bool = False

    def add_collected(self, nodeids: Iterable[str]) -> None:
        """The tests the run will execute, after deselection."""
        for nodeid in nodeids:
            self.collected += 1
            self.collected_files.add(nodeid.split("::", 1)[0])

    def add_report(self, when: str, outcome: str) -> None:
        """One phase of one test finished."""
        if outcome == "failed":
            self.failed += 1
        elif outcome == "skipped":
            self.skipped += 1
        elif when == "call" and outcome == "passed":
            self.passed += 1

    def incomplete_because(self) -> str | None:
        """Why the run cannot tell which recordings are unused, or None when it can."""
        if self.distributed:
            return "pytest-xdist runs cannot be checked for completeness; run without -n to prune"
        reasons = []
        if self.collection_errors:
            reasons.append(f"{self.collection_errors} collection error(s)")
        if self.failed:
            reasons.append(f"{self.failed} test phase(s) failed or errored")
        if self.skipped:
            reasons.append(f"{self.skipped} test(s) skipped")
        if self.deselected:
            reasons.append(f"{self.deselected} test(s) deselected")
        if not reasons and self.passed < self.collected:
            reasons.append(f"only {self.passed} of {self.collected} collected tests ran")
        return "; ".join(reasons) or None

    def record(self, uid: str, finished_at: str) -> RunRecord:
        """The run as the cassette will remember it."""
        scope = None if self.whole_suite else tuple(sorted(self.collected_files))
        return RunRecord(uid, finished_at, self.incomplete_because() is None, scope)


def unused_keys(index: Iterable[tuple[Key, tuple[str, ...]]], used: Iterable[Key], run: RunRecord, rootdir: Path) -> list[Key]:
    """The recordings ``run`` could have used but did not, from (key, tests) pairs."""
    used_set = set(used)
    return [key for key, tests in index if key not in used_set and run.covers(tests, rootdir)]

