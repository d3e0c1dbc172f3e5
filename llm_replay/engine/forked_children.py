"""A strict miss, or a blocked attempt, in a forked child process (multiprocessing's fork, ``os.fork``) fails the test.

A forked child runs the test's code with the test's recorder and guard, but what it counts dies with it. So:

- in the child, ``CassetteMiss`` (and ``NetworkBlocked``) derive from ``Exception``, as any error does that a
  process pool's worker hands back: ``Pool.map`` re-raises it in the test, where a ``BaseException`` would have
  killed the worker and left ``map`` waiting for ever;
- the child writes each miss to a pipe its parent made before the first fork, and the parent's reports fail the test
  with it, even when the test never reads the child's exit code.

A child started by ``subprocess`` or multiprocessing's spawn is another program: docs/safety.md says what covers it.
"""

from __future__ import annotations

import os

from ..errors import CassetteMiss

_PIPE: list[int] = []  # [read end, write end], made in the parent before its first fork
_IN_CHILD: list[bool] = []
_MOST = 4000  # one write of at most PIPE_BUF bytes is never interleaved with another child's


def _before_fork() -> None:
    if not _PIPE:
        read, write = os.pipe()
        os.set_blocking(read, False)
        os.set_blocking(write, False)  # a parent that stopped reading must not hang its children
        _PIPE[:] = [read, write]


def _in_child() -> None:
    if not _IN_CHILD:
        _IN_CHILD.append(True)
        CassetteMiss.__bases__ = (Exception,)  # this process only: what a pool's worker catches and sends back


os.register_at_fork(before=_before_fork, after_in_child=_in_child)


def tell_parent(error: BaseException) -> None:
    """In a forked child: send the miss to the test that forked it (nothing in the process that runs the tests)."""
    if _IN_CHILD and _PIPE:
        message = f"in a forked child process (pid {os.getpid()}): {error}".encode("utf-8", "replace")[:_MOST]
        try:
            os.write(_PIPE[1], message + b"\0")
        except OSError:
            pass  # a full pipe: the child's own failure still stands


def from_children() -> list[str]:
    """The misses forked children sent since the last call (none before the first fork: no system call)."""
    if not _PIPE or _IN_CHILD:
        return []
    chunks = []
    while True:
        try:
            chunk = os.read(_PIPE[0], 65536)
        except BlockingIOError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return [part.decode("utf-8", "replace") for part in b"".join(chunks).split(b"\0") if part]
