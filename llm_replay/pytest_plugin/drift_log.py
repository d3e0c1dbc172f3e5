"""What verify found over a session: requests per drift class and the tests concerned.

Refresh's drift report (issue 15) keeps a collector of its own; verify feeds this one through ``add`` only,
so joining the two is replacing this class by theirs where ``Suite.drift`` is built.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Iterable, Mapping

from ..engine.drift import DRIFT_CLASSES, IDENTICAL


class DriftLog:
    """Drift classes of every compared request, counted, with the tests each class was seen in."""

    def __init__(self) -> None:
        self.requests = 0
        self.counts: Counter[str] = Counter()
        self.tests: dict[str, list[str]] = {}

    def add(self, test_id: str, classes: Iterable[str]) -> None:
        """One request compared: its drift classes (``("identical",)`` when the answers agree)."""
        self.requests += 1
        for name in classes:
            self.counts[name] += 1
            if name != IDENTICAL and test_id not in self.tests.setdefault(name, []):
                self.tests[name].append(test_id)

    def occurred(self, wanted: Iterable[str]) -> list[str]:
        """Which of the ``wanted`` classes were seen, most severe first."""
        wanted = set(wanted)
        return [name for name in DRIFT_CLASSES if name in wanted and self.counts[name]]

    def summary_lines(self, verb: str = "verified") -> list[str]:
        """``llm_replay verify: 3 requests compared live: 1 identical, 2 drifted (text 2)`` and a line per class."""
        if not self.requests:
            return []
        drifted = self.requests - self.counts[IDENTICAL]
        found = ", ".join(f"{name} {self.counts[name]}" for name in DRIFT_CLASSES if self.counts[name])
        lines = [f"llm_replay {verb}: {self.requests} requests compared live: {self.counts[IDENTICAL]} identical, {drifted} drifted" + (f" ({found})" if found else "")]
        lines += [f"  {name}: {', '.join(self.tests[name])}" for name in DRIFT_CLASSES if self.counts[name]]
        return lines

    def as_data(self) -> dict[str, Any]:
        """Plain data, to travel from a pytest-xdist worker to the controller."""
        return {"requests": self.requests, "counts": dict(self.counts), "tests": self.tests}

    def merge(self, data: Mapping[str, Any]) -> None:
        """Add what a worker found (``as_data`` on its side)."""
        self.requests += int(data["requests"])
        self.counts.update(data["counts"])
        for name, tests in data["tests"].items():
            known = self.tests.setdefault(name, [])
            known.extend(test for test in tests if test not in known)
