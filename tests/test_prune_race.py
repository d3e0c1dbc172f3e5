"""A prune racing another session's (another machine's) refresh: the recording it chose was written again after it read
the index, and the delete took the fresh one. Every delete that pruning makes (--llm-prune, llm-replay prune, a refresh's
replacement) now takes a recording only while it still has the recorded_at that was read."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from test_store_contract import _interaction, kind, make, store  # noqa: F401  the contract's stores, each built its own way

from llm_replay.engine.pruning import prune_unused
from llm_replay.model.runs import RunRecord
from llm_replay.stores.base import Store
from llm_replay.stores.ledger import RunLedger
from llm_replay.stores.spec import open_store
from llm_replay.stores.sqlite import SQLiteCache

OLD, FRESH = "2026-01-01T00:00:00.000+00:00", "2026-01-03T00:00:00.000+00:00"


def test_a_delete_given_recorded_at_takes_only_what_is_still_stamped_so(store: Store) -> None:  # noqa: F811
    kept, gone = replace(_interaction("rewritten"), recorded_at=FRESH), replace(_interaction("unchanged"), recorded_at=OLD)
    store.put(kept)
    store.put(gone)
    assert store.delete([kept.key, gone.key], {kept.key: OLD, gone.key: OLD}) == 1
    assert store.get(*kept.key) is not None and store.get(*gone.key) is None
    assert store.delete([kept.key]) == 1, "without stamps, a delete is by key alone"


class RefreshedMeanwhile:
    """The real store, but another session writes ``fresh`` again right after the index is read (the race's window)."""

    def __init__(self, inner: Store, other: Store, fresh: Any) -> None:
        self.inner, self.other, self.fresh = inner, other, fresh

    def index(self, owned: bool = False, unreadable: Any = None) -> Any:
        found = self.inner.index(owned=owned, unreadable=unreadable)
        self.other.put(self.fresh)
        return found

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.mark.parametrize("where", ["sqlite", "redis"])
def test_llm_replay_prune_keeps_a_recording_another_machine_refreshed_meanwhile(tmp_path: Path, request: pytest.FixtureRequest, where: str) -> None:
    """test_a passed without the old answer, so the rule frees it; another checkout's refresh of test_a (its branch still
    asks it) writes it again while the prune runs: the fresh answer must survive."""
    spec = str(tmp_path / "cassette.sqlite3") if where == "sqlite" else request.getfixturevalue("redis_url")
    build = (lambda: SQLiteCache(spec)) if where == "sqlite" else (lambda: open_store(spec))
    cassette, other = build(), build()
    try:
        old = replace(_interaction("asked on the other branch", tests=("t.py::test_a",)), recorded_at=OLD)
        cassette.put(old)
        ledger = RunLedger(tmp_path / "ledger.sqlite3")
        ledger.record(RunRecord("run-1", "2026-01-02T00:00:00+00:00", "2026-01-02T00:01:00+00:00", 1), {"t.py::test_a": ()}, {})
        lines = prune_unused(RefreshedMeanwhile(cassette, other, replace(old, recorded_at=FRESH)), ledger, tmp_path)  # type: ignore[arg-type]
        assert lines[0].startswith("deleted 0 recordings"), lines
        reader = build()
        assert reader.get(*old.key).recorded_at == FRESH, "the refreshed answer is kept"
        reader.close()
    finally:
        cassette.close()
        other.close()


class ListedThenRefreshed(RefreshedMeanwhile):
    """The real store, but another session writes ``fresh`` again right after ``rm`` listed what it will delete."""

    def summaries(self, **options: Any) -> Any:
        found = list(self.inner.summaries(**options))  # type: ignore[attr-defined]
        self.other.put(self.fresh)
        return iter(found)


def test_rm_by_test_keeps_a_recording_another_session_refreshed_after_it_was_listed(tmp_path: Path) -> None:
    from llm_replay.cli.removal import erase, plan_removal
    from llm_replay.cli.selection import Selection

    cassette, other = SQLiteCache(tmp_path / "cassette.sqlite3"), SQLiteCache(tmp_path / "cassette.sqlite3")
    try:
        old = replace(_interaction("chosen", tests=("t.py::test_a",)), recorded_at=OLD)
        cassette.put(old)
        ledger = RunLedger(tmp_path / "ledger.sqlite3")
        listing = ListedThenRefreshed(cassette, other, replace(old, recorded_at=FRESH))
        removal = plan_removal(listing, Selection(test="t.py::test_a"), {}, {})  # type: ignore[arg-type]
        assert [row.key for row in removal.doomed] == [old.key]
        assert erase(cassette, ledger, removal).startswith("deleted 0 recordings")
        assert cassette.get(*old.key).recorded_at == FRESH
    finally:
        cassette.close()
        other.close()
