"""Replay is offline: connects and lookups of remote hosts fail, naming the host, whatever the client.

Only TEST-NET addresses (192.0.2.0/24, never routed) and *.invalid names are used, and the guard
refuses them before any packet is sent.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import threading
import urllib.error
import urllib.request

import pytest
from conftest import printed, write_ini

from llm_replay import CassetteMiss, NetworkBlocked
from llm_replay.layers.network import HostPolicy, blocking_network, installed_guard


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
    assert (socket.getaddrinfo.__module__ == "socket") is (installed_guard() is None), "the guard is gone after the block"


def test_lookups_of_every_kind_and_datagrams_are_blocked_but_loopback_datagrams_go(server):
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    blocked: list[NetworkBlocked] = []
    with blocking_network(on_blocked=blocked.append):
        attempts = {
            "gethostbyname": lambda: socket.gethostbyname("api.example.invalid"),
            "gethostbyname_ex": lambda: socket.gethostbyname_ex("api.example.invalid"),
            "gethostbyaddr": lambda: socket.gethostbyaddr("192.0.2.1"),
            "getnameinfo": lambda: socket.getnameinfo(("192.0.2.1", 80), 0),
            "getnameinfo IPv6": lambda: socket.getnameinfo(("2001:db8::1", 443, 0, 0), socket.NI_NAMEREQD),
            "asyncio getnameinfo": lambda: asyncio.run(_name_of(("192.0.2.1", 80))),
            "sendto": lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"q", ("192.0.2.1", 53)),
            "sendto with flags": lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"q", 0, ("192.0.2.1", 53)),
            "sendmsg": lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendmsg([b"q"], [], 0, ("192.0.2.1", 53)),
        }
        refused = {}
        for kind, attempt in attempts.items():
            with pytest.raises(NetworkBlocked) as caught:
                attempt()
            refused[kind] = str(caught.value)
        asyncio.run(_datagram_to(("192.0.2.1", 53)))  # asyncio's transport logs the error instead of raising it
        assert "send a datagram to 192.0.2.1:53" in str(blocked[-1]) and len(blocked) == len(attempts) + 1
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sender.sendto(b"local", receiver.getsockname())
        assert socket.gethostbyname("localhost") == "127.0.0.1"
        assert socket.getnameinfo(("127.0.0.1", 80), socket.NI_NUMERICSERV)[1] == "80", "a loopback address's name may be asked"
        # NI_NUMERICHOST only formats the address (no reverse query), so it is left alone
        assert socket.getnameinfo(("192.0.2.1", 80), socket.NI_NUMERICHOST | socket.NI_NUMERICSERV) == ("192.0.2.1", "80")
    assert receiver.recv(16) == b"local", "a datagram to loopback went through"
    assert "look up api.example.invalid" in refused["gethostbyname"] and "look up the name of 192.0.2.1" in refused["gethostbyaddr"]
    assert "send a datagram to 192.0.2.1:53" in refused["sendmsg"]
    assert "look up the name of 192.0.2.1:80" in refused["getnameinfo"] and "look up the name of 2001:db8::1:443" in refused["getnameinfo IPv6"]
    assert "look up the name of 192.0.2.1:80" in refused["asyncio getnameinfo"], "asyncio asks in an executor thread, held to the block too"


async def _name_of(address: tuple[str, int]) -> tuple[str, str]:
    return await asyncio.get_running_loop().getnameinfo(address)


async def _datagram_to(address: tuple[str, int]) -> None:
    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(asyncio.DatagramProtocol, family=socket.AF_INET)
    try:
        transport.sendto(b"q", address)
    finally:
        transport.close()


def test_allow_list_takes_names_globs_addresses_networks_and_what_allowed_names_resolved_to():
    policy = HostPolicy(["db.internal", "*.corp.example", "10.1.2.3", "192.168.0.0/16", ""])
    allowed = ["localhost", "127.0.0.1", "127.8.9.10", "::1", "[::1]", "0.0.0.0", "app.localhost", socket.gethostname(),
               "db.internal", "DB.Internal", "llm.corp.example", "10.1.2.3", "192.168.44.5"]
    refused = ["api.openai.com", "corp.example", "10.1.2.4", "8.8.8.8", "2001:db8::1", "db.internal.evil.com"]
    assert [host for host in allowed if not policy.allows_name(host)] == []
    assert [host for host in refused if policy.allows_name(host)] == []
    policy.remember([(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.9.9.9", 5432))])
    assert policy.allows_name("10.9.9.9")


def test_what_an_allowed_name_resolved_to_opens_only_for_blocks_with_the_same_allow_list():
    """A guard shares one policy per allow-list among the blocks that have it: an address remembered under one list
    is allowed for that list's blocks, never for a block with another list or none (nor outside any block)."""
    resolved = [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.0.2.7", 5432))]
    with blocking_network() as session:  # keeps one guard installed, as a replay session does from test to test
        with blocking_network(["db.invalid"]) as first:
            first.remember(resolved)
        with blocking_network(["db.invalid"]) as again, blocking_network(["other.invalid"]) as other, blocking_network() as none:
            assert again.allows_name("192.0.2.7")
            assert not other.allows_name("192.0.2.7")
            assert not none.allows_name("192.0.2.7")
            with pytest.raises(NetworkBlocked, match=r"connect to 192\.0\.2\.7:5432"):
                socket.socket().connect(("192.0.2.7", 5432))  # the innermost block (no allow-list) decides here
        assert not session.allows_name("192.0.2.7")


RAW_CLIENTS = '''
import os
import socket
import threading
import pytest


def test_guard_is_on(llm_cache):
    from llm_replay.layers import network  # the session under test adds its own guard to any around it (a CI=true run)
    print("GUARDED", len(network._INSTALLED) > int(os.environ["GUARDS_AROUND"]))


def test_swallowed_by_the_app(llm_cache):
    try:
        socket.create_connection(("api.vendor.invalid", 443))
    except:  # noqa: E722  an app that hides every failure
        pass


def test_raw_socket_to_a_remote_address(llm_cache):
    socket.socket().connect(("192.0.2.7", 25))


def test_not_using_llm_cache_is_guarded_too():
    try:
        socket.socket().connect(("192.0.2.8", 25))
    except BaseException:  # swallowed: still a failure
        pass


@pytest.mark.llm_cache(allow_hosts=["search.internal"])
def test_marker_allow_list_is_named(llm_cache):
    socket.create_connection(("api.vendor.invalid", 443))
'''


def test_replay_session_fails_tests_that_reach_out_and_names_the_allow_list(llm_pytester, monkeypatch):
    from llm_replay.layers import network

    monkeypatch.setenv("GUARDS_AROUND", str(len(network._INSTALLED)))
    write_ini(llm_pytester, "llm_allow_hosts =\n    metrics.internal\n    10.0.0.0/8\n")
    llm_pytester.makepyfile(test_raw=RAW_CLIENTS)
    result = llm_pytester.runpytest("--llm-mode=replay")
    result.assert_outcomes(passed=1, failed=4)
    result.stdout.fnmatch_lines([
        "*llm_replay.CassetteMiss (caught by the code under test, still a failure):",
        "llm_replay blocked an attempt to look up api.vendor.invalid:443: in mode 'replay' no connection leaves the machine*"
        "(allowed now: metrics.internal, 10.0.0.0/8)*",
        "*llm_replay.NetworkBlocked: llm_replay blocked an attempt to connect to 192.0.2.7:25*",
        "*llm_replay.NetworkBlocked (caught by the code under test, still a failure):",
        "llm_replay blocked an attempt to connect to 192.0.2.8:25*this test does not use llm_cache*request the llm_cache fixture*"
        "ini llm_autouse = true*",
        # the marker's host adds to the ini's, as match_ignore paths add up
        "*llm_replay.NetworkBlocked: llm_replay blocked an attempt to look up api.vendor.invalid:443*(allowed now: metrics.internal, 10.0.0.0/8, search.internal)*",
        "llm_replay: 0 replayed, 0 recorded, 3 missed in 4 tests (mode replay*",
    ])

    assert "GUARDED True" in llm_pytester.runpytest("-s", "--llm-mode=replay", "-k", "guard_is_on").stdout.str()
    assert "GUARDED False" in llm_pytester.runpytest("-s", "--llm-mode=record", "-k", "guard_is_on").stdout.str(), "only replay blocks"
    assert getattr(socket.socket.connect, "__module__", None) != "llm_replay.layers.network", "the session's guard is gone after it"


# Wraps the real socket calls beneath the guard: anything non-loopback that reaches it is counted and
# refused, so the test proves the guard fired first, and no packet could leave even if it did not.
SOCKET_SPY = '''
import ipaddress, json, os, pathlib, socket

REACHED = []
SPIED = {"connect": (socket.socket, 1), "connect_ex": (socket.socket, 1), "sendto": (socket.socket, -1),
         "getaddrinfo": (socket, 0), "gethostbyname": (socket, 0), "gethostbyname_ex": (socket, 0), "gethostbyaddr": (socket, 0),
         "getnameinfo": (socket, 0)}
REAL = {name: getattr(owner, name) for name, (owner, _) in SPIED.items()}


def _local(target):
    host = target[0] if isinstance(target, tuple) else target
    if host is None or not isinstance(host, (str, bytes)):
        return True
    host = host.decode() if isinstance(host, bytes) else host
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return host == "localhost" or host == socket.gethostname()


def _spy(name, at):
    def spy(*args):
        if not _local(args[at]):
            REACHED.append(name)
            raise OSError(f"socket spy: {name}{args[at]!r} would have left the machine")
        return REAL[name](*args)
    return spy


for _name, (_owner, _at) in SPIED.items():
    setattr(_owner, _name, _spy(_name, _at))


def pytest_unconfigure(config):
    for name, (owner, _) in SPIED.items():
        setattr(owner, name, REAL[name])
    pathlib.Path(os.environ["SPY_REPORT"]).write_text(json.dumps(REACHED))
'''

OFFLINE_SESSION = '''
import asyncio, os, shutil, socket, subprocess, sys, urllib.error, urllib.request
import openai

CHILD = """
import os, urllib.error, urllib.request
try:
    urllib.request.urlopen(os.environ["FAKE_URL"] + "/models", timeout=20)
except urllib.error.HTTPError as answered:
    print("LOOPBACK", answered.code)
try:
    urllib.request.urlopen("http://192.0.2.1/v1/models", timeout=20)
except OSError as error:
    print("REMOTE", error)
"""


def test_openai_sdk_at_an_address_without_the_fixture():
    openai.OpenAI(base_url="http://192.0.2.1/v1", max_retries=0).models.list()


def test_openai_sdk_at_its_own_host_without_the_fixture():
    openai.OpenAI(max_retries=0).models.list()


def test_asyncio_without_the_fixture():
    asyncio.run(asyncio.open_connection("192.0.2.1", 443))


def test_getnameinfo_without_the_fixture():
    socket.getnameinfo(("192.0.2.1", 80), 0)


def test_gethostbyname_in_llm_cache(llm_cache):
    socket.gethostbyname("api.example.invalid")


def test_sendto_in_llm_cache(llm_cache):
    socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"query", ("192.0.2.1", 53))


def test_loopback_stays_open_without_the_fixture():
    try:
        urllib.request.urlopen(os.environ["FAKE_URL"] + "/models")
    except urllib.error.HTTPError as answered:
        print("IN-PROCESS", answered.code)


def test_child_processes_fail_fast():
    if shutil.which("curl"):
        curl = subprocess.run(["curl", "-sS", "--max-time", "20", "https://192.0.2.1/v1/models"], capture_output=True, text=True)
        print("CURL", curl.returncode, curl.stderr.strip())
    else:
        print("CURL absent")
    child = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True)
    print("PYTHON-CHILD", " | ".join(child.stdout.split("\\n")))
'''


def test_a_replay_session_is_offline_for_every_test_and_its_children(llm_pytester, server, tmp_path, monkeypatch):
    spy_report = tmp_path / "reached.json"
    llm_pytester.makeconftest(SOCKET_SPY)
    llm_pytester.makepyfile(test_offline=OFFLINE_SESSION)
    monkeypatch.setenv("SPY_REPORT", str(spy_report))
    monkeypatch.setenv("FAKE_URL", server.base_url)
    result = llm_pytester.runpytest("-s", "--llm-mode=replay")
    result.assert_outcomes(passed=2, failed=6)
    failures = {line.split(" - ")[0].split("::")[1]: line for line in result.outlines if line.startswith("FAILED")}
    assert set(failures) == {
        "test_openai_sdk_at_an_address_without_the_fixture", "test_openai_sdk_at_its_own_host_without_the_fixture",
        "test_asyncio_without_the_fixture", "test_getnameinfo_without_the_fixture", "test_gethostbyname_in_llm_cache",
        "test_sendto_in_llm_cache",
    }
    result.stdout.fnmatch_lines([
        "*NetworkBlocked: llm_replay blocked an attempt to look up 192.0.2.1:80*this test does not use llm_cache*request the llm_cache fixture*",
        "*NetworkBlocked: llm_replay blocked an attempt to look up api.openai.com:443*llm_autouse = true*",
        "*NetworkBlocked: llm_replay blocked an attempt to connect to 192.0.2.1:443*this test does not use llm_cache*",
        "*NetworkBlocked: llm_replay blocked an attempt to look up the name of 192.0.2.1:80*this test does not use llm_cache*",
        "*NetworkBlocked: llm_replay blocked an attempt to look up api.example.invalid*use --llm-mode=record",
        "*NetworkBlocked: llm_replay blocked an attempt to send a datagram to 192.0.2.1:53*",
    ])
    assert printed(result, "IN-PROCESS") == ["401"], "loopback (the suite's own fakes) stays open"
    curl = printed(result, "CURL")[0]
    if shutil.which("curl"):
        assert curl.startswith("7 curl: (7) Failed to connect to 127.0.0.1 port"), f"curl went to the closed proxy port: {curl}"
    child = printed(result, "PYTHON-CHILD")[0]
    assert child.startswith("LOOPBACK 401 | REMOTE <urlopen error [Errno 111] Connection refused>"), child
    assert json.loads(spy_report.read_text()) == [], "no attempt reached the real socket calls"
    assert socket.getaddrinfo.__module__ != "conftest", "the spy is gone with its session"


SWALLOWED_BY_FIXTURES = '''
import socket
import threading
import pytest


def reach_out(host):
    try:
        socket.getaddrinfo(host, 443)
    except BaseException:  # swallowed: still a failure
        pass


@pytest.fixture(scope="module")
def module_setup():
    reach_out("module-setup.example.invalid")
    yield


@pytest.fixture
def function_setup():
    reach_out("function-setup.example.invalid")


@pytest.fixture
def function_teardown():
    yield
    reach_out("function-teardown.example.invalid")


def test_module_setup(module_setup):
    pass


def test_function_setup(function_setup):
    pass


def test_function_teardown(function_teardown):
    pass


def test_clean_after_them():
    pass
'''

SWALLOWED_IN_A_MODULE_TEARDOWN = '''
import socket
import threading
import pytest


@pytest.fixture(scope="module")
def module_teardown():
    yield
    try:
        socket.getaddrinfo("module-teardown.example.invalid", 443)
    except BaseException:
        pass


def test_with_it(module_teardown):
    pass
'''


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["one process", "xdist"])
def test_a_blocked_attempt_a_fixture_swallows_fails_its_setup_or_teardown(llm_pytester, workers):
    llm_pytester.makepyfile(test_fixtures=SWALLOWED_BY_FIXTURES, test_module_teardown=SWALLOWED_IN_A_MODULE_TEARDOWN)
    result = llm_pytester.runpytest("--llm-mode=replay", *workers)
    # the teardowns' tests ran and passed: pytest counts a test whose teardown failed as passed and as an error
    result.assert_outcomes(passed=3, errors=4)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    errors = {line.split(" - ")[0] for line in result.outlines if line.startswith("ERROR ")}
    assert errors == {
        "ERROR test_fixtures.py::test_module_setup", "ERROR test_fixtures.py::test_function_setup",
        "ERROR test_fixtures.py::test_function_teardown", "ERROR test_module_teardown.py::test_with_it",
    }, "each attempt is its own phase's error, none charged to test_clean_after_them"
    output = result.stdout.str()
    for phase, host in [("setup", "module-setup"), ("setup", "function-setup"), ("teardown", "function-teardown"), ("teardown", "module-teardown")]:
        assert f"llm_replay blocked an attempt to look up {host}.example.invalid:443" in output
    result.stdout.fnmatch_lines([
        "*ERROR at setup of test_module_setup*",
        "llm_replay.NetworkBlocked (caught by the code under test, still a failure):",
        "llm_replay blocked an attempt to look up module-setup.example.invalid:443*this test does not use llm_cache*",
    ])
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_function_teardown*", "llm_replay.NetworkBlocked (caught by the code under test*"])


SWALLOWED_AT_IMPORT = '''
import socket
import threading

try:
    socket.getaddrinfo("{host}", 443)
except BaseException:
    pass
'''

SWALLOWED_IN_A_HOOK = '''
import socket
import threading


def pytest_collection_finish(session):
    try:
        socket.getaddrinfo("hook.example.invalid", 443)
    except BaseException:
        pass
'''


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["one process", "xdist"])
def test_a_blocked_attempt_swallowed_while_collecting_fails_that_file_or_the_session_never_a_test(llm_pytester, workers):
    llm_pytester.makepyfile(test_importing=SWALLOWED_AT_IMPORT.format(host="import.example.invalid") + "\n\ndef test_in_it():\n    pass\n")
    llm_pytester.mkdir("sub")
    (llm_pytester.path / "sub" / "conftest.py").write_text(SWALLOWED_AT_IMPORT.format(host="conftest.example.invalid"))
    (llm_pytester.path / "sub" / "test_below.py").write_text("def test_below():\n    pass\n")
    llm_pytester.makepyfile(test_clean="def test_clean():\n    pass\n")
    result = llm_pytester.runpytest("--llm-mode=replay", *workers)
    # like a file that fails to import: an error collecting it; pytest stops there, xdist runs the tests that collected
    result.assert_outcomes(errors=2, passed=1 if workers else 0)
    assert result.ret == (pytest.ExitCode.TESTS_FAILED if workers else pytest.ExitCode.INTERRUPTED)
    assert [line for line in result.outlines if line.startswith(("ERROR test_clean", "FAILED"))] == [], "no test is charged with them"
    output = result.stdout.str()
    assert "ERROR collecting test_importing.py" in output and "ERROR collecting sub" in output, output
    assert "look up import.example.invalid:443" in output and "look up conftest.example.invalid:443" in output
    assert "this test does not use llm_cache" not in output, "no test made them"
    assert output.count("it ran outside any test (importing a test file or conftest.py, or in a hook)") >= 2

    # what a hook catches belongs to no test or file: the session fails, saying so at its end
    (llm_pytester.path / "test_importing.py").unlink()
    (llm_pytester.path / "sub" / "conftest.py").unlink()
    llm_pytester.makeconftest(SWALLOWED_IN_A_HOOK)
    result = llm_pytester.runpytest("--llm-mode=replay", *workers)
    result.assert_outcomes(passed=2)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([
        # once a worker: each collects, and runs the hook
        f"llm_replay: {2 if workers else 1} blocked network attempt* caught outside any test, fixture or collected file (in a plugin's or "
        "conftest.py's hook), still a failure of the session; the first:",
        "llm_replay blocked an attempt to look up hook.example.invalid:443*it ran outside any test (importing a test file or "
        "conftest.py, or in a hook)*make the call in a test or fixture that uses llm_cache*",
    ])
    # a conftest's pytest_sessionstart runs with the guard on too, though pluggy calls the last registered plugin first
    llm_pytester.makeconftest(SWALLOWED_IN_A_HOOK.replace("pytest_collection_finish", "pytest_sessionstart"))
    started = llm_pytester.runpytest("--llm-mode=replay", *workers)
    started.assert_outcomes(passed=2)
    assert started.ret == pytest.ExitCode.TESTS_FAILED
    started.stdout.fnmatch_lines(["llm_replay: * blocked network attempt* caught outside any test*", "llm_replay blocked an attempt to look up hook.example.invalid:443*"])


THROUGH_A_PROXY = '''
import os
import urllib.request

import openai
import requests


def test_openai_through_the_proxy():
    openai.OpenAI(base_url="https://api.openai.com/v1", max_retries=0).models.list()


def test_requests_through_the_proxy():
    requests.get("http://example.com/", timeout=5)


def test_loopback_that_bypasses_the_proxy():
    assert requests.get(os.environ["FAKE_URL"] + "/models", timeout=5).status_code == 401
'''


@pytest.mark.parametrize(
    "variables, host, address",
    [(("HTTPS_PROXY", "HTTP_PROXY"), "http://localhost", "127.0.0.1"), (("Http_Proxy", "Https_Proxy"), "0.0.0.0", "0.0.0.0")],
    ids=["localhost", "mixed-case names, 0.0.0.0 without a scheme"],
)
def test_a_proxy_on_loopback_named_by_the_environment_carries_nothing_off_the_machine(llm_pytester, server, monkeypatch, variables, host, address):
    """The guard saw a loopback connect and let it go; the proxy then forwarded the request for api.openai.com. Clients
    read the variables in any case, and 0.0.0.0 reaches this machine."""
    asked: list[bytes] = []
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            with connection:
                asked.append(connection.recv(4096).split(b"\r\n")[0])
                connection.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

    threading.Thread(target=serve, daemon=True).start()
    for variable in variables:
        monkeypatch.setenv(variable, f"{host}:{port}")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("FAKE_URL", server.base_url)
    llm_pytester.makepyfile(test_proxied=THROUGH_A_PROXY)
    try:
        result = llm_pytester.runpytest("--llm-mode=replay")
    finally:
        listener.close()
    result.assert_outcomes(passed=1, failed=2)
    assert asked == [], "the proxy was asked to carry nothing"
    failed = {line.split(" - ")[0] for line in result.outlines if line.startswith("FAILED")}
    assert failed == {"FAILED test_proxied.py::test_openai_through_the_proxy", "FAILED test_proxied.py::test_requests_through_the_proxy"}
    named = " and ".join(variables)
    assert result.stdout.str().count(f"blocked an attempt to connect to {address}:{port}, the proxy that {named} name:") == 2
    result.stdout.fnmatch_lines([f"*the proxy that {named} name*(NO_PROXY), or replay without the proxy (env -u {variables[0]} -u {variables[1]} pytest)*"])


def test_the_machines_own_name_as_a_proxy_host_is_fenced_at_every_address_it_resolves_to():
    from llm_replay.layers.network import loopback_proxies

    own = socket.gethostname()
    resolved = {info[4][0] for info in socket.getaddrinfo(own, 3128, proto=socket.IPPROTO_TCP)}
    assert set(loopback_proxies({"https_proxy": f"http://{own}:3128"})) == {(address, 3128) for address in resolved}
    assert loopback_proxies({"HTTPS_PROXY": "http://proxy.corp.example:3128", "NO_PROXY": "x"}) == {}, "a proxy elsewhere is the guard's already"


LEFTOVER_THREAD = '''
import socket
import threading

GO, DONE = threading.Event(), threading.Event()


def test_a_starts_a_background_worker():
    def flush():  # telemetry that outlives its test and swallows its errors
        GO.wait(30)
        try:
            socket.getaddrinfo("telemetry.example.invalid", 443)
        except BaseException:
            pass
        DONE.set()

    threading.Thread(target=flush, name="telemetry-flush", daemon=True).start()


def test_b_makes_no_call():
    GO.set()
    DONE.wait(30)
'''


def test_a_blocked_attempt_from_a_leftover_thread_names_the_thread(llm_pytester):
    """It fails the test that runs when it happens, which made no call: the message says which thread made it."""
    llm_pytester.makepyfile(test_leftover=LEFTOVER_THREAD)
    result = llm_pytester.runpytest("--llm-mode=replay")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "*_ test_b_makes_no_call _*",
        "*blocked an attempt to look up telemetry.example.invalid:443*(the attempt was made in thread 'telemetry-flush', which may have been started by an earlier test)",
    ])
