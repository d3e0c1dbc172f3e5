"""``llm-replay audit [PATH|URL...]``: find secrets in every byte of cassettes and exports before they reach git.

An SQLite cassette is read three ways: every cell of every table (JSON keys and header names included,
as they are text in their cells), the raw file (a deleted row lives on in free space until the file is
vacuumed), and the files beside it (``-wal``, ``-journal``). Any other file (a YAML or JSON export,
gzip'd or not) is read as text. A Redis cassette (a ``redis://`` URL) is read key by key under its prefix:
every key name, field name, member and value. What counts as a secret: key shapes (``secret_shapes``), the values of the
current secret environment variables, and the project's ini ``llm_secret_env``/``llm_secret_patterns``.
Each finding names where it is and the command that removes it. Exit status 1 if anything is found.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import bisect
import gzip
import itertools
import json
import re
import shlex
import sqlite3
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Iterator

from ..errors import CassetteError, CommandError
from ..model.content_coding import decoded as content_decoded
from ..model.credentials import is_secret_header
from ..model.scrub import MIN_SECRET_LENGTH, PATTERN_PLACEHOLDER, Scrubber, base64_texts, env_placeholder, named_secret_values
from ..model.streamed_text import StreamedBody, looks_streamed
from ..stores.spec import open_store, redacted, scheme
from ..stores.sqlite import SQLITE_MAGIC, SQLiteCache
from .secret_shapes import is_made_up, require_detectors, secret_shapes

DEFAULT_PATHS = ("cassettes",)
CASSETTE_SUFFIXES = (".sqlite3", ".sqlite", ".db", ".yaml", ".yml", ".json", ".yaml.gz", ".yml.gz", ".json.gz")
SIDE_FILES = ("-wal", "-journal")
_BATCH = 2000  # rows scanned as one text: the detectors run once per batch, and again cell by cell only where they hit
_SEPARATOR = "\n\x00\n"


@dataclass(frozen=True)
class Finding:
    """One secret: the file, where in it (table/row/column, or a byte offset), what it looks like, and its remedy."""

    path: Path | str  # a file, or a Redis cassette's URL without its password
    where: str
    kind: str
    value: str
    remedy: str

    def describe(self) -> str:
        """``file: where: kind 'sk-pro…wxyz' (remove: command)``, the value masked so the report leaks nothing."""
        shown = f" {_mask(self.value)!r}" if self.value else ""
        return f"{self.path}: {self.where}: {self.kind}{shown} (remove: {self.remedy})"


@dataclass
class Audit:
    """Scans files and keeps what it found and how much it read. ``flags`` are repeated in the remedy command."""

    scrubber: Scrubber
    flags: tuple[str, ...] = ()
    files: int = 0
    rows: int = 0
    bytes_scanned: int = 0
    _placeholders: dict[str, str] = field(default_factory=dict)

    def detect(self, text: str, raw: bool = False) -> Iterator[tuple[str, str]]:
        """(kind, value) of each secret in ``text`` (``raw``: a file's bytes, read one character per byte)."""
        self.bytes_scanned += len(text)
        seen = set()
        for kind, value in self._detected(text, raw):
            if value not in seen:  # two detectors may know the same shape: one finding
                seen.add(value)
                yield kind, value

    def _detected(self, text: str, raw: bool) -> Iterator[tuple[str, str]]:
        yield from secret_shapes(text, raw)
        for value in named_secret_values(text):  # an older cassette's, stored before its name counted (accessToken)
            if len(value) >= MIN_SECRET_LENGTH and not is_made_up(value):
                yield "value of a secret-named field", value
        for value, name in self.scrubber.env_secrets():
            if value in text:
                self._placeholders[value] = env_placeholder(name)
                yield f"value of environment variable ${name}", value
        for pattern, value in self.scrubber.pattern_matches(text):
            yield f"match of secret pattern {pattern!r}", value

    def replaced(self, text: str) -> str:
        """``text`` with every secret the audit finds in it replaced by a placeholder (longest first), in the bytes
        behind its base64 bodies too (re-encoded); in a stream, in each field's text joined from its pieces too, and
        in an event stream's payloads and the JSON under their base64 (its frames rebuilt)."""
        if _looks_streamed(text):
            streamed = self._stream_replaced(text)
            if streamed is not None:
                return streamed
        text = self._replaced(text)
        for encoded in _base64_pieces(text):
            decoded = _decoded_base64(encoded)
            new = self._replaced(decoded) if decoded else decoded
            if new != decoded:
                text = text.replace(encoded, _encoded_like(encoded, new))
        return text

    def _replaced(self, text: str) -> str:
        """``text`` with each secret found in it replaced; in markup (XML, HTML: the text starts with ``<``) by the
        placeholder as text (``&lt;scrubbed&gt;``), which a parser reads as ``<scrubbed>``, so the body stays well-formed."""
        values = sorted({value for _, value in self.detect(text) if value}, key=len, reverse=True)
        markup = bool(values) and text.lstrip()[:1] == "<"
        for value in values:
            placeholder = self._placeholders.get(value, PATTERN_PLACEHOLDER)
            text = text.replace(value, placeholder.replace("<", "&lt;").replace(">", "&gt;") if markup else placeholder)
        return text

    def _stream_replaced(self, text: str) -> str | None:
        """``replaced`` of a stream body (None if it is none after all): an SSE body's text, or each of an event
        stream's payloads, then the secrets found in the fields' joined pieces (``StreamedBody.replace``)."""
        data = text.encode("utf-8", "surrogateescape")
        if data[:1] == b"\x00":
            stream = StreamedBody.of(data, lambda payload: self._replaced(payload.decode("utf-8", "surrogateescape")).encode("utf-8", "surrogateescape"))
            if stream is None:
                return None
        else:
            data = self._replaced(text).encode("utf-8", "surrogateescape")
            stream = StreamedBody.of(data)
            if stream is None:
                return data.decode("utf-8", "surrogateescape")
        values = sorted({value for _, value in self.detect(stream.text()) if value}, key=len, reverse=True)
        if values:
            stream.replace(lambda joined: [(start, start + len(value), self._placeholders.get(value, PATTERN_PLACEHOLDER))
                                           for value in values for start in _offsets(joined, value)])
        return stream.body().decode("utf-8", "surrogateescape")

    def remedy(self, path: Path | str) -> str:
        """The command that removes what was found in ``path`` (a cassette's side files: the cassette's)."""
        return shlex.join(["llm-replay", "scrub", str(path), *self.flags])

    def scan_path(self, path: Path | str) -> Iterator[Finding]:
        """Findings in one file or Redis cassette, or in every cassette-like file under a folder."""
        if isinstance(path, str):
            self.files += 1
            yield from self.scan_redis(path)
            return
        for file in cassette_files(path):
            self.files += 1
            yield from self.scan_cassette(file) if is_sqlite(file) else self.scan_text_file(file)

    def scan_redis(self, url: str) -> Iterator[Finding]:
        """Every key under the cassette's prefix: its name, and each field name, value and member it holds."""
        from ..stores.redis import RedisCache

        shown, remedy = redacted(url), self.remedy(redacted(url))
        cassette = open_store(url, readonly=True)
        if not isinstance(cassette, RedisCache):
            cassette.close()
            raise CommandError(f"audit reads files and redis:// cassettes, not {shown}")
        stored_headers: list[Finding] = []

        def keys() -> Iterator[tuple[str, list[tuple[str, str, str]]]]:
            for name, value in cassette.raw():
                key, texts = _named(name.decode("utf-8", "surrogateescape")), list(_key_texts(value))
                for header in (header for place, text, _ in texts if place == "field headers" for header in _header_names(text)):
                    stored_headers.append(Finding(shown, f"key {key}, field headers", f"credential header {header!r} stored", "", remedy))
                if isinstance(value, dict) and b"body" in value:
                    unread = _unread_body(value.get(b"headers", b"{}").decode("utf-8", "surrogateescape"), value[b"body"])
                    if unread:
                        stored_headers.append(Finding(shown, f"key {key}, field body", unread, "", _unread_remedy(remedy)))
                yield key, texts

        try:
            for key, place, text, source in _flagged(keys(), self):
                for kind, value in self.detect(text):
                    if value not in source:  # else found in the text it was read from
                        yield Finding(shown, f"key {key}, {place}{_json_place(text)}", kind, value, remedy)
            yield from stored_headers
        finally:
            cassette.close()

    def scan_cassette(self, path: Path) -> Iterator[Finding]:
        """Every cell of every table, then the deleted data left in the file's free space, then the side files."""
        remedy = self.remedy(path)
        SQLiteCache(path, readonly=True).close()  # refuses, naming the file, what is no cassette at all
        with _read_only(path) as connection:
            try:  # SQLite finds a damaged page only when a query reads it
                yield from self._scan_rows(path, connection, remedy)
                page_size = connection.execute("PRAGMA page_size").fetchone()[0]
            except sqlite3.DatabaseError as error:
                raise CassetteError(f"cannot read {path} to the end as SQLite ({error}); nothing was changed. Restore it from git, then audit it again") from error
        with path.open("rb") as handle:  # page by page: a 150 MB cassette is never in memory whole
            free = _free_pages(handle, page_size)
            starts, regions = _free_space(handle, page_size, free)
        text = _SEPARATOR.join(region.decode("latin-1") for region in regions)
        positions = list(itertools.accumulate((len(region) + len(_SEPARATOR) for region in regions[:-1]), initial=0))
        for kind, value, found_at in self._raw(text):
            for position in found_at:
                index = bisect.bisect_right(positions, position) - 1
                offset = starts[index] + position - positions[index]
                page = offset // page_size + 1
                place = "free page" if page in free else "free space in page"
                yield Finding(path, f"deleted data: {place} {page}, byte offset {offset}", kind, value, remedy)
        for suffix in SIDE_FILES:
            side = path.with_name(path.name + suffix)
            if side.is_file():
                for kind, value, offsets in self._raw(side.read_bytes().decode("latin-1")):
                    for offset in offsets:
                        yield Finding(side, f"byte offset {offset}", kind, value, remedy)

    def _scan_rows(self, path: Path, connection: sqlite3.Connection, remedy: str) -> Iterator[Finding]:
        """The findings in the cells, then the credential headers and unreadable bodies of the recordings (a headers
        field that is not JSON, hand-edited, names no header: its text was searched with the other cells)."""
        for where, text, source in _cells(connection, self):
            for kind, value in self.detect(text):
                if value not in source:  # else found in the text it was read from
                    yield Finding(path, where, kind, value, remedy)
        if connection.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'interactions'").fetchone() is None:
            return  # a cassette no run has written to yet
        for fingerprint, occurrence, headers in connection.execute("SELECT fingerprint, occurrence, headers FROM interactions"):
            headers = headers if isinstance(headers, str) else ""
            for name in _header_names(headers):
                yield Finding(path, f"table interactions, row {fingerprint}#{occurrence}, column headers", f"credential header {name!r} stored", "", remedy)
            if _CODING in headers.lower():  # an older cassette's body stored still compressed: is it readable?
                (body,) = connection.execute("SELECT body FROM interactions WHERE fingerprint = ? AND occurrence = ?", (fingerprint, occurrence)).fetchone()
                unread = _unread_body(headers, body)
                if unread:
                    yield Finding(path, f"table interactions, row {fingerprint}#{occurrence}, column body", unread, "", _unread_remedy(remedy))

    def scan_text_file(self, path: Path) -> Iterator[Finding]:
        """Any other file (a YAML or JSON export, gzip'd or not), with the line of each finding; a YAML ``!!binary``
        value (a body that is not UTF-8, as vcrpy writes it) is read as the bytes it stands for."""
        text = read_text(path)
        for kind, value, offsets in self._raw(text, raw=False):
            for offset in offsets:
                yield Finding(path, f"line {text.count(chr(10), 0, offset) + 1}", kind, value, self.remedy(path))
        for match in _YAML_BINARY.finditer(text):
            decoded = _decoded_base64(match.group(1) or match.group(2))
            line = text.count("\n", 0, match.start()) + 1
            for kind, value in self.detect(decoded) if decoded else ():
                yield Finding(path, f"line {line} (!!binary, decoded)", kind, value, self.remedy(path))
        for number, response in Export.of(text).responses:  # what no search of the text sees: streams joined, chunks decoded
            body = response_body(response)
            pieces = _body_pieces(f"interaction {number}, response body", _headers_text(response), body) if body is not None else []
            for place, piece, source in pieces:
                for kind, value in self.detect(piece):
                    if value not in source:  # else found in the text it was read from
                        yield Finding(path, place, kind, value, self.remedy(path))

    def _raw(self, text: str, raw: bool = True) -> Iterator[tuple[str, str, list[int]]]:
        """(kind, value, every offset of it) for each distinct secret in ``text`` (``raw``: bytes read as text)."""
        for kind, value in self.detect(text, raw):
            if value:
                yield kind, value, list(_offsets(text, value))


def cassette_files(path: Path) -> list[Path]:
    """The file itself, or every cassette-like file under a folder."""
    if not path.is_dir():
        return [path]
    return [child for child in sorted(path.rglob("*")) if child.is_file() and child.name.endswith(CASSETTE_SUFFIXES)]


def is_sqlite(path: Path) -> bool:
    """Whether ``path`` is an SQLite file (by its first bytes, whatever its name)."""
    with path.open("rb") as handle:
        return handle.read(len(SQLITE_MAGIC)) == SQLITE_MAGIC


def read_text(path: Path) -> str:
    """A text file's content, gunzipped if it is gzip'd."""
    data = path.read_bytes()
    return (gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data).decode("utf-8", "surrogateescape")


class Export:
    """A vcrpy cassette read from an export's text (YAML, or JSON as vcrpy's json serializer writes it): its data, the
    serializer that writes it back, and each interaction's response (numbered from 1); none when the text is no cassette."""

    def __init__(self, data: Any, serializer: Any, responses: list[tuple[int, dict[str, Any]]]) -> None:
        self.data, self.serializer, self.responses = data, serializer, responses

    @classmethod
    def of(cls, text: str) -> "Export":
        """The cassette in ``text``: vcrpy's format (``interactions:``) or LangChain's parallel ``responses:`` list."""
        from vcr.serializers import jsonserializer, yamlserializer

        for serializer in (jsonserializer, yamlserializer) if text.lstrip()[:1] == "{" else (yamlserializer,):
            try:
                data = serializer.deserialize(text)
            except Exception:  # json's ValueError, yaml.YAMLError (yaml is not imported here): no cassette of this kind
                continue
            if isinstance(data, dict) and isinstance(data.get("interactions"), list):
                responses = [item.get("response") if isinstance(item, dict) else None for item in data["interactions"]]
            elif isinstance(data, dict) and isinstance(data.get("responses"), list):
                responses = data["responses"]
            else:
                break
            return cls(data, serializer, [(number, response) for number, response in enumerate(responses, start=1) if isinstance(response, dict)])
        return cls(None, None, [])


def response_body(response: dict[str, Any]) -> bytes | None:
    """An export's response body as bytes (``{string: …}`` as vcrpy writes it, or the text itself), None if it has none."""
    body = response.get("body")
    string = body.get("string") if isinstance(body, dict) else body
    if isinstance(string, str):
        return string.encode("utf-8", "surrogateescape")
    return string if isinstance(string, bytes) else None


def _headers_text(response: dict[str, Any]) -> str:
    """An export's response headers as a cassette stores them (JSON), for ``_body_pieces``."""
    headers = response.get("headers")
    return json.dumps(headers, default=str) if isinstance(headers, dict) else "{}"


class _read_only:
    """A read-only connection that sees what the ``-wal`` holds too, and never writes beside the file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> sqlite3.Connection:
        try:
            self.connection = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True)
            self.connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.DatabaseError as error:
            raise CassetteError(f"cannot read {self.path} as SQLite ({error})") from error
        return self.connection

    def __exit__(self, *exc: Any) -> None:
        self.connection.close()


def table_rows(connection: sqlite3.Connection) -> Iterator[tuple[str, list[str], str, Iterable[tuple]]]:
    """(table, its column names, how a row is named, its rows) for every table; each row starts with its key."""
    tables = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").fetchall()
    for (table,) in tables:
        info = connection.execute(f"PRAGMA table_info({_quoted(table)})").fetchall()
        columns = [row[1] for row in info]
        keys = [row[1] for row in sorted(info, key=lambda row: row[5]) if row[5]]
        key_names = keys or ["rowid"]  # a WITHOUT ROWID table always has a primary key
        selected = ", ".join([*map(_quoted, key_names), *map(_quoted, columns)])
        yield table, columns, ",".join(key_names), connection.execute(f"SELECT {selected} FROM {_quoted(table)}")


def _cells(connection: sqlite3.Connection, audit: Audit) -> Iterator[tuple[str, str, str]]:
    """(where, text, source) of every text and blob cell that may hold a secret, plus the schema's text, and what a
    cell stands for that no search of it sees (``source``: the cell a text was read from, or "" for a cell itself)."""
    for name, sql in connection.execute("SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL"):
        yield f"schema of {name}", sql, ""
    for table, columns, key_name, rows in table_rows(connection):
        width = len(key_name.split(","))
        answers = (columns.index("headers"), columns.index("body")) if table == "interactions" and {"headers", "body"} <= set(columns) else None
        texts = ((row[:width], _row_pieces(columns, row[width:], answers)) for row in rows)
        for key, column, text, source in _flagged(texts, audit):
            yield f"table {table}, row {'#'.join(_named(str(part)) for part in key)}, column {column}{_json_place(text)}", text, source


def _row_pieces(columns: list[str], cells: tuple, answers: tuple[int, int] | None) -> list[tuple[str, str, str]]:
    """(column, text, source) of a row's cells, then what they stand for: a request's base64 body decoded, and (in a
    row of ``interactions``: ``answers`` are where its headers and body are) a response body's decoded, event stream
    and joined stream texts (``_body_pieces``)."""
    pieces = [piece for column, cell in zip(columns, cells) if (text := _text(cell)) for piece in _with_binary(column, text)]
    if answers is not None:
        headers, body = _text(cells[answers[0]]), cells[answers[1]]
        body = body.encode("utf-8", "surrogateescape") if isinstance(body, str) else body if isinstance(body, bytes) else b""  # a hand-edited number or NULL
        pieces += _body_pieces("body", headers, body)
    return pieces


def _flagged(rows: Iterable[tuple[Any, list[tuple[str, str, str]]]], audit: Audit) -> Iterator[tuple[Any, str, str, str]]:
    """(row, place, text, source) of every text in a batch of ``_BATCH`` rows whose texts, read as one, hold a secret:
    the detectors run once per batch, and again text by text only where they hit. Each row is counted."""
    rows = iter(rows)
    while batch := list(itertools.islice(rows, _BATCH)):
        audit.rows += len(batch)
        if any(True for _ in audit.detect(_SEPARATOR.join(text for _, texts in batch for _, text, _ in texts))):
            yield from ((row, place, text, source) for row, texts in batch for place, text, source in texts)


def _named(part: str) -> str:
    """A row's or key's name as a finding shows it: masked if it is itself a secret."""
    return _mask(part) if any(True for _ in secret_shapes(part)) else part


def _key_texts(value: Any) -> Iterator[tuple[str, str, str]]:
    """(place, text, source) of every piece a Redis key holds: a string's value, a hash's field names and values, a
    set's members; and what a recording's body stands for (``_body_pieces``)."""
    if isinstance(value, dict):
        for name, data in value.items():
            field_name = name.decode("utf-8", "surrogateescape")
            yield f"name of field {_named(field_name)}", field_name, ""
            yield f"field {_named(field_name)}", data.decode("utf-8", "surrogateescape"), ""
        if b"body" in value:
            yield from _body_pieces("field body", value.get(b"headers", b"{}").decode("utf-8", "surrogateescape"), value[b"body"])
    elif isinstance(value, list):
        for member in value:
            yield "member", member.decode("utf-8", "surrogateescape"), ""
    else:
        yield from _with_binary("value", value.decode("utf-8", "surrogateescape"))


def _with_binary(place: str, text: str) -> Iterator[tuple[str, str, str]]:
    """(place, text, ""), then the bytes behind a stored request's base64 body (a body or form field that is not UTF-8),
    where no text search sees a key."""
    yield place, text, ""
    decoded = "\n".join(filter(None, map(_decoded_base64, _base64_pieces(text))))
    if decoded:
        yield f"{place}, base64 body decoded", decoded, text


_CODING = "content-encoding"


def _unread_remedy(remedy: str) -> str:
    """What to do about a body the audit cannot read: scrub once llm_replay can decode it (a package installed)."""
    return f"{remedy} once llm_replay can decode it, or re-record it"


def _body_pieces(place: str, headers: str, body: bytes) -> list[tuple[str, str, str]]:
    """(place, text, source) of what a stored response body stands for, where no search of its bytes sees a secret:
    the body an older cassette stored still compressed (by its stored Content-Encoding), an event stream's payloads
    and the JSON under their base64 ``bytes``, and each streamed field's pieces joined (a key streamed a few
    characters per event). Only a stream or a body with a coding is read further: any other costs two looks."""
    pieces: list[tuple[str, str, str]] = []
    source = None
    if _CODING in headers.lower():
        coding, data = _decoded_body(headers, body)
        if coding and data != body:
            source = data.decode("utf-8", "surrogateescape")
            pieces.append((f"{place}, decoded from Content-Encoding {coding!r}", source, body.decode("utf-8", "surrogateescape")))
            body = data
    if not looks_streamed(body):
        return pieces
    if source is None:
        source = body.decode("utf-8", "surrogateescape")
    stream = StreamedBody.of(body)
    if stream is None:
        return pieces
    if body[:1] == b"\x00":
        payloads = stream.raw().decode("utf-8", "surrogateescape")
        pieces.append((f"{place}, event stream payloads decoded", payloads, source))
        source += payloads  # what is whole in a payload is found there
    joined = stream.text()
    if joined:
        pieces.append((f"{place}, streamed text joined per field", joined, source))
    return pieces


def _decoded_body(headers: str, body: bytes) -> tuple[str, bytes]:
    """(the stored Content-Encoding, the body with it undone); ("", body) when there is none or it cannot be undone."""
    try:
        stored = json.loads(headers)
        coding = ", ".join(value for name, values in stored.items() if name.lower() == _CODING for value in values)
        return coding, content_decoded(stored, body)[1]
    except (CassetteError, ValueError, AttributeError, TypeError):
        return "", body


def _unread_body(headers: str, body: Any) -> str:
    """Why a body stored with a Content-Encoding cannot be read (a coding llm_replay cannot undo, or bytes that do not
    decode as it), or "" when it can (or has none)."""
    if _CODING not in headers.lower():
        return ""
    try:
        content_decoded(json.loads(headers), body.encode() if isinstance(body, str) else bytes(body))
    except CassetteError as error:
        reason = re.split(r"; (?:llm_replay stores|stored encoded)", str(error))[0]
        return f"response body stored still encoded, which the audit cannot read: {reason}"
    except (ValueError, AttributeError, TypeError):
        pass  # headers that are not a JSON object: nothing says the body is encoded
    return ""


def _looks_streamed(text: str) -> bool:
    """``looks_streamed`` of a cell read as text."""
    return looks_streamed(text[:64].encode("utf-8", "surrogateescape"))


def _base64_pieces(text: str) -> list[str]:
    """The base64 texts in a stored request (a ``bytes`` body, a form's non-UTF-8 fields) or a YAML export
    (``!!binary`` values), and a file sent as base64 in a JSON string (a ``data:`` URL, a document's ``data``), as they
    are written in ``text``."""
    pieces: list[str] = []
    if text[:1] == "{" and ('"body_kind":"bytes"' in text or '"base64":' in text):
        try:
            request = json.loads(text)
        except ValueError:
            request = None
        pieces = base64_texts(request.get("body_kind"), request.get("body")) if isinstance(request, dict) else []
    elif "!!binary" in text:
        pieces = [match.group(1) or match.group(2) for match in _YAML_BINARY.finditer(text)]
    if text[:1] != "\x00" and ("base64" in text or '"data"' in text or '"bytes"' in text):  # an event stream: _body_pieces
        pieces += [found for found in dict.fromkeys(_JSON_BASE64.findall(text)) if found not in pieces]
    return pieces


# base64 as a JSON string or after a data: URL's "base64," (a file OpenAI, Anthropic, Gemini take inline): long enough
# for a key, ending with the string
_JSON_BASE64 = re.compile(r'(?:base64,|")([A-Za-z0-9+/]{24,}={0,2})(?=")')


def _encoded_like(encoded: str, decoded: str) -> str:
    """``decoded`` (as the audit reads bytes) in base64, laid out as ``encoded`` was: one line, or a YAML block's
    indented line."""
    data = base64.b64encode(decoded.encode("utf-8", "surrogateescape")).decode("ascii")
    indent = encoded[: len(encoded) - len(encoded.lstrip(" \t"))]
    return indent + data + ("\n" if encoded.endswith("\n") else "")


def _decoded_base64(encoded: str) -> str:
    """The bytes behind base64 text, as the audit reads bytes (undecodable bytes kept apart); "" if it is no base64."""
    try:
        return base64.b64decode("".join(encoded.split()), validate=True).decode("utf-8", "surrogateescape")
    except (binascii.Error, ValueError):
        return ""


# vcrpy's YAML writes a body that is not UTF-8 as a block (``!!binary |`` and indented lines) or inline
_YAML_BINARY = re.compile(r"!!binary\s*\|[-+]?[ \t]*\n((?:[ \t]+[A-Za-z0-9+/=]+[ \t]*(?:\n|$))+)|!!binary[ \t]+['\"]?([A-Za-z0-9+/=]{8,})")


def _header_names(text: str) -> list[str]:
    """The credential header names in a stored headers field (JSON), if it is one."""
    try:
        headers = json.loads(text)
    except ValueError:
        return []
    return [name for name in headers if is_secret_header(name)] if isinstance(headers, dict) else []


def _json_place(text: str) -> str:
    """Whether a JSON cell holds secrets in its keys (a header name, an object key): said in the location."""
    if text[:1] not in "{[":
        return ""
    try:
        value = json.loads(text)
    except ValueError:
        return ""
    return " (JSON, keys included)" if _has_keys(value) else " (JSON)"


def _has_keys(value: Any) -> bool:
    if isinstance(value, dict):
        return bool(value)
    return isinstance(value, list) and any(_has_keys(item) for item in value)


def _text(cell: Any) -> str:
    if isinstance(cell, str):
        return cell
    if isinstance(cell, bytes):
        return cell.decode("utf-8", "surrogateescape")
    return ""


def _offsets(text: str, value: str) -> Iterator[int]:
    start = text.find(value)
    while start >= 0:
        yield start
        start = text.find(value, start + 1)


def _page(handle: BinaryIO, number: int, page_size: int) -> bytes:
    handle.seek((number - 1) * page_size)
    return handle.read(page_size)


def _free_pages(handle: BinaryIO, page_size: int) -> set[int]:
    """The page numbers on the file's freelist (trunk and leaf pages), read from the raw file."""
    header = _page(handle, 1, 100)
    trunk, count = int.from_bytes(header[32:36], "big"), int.from_bytes(header[36:40], "big")
    pages: set[int] = set()
    while 0 < trunk and len(pages) < count:
        pages.add(trunk)
        page = _page(handle, trunk, page_size)
        leaves = min(int.from_bytes(page[4:8], "big"), page_size // 4 - 2)
        pages.update(int.from_bytes(page[8 + 4 * index: 12 + 4 * index], "big") for index in range(leaves))
        trunk = int.from_bytes(page[:4], "big")
    return pages


def _free_space(handle: BinaryIO, page_size: int, free: set[int]) -> tuple[list[int], list[bytes]]:
    """Where deleted rows leave bytes behind: free pages, and each b-tree page's unallocated gap and freeblocks.
    (their offsets in the file, their bytes), all-zero regions (secure_delete) left out."""
    starts: list[int] = []
    regions: list[bytes] = []
    handle.seek(0)
    number = 0
    while len(page := handle.read(page_size)) == page_size:
        number += 1
        for start, end in _page_gaps(page, number, number in free):
            if end > start and page[start:end].strip(b"\0"):
                starts.append((number - 1) * page_size + start)
                regions.append(page[start:end])
    return starts, regions


def _page_gaps(page: bytes, number: int, free: bool) -> Iterator[tuple[int, int]]:
    """(start, end) in one page of what no live row uses: all of a free page, else a b-tree page's gap between
    its cell pointers and its cells, and its freeblocks."""
    if free:
        yield 0, len(page)
        return
    header = 100 if number == 1 else 0
    kind = page[header]
    if kind not in (2, 5, 10, 13):
        return  # an overflow or pointer-map page: live data
    cells = int.from_bytes(page[header + 3: header + 5], "big")
    content = int.from_bytes(page[header + 5: header + 7], "big") or 65536
    yield header + (12 if kind in (2, 5) else 8) + 2 * cells, content
    block = int.from_bytes(page[header + 1: header + 3], "big")
    while 0 < block < len(page):
        size = int.from_bytes(page[block + 2: block + 4], "big")
        yield block + 4, block + size
        block = int.from_bytes(page[block: block + 2], "big")


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _mask(value: str) -> str:
    """Enough to recognise the value by, never enough to use it."""
    return value[: min(6, len(value) // 4)] + "…" + value[len(value) - min(4, len(value) // 6):]


def _size(count: int) -> str:
    return f"{count / 1_000_000:.1f} MB" if count >= 1_000_000 else f"{count / 1000:.1f} kB"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options audit and scrub share: paths, and secrets beyond the built-in rules and the project's ini."""
    parser.add_argument("paths", nargs="*", metavar="PATH|URL", help=f"cassette files or folders, or redis:// URLs (default: {' '.join(DEFAULT_PATHS)})")
    parser.add_argument("--secret-env", action="append", default=[], metavar="GLOB", help="also treat the values of these environment variables as secrets")
    parser.add_argument("--secret-pattern", action="append", default=[], metavar="REGEX", help="also treat matches of this regular expression as secrets")


def audit_for(args: argparse.Namespace) -> tuple[Audit, list[Path | str]]:
    """The audit the arguments ask for (the project's ini rules added, as pytest finds them) and the paths to read."""
    from ..engine.project import ini_scrubber

    require_detectors()
    ini = ini_scrubber()
    try:
        scrubber = Scrubber(env_names=(*ini.env_names, *args.secret_env), patterns=(*ini.patterns, *args.secret_pattern))
    except ValueError as error:
        raise CommandError(str(error)) from None
    flags = tuple(f"--secret-env={name}" for name in args.secret_env) + tuple(f"--secret-pattern={pattern}" for pattern in args.secret_pattern)
    paths: list[Path | str] = [p if scheme(p) else Path(p) for p in args.paths] or [Path(p) for p in DEFAULT_PATHS if Path(p).exists()]
    missing = [str(p) for p in paths if isinstance(p, Path) and not p.exists()]
    if missing:
        raise CommandError(f"no such file or folder: {', '.join(missing)}")
    return Audit(scrubber, flags), paths


def run_audit(args: argparse.Namespace, out: Any = None) -> int:
    """Scan and print findings; 1 if any, 0 if clean (2, through the command's error handling, if unreadable)."""
    out = out or sys.stdout
    audit, paths = audit_for(args)
    findings = [finding for path in paths for finding in audit.scan_path(path)]
    for finding in findings:
        print(finding.describe(), file=out)
    scanned = f"scanned {audit.files} files, {audit.rows} rows, {_size(audit.bytes_scanned)}"
    if findings:
        commands = sorted({finding.remedy for finding in findings})
        print(f"llm-replay audit: {len(findings)} secrets ({scanned}). Remove them with: {'; '.join(commands)} "
              "(then re-record what now misses, and rotate any real key that was ever committed).", file=out)
        return 1
    print(f"llm-replay audit: no secrets found ({scanned})", file=out)
    return 0
