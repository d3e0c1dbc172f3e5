"""Cassettes for people: the ``ls`` table, one recording in full (``show``, also git's textconv), ``stats``."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable
from urllib.parse import urlsplit

from ..errors import CommandError
from ..model.interaction import Interaction, Key

if TYPE_CHECKING:
    from ..stores.base import Store
    from ..stores.ledger import RunLedger

_PROMPT_WORDS = 10
_TESTS_WIDTH = 48


def key_text(interaction: Interaction, width: int = 12) -> str:
    """How a recording is named on screen: a fingerprint prefix, ``#n`` for repeats after the first."""
    return interaction.fingerprint[:width] + (f"#{interaction.occurrence}" if interaction.occurrence else "")


def endpoint_text(interaction: Interaction) -> str:
    """``POST api.openai.com/v1/chat/completions``."""
    request = interaction.request
    return f"{request.method} {urlsplit(request.host).netloc or request.host}{request.path}"


def prompt_words(interaction: Interaction, words: int = _PROMPT_WORDS) -> str:
    """The first words of the prompt, on one line."""
    prompt = interaction.request.prompt() or ""
    split = prompt.split()
    return " ".join(split[:words]) + (" …" if len(split) > words else "")


def list_lines(interactions: Iterable[Interaction]) -> list[str]:
    """One aligned row per recording: key, model, endpoint, status, recorded, tests, prompt."""
    rows = [
        (
            key_text(i),
            i.request.model or "-",
            endpoint_text(i),
            str(i.response.status),
            i.recorded_at[:19] or "-",
            _tests_text(i.tests),
            prompt_words(i),
        )
        for i in interactions
    ]
    header = ("KEY", "MODEL", "ENDPOINT", "STATUS", "RECORDED", "TESTS", "PROMPT")
    widths = [max(len(row[column]) for row in [header, *rows]) for column in range(len(header) - 1)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[-1] for row in [header, *rows]]
    lines.append(f"{len(rows)} recording{'s' if len(rows) != 1 else ''}")
    return [line.rstrip() for line in lines]


def _tests_text(tests: tuple[str, ...]) -> str:
    if not tests:
        return "-"
    first = tests[0] if len(tests[0]) <= _TESTS_WIDTH else "…" + tests[0][-_TESTS_WIDTH + 1 :]
    return first + (f" (+{len(tests) - 1})" if len(tests) > 1 else "")


def resolve_key(cassette: "Store", key: str) -> Key:
    """The one recording whose fingerprint starts with ``key`` (``abc123`` or ``abc123#2``), read from the index (no bodies)."""
    prefix, _, occurrence = key.partition("#")
    matches = [found for found, _, _ in cassette.index() if found[0].startswith(prefix) and (not occurrence or str(found[1]) == occurrence)]
    if not matches:
        raise CommandError(f"no recording with key {key!r} in {cassette.describe()}; `llm-replay ls` lists the keys")
    if len(matches) > 1:
        shown = ", ".join(fingerprint[:16] + (f"#{n}" if n else "") for fingerprint, n in matches[:5])
        raise CommandError(f"key {key!r} matches {len(matches)} recordings in {cassette.describe()} ({shown}); give more characters, or add #OCCURRENCE")
    return matches[0]


def find_by_key(cassette: "Store", key: str) -> Interaction:
    """The one recording ``key`` names (see ``resolve_key``), in full."""
    found = cassette.get(*resolve_key(cassette, key))
    if found is None:  # deleted by another process between the two reads
        raise CommandError(f"recording {key!r} was just deleted from {cassette.describe()}")
    return found


def show_lines(interaction: Interaction) -> list[str]:
    """Everything about one recording, in a stable order: the same recording always prints the same text."""
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


def reported_tokens(interaction: Interaction) -> tuple[int, int] | None:
    """Input and output tokens the answer reports (a side it leaves out counts 0), or None when it reports none."""
    found_in, found_out = interaction.usage()
    if found_in is None and found_out is None:
        return None
    return found_in or 0, found_out or 0


def stats_lines(cassette: "Store", ledger: "RunLedger") -> list[str]:
    """Size, recordings, models, tokens recorded; replays counted by pytest runs (their bookkeeping) and what they saved."""
    interactions = list(cassette.interactions())
    usage = ledger.usage()
    models = Counter(i.request.model or "-" for i in interactions)
    tokens = {i.key: reported_tokens(i) for i in interactions}
    with_usage = [t for t in tokens.values() if t is not None]
    replays = {key: count for key, (_, count) in usage.items() if key in tokens}
    saved_tokens = sum(count * sum(tokens[key] or (0, 0)) for key, count in replays.items())
    latency = {i.key: i.latency_ms or 0.0 for i in interactions}
    saved_seconds = sum(count * latency[key] for key, count in replays.items()) / 1000
    last = ledger.last_run()
    return [
        f"cassette:          {cassette.describe()}{_size_text(cassette)}",
        f"recordings:        {len(interactions)}",
        f"models:            {', '.join(f'{name} {count}' for name, count in models.most_common()) or '-'}",
        f"tokens recorded:   {sum(t[0] for t in with_usage):,} in, {sum(t[1] for t in with_usage):,} out"
        f" ({len(with_usage)} of {len(interactions)} recordings report usage)",
        f"replays so far:    {sum(replays.values()):,} (counted at the end of each pytest run, in {ledger.path})",
        f"saved by replays:  {saved_tokens:,} tokens, {saved_seconds:,.1f} s of API time",
        f"last run:          {f'{last.finished_at} ({last.passed} tests passed)' if last else 'none recorded yet'}",
    ]


def _size_text(cassette: "Store") -> str:
    """`` (12.3 KiB)`` on disk, with the write-ahead log, for a store kept in a file; nothing for a server."""
    if not isinstance(cassette.path, Path):
        return ""
    size = sum(path.stat().st_size for path in (cassette.path, cassette.path.with_name(cassette.path.name + "-wal")) if path.exists())
    return f" ({size / 1024:.1f} KiB)"
