"""No connection leaves the machine while replaying, whatever HTTP client a test uses.

vcrpy only sees the libraries it patches; this guard sits below all of them, at the socket: a
connect or UDP send to anything but loopback (or an allowed host) fails, naming the host, and so
does resolving a remote name or address, so not even a DNS query goes out. The patches go in once
(a replay session installs them for its whole length); what they allow and whom they tell about a
blocked attempt is swapped per scope (a test's ``llm_cache``), which costs an assignment, not a patch.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import socket
import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator

from ..errors import NetworkBlocked

LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
_INET = (socket.AF_INET, socket.AF_INET6)
# What to do about a blocked attempt, said once at the end of the message: inside llm_cache, and outside it.
CACHE_ADVICE = "to call live services and record them, use --llm-mode=record"
NO_FIXTURE_ADVICE = (
    "this test does not use llm_cache, so nothing answers its LLM calls from the cassette: request the llm_cache "
    "fixture (or mark it @pytest.mark.llm_cache, or set ini llm_autouse = true) and record with --llm-mode=record"
)


class HostPolicy:
    """Which hosts a replaying test may reach: loopback, the machine itself, and the allow-list.

    Allow-list entries are host names, globs (``*.internal``), IP addresses or networks (``10.0.0.0/8``).
    Addresses that an allowed name resolved to are allowed too.
    """

    def __init__(self, allowed_hosts: Iterable[str] = ()) -> None:
        self.allowed = tuple(entry.strip().lower() for entry in allowed_hosts if entry.strip())
        self._networks = tuple(network for network in map(_network, self.allowed) if network is not None)
        self._resolved: set[str] = set()
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
            or host == _own_name()
            or any(fnmatch.fnmatchcase(host, entry) for entry in self.allowed)
        )

    def remember(self, results: list[Any]) -> None:
        """Addresses an allowed name resolved to may be connected to."""
        with self._lock:
            self._resolved.update(str(result[4][0]).lower() for result in results)


class NetworkGuard:
    """The socket patches: connect, connect_ex, sendto, sendmsg, getaddrinfo, gethostbyname(_ex), gethostbyaddr.

    ``install`` and ``uninstall`` patch once; ``scope`` changes the policy, the advice and the listener for a
    block. Guards nest: an inner one wraps what the outer one installed and puts it back when it goes.
    """

    def __init__(self, allowed_hosts: Iterable[str] = (), on_blocked: Callable[[NetworkBlocked], None] | None = None, advice: str = CACHE_ADVICE) -> None:
        self.policy = HostPolicy(allowed_hosts)
        self.on_blocked = on_blocked
        self.advice = advice
        self._saved: dict[tuple[Any, str], Any] = {}

    def refuse(self, host: str, port: Any, action: str) -> NetworkBlocked:
        """The error for a blocked attempt, after telling the listener (so a swallowed one still fails the test)."""
        error = NetworkBlocked(_message(host, port, action, self.policy, self.advice))
        if self.on_blocked is not None:
            self.on_blocked(error)
        return error

    @contextmanager
    def scope(self, allowed_hosts: Iterable[str], on_blocked: Callable[[NetworkBlocked], None] | None, advice: str = CACHE_ADVICE) -> Iterator[HostPolicy]:
        """Another policy and listener for the block; the previous ones come back after it."""
        previous = self.policy, self.on_blocked, self.advice
        self.policy, self.on_blocked, self.advice = HostPolicy(allowed_hosts), on_blocked, advice
        try:
            yield self.policy
        finally:
            self.policy, self.on_blocked, self.advice = previous

    def install(self) -> None:
        """Patch the socket module (once; the innermost installed guard is the one ``blocking_network`` scopes)."""
        if self._saved:
            return
        guard = self
        real = {name: getattr(socket.socket, name) for name in ("connect", "connect_ex", "sendto", "sendmsg")}
        real.update({name: getattr(socket, name) for name in ("getaddrinfo", "gethostbyname", "gethostbyname_ex", "gethostbyaddr")})

        def check(sock: socket.socket, address: Any, action: str) -> None:
            __tracebackhide__ = True
            if sock.family in _INET and isinstance(address, tuple) and address:
                host = str(address[0])
                if not guard.policy.allows_name(host):
                    raise guard.refuse(host, address[1] if len(address) > 1 else None, action)

        def check_name(name: Any, port: Any, action: str) -> str | None:
            __tracebackhide__ = True
            text = name.decode("idna") if isinstance(name, bytes) else name
            if text is not None and not guard.policy.allows_name(str(text)):
                raise guard.refuse(str(text), port, action)
            return None if text is None else str(text)

        def connect(sock: socket.socket, address: Any) -> None:
            __tracebackhide__ = True
            check(sock, address, "connect to")
            return real["connect"](sock, address)

        def connect_ex(sock: socket.socket, address: Any) -> int:
            __tracebackhide__ = True
            check(sock, address, "connect to")
            return real["connect_ex"](sock, address)

        def sendto(sock: socket.socket, data: Any, *rest: Any) -> int:
            __tracebackhide__ = True
            check(sock, rest[-1] if rest else None, "send a datagram to")
            return real["sendto"](sock, data, *rest)

        def sendmsg(sock: socket.socket, buffers: Any, *rest: Any) -> int:
            __tracebackhide__ = True
            check(sock, rest[2] if len(rest) > 2 else None, "send a datagram to")
            return real["sendmsg"](sock, buffers, *rest)

        def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
            __tracebackhide__ = True
            name = check_name(host, port, "look up")
            results = real["getaddrinfo"](host, port, *args, **kwargs)
            if name is not None and _address(name.strip("[]")) is None:
                guard.policy.remember(results)
            return results

        def gethostbyname(host: str) -> str:
            __tracebackhide__ = True
            check_name(host, None, "look up")
            return real["gethostbyname"](host)

        def gethostbyname_ex(host: str) -> tuple[str, list[str], list[str]]:
            __tracebackhide__ = True
            check_name(host, None, "look up")
            return real["gethostbyname_ex"](host)

        def gethostbyaddr(host: str) -> tuple[str, list[str], list[str]]:
            __tracebackhide__ = True
            check_name(host, None, "look up the name of")
            return real["gethostbyaddr"](host)

        patches = {"connect": connect, "connect_ex": connect_ex, "sendto": sendto, "sendmsg": sendmsg}
        for name, patch in patches.items():
            self._saved[socket.socket, name] = real[name]
            setattr(socket.socket, name, patch)
        for patch in (getaddrinfo, gethostbyname, gethostbyname_ex, gethostbyaddr):
            self._saved[socket, patch.__name__] = real[patch.__name__]
            setattr(socket, patch.__name__, patch)
        _INSTALLED.append(self)

    def uninstall(self) -> None:
        """Put back what ``install`` replaced."""
        for (owner, name), original in self._saved.items():
            setattr(owner, name, original)
        self._saved.clear()
        if self in _INSTALLED:
            _INSTALLED.remove(self)


_INSTALLED: list[NetworkGuard] = []


def installed_guard() -> NetworkGuard | None:
    """The innermost guard patched in now (a replay session's), if any."""
    return _INSTALLED[-1] if _INSTALLED else None


@contextmanager
def blocking_network(allowed_hosts: Iterable[str] = (), on_blocked: Callable[[NetworkBlocked], None] | None = None) -> Iterator[HostPolicy]:
    """Make non-loopback connects, datagrams and remote name lookups raise NetworkBlocked for the block.

    ``on_blocked`` hears of every blocked attempt, so a test still fails if the code under test
    swallows the exception. Under a guard already installed (a replay session) only the scope changes.
    """
    guard = installed_guard()
    if guard is not None:
        with guard.scope(allowed_hosts, on_blocked) as policy:
            yield policy
        return
    guard = NetworkGuard(allowed_hosts, on_blocked)
    guard.install()
    try:
        yield guard.policy
    finally:
        guard.uninstall()


@contextmanager
def network_open() -> Iterator[None]:
    """For a block that records or calls live inside a replay session (a marker's ``mode="record"``): any host."""
    guard = installed_guard()
    if guard is None:
        yield
        return
    with guard.scope(_ANY_HOST, None):
        yield


_ANY_HOST = ("*", "0.0.0.0/0", "::/0")


def _message(host: str, port: Any, action: str, policy: HostPolicy, advice: str) -> str:
    where = f"{host}:{port}" if port not in (None, "", 0) else host
    allowed = f" (allowed now: {', '.join(policy.allowed)})" if policy.allowed else ""
    return (
        f"llm_replay blocked an attempt to {action} {where}: in mode 'replay' no connection leaves the machine, "
        "so a test cannot pass only because a live service answered. "
        f"If {host} is a service your tests run themselves, allow it: ini llm_allow_hosts = {host}{allowed} "
        f"(or @pytest.mark.llm_cache(allow_hosts=[...])); {advice}"
    )


_OWN_NAME: list[str] = []


def _own_name() -> str:
    """The machine's own name (asked once, on the first name checked)."""
    if not _OWN_NAME:
        _OWN_NAME.append(socket.gethostname().lower())
    return _OWN_NAME[0]


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
