"""No connection leaves the machine while replaying, whatever HTTP client a test uses.

vcrpy only sees the libraries it patches; this guard sits below all of them, at the socket:
a connect to anything but loopback (or an allowed host) fails, naming the host, and so does
resolving a remote name, so not even a DNS query goes out.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import socket
import threading
from contextlib import contextmanager
from contextvars import ContextVar, Token
from typing import Any, Callable, Iterable, Iterator

from ..errors import NetworkBlocked

LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})


class HostPolicy:
    """Which hosts a replaying test may reach: loopback, the machine itself, and the allow-list.

    Allow-list entries are host names, globs (``*.internal``), IP addresses or networks (``10.0.0.0/8``).
    Addresses that an allowed name resolved to are allowed too.
    """

    def __init__(self, allowed_hosts: Iterable[str] = ()) -> None:
        self.allowed = tuple(entry.strip().lower() for entry in allowed_hosts if entry.strip())
        self._networks = tuple(network for network in map(_network, self.allowed) if network is not None)
        self._resolved: set[str] = set()
        self._own_name = socket.gethostname().lower()  # asked once per guard, not on every connect
        self._lock = threading.Lock()

    def allows_name(self, host: str) -> bool:
        """Whether ``host`` (a name or an address) may be resolved or connected to."""
        host = host.strip("[]").lower()
        address = _address(host)
        if address is not None:
            return address.is_loopback or address.is_unspecified or host in self._resolved or any(address in net for net in self._networks)
        return (
            host in LOCAL_NAMES
            or host.endswith(".localhost")
            or host == self._own_name
            or any(fnmatch.fnmatchcase(host, entry) for entry in self.allowed)
        )

    def remember(self, results: list[Any]) -> None:
        """Addresses an allowed name resolved to may be connected to."""
        with self._lock:
            self._resolved.update(str(result[4][0]).lower() for result in results)


class _Guard:
    """One replaying activation's policy, and whom to tell of what it blocked."""

    __slots__ = ("policy", "on_blocked")

    def __init__(self, policy: HostPolicy, on_blocked: Callable[[NetworkBlocked], None] | None) -> None:
        self.policy = policy
        self.on_blocked = on_blocked


_UNSET: Any = object()
# The guard of the running thread or task: a _Guard while it replays, None while it may call the network
# (record, refresh, verify), unset in threads nobody activated (then every active guard applies).
_CURRENT: ContextVar[Any] = ContextVar("llm_replay_network_guard", default=_UNSET)


class _SocketPatches:
    """The socket functions swapped once, while any guard is active (guards in several threads share them)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.active: list[_Guard] = []
        self._real: tuple[Any, Any, Any] | None = None

    def enter(self, guard: _Guard) -> None:
        with self._lock:
            if not self.active:
                self._real = socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo
                socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo = _connect, _connect_ex, _getaddrinfo  # type: ignore[method-assign]
            self.active.append(guard)

    def leave(self, guard: _Guard) -> None:
        with self._lock:
            self.active = [other for other in self.active if other is not guard]
            if not self.active and self._real is not None:
                # _real stays: a thread still inside a patched call when the last guard leaves goes on to the real one.
                socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo = self._real  # type: ignore[method-assign]

    @property
    def real(self) -> tuple[Any, Any, Any]:
        return self._real  # type: ignore[return-value]


_PATCHES = _SocketPatches()


def _refusing(host: str) -> _Guard | None:
    """The guard that refuses ``host`` in this context, if one does."""
    guard = _CURRENT.get()
    if guard is None:
        return None
    guards = _PATCHES.active if guard is _UNSET else (guard,)
    return next((each for each in guards if not each.policy.allows_name(host)), None)


def _refuse(guard: _Guard, host: str, port: Any, action: str) -> NetworkBlocked:
    error = NetworkBlocked(_message(host, port, action, guard.policy))
    if guard.on_blocked is not None:
        guard.on_blocked(error)
    return error


def _check(sock: socket.socket, address: Any) -> None:
    __tracebackhide__ = True
    if sock.family in (socket.AF_INET, socket.AF_INET6) and isinstance(address, tuple) and address:
        host = str(address[0])
        guard = _refusing(host)
        if guard is not None:
            raise _refuse(guard, host, address[1] if len(address) > 1 else None, "connect to")


def _connect(sock: socket.socket, address: Any) -> None:
    __tracebackhide__ = True
    _check(sock, address)
    return _PATCHES.real[0](sock, address)


def _connect_ex(sock: socket.socket, address: Any) -> int:
    __tracebackhide__ = True
    _check(sock, address)
    return _PATCHES.real[1](sock, address)


def _getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
    __tracebackhide__ = True
    name = host.decode("idna") if isinstance(host, bytes) else host
    if name is not None:
        guard = _refusing(str(name))
        if guard is not None:
            raise _refuse(guard, str(name), port, "look up")
    results = _PATCHES.real[2](host, port, *args, **kwargs)
    if name is not None and _address(str(name).strip("[]")) is None:
        current = _CURRENT.get()
        for guard in _PATCHES.active if current is _UNSET else (current,) if current is not None else ():
            guard.policy.remember(results)
    return results


@contextmanager
def blocking_network(allowed_hosts: Iterable[str] = (), on_blocked: Callable[[NetworkBlocked], None] | None = None) -> Iterator[HostPolicy]:
    """Make non-loopback connects and remote name lookups raise NetworkBlocked for the block, in this thread or
    task and in threads that activated nothing (those started by the code under test).

    ``on_blocked`` hears of every blocked attempt, so a test still fails if the code under test
    swallows the exception.
    """
    guard = _Guard(HostPolicy(allowed_hosts), on_blocked)
    _PATCHES.enter(guard)
    token = _CURRENT.set(guard)
    try:
        yield guard.policy
    finally:
        _reset(token)
        _PATCHES.leave(guard)


@contextmanager
def open_network() -> Iterator[None]:
    """This thread or task may reach the network even while another one replays (a recording activation)."""
    token = _CURRENT.set(None)
    try:
        yield
    finally:
        _reset(token)


def _reset(token: Token) -> None:
    try:
        _CURRENT.reset(token)
    except ValueError:  # left from another context (an async generator's teardown): restore by value
        _CURRENT.set(_UNSET if token.old_value is Token.MISSING else token.old_value)


def _message(host: str, port: Any, action: str, policy: HostPolicy) -> str:
    where = f"{host}:{port}" if port not in (None, "", 0) else host
    allowed = f" (allowed now: {', '.join(policy.allowed)})" if policy.allowed else ""
    return (
        f"llm_replay blocked an attempt to {action} {where}: in mode 'replay' no connection leaves the machine, "
        "so a test cannot pass only because a live service answered. "
        f"If {host} is a service your tests run themselves, allow it: ini llm_allow_hosts = {host}{allowed} "
        "(or @pytest.mark.llm_cache(allow_hosts=[...])); to call live services and record them, use --llm-mode=record"
    )


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None


def _network(entry: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    try:
        return ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return None
