"""Child processes of a replay session get an environment in which standard HTTP clients fail fast.

The socket guard lives in this process only; a ``curl`` or a Python child does not inherit it. What
they do inherit is the environment, and curl, wget, requests, httpx, urllib and aiohttp (trust_env) all
send through the proxy it names: here a loopback port that is bound but never listens, so every
such request is refused at once, without a DNS query. Loopback and the allow-list bypass the proxy.
Programs that ignore proxy variables (raw sockets, some gRPC stacks) are not covered; docs/safety.md says so.
"""

from __future__ import annotations

import os
import socket
import subprocess
from typing import Any, Iterable, Mapping, MutableMapping

_PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")
_LOCAL = ("localhost", "127.0.0.1", "::1", ".localhost")
MARKER = "LLM_REPLAY_OFFLINE_PROXY"  # the fence's proxy URL, so a replaying child can take the fence down


class OfflineChildren:
    """While installed, every ``subprocess.Popen`` (so ``run``, ``check_output``, asyncio's subprocesses)
    starts its child with proxy variables that point at a closed loopback port."""

    def __init__(self, allowed_hosts: Iterable[str] = ()) -> None:
        self._closed_port: socket.socket | None = None
        self._real_init: Any = None
        self._allowed = tuple(allowed_hosts)
        self.environment: dict[str, str] = {}

    def install(self) -> None:
        """Reserve the closed port and wrap ``subprocess.Popen``."""
        if self._real_init is not None:
            return
        self._closed_port = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._closed_port.bind(("127.0.0.1", 0))  # bound, never listening: connects are refused at once
        proxy = f"http://127.0.0.1:{self._closed_port.getsockname()[1]}"
        no_proxy = ",".join((*_LOCAL, *self._allowed))
        self.environment = {**dict.fromkeys(_PROXY_VARIABLES, proxy), "NO_PROXY": no_proxy, "no_proxy": no_proxy, MARKER: proxy}
        real_init = self._real_init = subprocess.Popen.__init__
        offline = self.environment

        def __init__(popen: subprocess.Popen, args: Any, *rest: Any, **kwargs: Any) -> None:
            if len(rest) < 9:  # env is Popen's tenth parameter; it is (almost) always passed by name
                kwargs["env"] = _with_proxies(kwargs.get("env"), offline)
            real_init(popen, args, *rest, **kwargs)

        subprocess.Popen.__init__ = __init__  # type: ignore[method-assign]

    def uninstall(self) -> None:
        """Give ``subprocess.Popen`` and the port back."""
        if self._real_init is not None:
            subprocess.Popen.__init__ = self._real_init  # type: ignore[method-assign]
            self._real_init = None
        if self._closed_port is not None:
            self._closed_port.close()
            self._closed_port = None


def _with_proxies(env: Mapping[str, str] | None, offline: Mapping[str, str]) -> dict[str, str]:
    return {**(os.environ if env is None else env), **offline}


def without_offline_proxies(environ: MutableMapping[str, str] = os.environ) -> None:
    """In a child that replays itself (an xdist worker, a nested pytest), drop the fence its parent put up:
    its own socket guard is exact, and SDKs in it must reach the loopback fakes and vcrpy directly."""
    proxy = environ.pop(MARKER, None)
    if proxy is None:
        return
    for name in _PROXY_VARIABLES:
        if environ.get(name) == proxy:
            del environ[name]
