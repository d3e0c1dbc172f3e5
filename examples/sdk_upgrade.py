"""A real SDK upgrade, end to end: record through anthropic 2.2 (which sends ``beta.messages`` to
``/v1/messages?beta=true``), upgrade to the installed anthropic (newer ones drop ``?beta=true``), and show
the strict miss, ``--llm-mode=adopt --llm-prune``, then a clean replay. Nothing is re-recorded.

Run from the repository: ``python examples/sdk_upgrade.py [OLD_VERSION]``. It needs PyPI once (``pip install
--target`` of the old SDK into a throwaway folder); the API is the test suite's loopback fake, so no key is needed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from fakes.anthropic_api import FakeAnthropic  # noqa: E402

APP = '''
import anthropic


def test_summary(llm_cache):
    client = anthropic.Anthropic(base_url="{base_url}", max_retries=0)
    answer = client.beta.messages.create(model="claude-sonnet-4-5", max_tokens=64, messages=[{{"role": "user", "content": "Summarise: the cat sat."}}])
    print("SDK", anthropic.__version__, "ANSWER", answer.content[0].text)
'''
SHOWN = ("llm_replay.CassetteMiss", "request:", "adopt:", "POST ", "llm_replay:", "1 × ", "=")


def run(step: str, project: Path, sdk_path: str | None, *args: str, **env: str) -> None:
    """One pytest session in ``project``, the old SDK first on the path when ``sdk_path`` is given; prints what matters."""
    environ = {key: value for key, value in os.environ.items() if key not in ("CI", "LLM_REPLAY_MODE", "ANTHROPIC_API_KEY")}
    environ.update(env)
    if sdk_path:
        environ["PYTHONPATH"] = sdk_path
    result = subprocess.run([sys.executable, "-m", "pytest", "-s", "-p", "no:cacheprovider", *args], cwd=project, env=environ, capture_output=True, text=True)
    print(f"$ {step}")
    shown: set[str] = set()
    for line in result.stdout.splitlines():
        text = re.sub(r"^E\s+", "", line).strip()
        wanted = " ANSWER " in text or text.startswith(SHOWN) and (not text.startswith("=") or re.search(r" (passed|failed)", text))
        if wanted and text not in shown:  # the short summary repeats the failure
            shown.add(text)
            print("   ", text[:150])


def main(old_version: str = "2.2.0") -> None:
    with tempfile.TemporaryDirectory() as folder, FakeAnthropic() as fake:
        old_sdk = Path(folder) / "old-sdk"
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(old_sdk), f"anthropic=={old_version}"], check=True)
        project = Path(folder) / "project"
        project.mkdir()
        (project / "pytest.ini").write_text("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
        (project / "test_summary.py").write_text(APP.format(base_url=fake.base_url))

        run(f"ANTHROPIC_API_KEY=... pytest --llm-mode=record   # anthropic {old_version}", project, str(old_sdk), "--llm-mode=record", ANTHROPIC_API_KEY=fake.api_key)
        fake.stop()  # from here on: no API, no key
        print(f"# upgrade: anthropic {old_version} -> the installed one")
        run("CI=true pytest", project, None, CI="true")
        run("pytest --llm-mode=adopt --llm-prune", project, None, "--llm-mode=adopt", "--llm-prune")
        run("CI=true pytest", project, None, CI="true")


if __name__ == "__main__":
    main(*sys.argv[1:])
