"""The store contract: one suite that every store passes (memory, SQLite, Redis: one entry each in STORES).

Written like LangChain's standard cache tests: the behaviour is stated once, each store only says how
it is built. A new store proves itself here before the engine, the CLI or pruning may use it.
"""

from __future__ import annotations

import threading
from dataclasses import fields, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import pytest

from llm_replay.model.fingerprint import canonicalize
from llm_replay.model.interaction import Interaction, OwnerChange, RecordedResponse
from llm_replay.stores.base import Store
from llm_replay.stores.memory import InMemoryCache
from llm_replay.stores.spec import open_store
from llm_replay.stores.sqlite import SQLiteCache

# name -> (build a store for a test's place (its tmp_path, its fixtures), whether a second store built for the
# same place sees the first's writes)
StoreFactory = Callable[[], Store]
STORES: dict[str, tuple[Callable[[Path, pytest.FixtureRequest], Store], bool]] = {
    "memory": (lambda place, request: InMemoryCache(), False),
    "sqlite": (lambda place, request: SQLiteCache(place / "cassette.sqlite3"), True),
    "redis": (lambda place, request: open_store(request.getfixturevalue("redis_url")), True),
}


@pytest.fixture(params=sorted(STORES))
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def make(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> StoreFactory:
    opened: list[Store] = []

    def build() -> Store:
        store = STORES[kind][0](tmp_path, request)
        opened.append(store)
        return store

    yield build
    for store in opened:
        store.close()


@pytest.fixture
def store(make: StoreFactory) -> Store:
    return make()


def _interaction(prompt: str, occurrence: int = 0, tests: tuple[str, ...] = ("t.py::test",), body: bytes = b'{"ok": true}') -> Interaction:
    request = canonicalize("POST", "https://api.test/v1/chat/completions", f'{{"model":"m","messages":[{{"role":"user","content":"{prompt}"}}]}}'.encode())
    response = RecordedResponse(200, "OK", {"content-type": ["application/json"]}, body)
    return Interaction.of(request, response, occurrence=occurrence, recorded_at=f"2026-01-01T00:00:{occurrence:02d}+00:00", tests=tests)


def test_every_store_implements_the_protocol(store: Store) -> None:
    assert isinstance(store, Store)
    assert store.describe()


def test_get_returns_what_put_stored_and_nothing_else(store: Store) -> None:
    recording = _interaction("hello", body=b'{"answer": "hi"}')
    store.put(recording)
    found = store.get(recording.fingerprint)
    assert found is not None
    assert (found.key, found.request_json, found.response.body, found.response.status) == (
        recording.key, recording.request_json, b'{"answer": "hi"}', 200
    )
    assert found.tests == ("t.py::test",) and found.recorded_at == recording.recorded_at
    assert store.get(recording.fingerprint, 1) is None
    assert store.get("0" * 32) is None


def test_occurrences_are_separate_recordings(store: Store) -> None:
    answers = [_interaction("same", occurrence=n, body=f'{{"n": {n}}}'.encode()) for n in range(3)]
    for answer in answers:
        store.put(answer)
    assert [store.get(answers[0].fingerprint, n).response.json() for n in range(3)] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert len(store) == 3


def test_put_overwrites_the_same_key(store: Store) -> None:
    store.put(_interaction("q", body=b'{"v": 1}'))
    store.put(_interaction("q", body=b'{"v": 2}'))
    assert len(store) == 1
    assert store.get(_interaction("q").fingerprint).response.json() == {"v": 2}


def test_put_scrubs_secret_values(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONTRACT_API_KEY", "contract-secret-value-123")
    store.put(_interaction("my key is contract-secret-value-123", body=b'{"echo": "contract-secret-value-123"}'))
    (stored,) = list(store.interactions())
    assert "contract-secret-value-123" not in stored.request_json
    assert b"contract-secret-value-123" not in stored.response.body
    assert "<scrubbed:CONTRACT_API_KEY>" in stored.request_json


def test_a_secret_in_a_test_id_is_stored_scrubbed_wherever_test_ids_go(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENANT_TOKEN", "tenant-secret-value-9")
    test_id, shown = "t.py::test[tenant-secret-value-9]", "t.py::test[<scrubbed:TENANT_TOKEN>]"
    recording = _interaction("tenant", tests=(test_id,))
    store.put(recording)
    store.put_instant(test_id, datetime(2026, 1, 1, tzinfo=timezone.utc))
    store.put_clock_read(test_id, True)
    store.change_owners({recording.key: OwnerChange(added=(test_id, "t.py::other"))})
    assert [sorted(tests) for _, tests, _ in store.index()] == [sorted((shown, "t.py::other"))]
    assert store.instants() == [(shown, datetime(2026, 1, 1, tzinfo=timezone.utc), True)]
    assert store.stored_clock(test_id) == (datetime(2026, 1, 1, tzinfo=timezone.utc), True), "found again under the id the test has"


def test_iteration_lists_every_recording_and_requests_come_oldest_first(store: Store) -> None:
    for n, prompt in enumerate(["c", "a", "b"]):
        store.put(replace(_interaction(prompt), recorded_at=f"2026-01-0{n + 1}T00:00:00+00:00"))
    assert {i.fingerprint for i in store.interactions()} == {_interaction(p).fingerprint for p in "abc"}
    assert [fingerprint for fingerprint, _, _ in store.requests()] == [_interaction(p).fingerprint for p in "cab"]
    assert all('"messages"' in text for _, _, text in store.requests())


def test_ownership_index_names_the_tests_of_each_recording(store: Store) -> None:
    store.put(_interaction("a", tests=("t.py::test_a",)))
    store.put(_interaction("b", tests=("t.py::test_b", "t.py::test_c")))
    assert {key: tests for key, tests, _ in store.index()} == {
        (_interaction("a").fingerprint, 0): ("t.py::test_a",),
        (_interaction("b").fingerprint, 0): ("t.py::test_b", "t.py::test_c"),
    }
    assert {recorded_at for _, _, recorded_at in store.index()} == {"2026-01-01T00:00:00+00:00"}


@pytest.mark.parametrize("owners", [(), ("t.py::plain",), ('t.py::test["quoted"]',), ("t.py::test[back\\slash]",), ("t.py::test[é]",), ("t.py::a", "t.py::b")])
def test_owners_of_any_spelling_come_back_as_stored(store: Store, owners: tuple[str, ...]) -> None:
    recording = _interaction("owned", tests=owners)
    store.put(recording)
    assert sorted(store.get(recording.fingerprint).tests) == sorted(owners)  # in no promised order (Redis keeps a set)
    assert [sorted(tests) for _, tests, _ in store.index()] == [sorted(owners)]


def test_change_owners_adds_and_removes_owning_tests_of_the_named_keys_only(store: Store) -> None:
    a, b = _interaction("a", tests=("t.py::test_a",)), _interaction("b", tests=("t.py::test_b",))
    store.put(a)
    store.put(b)
    assert store.get(a.fingerprint) is not None  # read once: a store that caches reads must forget the old owners
    store.change_owners({a.key: OwnerChange(added=("t.py::test_x",)), ("0" * 32, 0): OwnerChange(added=("t.py::ghost",))})
    assert {key: tests for key, tests, _ in store.index()} == {a.key: ("t.py::test_a", "t.py::test_x"), b.key: ("t.py::test_b",)}
    assert store.get(a.fingerprint).tests == ("t.py::test_a", "t.py::test_x")
    assert store.get(a.fingerprint).response.body == a.response.body, "the answer is untouched"
    assert len(store) == 2
    store.change_owners({})
    store.change_owners({b.key: OwnerChange(removed=("t.py::test_b", "t.py::never_an_owner"))})
    assert {key: tests for key, tests, _ in store.index()}[b.key] == () and len(store) == 2, "no owners is not no recording"


def test_the_owned_index_is_the_index_without_the_recordings_no_test_owns(store: Store) -> None:
    """What the end of a run reads (it counts only what tests own): the same rows, in the same key order, and an
    owner removed since takes its recording out; a recording of several owners or of a quoted id stays."""
    kept = [_interaction("a", tests=("t.py::test_a",)), _interaction("b", tests=("t.py::test_b", 't.py::test_["q"]')), _interaction("c", tests=("t.py::test_c",))]
    for recording in [*kept, _interaction("orphan", tests=()), _interaction("imported", occurrence=1, tests=())]:
        store.put(recording)
    store.change_owners({kept[2].key: OwnerChange(removed=("t.py::test_c",))})
    everything = store.index()
    assert len(everything) == 5 and [key for key, _, _ in everything] == sorted(key for key, _, _ in everything)
    owned = store.index(owned=True)
    assert owned == [row for row in everything if row[1]]
    assert sorted(key for key, _, _ in owned) == sorted(recording.key for recording in kept[:2])


def test_two_sessions_settling_owners_at_once_each_keep_what_they_add(make: StoreFactory, kind: str) -> None:
    """Both read the owners, then both write: a change applies to what is stored then, not to what was read."""
    shared = STORES[kind][1]
    first = make()
    second = make() if shared else first
    recording = _interaction("shared", tests=("t.py::test_a", "t.py::test_old"))
    first.put(recording)
    assert first.index() == second.index()  # each session reads the same owners ...
    first.change_owners({recording.key: OwnerChange(added=("t.py::test_x",))})
    second.change_owners({recording.key: OwnerChange(added=("t.py::test_y",), removed=("t.py::test_old",))})  # ... then both write
    reader = make() if shared else first
    assert [tests for _, tests, _ in reader.index()] == [("t.py::test_a", "t.py::test_x", "t.py::test_y")]


def test_delete_removes_only_the_named_keys(store: Store) -> None:
    keep, drop = _interaction("keep"), _interaction("drop")
    store.put(keep)
    store.put(drop)
    assert store.delete([drop.key, ("0" * 32, 0)]) == 1
    assert store.get(drop.fingerprint) is None and store.get(keep.fingerprint) is not None
    assert len(store) == 1
    assert store.delete([]) == 0


def test_get_many_returns_what_get_returns_for_the_keys_there_are(store: Store) -> None:
    recordings = [_interaction(prompt, tests=(f"t.py::{prompt}",)) for prompt in "abc"]
    for recording in recordings:
        store.put(recording)
    asked = [recordings[2].key, ("0" * 32, 0), recordings[0].key]
    assert sorted(store.get_many(iter(asked)), key=lambda i: i.key) == sorted([store.get(*recordings[0].key), store.get(*recordings[2].key)], key=lambda i: i.key)
    assert list(store.get_many([])) == []


def test_warm_reads_ahead_without_changing_an_answer_and_lets_go_of_what_changes_after(store: Store) -> None:
    instant = datetime(2026, 3, 4, tzinfo=timezone.utc)
    mine, shared, theirs = _interaction("mine", tests=("t.py::a",)), _interaction("shared", tests=("t.py::a", "t.py::b")), _interaction("theirs", tests=("t.py::b",))
    for recording in (mine, shared, theirs):
        store.put(recording)
    store.put_instant("t.py::a", instant)
    store.put_clock_read("t.py::a", False)
    store.warm(["t.py::a"])
    assert store.stored_clock("t.py::a") == (instant, False) and store.stored_clock("t.py::b") == (None, None)
    assert [store.get(r.fingerprint).tests for r in (mine, shared, theirs)] == [("t.py::a",), ("t.py::a", "t.py::b"), ("t.py::b",)]
    assert store.get(mine.fingerprint).response.body == mine.response.body and store.get("0" * 32) is None
    # What changes after the read-ahead is answered as changed, not as read ahead.
    store.warm(["t.py::a"])
    store.change_owners({shared.key: OwnerChange(removed=("t.py::a",))})
    store.put(replace(mine, response=replace(mine.response, body=b'{"ok": "again"}')))
    store.delete([theirs.key])
    store.put_instant("t.py::a", instant.replace(year=2027))
    assert store.get(shared.fingerprint).tests == ("t.py::b",)
    assert store.get(mine.fingerprint).response.body == b'{"ok": "again"}'
    assert store.get(theirs.fingerprint) is None
    assert store.stored_clock("t.py::a") == (instant.replace(year=2027), None)
    store.warm(["t.py::nobody"])  # a test that owns nothing
    assert store.get(mine.fingerprint).tests == ("t.py::a",) and store.stored_clock("t.py::nobody") == (None, None)


def test_instants_and_clock_reads(store: Store) -> None:
    instant = datetime(2026, 3, 4, 5, 6, 7, tzinfo=timezone.utc)
    assert store.stored_clock("t.py::test") == (None, None)
    store.put_instant("t.py::test", instant)
    assert store.stored_clock("t.py::test") == (instant, None)
    store.put_clock_read("t.py::test", True)
    assert store.stored_clock("t.py::test") == (instant, True)
    store.put_clock_read("t.py::other", True)  # no instant stored: left alone
    assert store.stored_clock("t.py::other") == (None, None)
    assert store.instants() == [("t.py::test", instant, True)]


def test_concurrent_writers_lose_nothing(make: StoreFactory, kind: str) -> None:
    shared = STORES[kind][1]
    stores = [make() for _ in range(4)] if shared else [make()] * 4
    errors: list[BaseException] = []

    def write(worker: int) -> None:
        try:
            for n in range(25):
                stores[worker].put(_interaction(f"w{worker}-{n}"))
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=write, args=(worker,)) for worker in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    reader = make() if shared else stores[0]
    assert len(reader) == 100
    assert all(reader.get(_interaction(f"w{w}-{n}").fingerprint) is not None for w in range(4) for n in range(25))


def test_close_keeps_what_was_written_for_the_next_opening(make: StoreFactory, kind: str) -> None:
    store = make()
    store.put(_interaction("durable"))
    store.put_instant("t.py::test", datetime(2026, 1, 1, tzinfo=timezone.utc))
    store.close()
    if not STORES[kind][1]:
        pytest.skip(f"the {kind} store lives only as long as its object")
    again = make()
    assert again.get(_interaction("durable").fingerprint) is not None
    assert again.stored_clock("t.py::test")[0] == datetime(2026, 1, 1, tzinfo=timezone.utc)


def test_binary_bodies_and_metadata_survive_the_round_trip(make: StoreFactory, kind: str) -> None:
    image = bytes(range(256)) * 4  # not UTF-8
    recording = replace(_interaction("image", body=image), latency_ms=12.5)
    writer = make()
    writer.put(recording)
    stored = (make() if STORES[kind][1] else writer).get(recording.fingerprint)
    assert (stored.response.body, stored.latency_ms, stored.response.headers) == (image, 12.5, {"content-type": ["application/json"]})


def test_a_recording_read_back_is_a_whole_value_object(make: StoreFactory, kind: str) -> None:
    """Stores build what they read without the frozen dataclasses' __init__ (``stored_interaction``, for speed): it must
    still be a whole Interaction, equal to one built the usual way, replaceable, its request parsed when asked."""
    recording = replace(_interaction("whole"), latency_ms=3.5)
    writer = make()
    writer.put(recording)
    stored = (make() if STORES[kind][1] else writer).get(recording.fingerprint)
    assert {field.name for field in fields(Interaction)} <= set(vars(stored))
    assert {field.name for field in fields(RecordedResponse)} <= set(vars(stored.response))
    assert stored == Interaction(**{field.name: getattr(stored, field.name) for field in fields(Interaction)})
    assert (stored.key, stored.request_json, stored.response, stored.latency_ms, stored.tests) == (
        recording.key, recording.request_json, recording.response, 3.5, recording.tests
    )
    assert replace(stored, tests=()).tests == () and stored.request.fingerprint == recording.fingerprint
