"""A session's drift: how re-recorded (or verified) answers differ from the recorded ones, added up.

Refresh feeds it (each recording it overwrites, old against new), and ``--llm-mode=verify`` the same way
(each recording against the live answer it did not keep). It gives the end-of-session lines and decides whether ``--llm-fail-on-drift`` fails the session.
Plain data crosses from pytest-xdist workers (``as_data`` / ``merge``).
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from .drift_classes import DRIFT_CLASSES, IDENTICAL

if TYPE_CHECKING:  # the comparing (engine/drift.py) loads only when answers are compared
    from .drift import Drift


class DriftTally:
    """Answers compared in the session, counted by class, overall and per test."""

    def __init__(self, fail_on: frozenset[str] = frozenset(), option: str = "--llm-fail-on-drift") -> None:
        self.fail_on = fail_on
        self.option = option
        self.counts: Counter[str] = Counter()
        self.answers = 0
        self.by_test: dict[str, Counter[str]] = {}

    def add(self, test_id: str | None, classes: Iterable[str]) -> None:
        """Count one compared answer (``classify``'s result) for a test."""
        classes = tuple(classes)
        self.answers += 1
        self.counts.update(classes)
        self.by_test.setdefault(test_id or "-", Counter()).update(classes)

    def add_all(self, test_id: str | None, drifts: Iterable[Drift]) -> None:
        """Count every answer a test compared."""
        for drift in drifts:
            self.add(test_id, drift.classes)

    def lines(self, verbose: bool = False) -> list[str]:
        """``llm_replay drift: 3 answers compared …: 2 text, 1 identical``, then the tests each drift class was
        seen in, or with ``verbose`` every test's counts."""
        if not self.answers:
            return []
        lines = [f"llm_replay drift: {self.answers} answer{'s' if self.answers != 1 else ''} compared with the recordings: {_counted(self.counts)}"]
        if verbose:
            return lines + [f"  {test}: {_counted(counts)}" for test, counts in sorted(self.by_test.items())]
        for name in DRIFT_CLASSES:
            tests = sorted(test for test, counts in self.by_test.items() if counts.get(name))
            if tests:
                lines.append(f"  {name}: {', '.join(tests)}")
        return lines

    def failing(self) -> Counter[str]:
        """The drift classes named by ``--llm-fail-on-drift`` that were found, with their counts."""
        return Counter({name: count for name, count in self.counts.items() if name in self.fail_on})

    def failure_line(self) -> str | None:
        """Why the session fails on drift, or None."""
        failing = self.failing()
        if not failing:
            return None
        tests = sorted(test for test, counts in self.by_test.items() if any(name in counts for name in failing))
        return (
            f"llm_replay: the session fails: {self.option}={','.join(sorted(self.fail_on))} and answers drifted ({_counted(failing)}) "
            f"in {', '.join(tests)}"
        )

    def as_data(self) -> dict[str, Any]:
        """The tally as plain data, to travel from a pytest-xdist worker to the controller."""
        return {"answers": self.answers, "by_test": {test: dict(counts) for test, counts in self.by_test.items()}}

    def merge(self, data: Mapping[str, Any]) -> None:
        """Add a worker's tally (``as_data`` on its side)."""
        self.answers += int(data["answers"])
        for test, counts in data["by_test"].items():
            self.by_test.setdefault(test, Counter()).update(counts)
            self.counts.update(counts)


def _counted(counts: Mapping[str, int]) -> str:
    """Classes in severity order (identical last): ``2 text, 1 identical``."""
    order = [*DRIFT_CLASSES, IDENTICAL]
    return ", ".join(f"{counts[name]} {name}" for name in order if counts.get(name))
