"""A real redis-server on a free loopback port, in a temp dir, for the tests of the Redis store.

Debian's package (installed by .ci/run). Without it the tests fail, never skip silently; outside CI a
laptop without Redis may skip them with LLM_REPLAY_SKIP_REDIS=1.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest

BINARY = shutil.which("redis-server") or "/usr/bin/redis-server"


def require_redis() -> None:
    """Fail when redis-server or redis-py is missing: the Redis tests must run. Only outside CI, and only when
    asked with ``LLM_REPLAY_SKIP_REDIS=1`` (a laptop without Redis), do they skip instead, saying why."""
    problems = []
    if not Path(BINARY).is_file():
        problems.append("redis-server is not installed (apt-get install redis-server)")
    try:
        import redis  # noqa: F401
    except ImportError:
        problems.append("redis-py is not installed (pip install -e '.[test]')")
    if not problems:
        return
    if os.environ.get("LLM_REPLAY_SKIP_REDIS") == "1" and not in_ci():
        pytest.skip("; ".join(problems) + " (LLM_REPLAY_SKIP_REDIS=1)")
    pytest.fail("; ".join(problems) + ": the Redis tests must run (outside CI, LLM_REPLAY_SKIP_REDIS=1 skips them)", pytrace=False)


def in_ci() -> bool:
    """Whether this looks like a CI machine (``CI`` set to anything but false, or a CI service's own variable;
    conftest.py moves ``CI`` out of the way into ``CI_MARKER``, which xdist's workers inherit)."""
    flag = os.environ.get("CI", "").strip().lower()
    return flag not in ("", "0", "false", "no") or any(name in os.environ for name in (CI_MARKER, *_CI_VARIABLES))


CI_MARKER = "LLM_REPLAY_TESTS_ON_CI"


_CI_VARIABLES = ("GITHUB_ACTIONS", "GITLAB_CI", "BUILDKITE", "CIRCLECI", "JENKINS_URL", "TF_BUILD", "TEAMCITY_VERSION")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RedisServer:
    """One redis-server process: ``url(prefix)`` names a fresh corner of it; ``kill()`` pulls the plug."""

    def __init__(self, folder: Path, password: str | None = None, durable: bool = False, port: int | None = None, tls: bool = False) -> None:
        self.folder = folder
        self.password = password
        self.durable = durable  # an append-only file fsync'd on every write: what was written survives a kill
        self.port = port or free_port()
        self.tls = tls  # only TLS, on ``port``, with a certificate from a test CA (``ca_file``)
        self.ca_file = folder / "ca.pem"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> "RedisServer":
        self.folder.mkdir(parents=True, exist_ok=True)
        persistence = ["--appendonly", "yes", "--appendfsync", "always"] if self.durable else ["--appendonly", "no"]
        command = [BINARY, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", *persistence, "--dir", str(self.folder)]
        if self.password:
            command += ["--requirepass", self.password]
        if self.tls:
            command[1:3] = ["--port", "0", "--tls-port", str(self.port), *self._certificates()]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode} on port {self.port}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"redis-server did not listen on port {self.port} within 10 s")

    def url(self, prefix: str | None = None) -> str:
        """``redis://[:password@]127.0.0.1:PORT/0?prefix=…``; a fresh unique prefix unless one is given."""
        auth = f":{self.password}@" if self.password else ""
        url = f"{'rediss' if self.tls else 'redis'}://{auth}127.0.0.1:{self.port}/0?prefix={prefix or 't' + uuid.uuid4().hex[:12]}"
        return f"{url}&ssl_ca_certs={self.ca_file}" if self.tls else url

    def _certificates(self) -> list[str]:
        """A test CA and a certificate for 127.0.0.1 signed by it; clients need not show one."""
        import trustme

        authority = trustme.CA()
        issued = authority.issue_cert("127.0.0.1", "localhost")
        authority.cert_pem.write_to_path(str(self.ca_file))
        issued.cert_chain_pems[0].write_to_path(str(self.folder / "cert.pem"))
        issued.private_key_pem.write_to_path(str(self.folder / "key.pem"))
        files = {"--tls-cert-file": "cert.pem", "--tls-key-file": "key.pem", "--tls-ca-cert-file": "ca.pem"}
        return [*(item for flag, name in files.items() for item in (flag, str(self.folder / name))), "--tls-auth-clients", "no"]

    def client(self):  # type: ignore[no-untyped-def]
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password)

    def kill(self) -> None:
        """SIGKILL: the server is gone at once, as a crashed or unplugged machine is."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
