"""``llm-replay scrub [PATH|URL...]``: remove from cassettes and exports every secret ``llm-replay audit`` finds there.

A cassette is rewritten in place: each recording is stored again through the Scrubber (credential headers,
query parameters and body fields, test ids, secrets a stream spreads over its events; a body an older version stored
still compressed is stored decoded), then every remaining secret the audit recognises is replaced in
every cell of every table, the write-ahead log is folded in and removed, and VACUUM rebuilds the file so
no deleted row survives in free space. A Redis cassette is scrubbed the same way, key by key under its
prefix (what the server's own RDB/AOF files still hold is the server's to rewrite). Keys stay as they
were, so what still matches still replays.
"""

from __future__ import annotations

import argparse
import gzip
import sqlite3
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import CassetteError, CommandError
from ..model.content_coding import decoded
from ..model.interaction import Interaction
from ..model.streamed_text import looks_streamed
from ..stores.base import Store
from ..stores.spec import open_store, redacted
from ..stores.sqlite import SQLiteCache
from .audit import SIDE_FILES, Audit, Export, audit_for, cassette_files, is_sqlite, read_text, response_body, table_rows


def scrub_cassette(path: Path, audit: Audit) -> int:
    """Scrub one SQLite cassette in place; how many cells changed."""
    cassette = SQLiteCache(path, scrubber=audit.scrubber)
    try:
        _put_again(cassette)
    finally:
        cassette.close()  # folds the -wal in, back to one plain file
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("PRAGMA secure_delete = ON")
        changed = 0
        connection.execute("BEGIN IMMEDIATE")
        for table, columns, key_name, rows in table_rows(connection):
            keys = key_name.split(",")
            for row in rows.fetchall():
                key, cells = row[: len(keys)], row[len(keys):]
                updates = {column: new for column, cell in zip(columns, cells) if (new := _scrubbed(cell, audit)) is not cell}
                if updates:
                    assignments = ", ".join(f'"{column}" = ?' for column in updates)
                    where = " AND ".join(f'"{name}" IS ?' for name in keys)
                    # ids that differed only by a key ("t[<key 1>-gpt-4o]", "t[<key 2>-gpt-4o]") are one id now: one row
                    # replaces the other, as the cassette's own writes of a test's instant do (INSERT OR REPLACE)
                    connection.execute(f'UPDATE OR REPLACE "{table}" SET {assignments} WHERE {where}', (*updates.values(), *key))
                    changed += len(updates)
        connection.execute("COMMIT")
        connection.execute("VACUUM")  # free pages and in-page free space go: no deleted row is left in the file
    finally:
        connection.close()
    for suffix in SIDE_FILES:  # SQLite removed its own; what is left belongs to no open transaction
        path.with_name(path.name + suffix).unlink(missing_ok=True)
    return changed


def scrub_redis(url: str, audit: Audit) -> int:
    """Scrub one Redis cassette in place (every key under its prefix); how many names and values changed."""
    from ..stores.redis import RedisCache

    cassette = open_store(url, scrubber=audit.scrubber)
    if not isinstance(cassette, RedisCache):
        cassette.close()
        raise CommandError(f"scrub rewrites files and redis:// cassettes, not {redacted(url)}")
    try:
        _put_again(cassette)
        return cassette.rewrite(lambda data: _scrubbed(data, audit))
    finally:
        cassette.close()


def _put_again(cassette: Store) -> None:
    """Store every recording again, through the cassette's Scrubber (credential headers, fields, test ids, secrets
    spread over a stream's events), a body an older version stored still compressed decoded first."""
    for interaction in list(cassette.interactions()):
        cassette.put(_decoded(interaction))


def _decoded(interaction: Interaction) -> Interaction:
    """The recording with its body's stored Content-Encoding undone (the header dropped, Content-Length the decoded
    size), as recording stores answers now; as it was when it has none, or one that cannot be undone (the audit after
    the scrub names it)."""
    response = interaction.response
    if not any(name.lower() == "content-encoding" for name in response.headers):
        return interaction
    try:
        headers, body = decoded(response.headers, response.body)
    except CassetteError:
        return interaction
    return replace(interaction, response=replace(response, headers=headers, body=body))


def _scrubbed(cell: Any, audit: Audit) -> Any:
    """The cell with its secrets replaced; the very same object when there were none."""
    if isinstance(cell, str):
        new = audit.replaced(cell)
        return cell if new == cell else new
    if isinstance(cell, bytes):
        text = cell.decode("utf-8", "surrogateescape")
        new = audit.replaced(text)
        return cell if new == text else new.encode("utf-8", "surrogateescape")
    return cell


def scrub_text_file(path: Path, audit: Audit) -> bool:
    """Scrub an export (YAML, JSON, gzip'd or not) in place; whether it changed."""
    text = read_text(path)
    new = audit.replaced(_streams_replaced(text, audit))
    if new == text:
        return False
    data = new.encode("utf-8", "surrogateescape")
    path.write_bytes(gzip.compress(data) if path.read_bytes()[:2] == b"\x1f\x8b" else data)
    return True


def _streams_replaced(text: str, audit: Audit) -> str:
    """An export's text with the secrets of its streamed answers replaced as in a cassette (``Audit.replaced``: each
    field's pieces joined, an event stream's payloads and base64 chunks decoded, its frames rebuilt), written again by
    its serializer (and each changed body's Content-Length); the text as it was when no stream changed."""
    export = Export.of(text)
    changed = False
    for _, response in export.responses:
        body = response_body(response)
        if body is None or not looks_streamed(body):
            continue
        old = body.decode("utf-8", "surrogateescape")
        new = audit.replaced(old).encode("utf-8", "surrogateescape")
        if new != body:
            _set_body(response, new)
            changed = True
    return export.serializer.serialize(export.data) if changed else text


def _set_body(response: dict[str, Any], body: bytes) -> None:
    """Put ``body`` in an export's response as its body was written (text, or bytes as ``!!binary``), its length too."""
    old = response["body"]
    string = old.get("string") if isinstance(old, dict) else old
    value: str | bytes = body.decode("utf-8", "surrogateescape") if isinstance(string, str) else body
    response["body"] = {**old, "string": value} if isinstance(old, dict) else value
    headers = response.get("headers")
    for name in list(headers) if isinstance(headers, dict) else ():
        if name.lower() == "content-length":
            headers[name] = [str(len(body))] if isinstance(headers[name], list) else str(len(body))


def run_scrub(args: argparse.Namespace) -> int:
    """Scrub every file the arguments name; then audit them again and say what is left (exit 1 if anything)."""
    audit, paths = audit_for(args)
    files = [file for path in paths for file in ([path] if isinstance(path, str) else cassette_files(path))]
    for file in files:
        if isinstance(file, str):
            print(f"{redacted(file)}: {scrub_redis(file, audit)} names and values scrubbed under its prefix")
        elif is_sqlite(file):
            print(f"{file}: {scrub_cassette(file, audit)} cells scrubbed, write-ahead log folded in, free space vacuumed")
        else:
            print(f"{file}: {'scrubbed' if scrub_text_file(file, audit) else 'nothing to scrub'}")
    left = [finding for path in paths for finding in audit_for(args)[0].scan_path(path)]
    for finding in left:
        print(f"still there: {finding.describe()}")
    print(f"llm-replay scrub: {len(files)} files scrubbed; {len(left)} secrets left")
    return 1 if left else 0
