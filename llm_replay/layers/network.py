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


@contextmanager
def blocking_network(allowed_hosts: Iterable[str] = (), on_blocked: Callable[[NetworkBlocked], None] | None = None) -> Iterator[HostPolicy]:
    """Make non-loopback connects and remote name lookups raise NetworkBlocked for the block.

    ``on_blocked`` hears of every blocked attempt, so a test still fails if the code under test
    swallows the exception.
    """
    policy = HostPolicy(allowed_hosts)
    real_connect, real_connect_ex, real_getaddrinfo = socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo

    def refuse(host: str, port: Any, action: str) -> NetworkBlocked:
        error = NetworkBlocked(_message(host, port, action, policy))
        if on_blocked is not None:
            on_blocked(error)
        return error

    def check(sock: socket.socket, address: Any) -> None:
        __tracebackhide__ = True
        if sock.family in (socket.AF_INET, socket.AF_INET6) and isinstance(address, tuple) and address:
            host = str(address[0])
            if not policy.allows_name(host):
                raise refuse(host, address[1] if len(address) > 1 else None, "connect to")

    def connect(sock: socket.socket, address: Any) -> None:
        __tracebackhide__ = True
        check(sock, address)
        return real_connect(sock, address)

    def connect_ex(sock: socket.socket, address: Any) -> int:
        __tracebackhide__ = True
        check(sock, address)
        return real_connect_ex(sock, address)

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        __tracebackhide__ = True
        name = host.decode("idna") if isinstance(host, bytes) else host
        if name is not None and not policy.allows_name(str(name)):
            raise refuse(str(name), port, "look up")
        results = real_getaddrinfo(host, port, *args, **kwargs)
        if name is not None and _address(str(name).strip("[]")) is None:
            policy.remember(results)
        return results

    socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo = connect, connect_ex, getaddrinfo  # type: ignore[method-assign]
    try:
        yield policy
    finally:
        socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo = real_connect, real_connect_ex, real_getaddrinfo  # type: ignore[method-assign]


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
