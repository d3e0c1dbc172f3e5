"""Stores of interactions keyed by (fingerprint, occurrence): in memory per test, or one SQLite file per suite.

Both answer the same small interface: ``get``, ``put``, ``interactions``, ``close``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from pathlib import Path
from typing import Iterator

from .errors import CassetteError
from .interaction import Interaction, RecordedResponse

SCHEMA_VERSION = 1
_SQLITE_MAGIC = b"SQLite format 3\x00"
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
"""
_COLUMNS = "fingerprint, occurrence, request, status, reason, headers, body, recorded_at, latency_ms, tests"


class InMemoryCache:
    """A dict of interactions, fresh for each test; nothing is written to disk."""

    path = None

    def __init__(self) -> None:
        self._entries: dict[tuple[str, int], Interaction] = {}

    def describe(self) -> str:
        """How the cassette is named in messages."""
        return "in-memory cache (scope='test')"

    def get(self, fingerprint: str, occurrence: int = 0) -> Interaction | None:
        """The interaction recorded under this key, if any."""
        return self._entries.get((fingerprint, occurrence))

    def put(self, interaction: Interaction) -> None:
        """Store or overwrite an interaction."""
        self._entries[interaction.key] = interaction

    def interactions(self) -> Iterator[Interaction]:
        """Every interaction, in no promised order."""
        return iter(list(self._entries.values()))

    def __len__(self) -> int:
        return len(self._entries)

    def close(self) -> None:
        """Nothing to release."""


class SQLiteCache:
    """One SQLite file (WAL, busy timeout) shared by every test and every pytest-xdist worker.

    Each ``put`` is its own transaction, so a killed run keeps all it recorded before the kill.
    Opened read-only it never creates or changes the file; a missing file then reads as empty.
    """

    def __init__(self, path: str | os.PathLike[str], readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self._lock = threading.Lock()
        self._hits: dict[tuple[str, int], Interaction] = {}
        self._connection: sqlite3.Connection | None = None
        _check_is_sqlite(self.path)
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
                connection = sqlite3.connect(self.path, timeout=60, check_same_thread=False, isolation_level=None)
            connection.execute("PRAGMA busy_timeout = 60000")
            if not self.readonly:
                connection.execute("PRAGMA journal_mode = WAL")
                connection.execute("PRAGMA synchronous = NORMAL")
            self._check_schema(connection)
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
            return
        if self.readonly:
            return
        with _transaction(connection):
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    connection.execute(statement)
            connection.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))

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
        self._hits[key] = interaction
        return interaction

    def put(self, interaction: Interaction) -> None:
        """Store or overwrite an interaction, durably, in one transaction."""
        if self.readonly:
            raise CassetteError(f"cassette {self.path} is open read-only (replay mode); record with --llm-mode=record")
        if self._connection is None:
            self._connection = self._connect()
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
        with self._lock:
            try:
                with _transaction(self._connection):
                    self._connection.execute("INSERT OR REPLACE INTO interactions VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", row)
            except sqlite3.OperationalError as error:
                raise CassetteError(f"cannot write to cassette {self.path}: {error}; check that the file and its folder are writable") from error
        self._hits[interaction.key] = interaction

    def interactions(self) -> Iterator[Interaction]:
        """Every interaction, ordered by fingerprint and occurrence."""
        if self._connection is None:
            return iter(())
        with self._lock:
            rows = self._query(f"SELECT {_COLUMNS} FROM interactions ORDER BY fingerprint, occurrence").fetchall()
        return (_from_row(row) for row in rows)

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

    def close(self) -> None:
        """Fold the write-ahead log back into the file, so that what git sees is complete."""
        if self._connection is None:
            return
        with self._lock:
            try:
                if not self.readonly:
                    self._connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.OperationalError:
                pass  # another worker still has it open; the last one out checkpoints
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
            head = handle.read(len(_SQLITE_MAGIC))
    except FileNotFoundError:
        return
    except OSError as error:
        raise CassetteError(f"cannot read cassette {path}: {error}") from error
    if head and head != _SQLITE_MAGIC:
        raise CassetteError(
            f"{path} is not an llm_replay cassette (not an SQLite file); it was left untouched. "
            "Move it away, or point --llm-cassette (ini llm_cassette) at another file"
        )


def _unusable(path: Path, error: Exception) -> str:
    return (
        f"cassette {path} cannot be used ({error}); it was left untouched. "
        "Restore it from git (git checkout -- <file>) or point --llm-cassette at another file"
    )
