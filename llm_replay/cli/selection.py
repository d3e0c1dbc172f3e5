"""Which recordings a command acts on: ``ls`` and ``rm`` filters (test, model, endpoint, unused, since, older than), read
from the store's summaries (no response bodies), so 100,000 recordings list in about a second."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any, Iterable, Iterator, NamedTuple

from ..engine.age import parse_age
from ..errors import CommandError
from ..model.fingerprint import CanonicalRequest
from ..model.interaction import Key

if TYPE_CHECKING:
    from ..stores.summaries import RecordingSummary


# How a listing shows a stored request it cannot parse.
UNREADABLE_REQUEST = CanonicalRequest(method="?", host="(stored request unreadable)", path="", query=(), body=None, body_kind="empty")


class Listed(NamedTuple):
    """One recording as listings show it: the store's summary row (no response) and its tests, read once.
    A NamedTuple: 100,000 are made per listing; the request is parsed only when asked for (``request``)."""

    row: "RecordingSummary"
    tests: tuple[str, ...]

    @property
    def fingerprint(self) -> str:
        """The recording's fingerprint."""
        return self.row.fingerprint

    @property
    def occurrence(self) -> int:
        """Which repeat of its request it is."""
        return self.row.occurrence

    @property
    def key(self) -> Key:
        """Where the recording lives in the cassette."""
        return self.row.fingerprint, self.row.occurrence

    @property
    def request(self) -> CanonicalRequest:
        """The canonical request, parsed from its stored text (each time: listings mostly need only ``endpoint``).
        Text that is no stored request (a hand-edited row) is listed as such, so that ``rm`` can still delete it."""
        try:
            return CanonicalRequest.from_stored(self.row.request_json)
        except (TypeError, ValueError, KeyError, AttributeError):
            return UNREADABLE_REQUEST

    @property
    def endpoint(self) -> str:
        """``POST api.openai.com/v1/chat/completions``, from the columns SQLite read when it could."""
        row = self.row
        if row.method is None or row.host is None or row.path is None:
            return self.request.endpoint
        return f"{row.method} {row.host.split('://', 1)[-1]}{row.path}"

    @property
    def model(self) -> str | None:
        """The model, from its column, else from the request (a model named only in the URL: Gemini, Bedrock)."""
        return self.row.model if self.row.model is not None else self.request.model


@dataclass(frozen=True)
class Selection:
    """The filters of ``ls`` and ``rm``; a recording must pass every one given."""

    test: str | None = None
    model: str | None = None
    endpoint: str | None = None
    since: datetime | None = None
    before: datetime | None = None  # --older-than: recorded before this instant (a recording without a time is not)
    only: frozenset[Key] | None = None  # e.g. the recordings the last complete run did not use

    def admits(self, row: "RecordingSummary", tests: tuple[str, ...]) -> bool:
        """Whether a recording passes, decided on the columns before its request is parsed."""
        if self.only is not None and (row.fingerprint, row.occurrence) not in self.only:
            return False
        if self.model is not None and row.model is not None and not fnmatchcase(row.model, self.model):
            return False
        if self.since is not None and not _at_or_after(row.recorded_at, self.since):
            return False
        if self.before is not None and not _before(row.recorded_at, self.before):
            return False
        if self.test is not None and not any(owned_by(test, self.test) for test in tests):
            return False
        return True

    def select(self, rows: Iterable["RecordingSummary"]) -> Iterator[Listed]:
        """The recordings that pass, in key order."""
        read: dict[str, tuple[str, ...]] = {}  # the same few lists of tests repeat over thousands of rows: read once
        for row in rows:
            tests = read.get(row.tests_json)
            if tests is None:
                tests = read[row.tests_json] = tuple(json.loads(row.tests_json))
            if not self.admits(row, tests):
                continue
            listed = Listed(row, tests)
            if self.endpoint is not None and self.endpoint not in listed.endpoint:
                continue
            if self.model is not None and row.model is None and not fnmatchcase(listed.model or "", self.model):
                continue  # a model named only in the URL (Gemini, Bedrock): known once the request is read
            yield listed


def owned_by(test_id: str, selector: str) -> bool:
    """Whether a recording's test is the one named, or lies in the file, folder or class named
    (``tests/test_app.py::test_x`` matches ``tests/test_app.py::test_x[1]`` and ``tests/`` but not ``test_x2``)."""
    selector = selector.rstrip("/")
    return test_id == selector or any(test_id.startswith(selector + edge) for edge in ("::", "[", "/"))


def parse_since(value: str | None) -> datetime | None:
    """``--since``: an ISO date or time (``2026-11-30``, ``2026-11-30T12:00``, UTC unless given), or an age (``3d``, ``12h``)."""
    if value is None:
        return None
    try:
        return datetime.now(timezone.utc) - timedelta(seconds=parse_age(value, "--since"))
    except ValueError:
        pass
    instant = _instant(value.strip())
    if instant is None:
        raise CommandError(f"--since {value!r}: give a date or time (2026-11-30, 2026-11-30T12:00) or an age (30m, 12h, 3d, 2w)")
    return instant


def parse_older_than(value: str | None) -> datetime | None:
    """``--older-than``: an age (``30d``, ``12h``, ``90s``), as the instant a recording must predate."""
    if value is None:
        return None
    try:
        return datetime.now(timezone.utc) - timedelta(seconds=parse_age(value, "--older-than"))
    except ValueError as error:
        raise CommandError(str(error)) from None


def _instant(text: str) -> datetime | None:
    """An ISO date or time, UTC unless it says otherwise; None if it is not one."""
    try:
        instant = datetime.fromisoformat(text)
    except ValueError:
        return None
    return instant if instant.tzinfo else instant.replace(tzinfo=timezone.utc)


def _at_or_after(recorded_at: str, since: datetime) -> bool:
    instant = _instant(recorded_at)
    return instant is None or instant >= since  # an unreadable date is shown rather than hidden


def _before(recorded_at: str, cutoff: datetime) -> bool:
    instant = _instant(recorded_at) if recorded_at else None
    return instant is not None and instant < cutoff


def json_record(listed: Listed, request: CanonicalRequest, prompt: str) -> dict[str, Any]:
    """One recording for ``ls --json``: stable field names, full values (``request``: ``listed.request``, parsed once)."""
    row = listed.row
    return {
        "key": f"{listed.fingerprint}#{listed.occurrence}",
        "fingerprint": listed.fingerprint,
        "occurrence": listed.occurrence,
        "method": request.method,
        "url": request.url,
        "endpoint": request.endpoint,
        "model": request.model,
        "status": row.status,
        "recorded_at": row.recorded_at,
        "tests": list(listed.tests),
        "prompt": prompt,
        "input_tokens": row.input_tokens,
        "output_tokens": row.output_tokens,
        "latency_ms": row.latency_ms,
    }
