"""No connection leaves the machine while replaying, whatever HTTP client a test uses.

vcrpy only sees the libraries it patches; this guard sits below all of them, at the socket: a
connect or UDP send to anything but loopback (or an allowed host) fails, naming the host, and so
does resolving a remote name or address, so not even a DNS query goes out. The patches go in once
(a replay session installs them for its whole length); what they allow and whom they tell about a
blocked attempt is set per scope (a test's ``llm_cache``), which costs a context variable, not a patch.
Scopes belong to the thread or asyncio task that opened them, so threads can replay and record side by
side; a thread that opened none (one the code under test started) is held to every scope open now.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import os
import socket
import threading
from contextvars import ContextVar, Token
from functools import partial
from typing import Any, Callable, Iterable, Mapping, NamedTuple
from urllib.parse import urlsplit

from ..errors import NetworkBlocked

LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
_PLAIN_LOOPBACK = frozenset({"127.0.0.1", "::1", *LOCAL_NAMES})
_INET = (socket.AF_INET, socket.AF_INET6)
# What to do about a blocked attempt, said once at the end of the message: inside llm_cache, and outside it (in a
# test, or where no test runs: importing a test file or conftest.py, a hook).
CACHE_ADVICE = "to call live services and record them, use --llm-mode=record"
NO_FIXTURE_ADVICE = (
    "this test does not use llm_cache, so nothing answers its LLM calls from the cassette: request the llm_cache "
    "fixture (or mark it @pytest.mark.llm_cache, or set ini llm_autouse = true) and record with --llm-mode=record"
)
NO_TEST_ADVICE = (
    "it ran outside any test (importing a test file or conftest.py, or in a hook), where nothing answers LLM calls "
    "from the cassette: make the call in a test or fixture that uses llm_cache and record with --llm-mode=record"
)


class HostPolicy:
    """Which hosts a replaying test may reach: loopback, the machine itself, and the allow-list.

    Allow-list entries are host names, globs (``*.internal``, ``10.0.0.*``), IP addresses or networks (``10.0.0.0/8``).
    Addresses that an allowed name resolved to are allowed too (not those of a loopback name: see ``remember``).
    """

    def __init__(self, allowed_hosts: Iterable[str] = ()) -> None:
        self.allowed = tuple(entry.strip().lower() for entry in allowed_hosts if entry.strip())
        self._networks = tuple(network for network in map(_network, self.allowed) if network is not None)
        self._globs = tuple(entry for entry in self.allowed if any(mark in entry for mark in "*?["))  # also for addresses
        self.allows_everything = "*" in self.allowed or any(network.prefixlen == 0 for network in self._networks)
        self._resolved: set[str] = set()
        self._lock = threading.Lock()

    def allows_name(self, host: str) -> bool:
        """Whether ``host`` (a name or an address) may be resolved or connected to."""
        host = host.strip("[]").lower()
        if host in _PLAIN_LOOPBACK:  # most connects in a replay go to the loopback fakes: no address to parse (~3 µs)
            return True
        address = _address(host)
        if address is not None:
            return (
                _reaches_this_machine(address)
                or host in self._resolved
                or any(address in net for net in self._networks)
                or any(fnmatch.fnmatchcase(host, glob) for glob in self._globs)
            )
        return _names_this_machine(host) or any(fnmatch.fnmatchcase(host, entry) for entry in self.allowed)

    def remember(self, results: list[Any]) -> None:
        """Addresses an allowed name resolved to may be connected to."""
        with self._lock:
            self._resolved.update(str(result[4][0]).lower() for result in results)


class _Scope(NamedTuple):
    """One block's rules: what it may reach, whom to tell about a blocked attempt, and what to advise."""

    policy: HostPolicy
    on_blocked: Callable[[NetworkBlocked], None] | None
    advice: str | Callable[[], str]  # a callable is asked when an attempt is blocked


_UNSET: Any = object()
# The scope of the running thread or task; None: it may reach anything (it records or calls live);
# unset: a thread nobody opened a scope in.
_SCOPE: ContextVar[Any] = ContextVar("llm_replay_network_scope", default=_UNSET)
_LOCK = threading.RLock()  # installing, opening and closing scopes, across threads


class NetworkGuard:
    """The socket patches: connect, connect_ex, sendto, sendmsg, getaddrinfo, gethostbyname(_ex), gethostbyaddr,
    getnameinfo.

    ``install`` and ``uninstall`` patch once; ``scope`` sets the policy, the advice and the listener for a
    block in the current thread or task. Outside any scope the guard's own (the session's) apply.
    """

    def __init__(
        self, allowed_hosts: Iterable[str] = (), on_blocked: Callable[[NetworkBlocked], None] | None = None, advice: str | Callable[[], str] = CACHE_ADVICE
    ) -> None:
        self.base = _Scope(HostPolicy(allowed_hosts), on_blocked, advice)
        self.open_scopes: list[_Scope] = []  # in every thread and task
        self.uninstall_when_idle = False
        self._saved: dict[tuple[Any, str], Any] = {}
        self._policies: dict[tuple[str, ...], HostPolicy] = {}

    @property
    def policy(self) -> HostPolicy:
        """What the current thread or task may reach (the first of the scopes it is held to)."""
        scopes = self._applying()
        return scopes[0].policy if scopes else HostPolicy(_ANY_HOST)

    def _applying(self) -> tuple[_Scope, ...]:
        current = _SCOPE.get()
        if current is None:
            return ()
        # A scope closed since: an asyncio task copies its context, and with it the scope of the test that started it;
        # once that test ended, the task is held like a thread that opened none.
        if current is not _UNSET and current in self.open_scopes:
            return (current,)
        return tuple(self.open_scopes) or (self.base,)

    def refusing(self, host: str) -> _Scope | None:
        """The scope that refuses ``host`` here, if one does."""
        for scope in self._applying():
            if not scope.policy.allows_name(host):
                return scope
        return None

    def refuse(self, scope: _Scope, host: str, port: Any, action: str, forwarder: _Explain | None = None) -> NetworkBlocked:
        """The error for a blocked attempt, after telling the listener (so a swallowed one still fails the test).
        ``forwarder``: what ``host`` is when it is a proxy or resolver on this machine (it says so in the message)."""
        advice = scope.advice if isinstance(scope.advice, str) else scope.advice()
        message = forwarder(host, port, action, advice) if forwarder else _message(host, port, action, scope.policy, advice)
        thread = threading.current_thread()
        if thread is not threading.main_thread():  # a thread an earlier test started may still be running
            message += f" (the attempt was made in thread {thread.name!r}, which may have been started by an earlier test)"
        error = NetworkBlocked(message)
        if scope.on_blocked is not None:
            scope.on_blocked(error)
        return error

    def remember(self, results: list[Any]) -> None:
        """Addresses an allowed name resolved to may be connected to, under every scope that applies here."""
        for scope in self._applying():
            scope.policy.remember(results)

    def scope(self, allowed_hosts: Iterable[str], on_blocked: Callable[[NetworkBlocked], None] | None, advice: str = CACHE_ADVICE) -> _Scope:
        """A block's rules under this guard: what it may reach, whom to tell of a blocked attempt (opened by ``_InScope``)."""
        return _Scope(self._policy(tuple(allowed_hosts)), on_blocked, advice)

    def _policy(self, allowed: tuple[str, ...]) -> HostPolicy:
        """One policy per allow-list, shared by the blocks that have it (every replaying test opens a scope; a policy
        costs ~10 K instructions to build). They share the addresses its allowed names resolved to as well."""
        policy = self._policies.get(allowed)
        if policy is None:
            if len(self._policies) >= 64:
                self._policies.clear()
            policy = self._policies[allowed] = HostPolicy(allowed)
        return policy

    def install(self) -> None:
        """Patch the socket module (once; the innermost installed guard is the one ``blocking_network`` scopes)."""
        if self._saved:
            return
        guard = self
        forwarders = _Forwarders(loopback_proxies(os.environ), loopback_nameservers(RESOLV_CONF))
        real = {name: getattr(socket.socket, name) for name in ("connect", "connect_ex", "sendto", "sendmsg")}
        real.update({name: getattr(socket, name) for name in ("getaddrinfo", "gethostbyname", "gethostbyname_ex", "gethostbyaddr", "getnameinfo")})

        def check(sock: socket.socket, address: Any, action: str) -> None:
            __tracebackhide__ = True
            if sock.family in _INET and isinstance(address, tuple) and address:
                host = address[0].decode("latin-1") if isinstance(address[0], (bytes, bytearray)) else str(address[0])
                refusing = guard.refusing(host)
                if refusing is not None:
                    raise guard.refuse(refusing, host, address[1] if len(address) > 1 else None, action)
                if host != "localhost" and _is_loopback_name(host.lower()):
                    check_answers(host, address[1] if len(address) > 1 else None, action)
                forwarder = forwarders.at(host, address[1]) if forwarders else None
                if forwarder:  # a loopback proxy or DNS resolver carries what it is sent off the machine
                    refusing = next((scope for scope in guard._applying() if not scope.policy.allows_everything), None)
                    if refusing is not None:
                        raise guard.refuse(refusing, host, address[1], action, forwarder)

        def check_answers(name: str, port: Any, action: str) -> None:
            """A loopback name given to connect or sendto is resolved inside the call, from DNS when /etc/hosts has no
            line for it (``localhost`` always has one): what it resolves to must be open too."""
            __tracebackhide__ = True
            try:
                answers = real["getaddrinfo"](name, port)
            except OSError:
                return  # the call itself fails the same way
            for answer in answers:
                refusing = guard.refusing(str(answer[4][0]))
                if refusing is not None:
                    raise guard.refuse(refusing, str(answer[4][0]), port, f"{action} {name}, which resolved to")

        def check_name(name: Any, port: Any, action: str) -> str | None:
            __tracebackhide__ = True
            text = name.decode("idna") if isinstance(name, bytes) else name
            if text is not None:
                refusing = guard.refusing(str(text))
                if refusing is not None:
                    raise guard.refuse(refusing, str(text), port, action)
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
            # A loopback name is open by name, but the resolver may answer it from DNS (a search domain, a wildcard
            # record) with an address off the machine: only what an allowed or the machine's own name resolved to opens.
            if name is not None and _address(name.strip("[]")) is None and not _is_loopback_name(name.strip("[]").lower()):
                guard.remember(results)
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

        def getnameinfo(sockaddr: Any, flags: int) -> tuple[str, str]:
            __tracebackhide__ = True
            # asyncio's loop.getnameinfo comes here too. NI_NUMERICHOST only formats the address: no query is sent.
            if isinstance(sockaddr, tuple) and len(sockaddr) >= 2 and not (isinstance(flags, int) and flags & socket.NI_NUMERICHOST):
                check_name(sockaddr[0], sockaddr[1], "look up the name of")
            return real["getnameinfo"](sockaddr, flags)

        patches = {"connect": connect, "connect_ex": connect_ex, "sendto": sendto, "sendmsg": sendmsg}
        for name, patch in patches.items():
            self._saved[socket.socket, name] = real[name]
            setattr(socket.socket, name, patch)
        for patch in (getaddrinfo, gethostbyname, gethostbyname_ex, gethostbyaddr, getnameinfo):
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


class _InScope:
    """A guard's scope, open: the policy and listener of this thread or task until it is left; the previous ones come
    back after it. The blocks below are scopes themselves (classes, not generators, and one object each: every
    replaying test opens one)."""

    guard: NetworkGuard | None = None
    scope: _Scope
    token: Token | None = None

    def _open(self, guard: NetworkGuard, scope: _Scope) -> HostPolicy:
        self.guard, self.scope = guard, scope
        with _LOCK:
            guard.open_scopes.append(scope)
        self.token = _SCOPE.set(scope)
        return scope.policy

    def __exit__(self, *exc_info: object) -> None:
        _reset(self.token)  # type: ignore[arg-type]
        guard = self.guard
        if guard is None:
            return
        with _LOCK:
            guard.open_scopes.remove(self.scope)
            if guard.uninstall_when_idle and not guard.open_scopes:
                guard.uninstall()


class blocking_network(_InScope):  # lower case like contextlib.suppress: used as ``with blocking_network(...):``
    """Make non-loopback connects, datagrams and remote name lookups raise NetworkBlocked for the block, in this
    thread or task and in the threads it starts.

    ``on_blocked`` hears of every blocked attempt, so a test still fails if the code under test
    swallows the exception. Under a guard already installed (a replay session, or another thread's
    replay) only a scope opens; otherwise a guard goes in, and comes off when its last scope closes.
    """

    def __init__(self, allowed_hosts: Iterable[str] = (), on_blocked: Callable[[NetworkBlocked], None] | None = None) -> None:
        self.allowed_hosts, self.on_blocked = allowed_hosts, on_blocked

    def __enter__(self) -> HostPolicy:
        with _LOCK:  # so another thread's last scope cannot take this guard off between the two steps
            guard = installed_guard()
            if guard is None:
                guard = NetworkGuard()
                guard.install()
                guard.uninstall_when_idle = True
            return self._open(guard, guard.scope(self.allowed_hosts, self.on_blocked))


class network_open(_InScope):  # lower case like contextlib.suppress: used as ``with network_open():``
    """For a block that records or calls live (beside a replay in another thread, or in a replay session): any
    host, here and in the threads it starts."""

    def __enter__(self) -> None:
        guard = installed_guard()
        if guard is not None:
            self._open(guard, guard.scope(_ANY_HOST, None))
        else:
            self.token = _SCOPE.set(None)


def _reset(token: Token) -> None:
    try:
        _SCOPE.reset(token)
    except ValueError:  # closed from another context (an async generator's teardown): restore by value
        _SCOPE.set(_UNSET if token.old_value is Token.MISSING else token.old_value)


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


def _proxy_message(variables: tuple[str, ...], host: str, port: Any, action: str, advice: str) -> str:
    return (
        f"llm_replay blocked an attempt to {action} {host}:{port}, the proxy that {' and '.join(variables)} "
        f"name{'s' if len(variables) == 1 else ''}: in mode 'replay' no connection leaves the machine, and a proxy carries "
        "what it is sent off it. If the request is for a service your tests run themselves, let it bypass the proxy "
        f"(NO_PROXY), or replay without the proxy (env {' '.join(f'-u {name}' for name in variables)} pytest); {advice}"
    )


def _resolver_message(nameservers: tuple[str, ...], host: str, port: Any, action: str, advice: str) -> str:
    return (
        f"llm_replay blocked an attempt to {action} {host}:{port}, the DNS resolver on this machine that {RESOLV_CONF} "
        f"names ({', '.join(nameservers)}): in mode 'replay' not even a DNS query leaves the machine, and it forwards what "
        "it is asked off it. Look names up with socket.getaddrinfo, which the guard lets through for loopback names and the "
        f"allow-list (ini llm_allow_hosts); {advice}"
    )


_PROXY_VARIABLES = ("https_proxy", "http_proxy", "all_proxy")  # in any case, as urllib, requests and httpx read them
_PROXY_PORTS = {"http": 80, "https": 443, "socks4": 1080, "socks4a": 1080, "socks5": 1080, "socks5h": 1080}


def loopback_proxies(environ: Mapping[str, str]) -> dict[tuple[str, int], tuple[str, ...]]:
    """(address, port) of each proxy on this machine that the environment names, and the variables naming it:
    connecting to one is no loopback call but a request for wherever the proxy forwards it. On this machine: a
    loopback or unspecified address (``0.0.0.0``), ``localhost``, or the machine's own name (what it resolves to)."""
    found: dict[tuple[str, int], tuple[str, ...]] = {}
    for variable, value in sorted(environ.items()):
        if variable.lower() not in _PROXY_VARIABLES or not value.strip():
            continue
        parts = urlsplit(value.strip() if "://" in value else f"http://{value.strip()}")
        try:
            port = parts.port or _PROXY_PORTS.get(parts.scheme.lower(), 80)
        except ValueError:
            continue  # no port a client could use either
        for address in _local_addresses((parts.hostname or "").lower(), port):
            found[address, port] = (*found.get((address, port), ()), variable)
    return found


RESOLV_CONF = "/etc/resolv.conf"
_Explain = Callable[[str, Any, str, str], str]  # (host, port, action, advice) -> the message for a blocked attempt


def loopback_nameservers(path: str) -> tuple[str, ...]:
    """The nameservers on this machine that the system resolver asks (systemd-resolved's stub at 127.0.0.53, a
    dnsmasq): a DNS query sent to one by hand (dnspython) is forwarded off the machine."""
    try:
        with open(path, encoding="utf-8", errors="replace") as config:
            lines = [line.split() for line in config]
    except OSError:
        return ()
    addresses = (_address(words[1]) for words in lines if len(words) > 1 and words[0] == "nameserver")
    return tuple(str(address) for address in addresses if address is not None and _reaches_this_machine(address))


class _Forwarders:
    """The ports of the proxies and DNS resolvers on this machine, and the machine's addresses they were named by.
    One listening on every address is reached at any of them, in any spelling (``::ffff:127.0.0.1``, ``localhost``,
    ``b"127.0.0.1"``), so an attempt is to it when its port is one of theirs and its host is this machine (looked at
    only then)."""

    def __init__(self, proxies: Mapping[tuple[str, int], tuple[str, ...]], nameservers: tuple[str, ...]) -> None:
        named: dict[int, tuple[str, ...]] = {}
        for (_, port), variables in proxies.items():
            named[port] = tuple(dict.fromkeys((*named.get(port, ()), *variables)))
        self.ports: dict[int, _Explain] = {port: partial(_proxy_message, variables) for port, variables in named.items()}
        if nameservers:
            self.ports.setdefault(53, partial(_resolver_message, nameservers))
        self.addresses = frozenset((*(address for address, _ in proxies), *nameservers))

    def __bool__(self) -> bool:
        return bool(self.ports)

    def at(self, host: str, port: Any) -> _Explain | None:
        """What explains a blocked attempt at ``host``:``port``, when a proxy or resolver on this machine listens there."""
        explain = self.ports.get(port)
        return explain if explain and self._on_this_machine(host.strip("[]").lower()) else None

    def _on_this_machine(self, host: str) -> bool:
        address = _address(host)
        if address is None:
            return _names_this_machine(host)
        return _reaches_this_machine(address) or str(address) in self.addresses


def _local_addresses(host: str, port: int) -> tuple[str, ...]:
    """The addresses a client connects to for ``host`` when it is this machine; none when it is not."""
    address = _address(host)
    if address is not None:
        return (str(address),) if _reaches_this_machine(address) else ()
    if not _names_this_machine(host):
        return ()
    try:
        resolved = {info[4][0] for info in socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)}
    except OSError:
        resolved = set()
    return tuple(sorted({"127.0.0.1", "::1", *resolved})) if host != _own_name() else tuple(sorted(resolved))


def _reaches_this_machine(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Loopback, or the unspecified address (``0.0.0.0``, ``::``), which a connect takes for this machine."""
    return address.is_loopback or address.is_unspecified


def _names_this_machine(host: str) -> bool:
    """A loopback name, or the machine's own name (lower case)."""
    return _is_loopback_name(host) or host == _own_name()


def _is_loopback_name(host: str) -> bool:
    """Whether ``host`` (lower case) is a name for loopback: ``localhost`` and its kin, ``*.localhost`` (RFC 6761)."""
    return host in LOCAL_NAMES or host.endswith(".localhost")


_OWN_NAME: list[str] = []


def _own_name() -> str:
    """The machine's own name (asked once, on the first name checked)."""
    if not _OWN_NAME:
        _OWN_NAME.append(socket.gethostname().lower())
    return _OWN_NAME[0]


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address ``host`` is, if it is one; an IPv4-mapped IPv6 address as the IPv4 one it reaches (``::ffff:127.0.0.1``
    is loopback, ``::ffff:192.0.2.1`` is not)."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    return address.ipv4_mapped or address if address.version == 6 else address


def _network(entry: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    try:
        return ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return None
