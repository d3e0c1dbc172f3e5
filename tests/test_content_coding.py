"""A response body with every Content-Encoding undone, as the client read it: never a part of it."""

from __future__ import annotations

import gzip

import pytest

from llm_replay.errors import CassetteError
from llm_replay.model.content_coding import decoded


def test_a_zstd_body_of_several_frames_is_decoded_whole_and_a_truncated_one_is_refused():
    """One frame's decoder stops at its end: the recording (and every replay) held the first frame only."""
    zstandard = pytest.importorskip("zstandard", reason="zstandard is not installed (httpx decodes zstd only with it, too)")
    compressor = zstandard.ZstdCompressor()
    body = compressor.compress(b'{"answer": "part one, ') + compressor.compress(b'part two"}')
    headers, text = decoded({"Content-Encoding": ["zstd"], "Content-Length": [str(len(body))]}, body)
    assert text == b'{"answer": "part one, part two"}' and headers == {"Content-Length": [str(len(text))]}
    with pytest.raises(CassetteError, match="Content-Encoding 'zstd' but its body does not decode as that.*incomplete.*nothing was recorded"):
        decoded({"content-encoding": ["zstd"]}, body[:-3])


def test_a_truncated_gzip_body_is_refused_not_stored_in_part():
    body = gzip.compress(b'{"answer": "whole"}')
    with pytest.raises(CassetteError, match="Content-Encoding 'gzip' but its body does not decode as that"):
        decoded({"Content-Encoding": ["gzip"]}, body[:-4])
    assert decoded({"Content-Encoding": ["GZIP, identity"]}, body)[1] == b'{"answer": "whole"}'
