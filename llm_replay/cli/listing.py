"""Cassettes for people: the ``ls`` table, one recording in full (``show``, also git's textconv), ``stats``."""

from __future__ import annotations

import functools
import json
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Protocol

from ..engine.langchain_keys import LANGCHAIN_METHOD, is_langchain_request
from ..engine.langchain_keys import prompt_text as langchain_prompt_text
from ..errors import CommandError
from ..model.fingerprint import CanonicalRequest
from ..model.interaction import Interaction, Key

if TYPE_CHECKING:
    from ..engine.pricing import PriceBook
    from ..model.scrub import Scrubber
    from ..stores.base import Store
    from ..stores.ledger import RunLedger
    from .selection import Listed

_PROMPT_WORDS = 10
_TESTS_WIDTH = 48


class Named(Protocol):
    """What naming a recording on screen needs: an Interaction, or a listing row (``selection.Listed``)."""

    fingerprint: str
    occurrence: int
    request: CanonicalRequest


def key_text(interaction: Named, width: int = 12) -> str:
    """How a recording is named on screen: a fingerprint prefix, ``#n`` for repeats after the first."""
    return interaction.fingerprint[:width] + (f"#{interaction.occurrence}" if interaction.occurrence else "")


def endpoint_text(interaction: Named) -> str:
    """``POST api.openai.com/v1/chat/completions``."""
    return interaction.request.endpoint


def prompt_text(request: CanonicalRequest) -> str:
    """What a reader recognises the request by: the last message or prompt; a LangChain entry's prompt as
    text (not its JSON); every input of an embeddings call."""
    if is_langchain_request(request):
        return langchain_prompt_text(request)
    inputs = request.body.get("input") if isinstance(request.body, dict) and request.path.endswith("/embeddings") else None
    if isinstance(inputs, list) and len(inputs) > 1:
        return " | ".join(item if isinstance(item, str) else json.dumps(item) for item in inputs)
    return request.prompt() or ""


def prompt_words(interaction: Named, words: int = _PROMPT_WORDS) -> str:
    """The first words of the prompt, on one line."""
    return _first_words(prompt_text(interaction.request), words)


def listed_prompt(listed: "Listed") -> str:
    """``prompt_text`` of a listing row: a chat request's last message as SQLite read it, else the parsed request."""
    row = listed.row
    if row.last_text is not None and row.method != LANGCHAIN_METHOD:
        return f"({row.last_role or '?'}) {row.last_text}"
    return prompt_text(listed.request)


def _first_words(text: str, words: int = _PROMPT_WORDS) -> str:
    split = text.split(maxsplit=words)
    return " ".join(split[:words]) + (" …" if len(split) > words else "")


def list_lines(rows: Iterable["Listed"]) -> list[str]:
    """One aligned row per recording: key, model, endpoint, status, recorded, tests, prompt."""
    once: dict[str, str] = {}  # models, endpoints and tests repeat: one copy of each keeps 100,000 rows small
    cells = [
        (
            key_text(i),
            *(once.setdefault(text, text) for text in (i.model or "-", i.endpoint, str(i.row.status), i.row.recorded_at[:19] or "-", _tests_text(i.tests))),
            _first_words(listed_prompt(i)),
        )
        for i in rows
    ]
    header = ("KEY", "MODEL", "ENDPOINT", "STATUS", "RECORDED", "TESTS", "PROMPT")
    widths = [max(map(len, column)) for column in list(zip(header, *cells))[:-1]]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[-1] for row in [header, *cells]]
    lines.append(f"{len(cells)} recording{'s' if len(cells) != 1 else ''}")
    return [line.rstrip() for line in lines]


def _tests_text(tests: tuple[str, ...]) -> str:
    if not tests:
        return "-"
    first = tests[0] if len(tests[0]) <= _TESTS_WIDTH else "…" + tests[0][-_TESTS_WIDTH + 1 :]
    return first + (f" (+{len(tests) - 1})" if len(tests) > 1 else "")


def resolve_key(cassette: "Store", key: str) -> Key:
    """The one recording whose fingerprint starts with ``key`` (``abc123`` or ``abc123#2``), read from the index (no bodies);
    one whose owners cannot be read is found too (``rm`` deletes it by its key)."""
    prefix, _, occurrence = key.partition("#")
    unreadable: dict[Key, str] = {}
    keys = [found for found, _, _ in cassette.index(unreadable=unreadable)] + [found for found in unreadable if type(found[1]) is int]
    matches = sorted(found for found in keys if found[0].startswith(prefix) and (not occurrence or str(found[1]) == occurrence))
    if not matches:
        raise CommandError(f"no recording with key {key!r} in {cassette.describe()}; `llm-replay ls` lists the keys")
    if len(matches) > 1:
        shown = ", ".join(fingerprint[:16] + (f"#{n}" if n else "") for fingerprint, n in matches[:5])
        raise CommandError(f"key {key!r} matches {len(matches)} recordings in {cassette.describe()} ({shown}); give more characters, or add #OCCURRENCE")
    return matches[0]


def find_by_key(cassette: "Store", key: str) -> Interaction:
    """The one recording ``key`` names (see ``resolve_key``), in full."""
    resolved = resolve_key(cassette, key)
    found = cassette.get(*resolved)
    if found is None:  # deleted by another process between the two reads
        raise CommandError(f"recording {key!r} was just deleted from {cassette.describe()}")
    try:
        found.request
    except (TypeError, ValueError, KeyError, AttributeError) as error:
        raise CommandError(
            f"recording {key!r} in {cassette.describe()} holds a request llm_replay cannot read ({type(error).__name__}: {error}); "
            f"delete it (llm-replay rm --cassette {cassette.describe()} '{resolved[0]}#{resolved[1]}') and record it again"
        ) from None
    return found


def as_printed(interaction: Interaction) -> Interaction:
    """A recording as ``show``, ``diff`` and ``textconv`` print it: scrubbed by the rules of now, as a pytest run in this
    project would store it, so a secret an older cassette kept (stored before its rule counted, or the value of a key
    the printing machine holds) never reaches a terminal or a CI log. ``llm-replay audit`` tells what the file holds."""
    return _project_scrubber(Path.cwd()).interaction(interaction)


@functools.lru_cache(maxsize=4)
def _project_scrubber(directory: Path) -> "Scrubber":
    from ..engine.project import ini_scrubber

    return ini_scrubber(directory)


def show_lines(interaction: Interaction) -> list[str]:
    """Everything about one recording, in a stable order: the same recording always prints the same text."""
    interaction = as_printed(interaction)
    request, response = interaction.request, interaction.response
    lines = [
        f"key:       {interaction.fingerprint}#{interaction.occurrence}",
        f"request:   {request.method} {request.url}",
        f"model:     {request.model or '-'}",
        f"recorded:  {interaction.recorded_at or '-'}" + (f" in {interaction.latency_ms:g} ms" if interaction.latency_ms is not None else ""),
        f"tests:     {', '.join(interaction.tests) or '-'}",
        f"request body ({request.body_kind}):",
        *_indented(_pretty(request.body)),
        f"response:  {response.status} {response.reason}".rstrip(),
        *(f"  {name.lower()}: {value}" for name in sorted(response.headers, key=str.lower) for value in response.headers[name]),
        "response body:",
        *_indented(_body_text(response.body)),
    ]
    return lines


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)


def _body_text(body: bytes) -> str:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return f"<{len(body)} bytes of binary data>"
    try:
        return _pretty(json.loads(text))
    except ValueError:
        return text


def _indented(text: str) -> list[str]:
    return ["  " + line for line in text.splitlines()] or ["  (empty)"]


def stats_lines(cassette: "Store", ledger: "RunLedger", prices: "PriceBook") -> list[str]:
    """Size, recordings, models, tokens recorded; replays counted by pytest runs (their bookkeeping) and what they
    saved, priced as the session line prices them but by model name only (the URL is not read).

    Read from SQLite's stored columns (model, tokens, latency), never the bodies: 100,000 recordings in a second.
    """
    from ..engine.savings import Savings
    from ..stores.summaries import summaries_of

    size = _size_text(cassette)
    models: Counter[str] = Counter()
    recorded: dict[tuple[str, int], tuple[str | None, int | None, int | None, float | None]] = {}  # key -> model, tokens in/out, ms
    for row in summaries_of(cassette):
        models[row.model or "-"] += 1
        recorded[(row.fingerprint, row.occurrence)] = (row.model, row.input_tokens, row.output_tokens, row.latency_ms)
    with_usage = [(tokens_in or 0, tokens_out or 0) for _, tokens_in, tokens_out, _ in recorded.values() if tokens_in is not None or tokens_out is not None]
    replays = {key: count for key, (_, count) in ledger.usage().items() if key in recorded}
    saved = Savings()
    for key, count in replays.items():
        model, tokens_in, tokens_out, latency_ms = recorded[key]
        saved.add(prices, count, model, "", (tokens_in, tokens_out), latency_ms)
    last = ledger.last_run()
    return [
        f"cassette:          {cassette.describe()}{size}",
        f"recordings:        {len(recorded)}",
        f"models:            {', '.join(f'{name} {count}' for name, count in models.most_common()) or '-'}",
        f"tokens recorded:   {sum(t[0] for t in with_usage):,} in, {sum(t[1] for t in with_usage):,} out ({len(with_usage)} of {len(recorded)} recordings report usage)",
        f"replays so far:    {sum(replays.values()):,} (counted at the end of each pytest run, in {ledger.path})",
        f"saved by replays:  {saved.text()}",
        f"last run:          {f'{last.finished_at} ({last.passed} tests passed)' if last else 'none recorded yet'}",
    ]


def _size_text(cassette: "Store") -> str:
    """`` (12.3 KiB)`` on disk, with the write-ahead log, for a store kept in a file; nothing for a server."""
    if not isinstance(cassette.path, Path):
        return ""
    size = sum(path.stat().st_size for path in (cassette.path, cassette.path.with_name(cassette.path.name + "-wal")) if path.exists())
    return f" ({size / 1024:.1f} KiB)"
