"""What ``--llm-mode=adopt`` costs on a cassette of N recordings (default 100,000): the first miss builds the
index of request shapes (one pass over the stored requests), then each adoption is a lookup and one re-keyed write.

    python benchmarks/adopt_speed.py [N] [ADOPTED]

Builds the cassette of audit_speed.py (chat requests to ``/v1/chat/completions``), then asks ADOPTED (default
1,000) of them again at ``/v2/chat/completions`` through the engine, as an SDK upgrade that moved the URL would.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from audit_speed import build

from llm_replay.engine.adoption import AdoptionIndex, AdoptRules
from llm_replay.engine.matching import MatchRules
from llm_replay.engine.recorder import Recorder
from llm_replay.engine.settings import Mode
from llm_replay.model.fingerprint import CanonicalRequest
from llm_replay.stores.sqlite import SQLiteCache


def moved(request: CanonicalRequest) -> CanonicalRequest:
    """The same request after the upgrade: another path, the same body."""
    return CanonicalRequest.from_json(request.to_json().replace("/v1/chat/completions", "/v2/chat/completions"))


def timed(recorder: Recorder, requests: list[CanonicalRequest]) -> float:
    """Seconds to look ``requests`` up one by one (each one adopted)."""
    started = time.perf_counter()
    for request in requests:
        recorder.lookup(*recorder.keyed(request))
    return time.perf_counter() - started


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("count", nargs="?", type=int, default=100_000, help="recordings in the cassette (default 100,000)")
    parser.add_argument("adopted", nargs="?", type=int, default=1_000, help="requests asked again at the new URL (default 1,000)")
    options = parser.parse_args()
    count, adopted = max(1, options.count), max(1, options.adopted)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "llm_cache.sqlite3"
        build(path, count)
        cassette = SQLiteCache(path)
        asked = [moved(CanonicalRequest.from_json(text)) for _, _, text in list(cassette.requests())[:adopted]]
        rules = MatchRules()
        recorder = Recorder(cassette, Mode.ADOPT, rules=rules, adoption=AdoptionIndex(AdoptRules(rules)))
        first, rest = timed(recorder, asked[:1]), timed(recorder, asked[1:])
        print(
            f"{count} recordings: the first adoption (builds the shape index) took {first:.2f} s; "
            f"{len(asked) - 1} more took {rest / max(1, len(asked) - 1) * 1000:.2f} ms each ({len(recorder.adoptions)} adopted)"
        )
        cassette.close()
