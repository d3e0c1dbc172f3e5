"""Re-record the example suite into cassettes/llm_cache.sqlite3 without an OpenAI account, against the project's
OpenAI-compatible stand-in.

    python examples/record_with_stand_in.py

The committed cassette was made this way: requests the app sends to api.openai.com are answered by
tests/fake_openai.py on 127.0.0.1 instead (so answers read "echo[0]: … #n"). The cassette still says
api.openai.com, because that is what the app asked for. With a real key, record real answers instead:

    OPENAI_API_KEY=sk-... pytest examples --llm-mode=refresh
"""

from __future__ import annotations

import sys
from pathlib import Path

import httpx2

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent / "tests"))
from fake_openai import FakeOpenAI  # noqa: E402


def main() -> int:
    """Answer api.openai.com from the stand-in while pytest records the example suite."""
    with FakeOpenAI(api_key="stand-in-key") as stand_in:
        original = httpx2.HTTPTransport.handle_request
        target = httpx2.URL(stand_in.base_url)

        def to_stand_in(transport: httpx2.HTTPTransport, request: httpx2.Request) -> httpx2.Response:
            if request.url.host == "api.openai.com":
                request.url = request.url.copy_with(scheme=target.scheme, host=target.host, port=target.port)
                request.headers["host"] = f"{target.host}:{target.port}"
            return original(transport, request)

        # Installed before pytest starts, so vcrpy wraps this function as the "real" transport.
        httpx2.HTTPTransport.handle_request = to_stand_in
        import os

        import pytest

        os.environ["OPENAI_API_KEY"] = stand_in.api_key
        return pytest.main([str(HERE), "--llm-mode=refresh", "-p", "no:cacheprovider", "-q"])


if __name__ == "__main__":
    raise SystemExit(main())
