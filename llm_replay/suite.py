"""The pytest session's side of llm_replay: the shared cassette, per-test settings and the totals."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from .settings import CacheSettings, Mode

if TYPE_CHECKING:  # imported where used: merely loading the pytest plugin must stay cheap
    from .cassettes import SQLiteCache
    from .recorder import Recorder

DEFAULT_CASSETTE = Path("cassettes") / "llm_cache.sqlite3"


@dataclass
class Totals:
    """What every test of the session did, added up."""

    replayed: int = 0
    recorded: int = 0
    missed: int = 0
    tests: int = 0

    def add(self, recorder: Recorder) -> None:
        """Count one finished test."""
        self.replayed += recorder.replayed
        self.recorded += recorder.recorded
        self.missed += recorder.missed
        self.tests += 1


@dataclass
class Suite:
    """One pytest session's llm_replay state."""

    mode: Mode
    mode_is_explicit: bool
    cassette_path: Path
    defaults: CacheSettings
    rootdir: Path
    totals: Totals = field(default_factory=Totals)
    _cassette: SQLiteCache | None = None
    _refreshed: set[tuple[str, int]] = field(default_factory=set)

    def settings_for(self, config_fixture: Mapping[str, Any], marker_kwargs: Mapping[str, Any]) -> CacheSettings:
        """Settings by precedence: explicit CLI/env mode > marker > ``llm_cache_config`` > ini > default."""
        settings = self.defaults.updated(config_fixture, "the llm_cache_config fixture")
        settings = settings.updated(marker_kwargs, "@pytest.mark.llm_cache")
        if self.mode_is_explicit:
            settings = settings.updated({"mode": self.mode}, "--llm-mode")
        return settings

    def cassette(self, mode: Mode) -> SQLiteCache:
        """The suite cassette, opened on first use; read-only while only replaying."""
        readonly = mode is Mode.REPLAY
        if self._cassette is not None and self._cassette.readonly and not readonly:
            self._cassette.close()
            self._cassette = None
        if self._cassette is None:
            from .cassettes import SQLiteCache

            self._cassette = SQLiteCache(self.cassette_path, readonly=readonly)
        return self._cassette

    def recorder(self, settings: CacheSettings, nodeid: str) -> Recorder:
        """A Recorder for one test, over the suite cassette or a fresh in-memory one."""
        from .cassettes import InMemoryCache
        from .recorder import Recorder

        in_memory = settings.scope == "test"
        cassette = InMemoryCache() if in_memory else self.cassette(settings.mode)
        return Recorder(
            cassette,
            settings.mode,
            repeats=settings.repeats,
            test_id=nodeid,
            refreshed=self._refreshed,
            record_hint=lambda: self.record_command(nodeid, in_memory),
        )

    def record_command(self, nodeid: str, in_memory: bool) -> str:
        """The command that records what a test is missing."""
        if in_memory:
            return "this test uses scope='test' (an in-memory cache, nothing kept between runs); use scope='suite' to replay recordings"
        return f"pytest --llm-mode=record {shlex.quote(nodeid)}  (with the API key set)"

    def summary(self) -> str | None:
        """The end-of-session line, or None when no test used llm_cache."""
        if not self.totals.tests:
            return None
        t = self.totals
        try:
            shown = self.cassette_path.relative_to(self.rootdir)
        except ValueError:
            shown = self.cassette_path
        return f"llm_replay: {t.replayed} replayed, {t.recorded} recorded, {t.missed} missed in {t.tests} tests (mode {self.mode}, cassette {shown})"

    def close(self) -> None:
        """Release the cassette at the end of the session."""
        if self._cassette is not None:
            self._cassette.close()
            self._cassette = None
