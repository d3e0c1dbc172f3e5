"""Adding recordings to a cassette without losing any: what import and the git merge driver share.

A key already present with the same response is left alone; with a different response the
existing one is kept ("ours") and the clash reported, so nothing recorded is silently replaced.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable

from ..model.interaction import Interaction

if TYPE_CHECKING:
    from .sqlite import SQLiteCache


@dataclass
class UnionReport:
    """What adding a batch of recordings did."""

    added: int = 0
    identical: int = 0
    conflicts: list[tuple[Interaction, Interaction]] = field(default_factory=list)  # (kept, refused)

    def describe_conflicts(self) -> list[str]:
        """One line per clash: which request, and that the existing answer was kept."""
        lines = []
        for kept, refused in self.conflicts:
            request = kept.request
            lines.append(
                f"  kept ours for {kept.fingerprint[:12]}#{kept.occurrence} {request.method} {request.url}"
                f" ({request.model or 'no model'}): recorded {kept.recorded_at or '?'}; theirs from {refused.recorded_at or '?'} ignored"
            )
        return lines


def same_answer(first: Interaction, second: Interaction) -> bool:
    """Whether two recordings of one request give the client the same response."""
    a, b = first.response, second.response
    return a.status == b.status and a.body == b.body


def add_missing(cassette: "SQLiteCache", interactions: Iterable[Interaction]) -> UnionReport:
    """Put every recording whose key the cassette lacks; keep the cassette's own on a clash.

    Writes go through ``SQLiteCache.put``, so whatever it scrubs on the way in is scrubbed here too.
    """
    report = UnionReport()
    for interaction in interactions:
        existing = cassette.get(*interaction.key)
        if existing is None:
            cassette.put(interaction)
            report.added += 1
        elif same_answer(existing, interaction):
            report.identical += 1
        else:
            report.conflicts.append((existing, interaction))
    return report
