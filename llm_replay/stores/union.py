"""Adding recordings to a cassette without losing any: what import, copy and the git merge driver share.

A key already present with the same response keeps it, owned by the tests of both sides; with a
different response the existing one is kept ("ours") and the clash reported, so nothing recorded is
silently replaced. A test's frozen instant travels with its recordings where the target has none.
Given the two sides' common ancestor (a three-way merge), what only "theirs" changed since it is taken:
a recording or an instant ours still has as the ancestor had it (a refresh on their branch).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Iterable

from ..model.interaction import Interaction

if TYPE_CHECKING:
    from .base import Store


@dataclass
class UnionReport:
    """What adding a batch of recordings did."""

    added: int = 0
    identical: int = 0
    instants: int = 0
    taken: int = 0  # recordings only theirs changed since the common ancestor: theirs kept
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


def add_missing(cassette: "Store", interactions: Iterable[Interaction], base: "Store | None" = None) -> UnionReport:
    """Put every recording whose key the cassette lacks; keep the cassette's own on a clash, unless ``base`` (the
    common ancestor) shows that only the incoming side changed it.

    Either way the kept recording is owned by both sides' tests: each replays it from now on, and pruning either
    side's must not drop it. Writes go through the store's ``put``, so whatever it scrubs on the way in is scrubbed
    here too.
    """
    report = UnionReport()
    for interaction in interactions:
        existing = cassette.get(*interaction.key)
        if existing is None:
            cassette.put(interaction)
            report.added += 1
            continue
        owners = tuple(dict.fromkeys(existing.tests + interaction.tests))
        ancestor = base.get(*interaction.key) if base is not None else None
        if same_answer(existing, interaction) or (ancestor is not None and same_answer(ancestor, interaction)):
            report.identical += 1  # the same, or only ours re-recorded it since the ancestor: ours stays, no clash
        elif ancestor is not None and same_answer(ancestor, existing):  # only theirs re-recorded it
            cassette.put(replace(interaction, tests=owners))
            report.taken += 1
            continue
        else:
            report.conflicts.append((existing, interaction))
        if owners != existing.tests:
            cassette.put(replace(existing, tests=owners))
    return report



def union_into(target: "Store", source: "Store", interactions: Iterable[Interaction] | None = None, base: "Store | None" = None) -> UnionReport:
    """Every recording of ``source`` added to ``target`` (``add_missing``), and each test's frozen instant
    where ``target`` has none, or (given ``base``, the common ancestor) has it as ``base`` had it while ``source``
    changed it: prompts that carry the date replay from the target as they did from the source.

    ``interactions``, when given, are ``source``'s recordings as the caller shaped them (a copy's before_record hook).
    All of ``source`` is read before anything is written: a recording it cannot read leaves ``target`` as it was
    (git's merge driver must leave OURS intact when THEIRS is damaged)."""
    incoming = list(source.interactions() if interactions is None else interactions)
    instants = source.instants()
    report = add_missing(target, incoming, base)
    for test_id, instant, clock_read in instants:
        ours = target.stored_clock(test_id)[0]
        ancestor = base.stored_clock(test_id)[0] if base is not None and ours is not None else None
        if ours is None or (ancestor is not None and ours == ancestor and instant != ancestor):
            target.put_instant(test_id, instant)
            if clock_read is not None:
                target.put_clock_read(test_id, clock_read)
            report.instants += 1
    return report
