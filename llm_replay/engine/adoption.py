"""Adoption: after an SDK upgrade, a recording found again when only the request's URL path or query changed.

An SDK upgrade often moves a request (``/v1beta/…`` to ``/v1/…``, ``?beta=true`` dropped) without changing what
is asked. A recording whose method, host and body (under the match rules) equal the request's is its
*candidate*; ``adopt`` mode copies it to the new request's key (the old key stays until pruning finds every test
that used it passing without it). Body fields differ only on paths the user names.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import TYPE_CHECKING, Iterable

from ..model.fingerprint import CanonicalRequest, differences, respelled
from .matching import MatchRules

if TYPE_CHECKING:
    from ..model.interaction import Interaction, Key
    from ..stores.base import Store


class AdoptRules:
    """What must stay equal for a recording to be adopted: the match rules, widened by the body paths
    the user allows to differ (``adopt_body_paths``). A plain class: nothing compares it, and a frozen
    dataclass costs every session's start-up ~2 M instructions."""

    __slots__ = ("rules", "body_paths", "_widened")

    def __init__(self, rules: MatchRules, body_paths: tuple[str, ...] = ()) -> None:
        self.rules = rules
        self.body_paths = body_paths
        self._widened = MatchRules(rules.ignore + body_paths, rules.before_fingerprint)

    def shape(self, request: CanonicalRequest) -> str:
        """The request's key without its URL path and query (and the allowed body paths), in its plain spelling: an
        upgrade that moves the URL may also write ``0`` as ``0.0``."""
        return respelled(replace(self._widened.view(request), path="", query=())).fingerprint

    def candidates(self, request: CanonicalRequest, key: "Key", stored: Iterable[tuple["Key", CanonicalRequest]]) -> list["Key"]:
        """Stored keys at the same occurrence whose request has ``request``'s shape but another key."""
        fingerprint, occurrence = key
        shape = self.shape(request)
        return [
            stored_key
            for stored_key, candidate in stored
            if stored_key[1] == occurrence and self.rules.fingerprint(candidate) != fingerprint and self.shape(candidate) == shape
        ]


class AdoptionIndex:
    """Every stored key by its shape, built once on the first miss (one pass over the stored requests)."""

    def __init__(self, adopt: AdoptRules) -> None:
        self.adopt = adopt
        self._shapes: dict[str, list[tuple["Key", CanonicalRequest]]] | None = None
        self._lock = threading.Lock()

    def candidates(self, cassette: "Store", request: CanonicalRequest, key: "Key") -> list["Interaction"]:
        """The recordings that could be re-keyed to ``request`` (those still in the cassette)."""
        if self._shapes is None:
            with self._lock:
                if self._shapes is None:
                    self._shapes = self._build(cassette)
        stored = self._shapes.get(self.adopt.shape(request), [])  # type: ignore[union-attr]
        found = (cassette.get(*stored_key) for stored_key in self.adopt.candidates(request, key, stored))
        return sorted((interaction for interaction in found if interaction is not None), key=lambda i: (i.request.url, i.key))

    def _build(self, cassette: "Store") -> dict[str, list[tuple["Key", CanonicalRequest]]]:
        shapes: dict[str, list[tuple["Key", CanonicalRequest]]] = {}
        for fingerprint, occurrence, text in cassette.requests():
            request = CanonicalRequest.from_json(text)
            shapes.setdefault(self.adopt.shape(request), []).append(((fingerprint, occurrence), request))
        return shapes


def chosen(candidates: list["Interaction"], test_id: str | None) -> "Interaction | None":
    """The one candidate to adopt: the only answer, else the only one this test recorded; None when ambiguous. Copies
    of one answer are one (an earlier adoption keeps the old key: a second upgrade before pruning finds both)."""
    if all(candidate.response == candidates[0].response for candidate in candidates):
        return candidates[0]
    own = [candidate for candidate in candidates if test_id is not None and test_id in candidate.tests]
    return own[0] if len(own) == 1 else None


def shape_change(old: CanonicalRequest, new: CanonicalRequest) -> str:
    """``POST host/v1beta/x → POST host/v1/x``, plus the body fields that differ (allowed paths only)."""
    text = f"{old.method} {old.url} → {new.method} {new.url}"
    body = [difference.path for difference in differences(old, new) if difference.path.startswith("body.")]
    return text + (f" (body: {', '.join(body)})" if body else "")


def candidate_lines(candidates: list["Interaction"], new: CanonicalRequest) -> list[str]:
    """One line per candidate: its shape change and the tests that own it."""
    return [
        f"    {shape_change(candidate.request, new)}, recorded {candidate.recorded_at or '-'} by {', '.join(candidate.tests) or 'no test'}"
        for candidate in candidates
    ]
