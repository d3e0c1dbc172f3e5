"""What a forked child process (multiprocessing's fork, ``os.fork``) does with the test's recorder counts for the test.

A forked child runs the test's code with the test's recorder and guard, but what it counts dies with it. So:

- in the child, ``CassetteMiss`` (and ``NetworkBlocked``) derive from ``Exception``, as any error does that a
  process pool's worker hands back: ``Pool.map`` re-raises it in the test, where a ``BaseException`` would have
  killed the worker and left ``map`` waiting for ever;
- the child writes each miss, and each recording it replayed or recorded, to a file its parent opened (and
  unlinked) before the first fork; the parent's reports count them for the running test, so a miss fails it even
  when nobody reads the child's exit code, and what the child replayed is the test's to own (pruning keeps it).

A child started by ``subprocess`` or multiprocessing's spawn is another program: docs/safety.md says what covers it.
"""

from __future__ import annotations

import os
import tempfile

from ..errors import CassetteMiss

IN_CHILD: list[bool] = []  # [True] in a forked child: the recorder asks before telling its parent what it used
_CHANNEL: list[int] = []  # [file descriptor, how far the parent has read], opened in the parent before its first fork


def _before_fork() -> None:
    if not _CHANNEL:
        made, path = tempfile.mkstemp(prefix="llm-replay-forked-")
        descriptor = os.open(path, os.O_RDWR | os.O_APPEND)  # each child's write lands whole at the end
        os.close(made)
        os.unlink(path)  # the open descriptor is all parent and children need; nothing is left behind
        _CHANNEL[:] = [descriptor, 0]


def _in_child() -> None:
    if not IN_CHILD:
        IN_CHILD.append(True)
        CassetteMiss.__bases__ = (Exception,)  # this process only: what a pool's worker catches and sends back


os.register_at_fork(before=_before_fork, after_in_child=_in_child)


def tell_parent(error: BaseException) -> None:
    """In a forked child: send the miss to the test that forked it (nothing in the process that runs the tests)."""
    if IN_CHILD and _CHANNEL:
        forked_in = os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" (", 1)[0]  # as pytest set it at the fork
        origin = f" forked by {forked_in}" if forked_in else ""
        _write(b"M" + f"in a forked child process (pid {os.getpid()}{origin}): {error}".encode("utf-8", "replace"))


def tell_parent_used(fingerprint: str, occurrence: int, replayed: bool) -> None:
    """In a forked child: a recording it replayed (or recorded) is the test's."""
    if _CHANNEL:
        _write(f"U{fingerprint} {occurrence} {int(replayed)}".encode())


def _write(message: bytes) -> None:
    try:
        os.write(_CHANNEL[0], message + b"\0")  # one append: whole, whatever other children write
    except OSError:
        pass  # a full disk: the child's own failure still stands


def from_children() -> tuple[list[str], list[tuple[tuple[str, int], bool]]]:
    """The misses, and the recordings used (key, replayed), that forked children sent since the last call (before
    the first fork: nothing, and no system call)."""
    if not _CHANNEL or IN_CHILD:
        return [], []
    chunks = []
    while chunk := os.pread(_CHANNEL[0], 1 << 20, _CHANNEL[1]):
        chunks.append(chunk)
        _CHANNEL[1] += len(chunk)
    if not chunks:
        return [], []
    complete, _, rest = b"".join(chunks).rpartition(b"\0")
    _CHANNEL[1] -= len(rest)  # a message still being written: read again next time
    misses, used = [], []
    for message in filter(None, complete.split(b"\0")):
        if message[:1] == b"M":
            misses.append(message[1:].decode("utf-8", "replace"))
        elif message[:1] == b"U":
            fingerprint, occurrence, replayed = message[1:].decode().split(" ")
            used.append(((fingerprint, int(occurrence)), replayed == "1"))
    return misses, used
