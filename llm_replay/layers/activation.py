"""Turning a Recorder on: HTTP interception plus placeholder API keys while replaying."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from importlib import import_module
from types import ModuleType
from typing import (
    TYPE_CHECKING,
    Any,
    ContextManager,
    Iterable,
    Iterator,
    Sequence,
)

from ..engine.settings import Mode, parse_mode, session_mode
from .placeholders import placeholder_keys

if TYPE_CHECKING:  # imported where used: merely loading the pytest plugin must stay cheap
    from ..engine.hooks import BeforeRecord
    from ..engine.matching import BeforeFingerprint
    from ..engine.recorder import Recorder
    from ..model.scrub import Scrubber
    from . import http, network  # loaded by _layer on first use (named here for the layer rule and for readers)


class activated:  # lower case like contextlib.suppress: used as ``with activated(recorder):``
    """Answer through ``recorder`` for the block at each layer asked for (``off`` answers nothing), the
    wall clock frozen at ``recorder.frozen_at`` when it is set (and whether the block read it kept for the test).

    ``http`` intercepts the HTTP libraries; ``langchain`` sets LangChain's global cache. With both, the
    LangChain layer answers what it recorded and passes its misses to the HTTP layer, which is strict.
    Replay and adopt also block every connection that would leave the machine, except to ``allowed_hosts`` and
    the recorder's ignored hosts (always live). Verify calls the network, so it sets no placeholder keys.
    A class that enters only the parts asked for, not a generator entering a part for each layer (every test
    enters one).
    """

    __slots__ = ("recorder", "_layers", "_allowed_hosts", "_parts", "_clock")

    def __init__(self, recorder: Recorder, layers: Sequence[str] = ("http",), allowed_hosts: Iterable[str] = ()) -> None:
        self.recorder, self._layers, self._allowed_hosts = recorder, layers, allowed_hosts
        self._parts: list[ContextManager[Any]] = []  # entered, outermost first
        self._clock: Any = None

    def __enter__(self) -> Recorder:
        recorder, layers = self.recorder, self._layers
        network = _layer(_NETWORK)
        try:
            if recorder.mode is Mode.OFF:
                self._enter(network.network_open())
                return recorder
            if recorder.mode.offline:
                self._enter(placeholder_keys())
                # The cassette's own server (a shared Redis) is no live service: the guard lets it through.
                self._enter(network.blocking_network(_reachable(recorder, self._allowed_hosts), on_blocked=recorder.count_miss))
            else:
                self._enter(network.network_open())
            if "langchain" in layers:
                self._enter(_langchain_layer(recorder, strict="http" not in layers))
            if "http" in layers:
                self._enter(_layer(_HTTP).intercepting(recorder))
            if recorder.frozen_at is not None:
                from ..engine.clock import frozen_clock

                self._clock = self._enter(frozen_clock(recorder.frozen_at))
        except BaseException:
            self._leave(*sys.exc_info())
            raise
        return recorder

    def __exit__(self, *exc_info: Any) -> None:
        self._leave(*exc_info)
        if exc_info[0] is None and self._clock is not None:
            self.recorder.keep_clock_read(self._clock.read)

    def _enter(self, part: ContextManager[Any]) -> Any:
        entered = part.__enter__()
        self._parts.append(part)
        return entered

    def _leave(self, *exc_info: Any) -> None:
        """Leave the parts innermost first, as nested ``with`` blocks do: each one is left though another fails, and
        the last failure is raised."""
        parts, failure = self._parts, None
        while parts:
            try:
                parts.pop().__exit__(*exc_info)
            except BaseException as error:
                failure, exc_info = error, (type(error), error, error.__traceback__)
        if failure is not None:
            raise failure


def _reachable(recorder: Recorder, allowed_hosts: Iterable[str]) -> tuple[str, ...]:
    ignored = recorder.ignored_hosts.hosts() if recorder.ignored_hosts is not None else ()
    return (*allowed_hosts, *ignored, *recorder.cassette.hosts)


_NETWORK, _HTTP = f"{__package__}.network", f"{__package__}.http"


def _layer(name: str) -> ModuleType:
    """A layer the block turns on, imported on its first use (merely loading the plugin must stay cheap), then read
    from ``sys.modules`` as ``from .x import y`` would, without the import machinery's ~12 K instructions a call
    (two a test)."""
    return sys.modules.get(name) or import_module(name)


def _langchain_layer(recorder: Recorder, strict: bool) -> ContextManager[object]:
    try:
        from .langchain import installed_as_llm_cache
    except ImportError as error:
        raise ImportError(
            f"llm_cache layer 'langchain' needs langchain-core ({error}); install it with: pip install langchain-core"
        ) from error
    return installed_as_llm_cache(recorder, strict=strict)


@contextmanager
def use_cassette(
    path: str | os.PathLike[str] | None,
    mode: str | Mode | None = None,
    *,
    repeats: str = "cache",
    match_ignore: str | Sequence[str] = (),
    before_fingerprint: BeforeFingerprint | None = None,
    allow_hosts: str | Sequence[str] = (),
    scrubber: Scrubber | None = None,
    before_record: BeforeRecord | None = None,
    ignore_hosts: str | Sequence[str] = (),
    max_age: str | float | None = None,
    on_expired: str = "warn",
) -> Iterator[Recorder]:
    """Record and replay outside pytest (scripts, notebooks) with the same engine.

    ``path`` is a file or a ``redis://`` URL (what ``--llm-cassette`` takes); None keeps recordings in
    memory for the block. ``mode`` defaults as in pytest: env ``LLM_REPLAY_MODE``, else ``replay`` when
    ``CI`` is set, else ``record``. The clock is not frozen here (there is no test to keep an instant
    for); freeze it yourself if prompts carry the time.
    ``scrubber`` adds secret variable names and patterns to the built-in ones. ``before_record``,
    ``ignore_hosts``, ``max_age`` and ``on_expired`` work as the ``llm_cache`` options of the same names
    (docs/verify-and-age.md). Each thread or asyncio task may activate its own cassette.
    """
    from ..engine.adoption import AdoptionIndex, AdoptRules
    from ..engine.matching import MatchRules, RekeyIndex, ignore_paths
    from ..engine.recorder import Recorder
    from ..engine.settings import CacheSettings
    from ..stores.memory import InMemoryCache
    from ..stores.spec import open_store

    chosen = parse_mode(mode, "use_cassette(mode=...)") if mode is not None else session_mode(None, None)[0]
    options = CacheSettings().updated(
        {"max_age": max_age, "on_expired": on_expired, "before_record": before_record, "allow_hosts": allow_hosts, "ignore_hosts": ignore_hosts},
        "use_cassette(...)",
    )  # the host lists as llm_cache takes them: one host as a string is its one entry, never its letters
    rules = MatchRules(ignore_paths(match_ignore, "use_cassette(match_ignore=...)"), before_fingerprint)
    cassette = InMemoryCache(scrubber) if path is None else open_store(path, readonly=chosen.read_only, scrubber=scrubber)
    try:
        hint = f"run the same code with mode='record' (or LLM_REPLAY_MODE=record) and an API key; it records into {cassette.describe()}"
        recorder = Recorder(
            cassette,
            chosen,
            repeats=repeats,
            rules=rules,
            rekey=RekeyIndex(rules) if path is not None else None,  # a stored cassette: found again as in pytest
            adoption=AdoptionIndex(AdoptRules(rules)),
            record_hint=lambda: hint,
            max_age=options.max_age,
            on_expired=options.on_expired,
            before_record=options.before_record,
            ignore_hosts=options.ignore_hosts,
        )
        with activated(recorder, allowed_hosts=options.allow_hosts):
            yield recorder
    finally:
        cassette.close()
