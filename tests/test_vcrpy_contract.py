"""The slice of vcrpy we rely on. If a vcrpy release changes it, these fail loudly, naming what moved."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest
import vcr
import vcr.patch
import vcr.stubs

from llm_replay.engine.recorder import Recorder
from llm_replay.engine.settings import Mode
from llm_replay.layers.http import VcrCassetteAdapter, intercepting
from llm_replay.stores.memory import InMemoryCache

STUB_MODULES = ["__init__", "httpx_stubs", "aiohttp_stubs", "tornado_stubs", "boto3_stubs", "httplib2_stubs", "requests_stubs", "urllib3_stubs"]


def _cassette_attributes_used_by_stubs() -> set[str]:
    """Every ``cassette.X`` / ``self.cassette.X`` / ``self._cassette.X`` that vcrpy's stubs and patcher read."""
    used: set[str] = set()
    files = [Path(vcr.stubs.__file__).with_name(f"{name}.py") for name in STUB_MODULES] + [Path(vcr.patch.__file__)]
    for path in files:
        if not path.exists():
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute):
                owner = node.value
                if (isinstance(owner, ast.Name) and owner.id == "cassette") or (isinstance(owner, ast.Attribute) and owner.attr in {"cassette", "_cassette"}):
                    used.add(node.attr)
    return used


def test_vcrpy_version_is_in_the_tested_range() -> None:
    major, minor = (int(part) for part in re.match(r"(\d+)\.(\d+)", vcr.__version__).groups())
    assert (9, 4) <= (major, minor) < (10, 0), f"llm_replay is tested against vcrpy >=9.4,<10; found {vcr.__version__}"


def test_the_adapter_answers_everything_vcrpy_stubs_ask_of_a_cassette() -> None:
    used = _cassette_attributes_used_by_stubs()
    assert {"can_play_response_for", "play_response", "append", "write_protected", "filter_request"} <= used, (
        f"vcrpy's stubs no longer use the protocol we adapt; they use: {sorted(used)}"
    )
    with intercepting(Recorder(InMemoryCache(), Mode.RECORD)) as adapter:
        assert isinstance(adapter, VcrCassetteAdapter)
        missing = sorted(name for name in used if not hasattr(adapter, name))
    assert not missing, f"vcrpy's stubs now read cassette attributes our adapter lacks: {missing}"


def test_patcher_builder_still_takes_a_cassette_and_patches_httpx2_and_httpx() -> None:
    signature = inspect.signature(vcr.patch.CassettePatcherBuilder.__init__)
    assert list(signature.parameters) == ["self", "cassette"]
    httpx2 = pytest.importorskip("httpx2")
    httpx = pytest.importorskip("httpx")
    original = (httpx2.HTTPTransport.handle_request, httpx2.AsyncHTTPTransport.handle_async_request, httpx.HTTPTransport.handle_request)
    with intercepting(Recorder(InMemoryCache(), Mode.RECORD)):
        patched = (httpx2.HTTPTransport.handle_request, httpx2.AsyncHTTPTransport.handle_async_request, httpx.HTTPTransport.handle_request)
        assert all(now is not before for now, before in zip(patched, original)), "vcrpy no longer patches httpx2/httpx transports"
    assert (httpx2.HTTPTransport.handle_request, httpx2.AsyncHTTPTransport.handle_async_request, httpx.HTTPTransport.handle_request) == original


def test_our_httpx_request_builder_gives_what_vcrpys_own_gives_and_is_on_only_while_patched() -> None:
    httpx2 = pytest.importorskip("httpx2")
    from llm_replay.layers import http

    request = httpx2.Request(
        "POST", "https://api.test/v1/chat?x=1", content=b'{"a": 1}',
        headers=[("Content-Type", "application/json"), ("X-Twice", "1"), ("x-twice", "2"), ("Authorization", "Bearer k")],
    )
    with intercepting(Recorder(InMemoryCache(), Mode.RECORD)):
        # the stubs module vcrpy's patchers call (a pytester session may have re-imported vcrpy since: not sys.modules')
        (stubs,) = [step[0] for step in http._REUSABLE._steps if isinstance(step, tuple) and step[1] == "_make_vcr_request"]
        assert stubs._make_vcr_request is http._vcr_request_of_httpx, "the builder vcrpy's httpx stubs call is ours while patched"
    vcrpys = stubs._make_vcr_request
    assert vcrpys is not http._vcr_request_of_httpx, "and vcrpy's again after"
    expected, ours = vcrpys(request, b'{"a": 1}'), http._vcr_request_of_httpx(request, b'{"a": 1}')
    assert (ours.method, ours.uri, ours.body, dict(ours.headers)) == (expected.method, expected.uri, expected.body, dict(expected.headers))
    assert ours.headers["x-twice"] == "1, 2" and ours.headers["CONTENT-TYPE"] == "application/json"
    assert ours.headers.get("Content-Type") == "application/json" and "X-Twice" in ours.headers and ours.headers.get("absent", "-") == "-"
    assert (ours.host, ours.port, ours._body) == (expected.host, expected.port, expected._body), "what ignored hosts and the adapter read"
    # no header twice (decoded all at once), in ASCII, in UTF-8, in UTF-8 and Latin-1 (httpx falls back to Latin-1),
    # then a line break inside a value
    for headers in (
        [("Content-Type", "application/json"), ("X-Name", "k")],
        [("X-Name", "café".encode())],
        [("X-Name", "café".encode()), ("X-Latin", "é".encode("latin-1"))],
        [("X-Break", b"a\nb"), ("X-After", "c")],
        [("CONTENT-TYPE", "text/plain; name=café".encode()), ("X-Latin", "é".encode("latin-1"))],
    ):
        request = httpx2.Request("POST", "https://api.test/v1/chat", content=b"{}", headers=headers)
        ours = http._vcr_request_of_httpx(request, b"{}")
        assert dict(ours.headers) == dict(vcrpys(request, b"{}").headers) == dict(request.headers.multi_items())
        # the content type, read from httpx's own lower-case names without filing every header, reads as filed
        assert ours.content_type == (ours.headers.get("content-type") or "") == (request.headers.get("content-type") or "")
    twice = httpx2.Request("POST", "https://api.test/v1/chat", content=b"{}", headers=[("Content-Type", "multipart/form-data; boundary=x"), ("content-type", "charset=ascii")])
    assert http._vcr_request_of_httpx(twice, b"{}").content_type == twice.headers["content-type"] == "multipart/form-data; boundary=x, charset=ascii"
    # headers laid out otherwise than httpx's today (no _list) are all filed by name, the content type among them
    request = httpx2.Request("POST", "https://api.test/v1/chat", content=b"{}", headers=[("Content-Type", "application/json"), ("X-Twice", "1")])

    class OtherLayout:
        raw, encoding = request.headers.raw, "ascii"

    assert http._content_type(OtherLayout()) == "application/json"
