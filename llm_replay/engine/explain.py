"""The message of a strict miss: what was asked, the closest recording, a field diff, the fix."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from ..model.fingerprint import CanonicalRequest, FieldDifference, differences, distance, respelled
from .adoption import AdoptionIndex, candidate_lines
from .langchain_keys import (
    describe_llm,
    describe_setting_difference,
    is_langchain_request,
    prompt_text,
)

if TYPE_CHECKING:
    from ..model.interaction import Key
    from ..stores.base import Store
    from .matching import MatchRules
    from .settings import Mode

_MAX_DIFF_LINES = 12
_WIDTH = 160
_MONTH = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)[a-z]*\.?"
_WEEKDAY = r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)[a-z]*\.?,?"
# Values that change on every run by nature: the clock and generated ids. Longest forms first.
_VOLATILE = re.compile(
    "|".join([
        r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",  # UUID
        r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?)?(?:Z|[+-]\d{2}:?\d{2})?",  # ISO date/time
        rf"(?:{_WEEKDAY}\s+)?(?:\d{{1,2}}\s+{_MONTH}|{_MONTH}\s+\d{{1,2}}(?:st|nd|rd|th)?,?)\s+\d{{4}}",  # 26 Nov 2026
        r"\d{1,2}/\d{1,2}/\d{2,4}",  # 11/26/2026
        r"\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:\s*[AaPp][Mm])?",  # 12:32:40, 3:05 pm
        r"\b1\d{9}(?:\d{3})?(?:\.\d+)?\b",  # Unix time in seconds or milliseconds
    ]),
    re.IGNORECASE,
)


def explain_miss(
    request: CanonicalRequest,
    key: tuple[str, int],
    cassette: "Store",
    rules: "MatchRules",
    record_command: str | None,
    *,
    clock_unread: bool = False,
    mode: "Mode | str" = "replay",
    adopt: AdoptionIndex | None = None,
    in_test: bool = True,
) -> str:
    """A message for the person reading the failed CI log (``clock_unread``: the test runs on the real clock
    because its recording never read it; ``adopt``: the session's index of what ``--llm-mode=adopt`` would serve,
    built once, so a run where every request misses after an SDK upgrade does not scan the cassette again per miss;
    ``in_test``: a pytest test asked, not a ``use_cassette`` block in a script)."""
    occurrence = key[1]
    place = "the test" if in_test else "this use_cassette block"
    if is_langchain_request(request):
        return _explain_langchain_miss(request, key, cassette, record_command, place)
    lines = [f"no recording for this request (mode '{mode}': the network is not used)"]
    lines.append(f"  request:   {request.method} {request.url}")
    if request.model:
        lines.append(f"  model:     {request.model}")
    prompt = request.prompt()
    if prompt is not None:
        lines.append(f"  prompt:    {_shorten(prompt)}")
    elif request.body is not None:
        lines.append(f"  body:      {_shorten(request.to_json())}")
    view, stored = rules.view(request), _stored_views(cassette, rules)
    if occurrence:
        lines.append(_repeat_line("request", occurrence, place, view, stored))
    count = len(cassette)
    lines.append(f"  cassette:  {cassette.describe()} ({count} recording{'s' if count != 1 else ''})")
    lines.extend(_closest_lines(view, stored, cassette, clock_unread, place))
    if adopt is not None and str(mode) != "adopt":
        lines.extend(_adopt_lines(request, key, cassette, adopt))
    lines.append(f"  to record it: {record_command or 'run again with --llm-mode=record (and an API key)'}")
    return "\n".join(lines)


def _adopt_lines(request: CanonicalRequest, key: "Key", cassette: "Store", adopt: AdoptionIndex) -> list[str]:
    """When ``--llm-mode=adopt`` would serve the request (an SDK upgrade moved it): say so, and from which recording."""
    candidates = adopt.candidates(cassette, request, key)
    if not candidates:
        return []
    which = "it" if len(candidates) == 1 else "the one this test recorded"
    counted = f"{len(candidates)} recording{'s have' if len(candidates) != 1 else ' has'}"
    return [
        f"  adopt:     {counted} the same method, host and body; only the URL differs (an SDK upgrade?). "
        f"Run with --llm-mode=adopt (or LLM_REPLAY_MODE=adopt) to re-key {which} to this request, offline:",
        *candidate_lines(candidates, request),
    ]


def _repeat_line(what: str, occurrence: int, place: str, requested: CanonicalRequest, stored: list[tuple["Key", CanonicalRequest]]) -> str:
    """``repeats='sequence'``: which identical request (or LangChain lookup) this is in the test or block, and how many
    answers the cassette holds for it, in any spelling (the spellings of one request share its places)."""
    plain = respelled(requested).fingerprint
    recorded = sum(respelled(view).fingerprint == plain for _, view in stored)
    return (
        f"  repeat:    this is identical {what} no. {occurrence + 1} in {place} (repeats='sequence'); "
        f"the cassette holds {recorded} answer{'s' if recorded != 1 else ''} for it"
    )


def _stored_views(cassette: "Store", rules: "MatchRules | None" = None) -> list[tuple["Key", CanonicalRequest]]:
    """Every recording's key and request as matching sees it under ``rules`` (ignored fields left out, the hook applied;
    as stored without rules), without loading a single response body."""
    view = rules.view if rules is not None else _as_it_is
    return [((fingerprint, occurrence), view(CanonicalRequest.from_json(text))) for fingerprint, occurrence, text in cassette.requests()]


def _as_it_is(request: CanonicalRequest) -> CanonicalRequest:
    return request


def _closest(request: CanonicalRequest, stored: Iterable[tuple["Key", CanonicalRequest]]) -> "tuple[Key, CanonicalRequest] | None":
    """The key and request of the stored request nearest to ``request``."""
    best = None
    best_distance = None
    for key, candidate in stored:
        candidate_distance = distance(candidate, request)
        if best_distance is None or candidate_distance < best_distance:
            best, best_distance = (key, candidate), candidate_distance
    return best


def _closest_lines(requested: CanonicalRequest, stored: list[tuple["Key", CanonicalRequest]], cassette: "Store", clock_unread: bool, place: str) -> list[str]:
    """The closest recording, compared as matching sees both (``stored`` and ``requested`` viewed under the rules)."""
    closest = _closest(requested, stored)
    if closest is None:
        return [f"  closest recording: none ({_why_nothing(cassette, 'the cassette is empty')})"]
    key, best_view = closest
    best = cassette.get(*key)  # the one recording whose response and metadata the message needs
    # shown as scrubbed now: what an older cassette stored before a rule counted never reaches the CI log
    scrubbed, best_view = cassette.scrubber.as_looked_up(best.request), cassette.scrubber.as_looked_up(best_view)
    recorded_by = f" by {', '.join(cassette.scrubber.test_ids(best.tests))}" if best.tests else ""
    header = f"  closest recording: {scrubbed.method} {scrubbed.url}, recorded {best.recorded_at}{recorded_by}"
    diff = differences(best_view, requested)
    if not diff:
        return [header, f"    same request, but not at this occurrence: record {place} again to add the missing answers"]
    shown = [f"    {difference.describe(_WIDTH)}" for difference in diff[:_MAX_DIFF_LINES]]
    if len(diff) > _MAX_DIFF_LINES:
        shown.append(f"    … and {len(diff) - _MAX_DIFF_LINES} more differing fields")
    return [header + " (~ changed: recorded -> requested, + only in the request, - only in the recording):", *shown, *_volatile_hint(diff, clock_unread)]


def _volatile_hint(diff: list[FieldDifference], clock_unread: bool) -> list[str]:
    """When only clock readings or generated ids differ, say so and name the fixes."""
    if not all(_only_volatile_change(difference) for difference in diff):
        return []
    whole = [d.path.removeprefix("body.") for d in diff if d.path.startswith("body.") and _is_volatile(d.requested)]
    lines = ["  hint: the request differs from this recording only in values that look like timestamps, dates or UUIDs."]
    if clock_unread:
        lines.append("    - the clock: this test's recording did not read it, so it replays on the real clock; re-record it with --llm-mode=refresh")
    else:
        lines += [
            "    - the clock: llm_cache freezes it at the instant the test recorded at (freeze_time=True, ini llm_freeze_time);",
            "      check it is on for this test and that the value is read during the test, not at import or collection",
        ]
    lines.append("    - generated ids: mask them with a before_fingerprint hook in llm_cache_config, or leave the field out of matching")
    if whole:
        paths = ", ".join(f'"{path}"' for path in whole)
        lines.append(f"      with @pytest.mark.llm_cache(match_ignore=[{paths}]) (or ini llm_match_ignore)")
    return lines


def _only_volatile_change(difference: FieldDifference) -> bool:
    old, new = difference.recorded, difference.requested
    if not isinstance(old, (str, int, float)) or not isinstance(new, (str, int, float)) or isinstance(old, bool) or isinstance(new, bool):
        return False
    old_text, new_text = str(old), str(new)
    return _VOLATILE.search(new_text) is not None and _VOLATILE.sub("\0", old_text) == _VOLATILE.sub("\0", new_text)


def _is_volatile(value: Any) -> bool:
    return _VOLATILE.fullmatch(str(value).strip()) is not None


def _explain_langchain_miss(request: CanonicalRequest, key: "Key", cassette: "Store", record_command: str | None, place: str) -> str:
    """The LangChain layer's miss: the model and prompt, and which settings differ from the closest entry."""
    lines = ["no recording for this LangChain cache lookup (mode 'replay': the model is not called)"]
    lines.append(f"  llm:       {describe_llm(request)}")
    lines.append(f"  prompt:    {_shorten(prompt_text(request))}")
    entries = [(stored_key, stored) for stored_key, stored in _stored_views(cassette) if is_langchain_request(stored)]
    if key[1]:
        lines.append(_repeat_line("lookup", key[1], place, request, entries))
    lines.append(f"  cassette:  {cassette.describe()} ({len(entries)} LangChain entr{'ies' if len(entries) != 1 else 'y'})")
    closest = _closest(request, entries)
    if closest is None:
        lines.append(f"  closest entry: none ({_why_nothing(cassette, 'no LangChain entry is recorded')})")
    else:
        best = cassette.get(*closest[0])
        recorded_by = f" by {', '.join(best.tests)}" if best.tests else ""
        lines.append(f"  closest entry: {describe_llm(best.request)}, recorded {best.recorded_at}{recorded_by}:")
        described = [describe_setting_difference(difference, _WIDTH) for difference in differences(best.request, request)]
        shown = [line for line in described if line is not None] or ["same prompt and settings, but not at this occurrence"]
        lines.extend(f"    {line}" for line in shown[:_MAX_DIFF_LINES])
        if len(shown) > _MAX_DIFF_LINES:
            lines.append(f"    … and {len(shown) - _MAX_DIFF_LINES} more differences")
    lines.append(f"  to record it: {record_command or 'run again in record mode (with an API key)'}")
    return "\n".join(lines)


def _why_nothing(cassette: "Store", empty: str) -> str:
    """A cassette with nothing to compare: a file that is not there is missing (a mistyped path), not empty."""
    path = cassette.path
    if isinstance(path, Path) and not path.exists():
        return f"the cassette {path} is missing: no such file; check --llm-cassette / ini llm_cassette, or record it"
    return empty


def _shorten(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _WIDTH else text[: _WIDTH - 1] + "…"
