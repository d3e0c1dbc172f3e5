"""Verify's second opinion: send a request that has a recording to the real server too, to compare the answers.

The call goes out on the standard library's own HTTP connection (the class vcrpy keeps unpatched), so it
never meets the recorder again; the SDK's transport settings (proxies, custom certificates) do not apply to it.
HTTPS wraps that plain connection in TLS here: ``http.client.HTTPSConnection`` cannot be built while vcrpy's
patch is on (its ``__init__`` names the module's class, which is then vcrpy's stub).
"""

from __future__ import annotations

import functools
import http.client
import ssl
import warnings
from typing import Any
from urllib.parse import urlsplit

from ..model.interaction import RecordedResponse

# Framing headers describe the body as the client sent it; http.client frames the body it sends itself.
_FRAMING_HEADERS = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive"})
TIMEOUT_S = 300.0  # a long completion may take minutes


def send_live(vcr_request: Any, timeout: float = TIMEOUT_S) -> RecordedResponse | None:
    """The live answer to ``vcr_request`` (vcrpy's request), decoded; None, with a warning, when it cannot be sent."""
    from vcr.patch import _HTTPConnection  # the class as it was before vcrpy patched it

    url = urlsplit(vcr_request.uri)
    headers = {name: value for name, value in vcr_request.headers.items() if name.lower() not in _FRAMING_HEADERS}
    if url.scheme == "https":
        connection = _tls_connection_class(_HTTPConnection)(url.hostname, url.port or 443, timeout=timeout)
    else:
        connection = _HTTPConnection(url.hostname, url.port, timeout=timeout)
    try:
        connection.request(vcr_request.method, (url.path or "/") + (f"?{url.query}" if url.query else ""), body=vcr_request.body, headers=headers)
        answer = connection.getresponse()
        body = answer.read()
        grouped: dict[str, list[str]] = {}
        for name, value in answer.getheaders():
            grouped.setdefault(name, []).append(value)
        return RecordedResponse.from_vcr({"status": {"code": answer.status, "message": answer.reason}, "headers": grouped, "body": {"string": body}})
    except (OSError, http.client.HTTPException) as error:
        warnings.warn(f"llm_replay verify could not send {vcr_request.method} {vcr_request.uri} live: {error}", stacklevel=2)
        return None
    finally:
        connection.close()


@functools.cache
def _tls_connection_class(plain: type[http.client.HTTPConnection]) -> type[http.client.HTTPConnection]:
    """``plain`` with TLS on connect: the system's trusted certificates (and ``SSL_CERT_FILE``), hostname checked."""

    class TLSConnection(plain):  # type: ignore[misc, valid-type]
        def connect(self) -> None:
            super().connect()
            context = ssl.create_default_context()
            context.set_alpn_protocols(["http/1.1"])
            self.sock = context.wrap_socket(self.sock, server_hostname=self.host)

    return TLSConnection
