"""The SQLite cassette: durable, readable with sqlite3, and never damaged by bad input."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from llm_replay import CassetteError
from llm_replay.model.fingerprint import canonicalize
from llm_replay.model.interaction import Interaction, RecordedResponse
from llm_replay.stores.memory import InMemoryCache
from llm_replay.stores.sqlite import SCHEMA_VERSION, SQLiteCache


def _interaction(prompt: str, occurrence: int = 0) -> Interaction:
    request = canonicalize("POST", "https://api.test/v1/chat/completions", f'{{"model":"m","messages":[{{"role":"user","content":"{prompt}"}}]}}'.encode())
    response = RecordedResponse(200, "OK", {"content-type": ["application/json"]}, b'{"usage": {"prompt_tokens": 3, "completion_tokens": 5}}')
    return Interaction.of(request, response, occurrence=occurrence, recorded_at="2026-01-01T00:00:00+00:00", tests=("t.py::test",))


@pytest.mark.parametrize("make", [InMemoryCache, lambda: SQLiteCache(Path("c.sqlite3"))], ids=["memory", "sqlite"])
def test_both_stores_answer_the_same_interface(make, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = make()
    first, again = _interaction("a"), _interaction("a", occurrence=1)
    store.put(first)
    store.put(again)
    assert store.get(first.fingerprint).response.body == first.response.body
    assert store.get(first.fingerprint, 1).occurrence == 1
    assert store.get("nope") is None
    assert len(store) == 2 and len(list(store.interactions())) == 2
    store.close()


def test_recordings_survive_reopening_and_are_readable_with_sqlite3(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "c.sqlite3"
    store = SQLiteCache(path)
    store.put(_interaction("persist me"))
    store.close()
    assert not path.with_name("c.sqlite3-wal").exists(), "close folds the WAL back so git sees a complete file"
    with sqlite3.connect(path) as db:
        model, tokens_in, tokens_out, request = db.execute("SELECT model, input_tokens, output_tokens, request FROM interactions").fetchone()
        version = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0]
    assert (model, tokens_in, tokens_out) == ("m", 3, 5)
    assert "persist me" in request
    assert version == str(SCHEMA_VERSION)
    reopened = SQLiteCache(path, readonly=True)
    assert reopened.get(_interaction("persist me").fingerprint) is not None
    reopened.close()
    assert sorted(p.name for p in path.parent.iterdir()) == ["c.sqlite3"], "a replay leaves no -wal/-shm files behind"


def test_a_writer_that_is_not_the_last_one_out_leaves_wal_on(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    first, second = SQLiteCache(path), SQLiteCache(path)
    first.put(_interaction("one"))
    first.close()  # the second still has the file open: WAL stays, nothing is lost
    second.put(_interaction("two"))
    second.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        assert db.execute("SELECT count(*) FROM interactions").fetchone()[0] == 2


def test_readonly_missing_file_reads_as_empty_and_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "c.sqlite3"
    store = SQLiteCache(path, readonly=True)
    assert len(store) == 0 and store.get("x") is None
    with pytest.raises(CassetteError, match="read-only"):
        store.put(_interaction("x"))
    assert not path.parent.exists()


def test_a_file_that_is_not_sqlite_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    path.write_text("interactions:\n- request: {}\n")
    with pytest.raises(CassetteError, match=r"c.sqlite3 is not an llm_replay cassette \(not an SQLite file\)"):
        SQLiteCache(path)
    assert path.read_text() == "interactions:\n- request: {}\n"


def test_another_sqlite_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE users (id INTEGER)")
    with pytest.raises(CassetteError, match="not an llm_replay cassette \\(tables: users\\)"):
        SQLiteCache(path)


def test_a_cassette_from_a_newer_llm_replay_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    created = SQLiteCache(path)
    created.put(_interaction("any"))
    created.close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    with pytest.raises(CassetteError, match="newer llm_replay .*upgrade llm_replay"):
        SQLiteCache(path)


def test_a_recording_that_cannot_be_written_fails_the_test_even_if_the_app_catches_exceptions(tmp_path: Path, server) -> None:
    import openai

    import llm_replay

    cassette = tmp_path / "c.sqlite3"
    with pytest.raises(llm_replay.CassetteMiss, match="could not be recorded: .*read-only"):
        with llm_replay.use_cassette(cassette, mode="record") as recorder:
            recorder.cassette.readonly = True  # writes now fail, as on a full disk or a lock held past the timeout
            try:
                openai.OpenAI(base_url=server.base_url, api_key=server.api_key, max_retries=0).chat.completions.create(
                    model="gpt-4o-mini", messages=[{"role": "user", "content": "keep me"}]
                )
            except Exception:  # an application's fallback cannot hide the lost recording
                pass
    assert recorder.missed == 1


def test_a_streamed_answer_stores_the_tokens_its_last_event_reports(tmp_path: Path, server, env) -> None:
    import openai

    from llm_replay import use_cassette

    path = tmp_path / "c.sqlite3"
    client = openai.OpenAI(base_url=server.base_url, api_key=server.api_key, max_retries=0)
    with use_cassette(path, mode="record"):
        chunks = list(client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "stream please"}], stream=True, stream_options={"include_usage": True}
        ))
    reported = chunks[-1].usage
    assert reported is not None and reported.prompt_tokens > 0 and reported.completion_tokens > 0
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT input_tokens, output_tokens FROM interactions").fetchall() == [(reported.prompt_tokens, reported.completion_tokens)]


def test_a_damaged_table_fails_a_write_with_a_message_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    store = SQLiteCache(path)
    store.put(_interaction("before the damage"))
    store.close()
    with sqlite3.connect(path) as db:
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
        root = db.execute("SELECT rootpage FROM sqlite_master WHERE name = 'interactions'").fetchone()[0]
    data = bytearray(path.read_bytes())
    data[(root - 1) * page_size : root * page_size] = b"\xab" * page_size  # the schema still reads; the recordings do not
    path.write_bytes(bytes(data))

    damaged = SQLiteCache(path)
    with pytest.raises(CassetteError, match=rf"cassette {path} cannot be used \(database disk image is malformed\).*Restore it from git"):
        damaged.put(_interaction("after"))
    damaged.close()


def test_the_run_bookkeeping_forgets_deleted_recordings(tmp_path: Path) -> None:
    from llm_replay.model.runs import RunRecord
    from llm_replay.stores.ledger import RunLedger

    kept, gone = _interaction("kept"), _interaction("gone")
    ledger = RunLedger(tmp_path / "ledger.sqlite3")
    ledger.record(RunRecord("run-1", "2026-01-01T00:00:00+00:00", "2026-01-01T00:01:00+00:00", 1), {"t.py::test": {kept.key, gone.key}}, {kept.key: 1, gone.key: 2})
    ledger.forget([gone.key])
    assert list(ledger.usage()) == [kept.key], "no orphan usage row is left"
    assert ledger.passes()["t.py::test"].used == {kept.key}


def test_older_files_gain_the_owners_index_at_their_first_write_and_answer_the_same_without_it(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    store = SQLiteCache(path)
    for n in range(5):
        store.put(_interaction(f"q{n}"))
    store.close()
    with sqlite3.connect(path) as db:
        plan = " ".join(row[-1] for row in db.execute("EXPLAIN QUERY PLAN SELECT fingerprint, occurrence, tests, recorded_at FROM interactions"))
        assert "COVERING INDEX interactions_owners" in plan, f"the end of a run reads the owners apart from the answers: {plan}"
        db.execute("DROP INDEX interactions_owners")  # a file written before the index was kept
    expected = sorted((interaction.key, interaction.tests, interaction.recorded_at) for interaction in map(_interaction, [f"q{n}" for n in range(5)]))
    before = path.read_bytes()
    readonly = SQLiteCache(path, readonly=True)
    assert readonly.index() == expected, "without the index: the same answer, in key order"
    readonly.close()
    assert path.read_bytes() == before, "a read-only open adds nothing"
    writable = SQLiteCache(path)
    writable.put(_interaction("q5"))
    writable.close()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT 1 FROM sqlite_master WHERE name = 'interactions_owners'").fetchone(), "the first write adds the index"
    reopened = SQLiteCache(path, readonly=True)
    assert reopened.index() == sorted([*expected, (_interaction("q5").key, ("t.py::test",), "2026-01-01T00:00:00+00:00")])
    reopened.close()


def _owned(prompt: str, *owners: str, body: bytes = b'{"usage": {"prompt_tokens": 3, "completion_tokens": 5}}') -> Interaction:
    return replace(_interaction(prompt), tests=owners, response=replace(_interaction(prompt).response, body=body))


def test_a_replay_reads_ahead_the_recordings_its_next_tests_own_alone_in_one_query(tmp_path: Path, monkeypatch) -> None:
    from llm_replay.stores import recent

    monkeypatch.setattr(recent, "HIT_CACHE_BYTES", 4096)
    monkeypatch.setattr(recent, "HIT_CACHE_ITEM_BYTES", 2048)
    path = tmp_path / "c.sqlite3"
    writer = SQLiteCache(path)
    mine = [_owned(f"a{n}", "t.py::a") for n in range(3)] + [_owned("b0", "t.py::b")]
    shared, large, other = _owned("s", "t.py::a", "t.py::b"), _owned("l", "t.py::a", body=b"x" * 4096), _owned("o", "t.py::other")
    for recording in (*mine, shared, large, other):
        writer.put(recording)
    writer.warm(["t.py::a"])
    assert writer._ahead == {}, "a writable cassette reads nothing ahead (what it writes would go stale)"
    writer.close()

    import llm_replay.stores.sqlite as sqlite_store

    built: list[int] = []
    monkeypatch.setattr(sqlite_store, "_from_row", lambda row, build=sqlite_store._from_row: built.append(len(row[6])) or build(row))
    store = SQLiteCache(path, readonly=True)
    statements: list[str] = []
    store.warm(["t.py::a", "t.py::b"])
    assert len(built) == len(mine) and max(built) < 2048, "an answer over the per-answer budget is never even read ahead"
    store._connection.set_trace_callback(statements.append)
    assert [store.get(r.fingerprint).response.body for r in mine] == [r.response.body for r in mine]
    assert statements == [], "the window's own recordings come from memory"
    assert store.get(shared.fingerprint).tests == ("t.py::a", "t.py::b") and store.get(large.fingerprint).response.body == b"x" * 4096
    assert len(statements) == 2, "a shared recording and one over the per-answer budget are looked up when asked"
    store.warm(["t.py::other"])
    assert set(store._ahead) == {other.key}, "the next window lets go of the last"
    store.close()

    with sqlite3.connect(path) as db:
        db.execute("DROP INDEX interactions_owners")  # a file from before the index
    older = SQLiteCache(path, readonly=True)
    older.warm(["t.py::a"])
    assert older._ahead == {} and older.get(mine[0].fingerprint) is not None, "nothing read ahead, every answer the same"
    older.close()
