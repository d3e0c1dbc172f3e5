"""A response body as the client read it: every Content-Encoding undone, before anything is scrubbed or stored.

A body still compressed hides its secrets from the scrub and the audit alike, and HTTP lets a server spell a coding
in any case (``GZIP``) and stack several (``identity, gzip``), which clients such as httpx undo. vcrpy's own decoder
knows one lower-case coding; this one knows what the client could have read.
"""

from __future__ import annotations

import gzip
import zlib
from functools import partial
from typing import Any, Callable, Mapping

from ..errors import CassetteError


def decoded(headers: Mapping[str, list[str]], body: bytes) -> tuple[dict[str, list[str]], bytes]:
    """The headers without Content-Encoding (Content-Length the decoded size) and the body with every coding undone,
    last applied first. A coding it cannot undo is a CassetteError: stored as it came, its secrets would stay."""
    codings = [coding.strip().lower() for name, values in headers.items() if name.lower() == "content-encoding" for value in values for coding in value.split(",")]
    codings = [coding for coding in codings if coding not in ("", "identity")]
    if not codings:
        return dict(headers), body
    for coding in reversed(codings):
        body = _undo(coding, body)
    kept = {name: list(values) for name, values in headers.items() if name.lower() != "content-encoding"}
    for name in kept:
        if name.lower() == "content-length":
            kept[name] = [str(len(body))]
    return kept, body


def _undo(coding: str, body: bytes) -> bytes:
    decoder = _DECODERS.get(coding)
    if decoder is None:
        decoder = _optional_decoder(coding)
    try:
        return decoder(body)
    except Exception as error:  # each library raises its own kind for a body that is not what its header says
        raise CassetteError(
            f"a response says Content-Encoding {coding!r} but its body does not decode as that ({type(error).__name__}: {error}); "
            "llm_replay stores bodies decoded, so that secrets in them are scrubbed: nothing was recorded"
        ) from error


def _deflate(body: bytes) -> bytes:
    """HTTP's deflate is zlib-wrapped; some servers send it raw."""
    try:
        return zlib.decompress(body)
    except zlib.error:
        return zlib.decompress(body, -zlib.MAX_WBITS)


def _zstd(zstandard: Any, body: bytes) -> bytes:
    """Every frame, as httpx reads them (one frame's decoder stops at its end), and never a truncated one."""
    frames = []
    while body:
        frame = zstandard.ZstdDecompressor().decompressobj()
        frames.append(frame.decompress(body))
        if not frame.eof:
            raise ValueError("zstd data is incomplete")
        body = frame.unused_data
    return b"".join(frames)


_DECODERS: dict[str, Callable[[bytes], bytes]] = {"gzip": gzip.decompress, "x-gzip": gzip.decompress, "deflate": _deflate}


def _optional_decoder(coding: str) -> Callable[[bytes], bytes]:
    """Brotli and zstd, from the packages httpx itself uses for them, when installed."""
    try:
        if coding == "br":
            try:
                import brotli
            except ImportError:
                import brotlicffi as brotli  # type: ignore[no-redef]
            return brotli.decompress
        if coding == "zstd":
            import zstandard

            return partial(_zstd, zstandard)
    except ImportError:
        package = {"br": "brotli", "zstd": "zstandard"}[coding]
        raise CassetteError(
            f"a response is encoded {coding!r}, which llm_replay cannot decode without the {package} package (pip install "
            f"{package}; httpx needs it too to read such a response); stored encoded, its secrets could not be scrubbed: nothing was recorded"
        ) from None
    raise CassetteError(
        f"a response is encoded {coding!r}, a Content-Encoding llm_replay does not know (it decodes gzip, deflate, br and "
        "zstd); stored encoded, its secrets could not be scrubbed: nothing was recorded"
    )
