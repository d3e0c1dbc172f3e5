"""What takes part in matching: the user's ignore paths and normalising hook, applied to a canonical request.

The cassette stores every request whole; the rules only decide its key. So when the rules change,
old recordings are found again by re-keying their stored requests under the new rules (RekeyIndex).
"""

from __future__ import annotations

import copy
import functools
import json
import re
import threading
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Callable, Iterable, NamedTuple

from ..model.fingerprint import CanonicalRequest, respelled

if TYPE_CHECKING:
    from ..model.interaction import Interaction
    from ..model.scrub import Scrubber
    from ..stores.base import Store

BeforeFingerprint = Callable[[CanonicalRequest], CanonicalRequest]
_SEGMENT = re.compile(r"(?P<key>[^.\[\]]+)?(?P<indexes>(?:\[(?:\d+|\*)\])*)")
_INDEX = re.compile(r"\[(\d+|\*)\]")
_REMOVED = object()
_ANY = None
_Moved = dict[tuple[str, int], tuple[str, int]]  # (key now, occurrence) -> (key stored under, occurrence)
PATH_SYNTAX = "dotted JSON body fields with [n] list indexes and * wildcards, e.g. metadata.request_id, messages[*].name, tools[*].function.description"


class _Step(NamedTuple):  # a value record as a NamedTuple: a frozen dataclass costs the import ~2 M instructions
    """One step of an ignore path: a key of an object or an index of a list; ``which=None`` is any."""

    in_list: bool
    which: str | int | None


def parse_ignore_path(path: str, source: str, option: str = "match_ignore") -> tuple[_Step, ...]:
    """The steps of one ``match_ignore`` path; a malformed path is an error naming it, ``option`` and ``source``."""
    steps: list[_Step] = []
    segments = path.strip().split(".") if isinstance(path, str) and path.strip() else [""]
    for number, segment in enumerate(segments):
        found = _SEGMENT.fullmatch(segment)
        if not segment or found is None or (found["key"] is None and number > 0):
            raise ValueError(f"bad {option} path {path!r} in {source}: expected {PATH_SYNTAX}")
        if found["key"] is not None:
            steps.append(_Step(False, _ANY if found["key"] == "*" else found["key"]))
        for index in _INDEX.findall(found["indexes"]):
            steps.append(_Step(True, _ANY if index == "*" else int(index)))
    return tuple(steps)


def ignore_paths(value: str | Iterable[str], source: str, option: str = "match_ignore") -> tuple[str, ...]:
    """``match_ignore`` (or ``adopt_body_paths``, the ``option``) as given, one path or several, checked; errors name
    ``option`` and ``source``."""
    if not isinstance(value, (str, list, tuple, set, frozenset)):
        raise ValueError(
            f"{option} in {source} must be a list of JSON body paths, e.g. ['metadata.request_id', 'messages[*].name'] "
            f"(or one path as a string), not {value!r}"
        )
    paths = (value,) if isinstance(value, str) else tuple(value)
    for path in paths:
        parse_ignore_path(path, source, option)
    return paths


class MatchRules(NamedTuple):
    """The user's matching rules: body fields to leave out, and a hook that normalises the request first.

    A NamedTuple, as the project's other value records (a frozen dataclass costs a session's start-up ~2 M
    instructions); equal rules share the indexes built under them."""

    ignore: tuple[str, ...] = ()
    before_fingerprint: BeforeFingerprint | None = None

    def view(self, request: CanonicalRequest) -> CanonicalRequest:
        """The request as matching sees it: the hook applied to a copy, then the ignored fields removed."""
        if not self.ignore and self.before_fingerprint is None:
            return request
        if self.before_fingerprint is not None:
            request = self._hooked(request)
        body = request.body
        for steps in _parsed(self.ignore):
            body = _without(body, steps)
        return replace(request, body=None if body is _REMOVED else body)

    def fingerprint(self, request: CanonicalRequest) -> str:
        """The key the request is stored and looked up under."""
        return self.view(request).fingerprint

    def _hooked(self, request: CanonicalRequest) -> CanonicalRequest:
        # A copy, so a hook that edits request.body in place cannot change what the cassette stores. Its body
        # comes from the JSON text made with the fingerprint: the copy is the same request, so it shares both
        # and is not dumped and hashed again (view() makes the fingerprint of whatever the hook returns).
        hook = self.before_fingerprint
        duplicate = copy.copy(request)
        object.__setattr__(duplicate, "body", json.loads(request.to_json())["body"])
        result = hook(duplicate)  # type: ignore[misc]
        if not isinstance(result, CanonicalRequest):
            name = getattr(hook, "__qualname__", repr(hook))
            raise TypeError(
                f"the before_fingerprint hook {name} returned {type(result).__name__}, not a CanonicalRequest; "
                "return the request it was given (edit request.body in place) or dataclasses.replace(request, body=...)"
            )
        return result


@functools.cache
def _parsed(ignore: tuple[str, ...]) -> tuple[tuple[_Step, ...], ...]:
    """The steps of each ignore path, parsed once per distinct set of paths."""
    return tuple(parse_ignore_path(path, "match_ignore") for path in ignore)


def _without(value: Any, steps: tuple[_Step, ...]) -> Any:
    """``value`` minus what ``steps`` point at; shares every part it does not change."""
    if not steps:
        return _REMOVED
    step, rest = steps[0], steps[1:]
    if step.in_list and isinstance(value, list):
        kept = [_without(item, rest) if step.which in (_ANY, index) else item for index, item in enumerate(value)]
        return [item for item in kept if item is not _REMOVED]
    if not step.in_list and isinstance(value, dict):
        kept = {key: _without(item, rest) if step.which in (_ANY, key) else item for key, item in value.items()}
        return {key: item for key, item in kept.items() if item is not _REMOVED}
    return value


class RekeyIndex:
    """Recordings found again on a miss, under another key than the request's.

    Those whose stored request, keyed under the current rules, differs from the key it was stored under (recorded
    under other ignore rules or another hook), and those whose request differs from the one asked only in how it
    spells equal values (``respelled``: ``0`` and ``0.0``, ``API.example.com:443`` and ``api.example.com``: what an
    SDK upgrade or another HTTP client may change). Built once, on the first miss (one pass over the stored
    requests); no key changes, and a hit never comes here. When several recordings fall on the same key, the most
    recently recorded one wins.
    """

    def __init__(self, rules: MatchRules) -> None:
        self.rules = rules
        self._keys: tuple[_Moved, _Moved] | None = None
        self._lock = threading.Lock()

    def find(self, cassette: "Store", fingerprint: str, occurrence: int, request: CanonicalRequest | None = None) -> "Interaction | None":
        """The recording stored under another key whose request now has this key, or (given the ``request`` asked)
        whose request spells the same values otherwise, if any."""
        if self._keys is None:  # checked again under the lock: only the first miss builds
            with self._lock:
                if self._keys is None:
                    self._keys = self._build(cassette.requests(), cassette.scrubber)
        rekeyed, respelled_keys = self._keys
        stored = rekeyed.get((fingerprint, occurrence))
        if stored is not None:
            return cassette.get(*stored)
        if request is None:
            return None
        plain = respelled(request)
        if plain is not request:  # it spells a value otherwise: found where its plain spelling is stored (the hook
            fingerprint = self.rules.fingerprint(plain)  # runs again only then, on the plain spelling)
            found = cassette.get(fingerprint, occurrence)
            if found is not None:
                return found
            stored = rekeyed.get((fingerprint, occurrence))
        stored = stored or respelled_keys.get((fingerprint, occurrence))
        return cassette.get(*stored) if stored is not None else None

    def _build(self, rows: Iterable[tuple[str, int, str]], scrubber: "Scrubber") -> tuple[_Moved, _Moved]:
        """Where each stored request is found under the current rules, when not at its own key; and in its plain
        spelling, when it spells a value otherwise (rows come oldest first: the latest recording overwrites)."""
        rekeyed: _Moved = {}
        respelled_keys: _Moved = {}
        for fingerprint, occurrence, request_json in rows:
            view = self.rules.view(scrubber.as_looked_up(CanonicalRequest.from_json(request_json)))  # as scrubbed now
            if view.fingerprint != fingerprint:
                rekeyed[(view.fingerprint, occurrence)] = (fingerprint, occurrence)
            plain = respelled(view)
            if plain is not view:
                respelled_keys[(plain.fingerprint, occurrence)] = (fingerprint, occurrence)
        return rekeyed, respelled_keys
