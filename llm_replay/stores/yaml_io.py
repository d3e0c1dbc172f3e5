"""vcrpy YAML cassettes in and out: the interchange format users of vcrpy and pytest-recording already have.

Reads every dialect met in the wild: vcrpy's own (``interactions:``, bodies as text or gzip'd
``!!binary``, header values as lists or strings), pydantic-ai's ``parsed_body`` mappings, and
LangChain's gzip'd ``.yaml.gz`` with parallel ``requests:``/``responses:`` lists and redacted URIs.
Each request is canonicalized exactly as a live one is, so the SDKs replay imports offline.
"""

from __future__ import annotations

import base64
import gzip
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Mapping

from ..errors import CassetteError
from ..model.fingerprint import CanonicalRequest, canonicalize
from ..model.interaction import Interaction, RecordedResponse, utc_stamp
from ..model.scrub import Scrubber
from .union import UnionReport, add_missing

if TYPE_CHECKING:
    from .base import Store

DEFAULT_REDACTED_HOST = "https://api.openai.com"
_REDACTED = re.compile(r"redacted|filtered", re.IGNORECASE)
# Bodies stored decoded, so these would lie about them.
_STALE_RESPONSE_HEADERS = frozenset({"content-length", "content-encoding", "transfer-encoding"})


@dataclass
class ImportReport:
    """What importing YAML files found and did, and what could not be imported and why."""

    files: int = 0
    interactions: list[Interaction] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


# -- reading ---------------------------------------------------------------------------------


def read_pairs(path: Path) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """The (request, response) dicts of one YAML cassette, in recorded order, any dialect."""
    from vcr.serializers import yamlserializer  # vcrpy's safe loader knows its own tags

    try:
        raw = path.read_bytes()
        text = (gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw).decode("utf-8")
        data = yamlserializer.deserialize(text)
    except (OSError, UnicodeDecodeError, EOFError, ValueError) as error:
        raise CassetteError(f"cannot read YAML cassette {path}: {error}") from error
    except Exception as error:  # yaml.YAMLError without importing yaml at module level
        raise CassetteError(f"{path} is not valid YAML ({error}); is it a vcrpy cassette?") from error
    if isinstance(data, Mapping) and isinstance(data.get("interactions"), list):
        pairs = []
        for number, item in enumerate(data["interactions"], start=1):
            missing = [name for name in ("request", "response") if not isinstance(item, Mapping) or name not in item]
            if missing:
                raise CassetteError(f"{path}: interaction {number} has no {' and no '.join(missing)}; each of 'interactions:' needs request: and response:")
            pairs.append((item["request"], item["response"]))
        return pairs
    if isinstance(data, Mapping) and isinstance(data.get("requests"), list) and isinstance(data.get("responses"), list):
        if len(data["requests"]) != len(data["responses"]):
            raise CassetteError(
                f"{path}: {len(data['requests'])} requests but {len(data['responses'])} responses; the lists pair up in order, so "
                "each request needs its response (nothing was imported)"
            )
        return list(zip(data["requests"], data["responses"]))
    raise CassetteError(
        f"{path} is not a vcrpy cassette: expected 'interactions:' (vcrpy format version 1) "
        "or parallel 'requests:'/'responses:' lists (LangChain)"
    )


def interactions_from_yaml(
    path: Path, source: str, redacted_host: str = DEFAULT_REDACTED_HOST, scrubber: Scrubber | None = None
) -> tuple[list[Interaction], list[str]]:
    """The file's recordings as Interactions, and a reason for each one that cannot be imported.

    ``source`` is stored as the recording's test, so ``ls`` shows where it came from. Repeated
    identical requests become occurrences 0, 1, … as vcrpy played them back in order. Requests are
    keyed scrubbed, as a replay through the SDK keys them (``Recorder.keyed``).
    """
    scrubber = scrubber or Scrubber()
    interactions, skipped = [], []
    seen: Counter[str] = Counter()
    for number, (vcr_request, vcr_response) in enumerate(read_pairs(path), start=1):
        where = f"{path}: interaction {number}"
        body = _request_body(_mapping(vcr_request, f"{where}: request"), f"{where}: request.body")
        headers = _headers(vcr_request.get("headers"), f"{where}: request.headers")
        response = _response(_mapping(vcr_response, f"{where}: response"), where)
        url = _url(str(vcr_request.get("uri", "")), body, response, redacted_host)
        if url is None:
            skipped.append(f"{path}: interaction {number}: its URI is redacted and its bodies are not a known LLM API call; skipped")
            continue
        request = scrubber.request(canonicalize(str(vcr_request.get("method", "GET")), url, body, _first(headers, "content-type")))
        occurrence = seen[request.fingerprint]
        seen[request.fingerprint] += 1
        interactions.append(
            Interaction.of(
                request,
                response,
                occurrence=occurrence,
                recorded_at=_recorded_at(response),
                latency_ms=_processing_ms(response),
                tests=(source,),
            )
        )
    return interactions, skipped


def read_yaml_cassettes(paths: Iterable[Path], redacted_host: str = DEFAULT_REDACTED_HOST, scrubber: Scrubber | None = None) -> ImportReport:
    """Every recording in these YAML cassettes (files, or folders searched for *.yaml, *.yml, *.yaml.gz).

    All files are read before anything is written, so a bad file leaves the cassette untouched.
    """
    report = ImportReport()
    for path in _yaml_files(paths):
        interactions, skipped = interactions_from_yaml(path, str(path), redacted_host, scrubber)
        report.files += 1
        report.interactions.extend(interactions)
        report.skipped.extend(skipped)
    return report


def import_yaml(cassette: "Store", report: ImportReport) -> UnionReport:
    """Add what ``read_yaml_cassettes`` found; recordings already there win a clash."""
    return add_missing(cassette, report.interactions)


def _yaml_files(paths: Iterable[Path]) -> Iterator[Path]:
    for path in paths:
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file() and p.name.endswith((".yaml", ".yml", ".yaml.gz", ".yml.gz")))
        elif path.is_file():
            yield path
        else:
            raise CassetteError(f"{path}: no such file or folder; give YAML cassette files or folders holding them")


def _headers(raw: Any, where: str = "headers") -> dict[str, list[str]]:
    """Header values as lists of strings, redaction placeholders dropped (they say nothing); a mapping or
    a list of [name, value] pairs."""
    if isinstance(raw, list) and all(isinstance(pair, (list, tuple)) and len(pair) == 2 for pair in raw):
        raw = {name: [value for key, value in raw if key == name] for name, _ in raw}
    if raw is not None and not isinstance(raw, Mapping):
        raise CassetteError(f"{where}: unrecognised headers ({type(raw).__name__}); expected a mapping of name to value(s)")
    headers: dict[str, list[str]] = {}
    for name, values in (raw or {}).items():
        kept = [str(value) for value in (values if isinstance(values, list) else [values]) if not _REDACTED.search(str(value))]
        if kept:
            headers[str(name)] = kept
    return headers


def _first(headers: Mapping[str, list[str]], name: str) -> str:
    return next((values[0] for key, values in headers.items() if key.lower() == name), "")


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise CassetteError(f"{where} is {type(value).__name__}, expected a mapping (method, uri, body, headers / status, headers, body)")
    return value


def _request_body(vcr_request: Mapping[str, Any], where: str) -> bytes | str | None:
    if "parsed_body" in vcr_request:
        return json.dumps(vcr_request["parsed_body"])
    return _body(vcr_request.get("body"), where)


def _body(body: Any, where: str) -> bytes | str | None:
    """A body in any serializer's shape: text or bytes, ``{string: …}`` (vcrpy), ``{type: json|text, content: …}``."""
    if body is None or isinstance(body, (str, bytes)):
        return body
    if isinstance(body, Mapping) and "string" in body:
        if not isinstance(body["string"], (str, bytes, type(None))):  # bytes(42) would import 42 zero bytes
            raise CassetteError(f"{where}: body string is {type(body['string']).__name__} {body['string']!r}, expected text or !!binary")
        return body["string"]
    if isinstance(body, Mapping) and "content" in body:
        content = body["content"]
        if body.get("type") == "json" or not isinstance(content, (str, bytes)):
            return json.dumps(content)
        return content
    shown = sorted(map(str, body)) if isinstance(body, Mapping) else type(body).__name__
    raise CassetteError(f"{where}: unrecognised body {shown}; expected text, {{string: …}} or {{type: json|text, content: …}}")


def _status(status: Any, where: str) -> tuple[int, str]:
    """``{code: 200, message: OK}`` (vcrpy) or a bare ``200``."""
    if status is None:
        return 200, ""
    if isinstance(status, Mapping):
        code, message = status.get("code", 200), status.get("message", "")
    else:
        code, message = status, ""
    try:
        return int(code), str(message or "")
    except (TypeError, ValueError):
        raise CassetteError(f"{where}: unrecognised response.status {status!r}; expected a number or {{code: 200, message: OK}}") from None


def _response(vcr_response: Mapping[str, Any], where: str) -> RecordedResponse:
    """The stored response: decompressed, cookies scrubbed, headers that lied about the body fixed."""
    if "parsed_body" in vcr_response:
        body: Any = json.dumps(vcr_response["parsed_body"])
    else:
        body = _body(vcr_response.get("body"), f"{where}: response.body") or b""
    code, message = _status(vcr_response.get("status"), where)
    decoded = RecordedResponse.from_vcr({"status": {"code": code, "message": message}, "headers": _headers(vcr_response.get("headers"), f"{where}: response.headers"), "body": {"string": body}})
    headers = {name: values for name, values in decoded.headers.items() if name.lower() not in _STALE_RESPONSE_HEADERS}
    if not _first(headers, "content-type"):
        headers["content-type"] = [_sniff_content_type(decoded.body)]
    headers["content-length"] = [str(len(decoded.body))]
    return RecordedResponse(status=decoded.status, reason=decoded.reason, headers=headers, body=decoded.body)


def _sniff_content_type(body: bytes) -> str:
    head = body.lstrip()[:6]
    if head.startswith((b"data:", b"event:")):
        return "text/event-stream; charset=utf-8"
    if head.startswith((b"{", b"[")):
        return "application/json"
    return "application/octet-stream"


def _url(uri: str, body: bytes | str | None, response: RecordedResponse, redacted_host: str) -> str | None:
    """The request URL; when the cassette redacted it, the LLM endpoint its bodies show."""
    if uri.startswith(("http://", "https://")):
        return uri
    path = _endpoint_from_bodies(body, response.body)
    if path is None:
        return None
    host = "https://api.anthropic.com" if path == "/v1/messages" else redacted_host.rstrip("/")
    return host + path


# The object type (or first SSE event) each endpoint answers with.
_ENDPOINT_BY_OBJECT = {
    "chat.completion": "/v1/chat/completions",
    "chat.completion.chunk": "/v1/chat/completions",
    "text_completion": "/v1/completions",
    "response": "/v1/responses",
    "message": "/v1/messages",
    "message_start": "/v1/messages",
}


def _endpoint_from_bodies(request_body: bytes | str | None, response_body: bytes) -> str | None:
    text = response_body.decode("utf-8", "replace").lstrip()
    first_data = next((line[5:].strip() for line in text.splitlines() if line.startswith("data:")), None)
    try:
        answer = json.loads(first_data if first_data is not None else text)
    except ValueError:
        return None
    if not isinstance(answer, dict):
        return None
    kind = answer.get("object") or answer.get("type")
    if isinstance(kind, str) and kind.startswith("response."):
        kind = "response"
    if kind == "list" and request_body is not None and isinstance(answer.get("data"), list):
        return "/v1/embeddings" if all(isinstance(item, dict) and item.get("object") == "embedding" for item in answer["data"]) else None
    return _ENDPOINT_BY_OBJECT.get(kind) if isinstance(kind, str) else None


def _recorded_at(response: RecordedResponse) -> str:
    date = _first(response.headers, "date")
    try:
        return utc_stamp(parsedate_to_datetime(date))
    except (TypeError, ValueError):
        return utc_stamp()


def _processing_ms(response: RecordedResponse) -> float | None:
    value = _first(response.headers, "openai-processing-ms")
    try:
        return float(value)
    except ValueError:
        return None


# -- writing ---------------------------------------------------------------------------------


def export_yaml(interactions: Iterable[Interaction], directory: Path) -> list[Path]:
    """Write vcrpy cassettes (format version 1) that vcrpy itself replays: one file per test.

    A recording used by several tests goes into each test's file; imported recordings go back to
    a file named after their source; those without a test into ``llm_cache.yaml``. Requests carry
    a JSON content-type, so vcrpy's ``body`` matcher compares them as JSON.
    """
    from vcr.serialize import serialize
    from vcr.serializers import yamlserializer

    by_file: dict[Path, list[Interaction]] = {}
    for interaction in interactions:
        for name in interaction.tests or ("",):
            by_file.setdefault(directory / _yaml_name(name), []).append(interaction)
    if directory.exists() and not directory.is_dir():
        raise CassetteError(f"cannot export into {directory}: it is a file; name a folder (it is created when missing)")
    written = []
    for path, members in sorted(by_file.items()):
        members.sort(key=lambda i: (i.recorded_at, i.occurrence))  # vcrpy plays same-URL requests in file order
        cassette = {"requests": [_vcr_request(i.request) for i in members], "responses": [i.response.as_vcr() for i in members]}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(serialize(cassette, yamlserializer), encoding="utf-8")
        except OSError as error:  # a file where a folder of the layout goes, a read-only folder, a full disk
            raise CassetteError(f"cannot write {path}: {error}; export into another folder (--yaml DIR)") from error
        written.append(path)
    return written


def _yaml_name(test: str) -> Path:
    """``tests/test_app.py::test_x[1]`` -> ``tests/test_app/test_x[1].yaml``, as pytest-recording lays them out."""
    if not test:
        return Path("llm_cache.yaml")
    if "::" not in test:
        name = Path(test).name
        return Path(re.sub(r"\.(yaml|yml)(\.gz)?$", "", name) + ".yaml")
    module, _, name = test.partition("::")
    return Path(module.removesuffix(".py")) / (re.sub(r"[/\\:]+", "_", name) + ".yaml")


def _vcr_request(request: CanonicalRequest) -> Any:
    """A vcrpy Request carrying the body the client sent (multipart forms only as far as kept)."""
    from vcr.request import Request

    headers = {}
    body: bytes | str | None = None
    if request.body_kind == "json":
        body = json.dumps(request.body, ensure_ascii=False, separators=(",", ":"))
        headers["content-type"] = "application/json"
    elif request.body_kind == "text":
        body = request.body
    elif request.body_kind == "bytes":
        body = base64.b64decode(request.body)
    return Request(request.method, request.url, body, headers)
