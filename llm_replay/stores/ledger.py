"""Run bookkeeping, kept out of the committed cassette: which tests passed and what each used, what the tests that did
not pass used since, replay counts, and the sessions running against the cassette now (engine.live_sessions).

It changes every run, so it lives in pytest's cache directory (``.pytest_cache/d/llm_replay/`` under the
rootdir, or wherever ini ``cache_dir`` points), one small SQLite file per cassette: a run that records
nothing leaves the cassette byte-identical, and ``git status`` quiet. Losing it (``pytest --cache-clear``,
a fresh clone) only means ``llm-replay prune`` has nothing to go on until tests pass again.
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path
from typing import Iterable, Mapping

from ..errors import CassetteError
from ..model.interaction import Key
from ..model.runs import RunRecord, TestPass

BUSY_TIMEOUT_S = 60
_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (uid TEXT PRIMARY KEY, started_at TEXT NOT NULL, finished_at TEXT NOT NULL, passed INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS run_checkouts (uid TEXT PRIMARY KEY, branch TEXT NOT NULL, head TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS passes (test_id TEXT PRIMARY KEY, run_uid TEXT NOT NULL, started_at TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS pass_uses (
    test_id TEXT NOT NULL, fingerprint TEXT NOT NULL, occurrence INTEGER NOT NULL, PRIMARY KEY (test_id, fingerprint, occurrence)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS holds (
    test_id TEXT NOT NULL, fingerprint TEXT NOT NULL, occurrence INTEGER NOT NULL, PRIMARY KEY (test_id, fingerprint, occurrence)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS usage (
    fingerprint TEXT NOT NULL, occurrence INTEGER NOT NULL, last_used_run TEXT NOT NULL, replays INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (fingerprint, occurrence)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sessions (uid TEXT PRIMARY KEY, pid INTEGER NOT NULL, host TEXT NOT NULL, started_at TEXT NOT NULL) WITHOUT ROWID;
"""


def ledger_path(folder: Path, cassette: str | Path) -> Path:
    """The bookkeeping file of ``cassette`` (a file, or a URL: stores.spec) in llm_replay's folder of pytest's cache
    dir (``d/llm_replay``): one per cassette, named so a reader can tell which (a URL by its password-free form)."""
    from .spec import redacted, scheme

    kind = scheme(cassette)
    if kind is not None:
        return folder / f"{kind}-{hashlib.sha256(redacted(cassette).encode()).hexdigest()[:12]}.sqlite3"
    path = Path(cassette)
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
    return folder / f"{path.stem}-{digest}.sqlite3"


class RunLedger:
    """The bookkeeping of one cassette; created on the first run that writes to it, read by prune and stats."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def record(
        self, run: RunRecord, passes: Mapping[str, Iterable[Key]], replays: Mapping[Key, int], unpassed: Mapping[str, Iterable[Key]] | None = None
    ) -> None:
        """Remember a finished run: each passing test's pass replaces its previous one; replays add up. ``unpassed``:
        what each test that did not pass used; it holds those recordings until the test passes (which lets them go).
        The run's session stops being live in the same transaction: a prune that finds it ended finds its use too."""
        with self._connection(write=True) as db:
            db.execute("DELETE FROM sessions WHERE uid = ?", (run.uid,))
            db.executemany("DELETE FROM holds WHERE test_id = ?", [(test,) for test in passes])
            db.executemany("INSERT OR IGNORE INTO holds VALUES (?,?,?)", [(test, *key) for test, keys in (unpassed or {}).items() for key in keys])
            db.execute("INSERT OR REPLACE INTO runs VALUES (?,?,?,?)", (run.uid, run.started_at, run.finished_at, run.passed))
            if run.checkout is not None:
                db.execute("INSERT OR REPLACE INTO run_checkouts VALUES (?,?,?)", (run.uid, *run.checkout))
            db.executemany("INSERT OR REPLACE INTO passes VALUES (?,?,?)", [(test, run.uid, run.started_at) for test in passes])
            db.executemany("DELETE FROM pass_uses WHERE test_id = ?", [(test,) for test in passes])
            db.executemany("INSERT OR IGNORE INTO pass_uses VALUES (?,?,?)", [(test, *key) for test, keys in passes.items() for key in keys])
            db.executemany(
                "INSERT INTO usage VALUES (?,?,?,?) ON CONFLICT (fingerprint, occurrence) "
                "DO UPDATE SET last_used_run = excluded.last_used_run, replays = replays + excluded.replays",
                [(*key, run.uid, count) for key, count in replays.items()],
            )

    def passes(self) -> dict[str, TestPass]:
        """Each test's latest pass, what it used then and the git branch and commit it ran on."""
        if not self.path.is_file():
            return {}
        with self._connection() as db:
            used: dict[str, set[Key]] = {}
            for test, fingerprint, occurrence in db.execute("SELECT test_id, fingerprint, occurrence FROM pass_uses"):
                used.setdefault(test, set()).add((fingerprint, occurrence))
            rows = db.execute("SELECT test_id, run_uid, started_at FROM passes").fetchall()
            known = db.execute("SELECT 1 FROM sqlite_master WHERE name = 'run_checkouts'").fetchone()  # older bookkeeping has none
            found = db.execute("SELECT DISTINCT uid, branch, head FROM run_checkouts JOIN passes ON run_uid = uid").fetchall() if known else []
        checkouts = {run: (branch, head) for run, branch, head in found}
        return {test: TestPass(run, started, frozenset(used.get(test, ())), checkouts.get(run)) for test, run, started in rows}

    def holds(self) -> dict[Key, set[str]]:
        """Each recording used by tests in runs they did not pass, since their latest pass, with those tests."""
        if not self.path.is_file():
            return {}
        with self._connection() as db:
            known = db.execute("SELECT 1 FROM sqlite_master WHERE name = 'holds'").fetchone()  # older bookkeeping has none
            rows = db.execute("SELECT test_id, fingerprint, occurrence FROM holds").fetchall() if known else []
        held: dict[Key, set[str]] = {}
        for test, fingerprint, occurrence in rows:
            held.setdefault((fingerprint, occurrence), set()).add(test)
        return held

    def usage(self) -> dict[Key, tuple[str, int]]:
        """For each recording some run used: the last such run and the replays counted so far."""
        if not self.path.is_file():
            return {}
        with self._connection() as db:
            rows = db.execute("SELECT fingerprint, occurrence, last_used_run, replays FROM usage").fetchall()
        return {(fingerprint, occurrence): (run, replays) for fingerprint, occurrence, run, replays in rows}

    def last_run(self) -> RunRecord | None:
        """The run that finished last."""
        if not self.path.is_file():
            return None
        with self._connection() as db:
            row = db.execute("SELECT uid, started_at, finished_at, passed FROM runs ORDER BY finished_at DESC LIMIT 1").fetchone()
        return RunRecord(*row) if row else None

    def forget(self, keys: Iterable[Key]) -> None:
        """Drop deleted recordings from the bookkeeping."""
        keys = list(keys)
        if keys and self.path.is_file():
            with self._connection(write=True) as db:
                db.executemany("DELETE FROM usage WHERE fingerprint = ? AND occurrence = ?", keys)
                db.executemany("DELETE FROM pass_uses WHERE fingerprint = ? AND occurrence = ?", keys)
                db.executemany("DELETE FROM holds WHERE fingerprint = ? AND occurrence = ?", keys)

    def release(self, tests: Iterable[str]) -> None:
        """Forget deleted tests: their latest pass and what they used in runs they did not pass hold nothing now."""
        rows = [(test,) for test in tests]
        if rows and self.path.is_file():
            with self._connection(write=True) as db:
                for table in ("passes", "pass_uses", "holds"):
                    db.executemany(f"DELETE FROM {table} WHERE test_id = ?", rows)

    def start_session(self, uid: str, pid: int, host: str, started_at: str) -> None:
        """Note a session running against the cassette (its process: ``pid`` on ``host``), until it ends."""
        with self._connection(write=True) as db:
            db.execute("INSERT OR REPLACE INTO sessions VALUES (?,?,?,?)", (uid, pid, host, started_at))

    def sessions(self) -> list[tuple[str, int, str, str]]:
        """The sessions noted as running and not ended since: uid, pid, host, when each started."""
        if not self.path.is_file():
            return []
        with self._connection() as db:
            known = db.execute("SELECT 1 FROM sqlite_master WHERE name = 'sessions'").fetchone()  # older bookkeeping has none
            return db.execute("SELECT uid, pid, host, started_at FROM sessions").fetchall() if known else []

    def end_sessions(self, uids: Iterable[str]) -> None:
        """Forget sessions that ended (or died) without their run being recorded."""
        rows = [(uid,) for uid in uids]
        if rows and self.path.is_file():
            with self._connection(write=True) as db:
                db.executemany("DELETE FROM sessions WHERE uid = ?", rows)

    def _connection(self, write: bool = False) -> "_Opened":
        return _Opened(self.path, write)


class _Opened:
    """One short connection: a transaction when writing, every failure a CassetteError naming the file."""

    def __init__(self, path: Path, write: bool) -> None:
        self.path, self.write = path, write
        self.db: sqlite3.Connection | None = None

    def __enter__(self) -> sqlite3.Connection:
        try:
            if self.write:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
                self.db.executescript(_SCHEMA)
                self.db.execute("BEGIN IMMEDIATE")
            else:
                self.db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S)
            return self.db
        except (sqlite3.Error, OSError) as error:
            self._close()
            raise CassetteError(_broken(self.path, error)) from error

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if self.write and self.db is not None:
                self.db.execute("ROLLBACK" if exc_type else "COMMIT")
        except sqlite3.Error as error:
            raise CassetteError(_broken(self.path, error)) from error
        finally:
            self._close()
        if isinstance(exc, sqlite3.Error):
            raise CassetteError(_broken(self.path, exc)) from exc

    def _close(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None


def _broken(path: Path, error: Exception) -> str:
    return f"llm_replay's run bookkeeping {path} cannot be used ({error}); it is only a cache: delete it (pytest --cache-clear) and run the tests again"
