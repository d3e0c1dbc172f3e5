"""Which pytest sessions run against a cassette now, so that no prune deletes a recording one of them replays.

A session's use reaches the bookkeeping only when it ends. Until then a prune (another session's ``--llm-prune``,
``llm-replay prune``) cannot tell that a new test of it replays a recording whose owners all passed without it. So
each session notes itself in the bookkeeping at its first use of the suite cassette, and its run's record ends it;
a prune that would delete something while another is noted deletes nothing and names it. A session killed
meanwhile stops counting once its process is gone (on this host), or 12 hours after it started (another host's,
sharing the checkout, whose process cannot be asked).
"""

from __future__ import annotations

import os
import socket
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Iterable, NamedTuple

from ..errors import CassetteError

if TYPE_CHECKING:
    from ..stores.ledger import RunLedger

OTHER_HOST_LIVE_FOR = timedelta(hours=12)


class LiveSession(NamedTuple):
    """A session as its bookkeeping notes it: its run's uid, its process (a pytest-xdist worker names its controller's)."""

    uid: str
    pid: int
    host: str
    started_at: str

    def describe(self) -> str:
        """Which process, where, since when: enough to find it (ps) or wait for it."""
        return f"pid {self.pid} on {self.host}, started {self.started_at}"


def register(ledger: "RunLedger", uid: str, pid: int, started_at: str) -> None:
    """Note the session as running against the ledger's cassette. Bookkeeping that cannot be written (a read-only
    checkout) keeps no note, as it keeps none of the run: nothing there can prune from it either."""
    try:
        ledger.start_session(uid, pid, socket.gethostname(), started_at)
    except CassetteError:
        pass


def ended(ledger: "RunLedger", uids: Iterable[str]) -> None:
    """Forget the notes of sessions that ended where no record of their run did (nothing recorded), or died."""
    try:
        ledger.end_sessions(uids)
    except CassetteError:
        pass


def others_running(ledger: "RunLedger", own_uid: str | None = None) -> list[LiveSession]:
    """The sessions noted on the ledger's cassette, besides ``own_uid`` (a pruning run and its xdist workers), that
    still run; the notes of those gone are dropped (their process number may be another program's later)."""
    try:
        noted = [LiveSession(*row) for row in ledger.sessions()]
    except CassetteError:
        return []
    host, now = socket.gethostname(), datetime.now(timezone.utc)
    others = [session for session in noted if session.uid != own_uid]
    live = [session for session in others if _running(session, host, now)]
    ended(ledger, [session.uid for session in others if session not in live])
    return live


def running_elsewhere(sessions: list[LiveSession], cassette: str, deleting: str = "this prune would delete", then: str = "prune again") -> str:
    """Why a prune (or a refresh's replacement: ``deleting``) deletes nothing now, and when it can."""
    shown = "; ".join(session.describe() for session in sessions)
    who = "another pytest session runs" if len(sessions) == 1 else f"{len(sessions)} other pytest sessions run"
    return (
        f"{who} against {cassette} ({shown}): what a running session's tests replay is known only when it ends, and may be what "
        f"{deleting}; {then} once it has ended (a session killed stops counting once its process is gone)"
    )


def _running(session: LiveSession, host: str, now: datetime) -> bool:
    """Whether the session's process still runs: asked on this host (not on Windows, where signal 0 is Ctrl-C);
    elsewhere, for a bounded time after it started."""
    if session.host == host and os.name != "nt":
        return _alive(session.pid)
    try:
        started = datetime.fromisoformat(session.started_at)
    except ValueError:
        return False
    return now - started.replace(tzinfo=started.tzinfo or timezone.utc) < OTHER_HOST_LIVE_FOR


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
