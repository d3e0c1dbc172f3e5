"""One SQLite file per suite: the store of interactions keyed by (fingerprint, occurrence).

It answers, like the in-memory store, the same small interface: ``get``, ``put``, ``interactions``, ``close``, ``delete``; plus ``requests``
(re-keying under new match rules) and ``stored_clock``/``put_instant``/``put_clock_read`` (each test's frozen clock).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Iterable, Iterator, Mapping

from ..errors import CassetteError
from ..model.interaction import Interaction, Key, RecordedResponse
from ..model.runs import RunRecord
from ..model.scrub import Scrubber

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
"""
# Which run last used each recording, and how often replays saved a call: written once per run.
_USAGE_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (uid TEXT PRIMARY KEY, finished_at TEXT NOT NULL, complete INTEGER NOT NULL, scope TEXT);
CREATE TABLE IF NOT EXISTS usage (
    fingerprint TEXT NOT NULL,
    occurrence INTEGER NOT NULL,
    last_used_run TEXT NOT NULL,
    replays INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (fingerprint, occurrence)
) WITHOUT ROWID;
"""
_TABLES = frozenset({"meta", "interactions", "test_instants", "runs", "usage"})
_COLUMNS = "fingerprint, occurrence, request, status, reason, headers, body, recorded_at, latency_ms, tests"
# Recordings just read or written, so a prompt repeated in a test or in the next few skips the query; only
# the latest few, so a long session's memory (and the garbage collector's work) does not grow with its replays.
RECENT_KEPT = 64


class SQLiteCache:
    """One SQLite file (WAL, busy timeout) shared by every test and every pytest-xdist worker.

    Each ``put`` is its own transaction, so a killed run keeps all it recorded before the kill.
    Opened read-only it never creates or changes the file; a missing file then reads as empty.
    """

    def __init__(self, path: str | os.PathLike[str], readonly: bool = False, scrubber: Scrubber | None = None) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self.scrubber = scrubber or Scrubber()
        self._lock = threading.Lock()
        self._hits: dict[Key, Interaction] = {}
        self._connection: sqlite3.Connection | None = None
        self._has_instants = False
        self._has_clock_read = False
        self._clocks: dict[str, tuple[datetime, bool | None]] | None = None  # read-only: every test's, read once
        _check_is_sqlite(self.path)
        if not readonly:
            _check_is_writable(self.path)
        if not readonly or self.path.exists():
            self._connection = self._connect()

    def describe(self) -> str:
        """How the cassette is named in messages."""
        return str(self.path)

    def _connect(self) -> sqlite3.Connection:
        try:
            if self.readonly:
                connection = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False, isolation_level=None)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                connection = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, check_same_thread=False, isolation_level=None)
            connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_S * 1000}")
            self._check_schema(connection)  # first: switching to WAL rewrites the header of someone else's database
            if not self.readonly:
                _enable_wal(connection)
                connection.execute("PRAGMA synchronous = NORMAL")
                connection.execute("PRAGMA secure_delete = ON")  # a deleted or overwritten row leaves no bytes behind
            return connection
        except sqlite3.DatabaseError as error:
            raise CassetteError(_unusable(self.path, error)) from error
        except OSError as error:
            raise CassetteError(f"cannot open cassette {self.path}: {error}") from error

    def _check_schema(self, connection: sqlite3.Connection) -> None:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if tables and "meta" not in tables:
            raise CassetteError(
                f"{self.path} is an SQLite database but not an llm_replay cassette (tables: {', '.join(sorted(tables))}); "
                "point --llm-cassette at another file"
            )
        if "meta" in tables:
            row = connection.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            version = int(row[0]) if row else 0
            if version > SCHEMA_VERSION:
                raise CassetteError(
                    f"cassette {self.path} was written by a newer llm_replay (schema {version}, this one reads up to "
                    f"{SCHEMA_VERSION}); upgrade llm_replay: pip install -U llm_replay"
                )
        self._has_instants = "test_instants" in tables
        self._has_clock_read = self._has_instants and _has_clock_read_column(connection)
        if self.readonly or (tables >= _TABLES and self._has_clock_read):
            return
        # Tables and columns added within schema 1 appear in older files the first time they are written.
        with _transaction(connection):
            for statement in (_SCHEMA + _USAGE_SCHEMA).split(";"):
                if statement.strip():
                    connection.execute(statement)
            if not _has_clock_read_column(connection):  # checked again under the write lock: xdist workers open together
                connection.execute("ALTER TABLE test_instants ADD COLUMN clock_read INTEGER")
            connection.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        self._has_instants = self._has_clock_read = True

    def get(self, fingerprint: str, occurrence: int = 0) -> Interaction | None:
        """The interaction recorded under this key, if any."""
        key = (fingerprint, occurrence)
        hit = self._hits.get(key)
        if hit is not None or self._connection is None:
            return hit
        with self._lock:
            row = self._query(f"SELECT {_COLUMNS} FROM interactions WHERE fingerprint = ? AND occurrence = ?", key).fetchone()
        if row is None:
            return None
        interaction = _from_row(row)
        self._remember(interaction)
        return interaction

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
        self._write("INSERT OR REPLACE INTO interactions VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", row)
        self._remember(interaction)

    def _remember(self, interaction: Interaction) -> None:
        with self._lock:
            if len(self._hits) >= RECENT_KEPT:
                del self._hits[next(iter(self._hits))]  # the oldest
            self._hits[interaction.key] = interaction

    def _write(self, sql: str, row: tuple) -> None:
        with self._lock, self._writing():
            self._connection.execute(sql, row)  # type: ignore[union-attr]

    def interactions(self) -> Iterator[Interaction]:
        """Every interaction, ordered by fingerprint and occurrence."""
        if self._connection is None:
            return iter(())
        with self._lock:
            rows = self._query(f"SELECT {_COLUMNS} FROM interactions ORDER BY fingerprint, occurrence").fetchall()
        return (_from_row(row) for row in rows)

    def requests(self) -> Iterator[tuple[str, int, str]]:
        """(fingerprint, occurrence, canonical request JSON) of every interaction, oldest recording first; no bodies."""
        if self._connection is None:
            return iter(())
        with self._lock:
            rows = self._query("SELECT fingerprint, occurrence, request FROM interactions ORDER BY recorded_at, fingerprint, occurrence").fetchall()
        return iter(rows)

    def stored_clock(self, test_id: str) -> tuple[datetime | None, bool | None]:
        """The instant a test recorded at, and whether its recording read the clock (None: unknown, as in
        cassettes written before llm_replay kept it)."""
        if self._connection is None or not self._has_instants:
            return None, None
        stored_id = self.scrubber.test_id(test_id)
        if self.readonly:  # a replay asks for every test: one read of the table rather than a query per test
            if self._clocks is None:
                self._clocks = {test: (instant, read) for test, instant, read in self.instants()}
            return self._clocks.get(stored_id, (None, None))
        clock_read = "clock_read" if self._has_clock_read else "NULL"
        with self._lock:
            row = self._query(f"SELECT instant, {clock_read} FROM test_instants WHERE test_id = ?", (stored_id,)).fetchone()
        if row is None:
            return None, None
        return datetime.fromisoformat(row[0]), None if row[1] is None else bool(row[1])

    def instants(self) -> list[tuple[str, datetime, bool | None]]:
        """Every test's stored instant and clock flag, for merging two branches' cassettes."""
        if self._connection is None or not self._has_instants:
            return []
        clock_read = "clock_read" if self._has_clock_read else "NULL"
        with self._lock:
            rows = self._query(f"SELECT test_id, instant, {clock_read} FROM test_instants ORDER BY test_id").fetchall()
        return [(test_id, datetime.fromisoformat(instant), None if read is None else bool(read)) for test_id, instant, read in rows]

    def put_instant(self, test_id: str, instant: datetime) -> None:
        """Remember, durably, the instant a test recorded at; a later record run of the test reuses it.
        Whether the test reads the clock stays unknown until it ends (``put_clock_read``)."""
        self._write("INSERT OR REPLACE INTO test_instants (test_id, instant) VALUES (?, ?)", (self.scrubber.test_id(test_id), instant.isoformat()))

    def put_clock_read(self, test_id: str, read: bool) -> None:
        """Remember whether a test that recorded read the clock (a test with no stored instant is left alone)."""
        self._write("UPDATE test_instants SET clock_read = ? WHERE test_id = ?", (int(read), self.scrubber.test_id(test_id)))

    def __len__(self) -> int:
        if self._connection is None:
            return 0
        with self._lock:
            return self._query("SELECT count(*) FROM interactions").fetchone()[0]

    def _query(self, sql: str, params: tuple = ()) -> sqlite3.Cursor:
        try:
            return self._connection.execute(sql, params)  # type: ignore[union-attr]
        except sqlite3.DatabaseError as error:
            raise CassetteError(_unusable(self.path, error)) from error

    # -- usage by runs (llm-replay prune, --llm-prune, stats) ------------------------------------

    def keys(self) -> list[Key]:
        """Every key, from the primary key's index alone: no row is read (``index`` reads each whole row for its tests)."""
        if self._connection is None:
            return []
        with self._lock:
            return [(fingerprint, occurrence) for fingerprint, occurrence in self._query("SELECT fingerprint, occurrence FROM interactions ORDER BY fingerprint, occurrence")]

    def index(self) -> list[tuple[Key, tuple[str, ...]]]:
        """Every key with the tests that recorded it, without loading the bodies."""
        if self._connection is None:
            return []
        with self._lock:
            rows = self._query("SELECT fingerprint, occurrence, tests FROM interactions ORDER BY fingerprint, occurrence").fetchall()
        return [((fingerprint, occurrence), tuple(json.loads(tests))) for fingerprint, occurrence, tests in rows]

    def record_run(self, run: RunRecord, replays: Mapping[Key, int]) -> None:
        """Remember a finished run and the recordings it used (with how often each was replayed), in one transaction."""
        rows = [(fingerprint, occurrence, run.uid, count) for (fingerprint, occurrence), count in replays.items()]
        with self._lock, self._writing():  # a writable cassette has every table: _check_schema made them on opening
            self._connection.execute("INSERT OR REPLACE INTO runs VALUES (?,?,?,?)", (run.uid, run.finished_at, int(run.complete), run.scope_json()))  # type: ignore[union-attr]
            self._connection.executemany(  # type: ignore[union-attr]
                "INSERT INTO usage VALUES (?,?,?,?) ON CONFLICT (fingerprint, occurrence) "
                "DO UPDATE SET last_used_run = excluded.last_used_run, replays = replays + excluded.replays",
                rows,
            )

    def last_complete_run(self) -> RunRecord | None:
        """The most recent run in which every collected test ran and passed."""
        if not self._has_table("runs"):
            return None
        with self._lock:
            row = self._query("SELECT uid, finished_at, complete, scope FROM runs WHERE complete ORDER BY finished_at DESC LIMIT 1").fetchone()
        return RunRecord.from_row(*row) if row else None

    def keys_used_since(self, finished_at: str) -> set[Key]:
        """The recordings some run finishing at or after ``finished_at`` used."""
        if not self._has_table("usage"):
            return set()
        with self._lock:
            rows = self._query(
                "SELECT u.fingerprint, u.occurrence FROM usage u JOIN runs r ON r.uid = u.last_used_run WHERE r.finished_at >= ?", (finished_at,)
            ).fetchall()
        return {(fingerprint, occurrence) for fingerprint, occurrence in rows}

    def usage(self) -> dict[Key, tuple[str, int]]:
        """For each recording ever used by a run: that run's uid and the replays counted so far."""
        if not self._has_table("usage"):
            return {}
        with self._lock:
            rows = self._query("SELECT fingerprint, occurrence, last_used_run, replays FROM usage").fetchall()
        return {(fingerprint, occurrence): (run, replays) for fingerprint, occurrence, run, replays in rows}

    def delete(self, keys: Iterable[Key]) -> int:
        """Remove these recordings and their usage, in one transaction (``prune``, a LangChain cache's
        ``clear()``); how many were removed."""
        keys = list(keys)
        if not keys:
            return 0
        with self._lock, self._writing():
            removed = self._connection.executemany("DELETE FROM interactions WHERE fingerprint = ? AND occurrence = ?", keys).rowcount  # type: ignore[union-attr]
            self._connection.executemany("DELETE FROM usage WHERE fingerprint = ? AND occurrence = ?", keys)  # type: ignore[union-attr]
        for key in keys:
            self._hits.pop(key, None)
        return removed

    def _has_table(self, name: str) -> bool:
        if self._connection is None:
            return False
        with self._lock:
            return self._query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone() is not None

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """A write transaction (the caller holds the lock); every failure is a CassetteError naming the file."""
        if self.readonly:
            raise CassetteError(f"cassette {self.path} is open read-only (replay mode); record with --llm-mode=record")
        if self._connection is None:
            self._connection = self._connect()
        try:
            with _transaction(self._connection):
                yield
        except sqlite3.OperationalError as error:
            raise CassetteError(f"cannot write to cassette {self.path}: {error}; check that the file and its folder are writable") from error
        except sqlite3.DatabaseError as error:  # "database disk image is malformed" and other damage
            raise CassetteError(_unusable(self.path, error)) from error

    def close(self) -> None:
        """Fold the write-ahead log back into the file, so that what git sees is complete.

        The last writer out also turns WAL off again: a cassette at rest is one plain file, and a
        read-only replay of it (CI) leaves no ``-wal``/``-shm`` files beside it.
        """
        if self._connection is None:
            return
        with self._lock:
            try:
                if not self.readonly:
                    self._connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                    self._connection.execute("PRAGMA busy_timeout = 0")
                    self._connection.execute("PRAGMA journal_mode = DELETE")
            except sqlite3.OperationalError:
                pass  # another worker still has it open; the last one out checkpoints and leaves WAL
            finally:
                self._connection.close()
                self._connection = None


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


def _from_row(row: tuple) -> Interaction:
    fingerprint, occurrence, request, status, reason, headers, body, recorded_at, latency_ms, tests = row
    return Interaction(
        fingerprint=fingerprint,
        occurrence=occurrence,
        request_json=request,
        response=RecordedResponse(status=status, reason=reason, headers=json.loads(headers), body=body.encode() if isinstance(body, str) else body),
        recorded_at=recorded_at,
        latency_ms=latency_ms,
        tests=tuple(json.loads(tests)),
    )


def _check_is_sqlite(path: Path) -> None:
    try:
        with path.open("rb") as handle:
            head = handle.read(len(SQLITE_MAGIC))
    except FileNotFoundError:
        return
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
        if not os.access(path, os.W_OK) or not path.stat().st_mode & 0o222:
            raise CassetteError(
                f"cassette {path} is read-only (file permissions) but this run records into it; it was left untouched. "
                f"Make it writable (chmod u+w {path}) or only replay (--llm-mode=replay)"
            )
        folder = path.parent
    else:
        folder = next((parent for parent in path.parents if parent.exists()), path.parent)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise CassetteError(
            f"cassette {path} cannot be recorded into: its folder {folder} is not writable "
            "(SQLite keeps its write-ahead log beside the file). Make the folder writable or point --llm-cassette elsewhere"
        )


def _unusable(path: Path, error: Exception) -> str:
    return (
        f"cassette {path} cannot be used ({error}); it was left untouched. "
        "Restore it from git (git checkout -- <file>) or point --llm-cassette at another file"
    )
