"""The network guard, round 3: a loopback name's answers that are not loopback stay blocked, and loopback spelled as
bytes or as an IPv4-mapped IPv6 address stays open. Remote targets are TEST-NET addresses reached through a closed
socket, so nothing can leave the machine even if the guard let the attempt through (the real connect then fails
with EBADF, which is not what the tests expect)."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from llm_replay import NetworkBlocked
from llm_replay.layers.network import blocking_network, installed_guard, network_open


def _closed_socket(family: socket.AddressFamily = socket.AF_INET, kind: socket.SocketKind = socket.SOCK_STREAM) -> socket.socket:
    sock = socket.socket(family, kind)
    sock.close()
    return sock


def test_what_a_loopback_name_resolved_to_off_the_machine_stays_blocked(monkeypatch):
    """The guard lets localhost, *.localhost and ip6-localhost through as loopback by name, and the system resolver
    answers them: from /etc/hosts, or from DNS (a search domain, a wildcard record) with any address. Those answers
    were remembered as allowed like an allow-listed name's, so a client that resolved 'app.localhost' and connected
    to the answer (as httpx, requests, urllib and asyncio all do) reached 198.51.100.1 unnoticed."""
    assert installed_guard() is None, "the resolver below must be the one the guard asks"
    answers = {"app.localhost": "198.51.100.1", "ip6-localhost": "198.51.100.2", "localhost": "198.51.100.3", "db.invalid": "198.51.100.4"}

    def resolver(host: str, port: Any, *args: Any, **kwargs: Any) -> list[Any]:  # stands in for DNS
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answers[host], port))]

    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    with blocking_network(["db.invalid"]):
        for name in ("app.localhost", "ip6-localhost", "localhost"):
            address = socket.getaddrinfo(name, 443)[0][4]
            with pytest.raises(NetworkBlocked, match=rf"connect to {address[0]}:443"):
                _closed_socket().connect(address)
        allowed = socket.getaddrinfo("db.invalid", 5432)[0][4]  # an allow-listed name's answers are trusted as before
        with pytest.raises(OSError) as error:
            _closed_socket().connect(allowed)
        assert not isinstance(error.value, NetworkBlocked)


def test_loopback_given_as_bytes_or_ipv4_mapped_stays_open(server):
    """connect((b'127.0.0.1', port)) and connect(('::ffff:127.0.0.1', port)) reach this machine (CPython takes bytes
    hosts; a dual-stack IPv6 socket carries IPv4), but the guard refused them as remote ("connect to b'127.0.0.1'")."""
    port = int(server.base_url.split(":")[2].split("/")[0])
    with blocking_network():
        for family, host in ((socket.AF_INET, b"127.0.0.1"), (socket.AF_INET, bytearray(b"127.0.0.1")), (socket.AF_INET6, "::ffff:127.0.0.1")):
            with socket.socket(family) as sock:
                sock.settimeout(5)
                sock.connect((host, port))
        with pytest.raises(NetworkBlocked, match=r"connect to 192\.0\.2\.1:9\b"):
            _closed_socket().connect((b"192.0.2.1", 9))
        with pytest.raises(NetworkBlocked, match=r"send a datagram to 192\.0\.2\.1:9\b"):
            _closed_socket(kind=socket.SOCK_DGRAM).sendto(b"x", (b"192.0.2.1", 9))
        with pytest.raises(NetworkBlocked, match=r"connect to ::ffff:192\.0\.2\.1:9\b"):
            _closed_socket(socket.AF_INET6).connect(("::ffff:192.0.2.1", 9, 0, 0))


@pytest.mark.parametrize("named", ["http://127.0.0.1:{port}", "http://0.0.0.0:{port}", "http://localhost:{port}"])
def test_a_loopback_proxy_is_refused_however_its_address_is_spelled(monkeypatch, named):
    """The proxy that HTTPS_PROXY names on this machine was recognised only by the exact (address, port) the variable
    gave: ::ffff:127.0.0.1, b'127.0.0.1', the name localhost, or 127.0.0.1 for a proxy named by 0.0.0.0 (which listens
    on every address) reached it unblocked, and the proxy carried the request off the machine."""
    assert installed_guard() is None, "the guard reads the proxy variables as it goes in"
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        port = listening.getsockname()[1]
    monkeypatch.setenv("HTTPS_PROXY", named.format(port=port))
    with blocking_network():
        for family, host in [
            (socket.AF_INET, "127.0.0.1"), (socket.AF_INET, b"127.0.0.1"), (socket.AF_INET, "localhost"), (socket.AF_INET, "0.0.0.0"),
            (socket.AF_INET, "127.0.0.2"), (socket.AF_INET6, "::ffff:127.0.0.1"), (socket.AF_INET6, "::1"), (socket.AF_INET6, "::"),
        ]:
            with pytest.raises(NetworkBlocked, match="the proxy that HTTPS_PROXY names"):
                _closed_socket(family).connect((host, port))
        with pytest.raises(OSError) as error:  # another port of loopback stays open
            _closed_socket().connect(("127.0.0.1", port + 1 if port < 65535 else port - 1))
        assert not isinstance(error.value, NetworkBlocked)


ALLOW_LIST_SPELLINGS = '''
import socket

import pytest

from llm_replay import NetworkBlocked
from llm_replay.layers.network import installed_guard


def test_allowed(llm_cache):
    policy = installed_guard().policy
    assert [host for host in ("db.invalid", "x.corp.invalid", "10.0.0.5", "10.0.0.77") if not policy.allows_name(host)] == []
    assert [host for host in ("10.0.1.5", "corp.invalid", "db.invalid,") if policy.allows_name(host)] == []
    closed = socket.socket()
    closed.close()
    with pytest.raises(OSError) as error:  # let through to the real connect, which fails on the closed socket
        closed.connect(("10.0.0.5", 80))
    assert not isinstance(error.value, NetworkBlocked)
'''


def test_an_allow_list_on_one_line_and_address_globs_allow_what_they_name(llm_pytester):
    """`llm_allow_hosts = db.invalid, *.corp.invalid 10.0.0.*` on one line was one entry, 'db.invalid, *.corp.invalid
    10.0.0.*', matching no host: each was blocked, and the message listed it as allowed. And an address glob (10.0.0.*,
    which llm_ignore_hosts' own error suggests) matched only names, so 10.0.0.5 was blocked."""
    llm_pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\nllm_allow_hosts = db.invalid, *.corp.invalid 10.0.0.*\n")
    llm_pytester.makepyfile(test_allow=ALLOW_LIST_SPELLINGS)
    result = llm_pytester.runpytest_inprocess("--llm-mode=replay", "-p", "no:randomly")
    result.assert_outcomes(passed=1)


def test_use_cassette_takes_one_host_as_a_string_not_its_letters(server):
    """use_cassette(allow_hosts='*.internal') handed the string to the guard, which read it as its letters: the entry
    '*' allowed every host. ignore_hosts='127.0.0.1:PORT' became '1', '2', '7', ... and matched nothing."""
    from llm_replay import CassetteMiss, use_cassette

    with use_cassette(None, "replay", allow_hosts="*.internal"):
        with pytest.raises(NetworkBlocked, match=r"connect to 192\.0\.2\.1:80"):
            _closed_socket().connect(("192.0.2.1", 80))
    address = server.base_url.split("/")[2]
    with use_cassette(None, "replay", ignore_hosts=address):
        openai = pytest.importorskip("openai")
        client = openai.OpenAI(base_url=server.base_url, api_key=server.api_key, max_retries=0)
        try:
            answer = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        except CassetteMiss as miss:
            pytest.fail(f"the ignored host was not called live: {miss}")
        assert answer.choices[0].message.content


def test_a_dns_query_to_the_resolver_on_this_machine_is_blocked(monkeypatch, tmp_path):
    """A DNS query by hand (dnspython, as email-validator and pymongo's mongodb+srv:// use) goes to the nameserver that
    /etc/resolv.conf names; on Ubuntu and GitHub's runners that is systemd-resolved's stub at 127.0.0.53, which
    forwards it off the machine. Loopback, so the guard let it through, though it promises no DNS query leaves."""
    from llm_replay.layers import network

    assert installed_guard() is None, "the guard reads resolv.conf as it goes in"
    (tmp_path / "resolv.conf").write_text("# stub\nnameserver 127.0.0.53\noptions edns0 trust-ad\nsearch corp.invalid\n")
    monkeypatch.setattr(network, "RESOLV_CONF", str(tmp_path / "resolv.conf"), raising=False)
    query = bytes.fromhex("abcd01000001000000000000") + b"\x03api\x06openai\x03com\x00\x00\x01\x00\x01"
    with blocking_network():
        with pytest.raises(NetworkBlocked, match=r"send a datagram to 127\.0\.0\.53:53, the DNS resolver on this machine"):
            _closed_socket(kind=socket.SOCK_DGRAM).sendto(query, ("127.0.0.53", 53))
        with pytest.raises(NetworkBlocked, match="the DNS resolver on this machine"):  # over TCP, at any spelling of it
            _closed_socket().connect(("localhost", 53))
        with pytest.raises(OSError) as error:  # another loopback port stays open
            _closed_socket(kind=socket.SOCK_DGRAM).sendto(query, ("127.0.0.53", 5353))
        assert not isinstance(error.value, NetworkBlocked)


IGNORED_ON_A_PORT = '''
from llm_replay.layers.network import installed_guard


def test_guard(llm_cache):
    guard = installed_guard()
    assert guard.refusing("192.0.2.1") is not None, "a remote address is refused"
    assert guard.refusing("vectors.invalid") is None, "an ignored host with a port is reachable"
'''


def test_ignoring_every_host_on_one_port_does_not_open_the_network(llm_pytester):
    """llm_ignore_hosts = *:6333 (every host's vector database goes live) handed the guard the host part '*', which
    allowed every host on every port: the whole replay session was online, proxies and resolvers included."""
    llm_pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\nllm_ignore_hosts = *:6333 vectors.invalid:80\n")
    llm_pytester.makepyfile(test_ignored=IGNORED_ON_A_PORT)
    result = llm_pytester.runpytest_inprocess("--llm-mode=replay", "-p", "no:randomly")
    result.assert_outcomes(passed=1)


def test_an_asyncio_task_outliving_a_recording_block_is_guarded_again():
    """An asyncio task copies its context, and with it the scope of the block it was created in: a task a recording
    test started (its scope open to every host) kept reaching any host after that test ended, in the replaying tests
    after it, as a thread never did (a thread that opened no scope is held to every scope open now)."""
    async def later(go: asyncio.Event) -> None:
        await go.wait()
        _closed_socket().connect(("192.0.2.1", 80))

    async def main() -> None:
        go = asyncio.Event()
        with network_open():  # a test that records, in a replay session
            task = asyncio.ensure_future(later(go))
        with blocking_network():  # the next test, replaying
            go.set()
            with pytest.raises(NetworkBlocked, match=r"connect to 192\.0\.2\.1:80"):
                await task

    with blocking_network():  # the session's guard, installed from test to test
        asyncio.run(main())


def test_a_connect_by_a_loopback_name_that_resolves_off_the_machine_is_blocked(monkeypatch):
    """sock.connect(('app.localhost', 80)) passed the guard by name, and the system resolved the name inside the call,
    from DNS when /etc/hosts has no line for it: a remote answer was connected to."""
    assert installed_guard() is None, "the resolver below must be the one the guard asks"

    def resolver(host: str, port: Any, *args: Any, **kwargs: Any) -> list[Any]:  # stands in for DNS
        address = {"app.localhost": "198.51.100.1", "ip6-localhost": "::1"}[host]
        return [(socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    with blocking_network():
        with pytest.raises(NetworkBlocked, match=r"connect to app\.localhost, which resolved to 198\.51\.100\.1:80"):
            _closed_socket().connect(("app.localhost", 80))
        with pytest.raises(OSError) as error:  # a loopback answer: let through to the real connect
            _closed_socket(socket.AF_INET6).connect(("ip6-localhost", 80, 0, 0))
        assert not isinstance(error.value, NetworkBlocked)
