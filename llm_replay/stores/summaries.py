"""Recordings without their answers, as listings read them: ``ls``, ``rm`` and ``stats`` on 100,000 recordings.

SQLite reads these from its columns (``SQLiteCache.summaries``); any other store (Redis, memory) gives
them from its interactions, slower but the same.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Iterable, Iterator, NamedTuple

if TYPE_CHECKING:
    from ..model.interaction import Key
    from .base import Store


class RecordingSummary(NamedTuple):
    """A recording as listings need it: the stored columns, no response body (JSON text left unparsed)."""

    fingerprint: str
    occurrence: int
    request_json: str
    status: int
    recorded_at: str
    tests_json: str
    model: str | None
    input_tokens: int | None
    output_tokens: int | None
    latency_ms: float | None
    # with ``summaries(shown=True)``: what a listing shows of the request, None where the store could not read it
    method: str | None = None
    host: str | None = None
    path: str | None = None
    last_role: str | None = None  # of the last chat message, when its content is text
    last_text: str | None = None


def summaries_of(store: "Store", shown: bool = False, keys: Iterable[Key] | None = None, unreadable: dict[Key, str] | None = None) -> Iterator[RecordingSummary]:
    """Every recording of ``store`` in key order, without its answer: SQLite's own columns (``shown``: with what a
    listing shows of each request; ``keys``: only those; ``unreadable``: a row whose owners cannot be read noted there,
    not an error), else read from each interaction."""
    own = getattr(store, "summaries", None)
    if own is not None:
        yield from own(shown=shown, keys=keys, unreadable=unreadable)
        return
    for interaction in store.interactions():
        input_tokens, output_tokens = interaction.usage()
        yield RecordingSummary(
            interaction.fingerprint, interaction.occurrence, interaction.request_json, interaction.response.status, interaction.recorded_at,
            json.dumps(list(interaction.tests)), interaction.request.model, input_tokens, output_tokens, interaction.latency_ms,
        )
