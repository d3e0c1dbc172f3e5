"""Replay is offline: connects and lookups of remote hosts fail, naming the host, whatever the client.

Only TEST-NET addresses (192.0.2.0/24, never routed) and *.invalid names are used, and the guard
refuses them before any packet is sent.
"""

from __future__ import annotations

import asyncio
import socket
import urllib.error
import urllib.request

import pytest
from conftest import write_ini

from llm_replay import CassetteMiss, NetworkBlocked
from llm_replay.layers.network import HostPolicy, blocking_network


def test_raw_sockets_lookups_and_asyncio_are_blocked_naming_the_host(server):
    blocked: list[NetworkBlocked] = []
    with blocking_network(on_blocked=blocked.append):
        with pytest.raises(NetworkBlocked, match=r"attempt to connect to 192\.0\.2\.1:443: in mode 'replay' no connection leaves the machine"):
            socket.socket().connect(("192.0.2.1", 443))
        with pytest.raises(NetworkBlocked, match=r"attempt to look up api\.example\.invalid:443.*ini llm_allow_hosts = api\.example\.invalid"):
            socket.create_connection(("api.example.invalid", 443))
        with pytest.raises(NetworkBlocked, match=r"connect to 2001:db8::1:80"):
            socket.socket(socket.AF_INET6).connect_ex(("2001:db8::1", 80))
        with pytest.raises(NetworkBlocked, match=r"look up llm\.example\.invalid:8443"):
            asyncio.run(asyncio.open_connection("llm.example.invalid", 8443))
        # Loopback stays open: the user's own test servers, reached by a client vcrpy does not patch.
        with pytest.raises(urllib.error.HTTPError) as answered:
            urllib.request.urlopen(server.base_url + "/models")
        assert answered.value.code == 401, "the fake server answered (no API key sent): the connect went through"
    assert len(blocked) == 4, "every attempt is reported, so a swallowed one still fails the test"
    assert issubclass(NetworkBlocked, CassetteMiss) and not issubclass(NetworkBlocked, Exception)
    assert socket.socket.connect is not None and socket.getaddrinfo.__module__ == "socket", "the guard is gone after the block"


def test_allow_list_takes_names_globs_addresses_networks_and_what_allowed_names_resolved_to():
    policy = HostPolicy(["db.internal", "*.corp.example", "10.1.2.3", "192.168.0.0/16", ""])
    allowed = ["localhost", "127.0.0.1", "127.8.9.10", "::1", "[::1]", "0.0.0.0", "app.localhost", socket.gethostname(),
               "db.internal", "DB.Internal", "llm.corp.example", "10.1.2.3", "192.168.44.5"]
    refused = ["api.openai.com", "corp.example", "10.1.2.4", "8.8.8.8", "2001:db8::1", "db.internal.evil.com"]
    assert [host for host in allowed if not policy.allows_name(host)] == []
    assert [host for host in refused if policy.allows_name(host)] == []
    policy.remember([(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.9.9.9", 5432))])
    assert policy.allows_name("10.9.9.9")


RAW_CLIENTS = '''
import socket
import pytest

UNGUARDED_CONNECT = socket.socket.connect


def test_guard_is_on(llm_cache):
    print("GUARDED", socket.socket.connect is not UNGUARDED_CONNECT)


def test_swallowed_by_the_app(llm_cache):
    try:
        socket.create_connection(("api.vendor.invalid", 443))
    except:  # noqa: E722  an app that hides every failure
        pass


def test_raw_socket_to_a_remote_address(llm_cache):
    socket.socket().connect(("192.0.2.7", 25))


def test_not_using_llm_cache_is_not_guarded():
    assert socket.socket.connect is UNGUARDED_CONNECT


@pytest.mark.llm_cache(allow_hosts=["search.internal"])
def test_marker_allow_list_is_named(llm_cache):
    socket.create_connection(("api.vendor.invalid", 443))
'''


def test_replay_session_fails_tests_that_reach_out_and_names_the_allow_list(llm_pytester):
    write_ini(llm_pytester, "llm_allow_hosts =\n    metrics.internal\n    10.0.0.0/8\n")
    llm_pytester.makepyfile(test_raw=RAW_CLIENTS)
    result = llm_pytester.runpytest("--llm-mode=replay")
    result.assert_outcomes(passed=2, failed=3)
    result.stdout.fnmatch_lines([
        "*llm_replay.CassetteMiss (caught by the code under test, still a failure):",
        "llm_replay blocked an attempt to look up api.vendor.invalid:443: in mode 'replay' no connection leaves the machine*"
        "(allowed now: metrics.internal, 10.0.0.0/8)*",
        "*llm_replay.NetworkBlocked: llm_replay blocked an attempt to connect to 192.0.2.7:25*",
        # the marker's host adds to the ini's, as match_ignore paths add up
        "*llm_replay.NetworkBlocked: llm_replay blocked an attempt to look up api.vendor.invalid:443*(allowed now: metrics.internal, 10.0.0.0/8, search.internal)*",
        "llm_replay: 0 replayed, 0 recorded, 3 missed in 4 tests (mode replay*",
    ])

    assert "GUARDED True" in llm_pytester.runpytest("-s", "--llm-mode=replay", "-k", "guard_is_on").stdout.str()
    assert "GUARDED False" in llm_pytester.runpytest("-s", "--llm-mode=record", "-k", "guard_is_on").stdout.str(), "only replay blocks"
