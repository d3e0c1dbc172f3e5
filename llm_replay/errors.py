"""The two errors users meet: a strict miss, and a cassette that cannot be used."""

from __future__ import annotations


class CassetteMiss(BaseException):
    """A request had no recording while replaying strictly.

    It derives from BaseException, like pytest's own ``Failed``, so that an application's
    ``except Exception`` and the SDKs' retry loops cannot swallow or retry it.
    """

    __module__ = "llm_replay"


class CassetteError(Exception):
    """A cassette is unreadable, corrupt, too new, or cannot be written."""

    __module__ = "llm_replay"


class CommandError(Exception):
    """An ``llm-replay`` command cannot do what was asked (unknown key, not a git repository, …)."""

    __module__ = "llm_replay"


class NetworkBlocked(CassetteMiss):
    """Code under test tried to reach a remote host while replaying (a client vcrpy does not patch,
    or a service the test did not record). A kind of miss: it fails the test the same way."""

    __module__ = "llm_replay"


class RecordingExpired(UserWarning):
    """A recording older than ``max_age`` was replayed (``on_expired = warn``); ``-W error::llm_replay.RecordingExpired`` fails on it."""

    __module__ = "llm_replay"
