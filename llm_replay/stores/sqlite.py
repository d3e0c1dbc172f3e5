"""One SQLite file per suite: the store of interactions keyed by (fingerprint, occurrence).

It answers the ``Store`` interface (stores/base.py). What it promises about the file:

- it reads through a read-only connection and opens a writing one only for the first write, so a run
  that records nothing leaves the committed file byte-identical;
- every writing connection has ``secure_delete`` on, and a writer that leaves free pages VACUUMs on
  closing: deleted or overwritten bytes stay neither in the file nor beside it, on any SQLite build;
- at rest the file is one plain file (rollback journal); what a killed run committed sits in ``-wal``
  beside it, a read-only open reads it from a private copy, and the next writing open folds it back.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import stat
import tempfile
import threading
import time
from contextlib import contextmanager
from datetime import datetime
from itertools import chain
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from ..errors import CassetteError
from ..model.fingerprint import CanonicalRequest, url_of
from ..model.interaction import Interaction, Key, OwnerChange, RecordedResponse, stored_interaction
from ..model.scrub import Scrubber
from . import recent
from .recent import RecentRecordings, within_budget
from .summaries import RecordingSummary

SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 60
SQLITE_MAGIC = b"SQLite format 3\x00"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS interactions (
    fingerprint TEXT NOT NULL,
    occurrence INTEGER NOT NULL DEFAULT 0,
    request TEXT NOT NULL,
    status INTEGER NOT NULL,
    reason TEXT NOT NULL,
    headers TEXT NOT NULL,
    body BLOB NOT NULL,
    recorded_at TEXT NOT NULL,
    model TEXT,
    input_tokens INTEGER,
    output_tokens INTEGER,
    latency_ms REAL,
    tests TEXT NOT NULL DEFAULT '[]',
    PRIMARY KEY (fingerprint, occurrence)
);
CREATE TABLE IF NOT EXISTS test_instants (test_id TEXT PRIMARY KEY, instant TEXT NOT NULL, clock_read INTEGER) WITHOUT ROWID;
-- Every key's owners and age apart from the answers: the end of each run reads them all (a tenth of the pages),
-- and a replay reads ahead the recordings of the next tests by owner (warm).
CREATE INDEX IF NOT EXISTS interactions_owners ON interactions (tests, fingerprint, occurrence, recorded_at);
"""
_TABLES = frozenset({"meta", "interactions", "test_instants"})
# Run bookkeeping older cassettes kept in the committed file; it lives in pytest's cache dir now (stores/ledger.py).
_LEGACY_TABLES = frozenset({"runs", "usage"})
_KEYS_PER_QUERY = 400  # recordings named in one lookup by key (two parameters each, well under SQLite's limit)
_COLUMNS = "fingerprint, occurrence, request, status, reason, headers, body, recorded_at, latency_ms, tests"
_GET = f"SELECT {_COLUMNS} FROM interactions WHERE fingerprint = ? AND occurrence = ?"
_SUMMARY_COLUMNS = "fingerprint, occurrence, request, status, recorded_at, tests, model, input_tokens, output_tokens, latency_ms"
# What a listing shows of a request, read by SQLite's JSON functions (several times faster than parsing each request
# in Python); a request that is not valid JSON reads as '{}', all None. Built in from SQLite 3.38.
_SHOWN_COLUMNS = (
    "json_extract(shown, '$.method'), json_extract(shown, '$.host'), json_extract(shown, '$.path'), "
    "json_extract(shown, '$.body.messages[#-1].role'), "
    "CASE json_type(shown, '$.body.messages[#-1].content') WHEN 'text' THEN json_extract(shown, '$.body.messages[#-1].content') END"
)
_SHOWN_FROM = "(SELECT *, CASE WHEN json_valid(request) THEN request ELSE '{}' END AS shown FROM interactions)"
_NOT_SHOWN = (None,) * 5


class DamagedRecording(CassetteError):
    """A row of the cassette llm_replay cannot read (hand-edited, or written by another program): an error naming the
    recording, the column and what to do; the row is left as it is."""


class _Unreadable(ValueError):
    """What is wrong with one stored value, before the store adds which recording and cassette it is."""

    def __init__(self, column: str, message: str) -> None:
        super().__init__(message)
        self.column = column


# The columns llm-replay rm finds recordings by: damaged, they are set right in place rather than deleted (rm by key
# reads a row whose owners cannot be read, and deletes it).
_KEY_COLUMNS = frozenset({"occurrence"})
_NO_CLOCK = (None, None)  # a test with no stored instant


class SQLiteCache:
    """One SQLite file (WAL while writing, busy timeout) shared by every test and every pytest-xdist worker.

    Each ``put`` is its own transaction, so a killed run keeps all it recorded before the kill.
    Opened read-only it never creates or changes the file; a missing file then reads as empty.
    Once closed it stays closed: a late write (a teardown after the session ended) is an error, never a reopening.
    """

    hosts: tuple[str, ...] = ()

    def __init__(self, path: str | os.PathLike[str], readonly: bool = False, scrubber: Scrubber | None = None) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self.scrubber = scrubber or Scrubber()
        self._lock = threading.Lock()
        self._hits = RecentRecordings()
        self._ahead: dict[Key, Interaction] = {}  # read-only: what ``warm`` read for the tests running next
        self._connection: sqlite3.Connection | None = None
        self._writing_connection = False
        self._closed = False
        self._copy: tempfile.TemporaryDirectory[str] | None = None  # a private copy read after a crash (read-only)
        self._has_instants = False
        self._has_clock_read = False
        self._has_owners_index = False
        self._clocks: dict[str, tuple[datetime | str, bool | None]] | None = None  # read-only: every test's, read once
        _check_is_sqlite(self.path)
        if not readonly:
            _check_is_writable(self.path)
        if not readonly and _leftover_wal(self.path):
            self._open_writer()  # a killed run's -wal: the next writing run folds it back when it closes
        else:
            self._open_reader()

    @classmethod
    def check(cls, path: Path, writable: bool) -> None:
        """Raise the CassetteError that opening ``path`` would (not SQLite, not ours, too new, corrupt,
        not writable when ``writable``), without changing a byte of it."""
        if writable:
            _check_is_writable(path)
        if path.exists():
            cls(path, readonly=True).close()

    def describe(self) -> str:
        """How the cassette is named in messages."""
        return str(self.path)

    def _open_reader(self) -> None:
        """A read-only connection, when the file exists; a -wal beside a read-only cassette is read from a copy."""
        if not self.path.exists():
            return
        source = self.path
        if self.readonly and (_leftover_wal(self.path) or _in_wal_mode(self.path)):
            # A killed run's log, or a file left in WAL mode: reading it in place would make (or write) the -shm
            # index beside a file we promised not to touch, and fails in a read-only checkout.
            self._copy = tempfile.TemporaryDirectory(prefix="llm-replay-")
            source = Path(self._copy.name) / self.path.name
            try:
                shutil.copyfile(self.path, source)
                try:
                    shutil.copyfile(f"{self.path}-wal", f"{source}-wal")
                except FileNotFoundError:
                    pass  # no log (a file left in WAL mode), or its writer just folded it back
            except OSError as error:
                raise CassetteError(f"cannot read cassette {self.path}: {error}") from error
        connection = self._connect(source, write=False)
        if connection.execute("SELECT 1 FROM sqlite_master WHERE name = 'interactions'").fetchone() is None:
            connection.close()  # another xdist worker's new file, its tables not committed yet: look again at the next read
            return
        self._connection = connection

    def _open_writer(self) -> sqlite3.Connection:
        """Switch to the writing connection (WAL, secure delete); the first write of the store does this."""
        if self._closed:
            raise CassetteError(f"cassette {self.path} was already closed at the end of the session; nothing is written to it after that")
        if self.readonly:
            raise CassetteError(f"cassette {self.path} is open read-only (replay mode); record with --llm-mode=record")
        if not self._writing_connection:
            if self._connection is not None:
                self._connection.close()
            self._connection = None
            self._connection = self._connect(self.path, write=True)
            self._writing_connection = True
        return self._connection  # type: ignore[return-value]

    def _connect(self, path: Path, write: bool) -> sqlite3.Connection:
        try:
            if write:
                path.parent.mkdir(parents=True, exist_ok=True)
                connection = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, check_same_thread=False, isolation_level=None)
                # Deleted and overwritten rows are zeroed on every build (upstream SQLite leaves them in free pages).
                connection.execute("PRAGMA secure_delete = ON")
            elif self._copy is not None:
                connection = sqlite3.connect(path, check_same_thread=False, isolation_level=None)  # our copy: recovering its log is fine
            else:
                connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False, isolation_level=None)
            connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_S * 1000}")
            self._check_schema(connection, write)  # first: switching to WAL rewrites the header of someone else's database
            if write:
                _enable_wal(connection)
                connection.execute("PRAGMA synchronous = NORMAL")
            return connection
        except sqlite3.DatabaseError as error:
            raise CassetteError(_unusable(self.path, error)) from error
        except OSError as error:
            raise CassetteError(f"cannot open cassette {self.path}: {error}") from error

    def _check_schema(self, connection: sqlite3.Connection, write: bool) -> None:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if tables and "meta" not in tables:
            raise CassetteError(
                f"{self.path} is an SQLite database but not an llm_replay cassette (tables: {', '.join(sorted(tables))}); "
                "point --llm-cassette at another file"
            )
        if "meta" in tables:
            row = connection.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            try:
                version = int(row[0]) if row else 0
            except (TypeError, ValueError):
                raise CassetteError(
                    f"cassette {self.path} is damaged: its schema_version is {row[0]!r}, not a number (this llm_replay "
                    f"writes {SCHEMA_VERSION}); it was left untouched. Restore it from git (git checkout -- {self.path}) "
                    "or record a new one"
                ) from None
            if version > SCHEMA_VERSION:
                raise CassetteError(
                    f"cassette {self.path} was written by a newer llm_replay (schema {version}, this one reads up to "
                    f"{SCHEMA_VERSION}); upgrade llm_replay: update its checkout and pip install -e it again"
                )
        self._has_instants = "test_instants" in tables
        self._has_clock_read = self._has_instants and _has_clock_read_column(connection)
        self._has_owners_index = _has_owners_index(connection)
        if not write or (tables >= _TABLES and self._has_clock_read and not tables & _LEGACY_TABLES and self._has_owners_index):
            return
        # Tables, columns and indexes added within schema 1 appear in older files the first time they are written.
        with _transaction(connection):
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    connection.execute(statement)
            if not _has_clock_read_column(connection):  # checked again under the write lock: xdist workers open together
                connection.execute("ALTER TABLE test_instants ADD COLUMN clock_read INTEGER")
            connection.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            for table in sorted(tables & _LEGACY_TABLES):
                connection.execute(f"DROP TABLE IF EXISTS {table}")  # freed pages: the file is VACUUMed when it closes
        self._has_instants = self._has_clock_read = self._has_owners_index = True

    def _reading(self) -> sqlite3.Connection | None:
        """The connection to read through, opened late if the file appeared since (another worker created it)."""
        if self._closed:
            raise CassetteError(f"cassette {self.path} was already closed at the end of the session")
        if self._connection is None:
            self._open_reader()
        return self._connection

    def get(self, fingerprint: str, occurrence: int = 0) -> Interaction | None:
        """The interaction recorded under this key, if any."""
        key = (fingerprint, occurrence)
        hit = self._ahead.get(key) or self._hits.get(key)
        if hit is not None:
            return hit
        with self._lock:
            if self._reading() is None:
                return None
            row = self._rows(_GET, key, one=True)
        if row is None:
            return None
        interaction = self._recording(row)
        self._hits.put(interaction)
        return interaction

    def get_many(self, keys: Iterable[Key]) -> Iterator[Interaction]:
        """The interactions under these keys (those there are), each a keyed lookup in the file."""
        return (found for found in (self.get(*key) for key in keys) if found is not None)

    def warm(self, test_ids: Sequence[str]) -> None:
        """Read ahead, in one query, the recordings these tests own alone (what was read ahead before is let go).

        Looked up one at a time amid a test's SDK work, a recording costs several times what it costs read with
        its neighbours. Only a read-only cassette (a replay) reads ahead, and only a file with the owners index
        (any written since it came); a recording several tests share is looked up when asked."""
        if not self.readonly:
            return
        owners = [json.dumps([test_id]) for test_id in self.scrubber.test_ids(test_ids)]  # as ``put`` stores one owner
        with self._lock:
            self._ahead = {}  # let go first: the last window's and this one's are never held together
            if not owners or self._reading() is None or not self._has_owners_index:
                return
            # an answer over the per-answer budget never leaves the file here; the rest are read as they fit the budget
            rows = self._rows(
                f"SELECT {_COLUMNS} FROM interactions WHERE tests IN ({', '.join('?' * len(owners))}) "
                "AND length(CAST(body AS BLOB)) + length(CAST(request AS BLOB)) <= ?",
                (*owners, recent.HIT_CACHE_ITEM_BYTES),
            )
            # a row it cannot read is left for the lookup that names it: only the test that asks for it fails
            self._ahead = {interaction.key: interaction for interaction in within_budget(_readable(rows))}

    def put(self, interaction: Interaction) -> None:
        """Store or overwrite an interaction, scrubbed of credentials, durably, in one transaction."""
        interaction = self.scrubber.interaction(interaction)
        response = interaction.response
        body: bytes | str = response.body
        try:
            body = response.body.decode("utf-8")
        except UnicodeDecodeError:
            pass  # binary bodies stay BLOBs; text stays readable in the sqlite3 shell
        request = interaction.request
        input_tokens, output_tokens = interaction.usage()
        row = (
            interaction.fingerprint, interaction.occurrence, interaction.request_json, response.status, response.reason,
            json.dumps(response.headers, sort_keys=True), body, interaction.recorded_at, request.model,
            input_tokens, output_tokens, interaction.latency_ms, json.dumps(list(interaction.tests)),
        )
        self._write("INSERT OR REPLACE INTO interactions VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", [row])
        self._hits.put(interaction)

    def _write(self, sql: str, rows: Sequence[tuple]) -> int:
        with self._lock, self._writing() as connection:
            return connection.executemany(sql, rows).rowcount

    def interactions(self) -> Iterator[Interaction]:
        """Every interaction, ordered by fingerprint and occurrence."""
        with self._lock:
            if self._reading() is None:
                return iter(())
            rows = self._rows(f"SELECT {_COLUMNS} FROM interactions ORDER BY fingerprint, occurrence")
        return (self._recording(row, whole=True) for row in rows)

    def requests(self) -> Iterator[tuple[str, int, str]]:
        """(fingerprint, occurrence, canonical request JSON) of every interaction, oldest recording first; no bodies."""
        with self._lock:
            if self._reading() is None:
                return iter(())
            rows = self._rows("SELECT fingerprint, occurrence, request FROM interactions ORDER BY recorded_at, fingerprint, occurrence")
        return iter(rows)

    def summaries(self, shown: bool = False, keys: Iterable[Key] | None = None, unreadable: dict[Key, str] | None = None) -> Iterator[RecordingSummary]:
        """Every recording without its response body, ordered by key, read as it is consumed (listings of
        100,000 recordings stay small and fast); ``shown`` adds what a listing shows of each request.
        ``keys``: only these recordings (those there are), looked up by key rather than read with the rest.
        ``unreadable``: a row whose owners cannot be read is noted there and listed as owned by none, not an error."""
        shown = shown and sqlite3.sqlite_version_info >= (3, 38)
        query = f"SELECT {_SUMMARY_COLUMNS}, {_SHOWN_COLUMNS} FROM {_SHOWN_FROM}" if shown else f"SELECT {_SUMMARY_COLUMNS} FROM interactions"
        pad = () if shown else _NOT_SHOWN
        if keys is None:
            chunks: list[list[Key] | None] = [None]
        else:
            wanted = sorted(set(keys))
            chunks = [wanted[start : start + _KEYS_PER_QUERY] for start in range(0, len(wanted), _KEYS_PER_QUERY)]
        for chunk in chunks:
            with self._lock:
                if self._reading() is None:
                    return
                if chunk is None:
                    cursor = self._query(query + " ORDER BY fingerprint, occurrence")
                else:
                    pairs = ", ".join(["(?, ?)"] * len(chunk))
                    cursor = self._query(f"{query} WHERE (fingerprint, occurrence) IN (VALUES {pairs}) ORDER BY fingerprint, occurrence", tuple(part for key in chunk for part in key))
            while rows := self._fetched(cursor.fetchmany, 2000):
                for row in rows:
                    yield RecordingSummary._make(self._checked_summary(row, unreadable) + pad)

    def replayed_usage(self, replays: Mapping[Key, int]) -> Iterator[tuple[str | None, str, int, int, int, float]]:
        """The tokens and latency of the recordings replayed ``replays[key]`` times each, added up in SQL by model,
        URL and whether the answers report tokens: (model, url, calls, input tokens, output tokens, latency ms) per
        group. No request is parsed in Python (the savings line at the end of a 1,000-test replay: ~2 ms, not ~8)."""
        if sqlite3.sqlite_version_info < (3, 38):  # JSON functions built in from 3.38: each request is parsed here instead
            for row in self.summaries(keys=replays):
                count, request = replays[row.fingerprint, row.occurrence], CanonicalRequest.from_stored(row.request_json)
                yield row.model, request.url, count, count * (row.input_tokens or 0), count * (row.output_tokens or 0), count * (row.latency_ms or 0.0)
            return
        wanted = sorted(replays.items())
        for start in range(0, len(wanted), _KEYS_PER_QUERY):
            chunk = wanted[start : start + _KEYS_PER_QUERY]
            with self._lock:
                if self._reading() is None:
                    return
                rows = self._rows(
                    f"WITH replayed (fingerprint, occurrence, times) AS (VALUES {', '.join(['(?, ?, ?)'] * len(chunk))}) "
                    "SELECT model, CASE WHEN json_valid(request) THEN json_extract(request, '$.host', '$.path', '$.query') END, "
                    "coalesce(input_tokens, 0) > 0 OR coalesce(output_tokens, 0) > 0, sum(times), sum(times * coalesce(input_tokens, 0)), "
                    "sum(times * coalesce(output_tokens, 0)), sum(times * coalesce(latency_ms, 0.0)) "
                    "FROM replayed JOIN interactions USING (fingerprint, occurrence) GROUP BY 1, 2, 3",
                    tuple(part for (fingerprint, occurrence), times in chunk for part in (fingerprint, occurrence, times)),
                )
            for model, where, _, calls, input_tokens, output_tokens, latency_ms in rows:
                host, path, query = json.loads(where) if where else ("", "", ())  # a request that is not JSON names no URL
                yield model, url_of(host or "", path or "", query or ()), calls, input_tokens, output_tokens, latency_ms

    def stored_clock(self, test_id: str) -> tuple[datetime | None, bool | None]:
        """The instant a test recorded at, and whether its recording read the clock (None: unknown, as in
        cassettes written before llm_replay kept it)."""
        with self._lock:
            if self._reading() is None or not self._has_instants:
                return None, None
            stored_id = self.scrubber.test_id(test_id)  # after the cheap checks: the scrub reads the whole environment
            if self.readonly:  # a replay asks for every test: one read of the table rather than a query per test
                if self._clocks is None:
                    self._clocks = self._every_clock()
                clock = self._clocks.get(stored_id, _NO_CLOCK)
                if clock[0].__class__ is str:  # kept as stored: no date, named to the test whose instant it is, and only to it
                    self._instant(stored_id, clock[0])
                return clock
            clock_read = "clock_read" if self._has_clock_read else "NULL"
            row = self._rows(f"SELECT instant, {clock_read} FROM test_instants WHERE test_id = ?", (stored_id,), one=True)
        if row is None:
            return None, None
        return self._instant(stored_id, row[0]), None if row[1] is None else bool(row[1])

    def _every_clock(self) -> dict[str, tuple[datetime | str, bool | None]]:
        """Every test's instant and clock flag, read at once; an instant that is no date is kept as its text, for
        ``stored_clock`` to name when its test asks (one hand-edited instant must not fail every test)."""
        clock_read = "clock_read" if self._has_clock_read else "NULL"
        clocks: dict[str, tuple[datetime | str, bool | None]] = {}
        for test, instant, read in self._rows(f"SELECT test_id, instant, {clock_read} FROM test_instants"):
            try:
                clocks[test] = (datetime.fromisoformat(instant), None if read is None else bool(read))
            except (TypeError, ValueError):
                clocks[test] = (str(instant), None)
        return clocks

    def instants(self) -> list[tuple[str, datetime, bool | None]]:
        """Every test's stored instant and clock flag, for merging two branches' cassettes."""
        with self._lock:
            if self._reading() is None or not self._has_instants:
                return []
            clock_read = "clock_read" if self._has_clock_read else "NULL"
            rows = self._rows(f"SELECT test_id, instant, {clock_read} FROM test_instants ORDER BY test_id")
        return [(test_id, self._instant(test_id, instant), None if read is None else bool(read)) for test_id, instant, read in rows]

    def put_instant(self, test_id: str, instant: datetime) -> None:
        """Remember, durably, the instant a test recorded at; a later record run of the test reuses it.
        Whether the test reads the clock stays unknown until it ends (``put_clock_read``)."""
        self._write("INSERT OR REPLACE INTO test_instants (test_id, instant) VALUES (?, ?)", [(self.scrubber.test_id(test_id), instant.isoformat())])

    def put_clock_read(self, test_id: str, read: bool) -> None:
        """Remember whether a test that recorded read the clock (a test with no stored instant is left alone).
        Writes only a change: a run that records nothing leaves the file as it was."""
        instant, known = self.stored_clock(test_id)
        if instant is not None and known is not read:
            self._write("UPDATE test_instants SET clock_read = ? WHERE test_id = ?", [(int(read), self.scrubber.test_id(test_id))])

    def __len__(self) -> int:
        with self._lock:
            if self._reading() is None:
                return 0
            return self._rows("SELECT count(*) FROM interactions", one=True)[0]

    def _query(self, sql: str, params: tuple = ()) -> sqlite3.Cursor:
        return self._fetched(self._connection.execute, sql, params)  # type: ignore[union-attr]

    def _rows(self, sql: str, params: tuple = (), one: bool = False) -> Any:
        """The query's rows (``one``: its first row or None), read under the same error handling as the query: SQLite
        finds a damaged page only when it reads it, after ``execute`` has returned."""
        cursor = self._query(sql, params)
        return self._fetched(cursor.fetchone if one else cursor.fetchall)

    def _fetched(self, read: Callable[..., Any], *args: Any) -> Any:
        try:
            return read(*args)
        except sqlite3.DatabaseError as error:
            raise CassetteError(_unusable(self.path, error)) from error

    def _recording(self, row: tuple, whole: bool = False) -> Interaction:
        """The interaction a row holds, or a DamagedRecording naming it; ``whole``: its request is checked too (the
        commands that read every recording parse each request; a replay never parses the one it replays)."""
        try:  # not the _damage block: a replay reads a row here, and a generator-based block costs ~3 K instructions
            interaction = _from_row(row)
            if whole:
                _check_request(row[2])
        except _Unreadable as error:
            raise self._damaged(row[0], row[1], error) from None
        return interaction

    def _checked_summary(self, row: tuple, unreadable: dict[Key, str] | None) -> tuple:
        """A listing's row with its owners checked, which every listing reads (a listing shows a request it cannot read
        as such); one whose owners cannot be read raises, or, given ``unreadable``, is noted there and owned by none."""
        try:
            _owners(row[5])
        except _Unreadable as error:
            if unreadable is None:
                raise self._damaged(row[0], row[1], error) from None
            unreadable[row[0], row[1]] = str(error)
            return (*row[:5], "[]", *row[6:])
        return row

    def _instant(self, test_id: str, text: Any) -> datetime:
        try:
            return datetime.fromisoformat(text)
        except (TypeError, ValueError):
            raise DamagedRecording(
                f"cassette {self.path}: the stored instant of test {test_id} is {text!r}, not an ISO date and time; re-record the "
                f"test (pytest --llm-mode=refresh '{test_id}') or delete the row (sqlite3 {self.path} \"DELETE FROM test_instants "
                f"WHERE test_id = '{test_id}'\"); llm_replay changed nothing"
            ) from None

    @contextmanager
    def _damage(self, fingerprint: Any, occurrence: Any) -> Iterator[None]:
        """Turns a value llm_replay cannot read into a DamagedRecording naming the recording and what to do."""
        try:
            yield
        except _Unreadable as error:
            raise self._damaged(fingerprint, occurrence, error) from None

    def _damaged(self, fingerprint: Any, occurrence: Any, error: _Unreadable) -> DamagedRecording:
        """The error naming a recording llm_replay cannot read, and what to do about it."""
        key = f"{fingerprint}#{occurrence}"
        if error.column in _KEY_COLUMNS:  # what finds a recording to delete: llm-replay rm cannot reach this row
            fix = f"set it right in place (sqlite3 {self.path} \"UPDATE interactions SET {error.column} = ... WHERE fingerprint = '{fingerprint}'\")"
        else:
            fix = f"delete it (llm-replay rm --cassette {self.path} '{key}') and record it again (pytest --llm-mode=record, the test that asks it)"
        return DamagedRecording(
            f"cassette {self.path}: recording {key} cannot be read ({error}); {fix}, or restore the cassette from git; llm_replay changed nothing"
        )

    # -- ownership and deletion (pruning, refresh, llm-replay rm) -----------------------------------

    def index(self, owned: bool = False, unreadable: dict[Key, str] | None = None) -> list[tuple[Key, tuple[str, ...], str]]:
        """Every key with the tests that own it and when it was recorded, without loading the bodies; ``owned``: only
        those some test owns (SQLite skips the rest: no row of theirs is made in Python). A row whose key or owners
        cannot be read raises a DamagedRecording naming it, or, given ``unreadable``, is left out and noted there."""
        with self._lock:
            if self._reading() is None:
                return []
            # from the owners index where the file has it (a tenth of the pages), else in the table's order (walking the
            # key's index reads the table's pages out of order, 2x slower); sorted here. ``owned`` as two ranges of that
            # index, which skip the rows without owners ('[]') where ``!=`` scanned them all: 0.6 ms -> 0.02 ms a run of
            # one test over 10,000 recordings
            where = " WHERE tests < '[]' OR tests > '[]'" if owned else ""
            rows = self._rows(f"SELECT fingerprint, occurrence, tests, recorded_at FROM interactions{where}")
        try:  # the end of a run reads every recording some test owns: checked in one pass, each row named only if bad
            listed = [
                ((fingerprint, occurrence if type(occurrence) is int and occurrence >= 0 else _column("occurrence", occurrence, _count)), _owners(tests), recorded_at)
                for fingerprint, occurrence, tests, recorded_at in rows
            ]
        except _Unreadable:
            listed = list(self._readable_index(rows, unreadable))
        listed.sort()  # by key: no two rows share one
        return listed

    def _readable_index(self, rows: list[tuple], unreadable: dict[Key, str] | None) -> Iterator[tuple[Key, tuple[str, ...], str]]:
        """The index rows that read (the slow path, once some row did not): a bad one raises, or goes to ``unreadable``."""
        for fingerprint, occurrence, tests, recorded_at in rows:
            try:
                yield (fingerprint, _column("occurrence", occurrence, _count)), _owners(tests), recorded_at
            except _Unreadable as error:
                if unreadable is None:
                    raise self._damaged(fingerprint, occurrence, error) from None
                unreadable[fingerprint, occurrence] = str(error)

    def change_owners(self, changes: Mapping[Key, OwnerChange]) -> None:
        """Add and remove owning tests, read and written in one transaction (absent keys are ignored)."""
        if not changes:
            return
        with self._lock, self._writing() as connection:
            for (fingerprint, occurrence), change in changes.items():
                row = connection.execute("SELECT tests FROM interactions WHERE fingerprint = ? AND occurrence = ?", (fingerprint, occurrence)).fetchone()
                if row is not None:
                    with self._damage(fingerprint, occurrence):
                        owners = change.applied_to(_owners(row[0]), self.scrubber.test_id)
                    connection.execute("UPDATE interactions SET tests = ? WHERE fingerprint = ? AND occurrence = ?", (json.dumps(owners), fingerprint, occurrence))
        for key in changes:
            self._hits.pop(key)

    def delete(self, keys: Iterable[Key], recorded_at: Mapping[Key, str] | None = None) -> int:
        """Remove these recordings in one transaction; how many were removed. ``recorded_at``: only those still
        stamped so (one written again since it was chosen, by another session's refresh, stays). Their bytes are zeroed
        at once (secure delete) and the file is compacted when the store closes."""
        keys = list(keys)
        if not keys:
            return 0
        if recorded_at is None:
            removed = self._write("DELETE FROM interactions WHERE fingerprint = ? AND occurrence = ?", keys)
        else:
            rows = [(*key, recorded_at.get(key)) for key in keys]
            removed = self._write("DELETE FROM interactions WHERE fingerprint = ? AND occurrence = ? AND (?3 IS NULL OR recorded_at IS ?3)", rows)
        for key in keys:
            self._hits.pop(key)
        return removed

    @contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (the caller holds the lock); every failure is a CassetteError naming the file."""
        connection = self._open_writer()
        try:
            with _transaction(connection):
                yield connection
        except sqlite3.OperationalError as error:
            raise CassetteError(_unwritable(self.path, error)) from error
        except sqlite3.DatabaseError as error:  # "database disk image is malformed" and other damage
            raise CassetteError(_unusable(self.path, error)) from error

    def close(self) -> None:
        """Compact away freed pages and fold the write-ahead log back into the file, so that what git sees is complete.

        The last writer out also turns WAL off again: a cassette at rest is one plain file, and a
        read-only replay of it (CI) leaves no ``-wal``/``-shm`` files beside it. Closing twice is harmless.
        """
        with self._lock:
            self._closed = True
            self._hits.clear()
            self._ahead = {}
            connection, self._connection = self._connection, None
            if connection is not None:
                try:
                    if self._writing_connection:
                        _fold_and_compact(connection)
                finally:
                    connection.close()
            if self._copy is not None:
                self._copy.cleanup()
                self._copy = None


def _fold_and_compact(connection: sqlite3.Connection) -> None:
    """VACUUM when pages were freed, checkpoint the log into the file, and leave WAL; another worker still
    writing makes these wait for the last one out (busy timeout 0: we never wait at the end of a session)."""
    try:
        connection.execute("PRAGMA busy_timeout = 0")
        if connection.execute("PRAGMA freelist_count").fetchone()[0]:
            connection.execute("VACUUM")
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        connection.execute("PRAGMA journal_mode = DELETE")
    except sqlite3.OperationalError:
        pass  # another worker still has it open; the last one out compacts, checkpoints and leaves WAL


def _in_wal_mode(path: Path) -> bool:
    """Whether the file's header says WAL (bytes 18-19 are 2): a writer has it open, or one was killed."""
    try:
        with path.open("rb") as handle:
            return handle.read(20)[18:20] == b"\x02\x02"
    except OSError:
        return False


def _leftover_wal(path: Path) -> bool:
    """Whether a write-ahead log with content sits beside the file (a run was killed, or is writing now)."""
    try:
        return Path(f"{path}-wal").stat().st_size > 0
    except OSError:
        return False


class _transaction:
    """BEGIN IMMEDIATE … COMMIT, rolled back on error: writers queue on the busy timeout, never interleave."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection

    def __enter__(self) -> None:
        self._connection.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, exc, tb) -> None:
        self._connection.execute("ROLLBACK" if exc_type else "COMMIT")


def _has_clock_read_column(connection: sqlite3.Connection) -> bool:
    return any(column[1] == "clock_read" for column in connection.execute("PRAGMA table_info(test_instants)"))


def _has_owners_index(connection: sqlite3.Connection) -> bool:
    return connection.execute("SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = 'interactions_owners'").fetchone() is not None


def _from_row(row: tuple) -> Interaction:
    """The interaction a row holds; _Unreadable names the first column that is not what llm_replay writes there.

    Every replay reads a row: a row as llm_replay writes it is told by type checks made in C (~7 K instructions, the
    headers' included); only one that fails them is looked at column by column, to name what is wrong."""
    fingerprint, occurrence, request, status, reason, headers, body, recorded_at, latency_ms, tests = row
    try:
        parsed, end = _decoded_headers(headers)
        sound = (
            tuple(map(type, row)) in _SOUND_KINDS and occurrence >= 0 and 100 <= status <= 599 and end == len(headers) and type(parsed) is dict
            and set(map(type, parsed.values())) <= _LISTS and set(map(type, chain.from_iterable(parsed.values()))) <= _TEXTS
        )
    except (TypeError, ValueError):
        sound = False
    if not sound:
        return _from_damaged_row(row)
    # the request is parsed when asked for (not on a replay's path)
    response = (status, reason, parsed, body.encode() if type(body) is str else body)
    return stored_interaction(fingerprint, occurrence, request, response, recorded_at, latency_ms, _owners(tests))


# The types of a row's columns as llm_replay writes them (a body is text or, binary, a BLOB; latency may be unknown)
_SOUND_KINDS = frozenset((str, int, str, int, str, str, body, str, latency, str) for body in (str, bytes) for latency in (float, int, type(None)))
# json.loads less its Python steps (the whitespace around the document, which llm_replay never writes there: a row with
# some is read column by column): ~7 K instructions of the ~15 K json.loads costs
_decoded_headers = json.JSONDecoder().raw_decode
_LISTS = frozenset({list})
_TEXTS = frozenset({str})


def _from_damaged_row(row: tuple) -> Interaction:
    """A row _from_row's quick checks refused, read column by column: _Unreadable names the first that is wrong."""
    fingerprint, occurrence, request, status, reason, headers, body, recorded_at, latency_ms, tests = row
    return Interaction(
        fingerprint=_column("fingerprint", fingerprint, _text),
        occurrence=_column("occurrence", occurrence, _count),
        request_json=_column("request", request, _text),
        response=RecordedResponse(
            status=_column("status", status, _status),
            reason=_column("reason", reason, _text),
            headers=_column("headers", headers, _json_headers),
            body=_column("body", body, _body),
        ),
        recorded_at=_column("recorded_at", recorded_at, _text),
        latency_ms=_column("latency_ms", latency_ms, _milliseconds),
        tests=_owners(tests),
    )


def _readable(rows: Iterable[tuple]) -> Iterator[Interaction]:
    """The interactions of the rows llm_replay can read; the others are skipped."""
    for row in rows:
        try:
            yield _from_row(row)
        except _Unreadable:
            continue


def _column(name: str, value: Any, parse: Callable[[Any], Any]) -> Any:
    """One stored column, parsed; _Unreadable says which column and what is wrong with it."""
    try:
        return parse(value)
    except (TypeError, ValueError) as error:
        shown = value[:60] if isinstance(value, (str, bytes)) else value
        raise _Unreadable(name, f"column {name} is {shown!r}: {error}") from None


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("not text")
    return value


def _count(value: Any) -> int:
    if not isinstance(value, int) or value < 0:
        raise TypeError("not a whole number from 0")
    return value


def _status(value: Any) -> int:
    if not isinstance(value, int) or not 100 <= value <= 599:
        raise TypeError("not an HTTP status (100-599)")
    return value


def _body(value: Any) -> bytes:
    if isinstance(value, str):
        return value.encode()
    if not isinstance(value, bytes):
        raise TypeError("not text or bytes")
    return value


def _milliseconds(value: Any) -> float | None:
    if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool)):
        raise TypeError("not a number")
    return value


def _json_headers(value: Any) -> dict[str, list[str]]:
    headers = json.loads(_text(value))
    if not isinstance(headers, dict) or not all(isinstance(values, list) and all(isinstance(v, str) for v in values) for values in headers.values()):
        raise ValueError("not a JSON object of header names to lists of values")
    return headers


def _check_request(text: str) -> None:
    try:
        CanonicalRequest.from_stored(text)
    except (TypeError, ValueError, KeyError, AttributeError) as error:
        raise _Unreadable("request", f"column request is not a request llm_replay stored: {text[:60]!r}, {type(error).__name__}: {error}") from None


def _owners(text: Any) -> tuple[str, ...]:
    """The owning tests, stored as a JSON list: no owner and the usual list of one plain id are read off the text
    (the end of a run reads every recording's owners), anything else is parsed."""
    if text == "[]":
        return ()
    if isinstance(text, str) and text.startswith('["') and text.endswith('"]') and '"' not in text[2:-2] and "\\" not in text:
        return (text[2:-2],)
    try:
        owners = json.loads(text)
    except (TypeError, ValueError):
        owners = None
    if not isinstance(owners, list) or not all(isinstance(owner, str) for owner in owners):
        shown = text[:60] if isinstance(text, str) else text
        raise _Unreadable("tests", f"column tests is {shown!r}, not a JSON list of test ids")
    return tuple(owners)


_NOT_FILES = {stat.S_IFIFO: "a named pipe (FIFO)", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device", stat.S_IFSOCK: "a socket"}


def _check_is_sqlite(path: Path) -> None:
    try:  # opening a named pipe to read waits for a writer for ever: look at what it is first
        kind = _NOT_FILES.get(stat.S_IFMT(path.stat().st_mode))
    except OSError:
        kind = None  # missing (or a link to nowhere): an empty cassette; unreadable: named by the open below
    if kind is not None:
        raise CassetteError(f"cassette {path} is {kind}, not a file; point --llm-cassette (ini llm_cassette) at a file")
    try:
        with path.open("rb") as handle:
            head = handle.read(len(SQLITE_MAGIC))
    except FileNotFoundError:
        return
    except IsADirectoryError:
        raise CassetteError(
            f"cassette {path} is a folder; a cassette is one file: point --llm-cassette (ini llm_cassette) at a file "
            f"inside it, e.g. {path / 'llm_cache.sqlite3'}"
        ) from None
    except OSError as error:
        raise CassetteError(f"cannot read cassette {path}: {error}") from error
    if head and head != SQLITE_MAGIC:
        raise CassetteError(
            f"{path} is not an llm_replay cassette (not an SQLite file); it was left untouched. "
            "Move it away, or point --llm-cassette (ini llm_cassette) at another file"
        )


def _enable_wal(connection: sqlite3.Connection) -> None:
    """Switch a new cassette to WAL. The switch needs the file to itself and SQLite does not wait for
    that (no busy handler), so xdist workers opening a new cassette together take turns here."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            if connection.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                connection.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _check_is_writable(path: Path) -> None:
    """Refuse to record into a file its owner made read-only (even as root, who could write it anyway)."""
    if path.exists():
        if not path.stat().st_mode & 0o222:
            raise CassetteError(
                f"cassette {path} is read-only (file permissions) but this run records into it; it was left untouched. "
                f"Make it writable (chmod u+w {path}) or only replay (--llm-mode=replay)"
            )
        if not os.access(path, os.W_OK):  # its mode allows writing: an attribute, a read-only mount, its owner
            raise CassetteError(
                f"cassette {path} cannot be written by this user although its permissions allow it (an immutable "
                f"attribute, chattr +i; a read-only mount; another owner) but this run records into it; it was left "
                f"untouched. Lift that (lsattr {path} shows an attribute) or only replay (--llm-mode=replay)"
            )
        folder = path.parent
    else:
        folder = next((parent for parent in path.parents if parent.exists()), path.parent)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise CassetteError(
            f"cassette {path} cannot be recorded into: its folder {folder} is not writable "
            "(SQLite keeps its write-ahead log beside the file). Make the folder writable or point --llm-cassette elsewhere"
        )


def _unwritable(path: Path, error: sqlite3.OperationalError) -> str:
    if _is_locked(error):
        return _unusable(path, error)
    if "disk" in str(error) or "full" in str(error):  # SQLITE_FULL, or SQLITE_IOERR from a full disk or a file size limit
        cause = "the disk is full, or the file reached a size limit (ulimit -f)"
    else:
        cause = "check that the file and its folder are writable"
    return f"cannot write to cassette {path}: {error}; {cause}. What was recorded before is kept (each recording is its own transaction)"


def _is_locked(error: Exception) -> bool:
    return isinstance(error, sqlite3.OperationalError) and ("locked" in str(error) or "busy" in str(error))


def _unusable(path: Path, error: Exception) -> str:
    if _is_locked(error):
        return (
            f"cassette {path} is locked: another process held a write transaction on it for longer than the busy timeout "
            f"({BUSY_TIMEOUT_S} s): another pytest run still recording, or a sqlite3 shell or database browser with changes not "
            "saved. Let it finish or close it, then run again; the cassette is not damaged and nothing was changed"
        )
    return (
        f"cassette {path} cannot be used ({error}); it was left untouched. "
        "Restore it from git (git checkout -- <file>) or point --llm-cassette at another file"
    )
