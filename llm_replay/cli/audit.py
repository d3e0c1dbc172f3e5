"""``llm-replay audit [PATH|URL...]``: find secret-looking values in cassettes before they reach git.

Scans cassettes (SQLite files, and shared stores named by URL: redis://…) entry by entry (request, response headers, response body) and any other
file as text (YAML/JSON exports, gzip'd or not), for the shapes of provider keys and tokens and
for the current values of secret environment variables. Exit status 1 if anything is found.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from ..errors import CassetteError
from ..model.credentials import SECRET_HEADERS
from ..model.fingerprint import field_paths
from ..model.interaction import Interaction
from ..model.scrub import Scrubber
from ..stores.base import Store
from ..stores.spec import open_store, scheme
from ..stores.sqlite import SQLITE_MAGIC

DEFAULT_PATHS = ("cassettes",)
CASSETTE_SUFFIXES = (".sqlite3", ".sqlite", ".db", ".yaml", ".yml", ".json", ".yaml.gz", ".yml.gz", ".json.gz")
_EDGE = r"[A-Za-z0-9_+/-]"  # a key is never a slice of a longer token (or of a base64 blob)
SECRET_SHAPES: tuple[tuple[str, str], ...] = (
    ("Anthropic API key", r"sk-ant-[a-z]+\d*-[A-Za-z0-9_-]{20,}"),
    ("OpenAI API key", r"sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}"),
    ("Google API key", r"AIza[0-9A-Za-z_-]{35}"),
    ("AWS access key id", r"(?:AKIA|ASIA)[0-9A-Z]{16}"),
    ("AWS secret access key", r"(?i:aws_?secret_?access_?key)[\"'\s:=]+[A-Za-z0-9/+]{40}"),
    ("GitHub token", r"(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})"),
    ("Slack token", r"xox[abposr]-[A-Za-z0-9-]{10,}"),
    ("Slack webhook", r"https://hooks\.slack\.com/services/[A-Za-z0-9/]{20,}"),
    ("bearer token", r"(?i:bearer)\s+[A-Za-z0-9._~+/-]{16,}=*"),
    ("JWT", r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),
    ("private key", r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
)
_SHAPES = re.compile("|".join(f"(?<!{_EDGE})(?P<g{index}>{pattern})(?!{_EDGE})" for index, (_, pattern) in enumerate(SECRET_SHAPES)))
# Values made up for tests and docs look like keys but are not: "Bearer test_openai_api_key", "sk-fake-…".
_PLACEHOLDER_WORDS = re.compile(r"(?i)test|fake|dummy|example|placeholder|redacted|scrubbed|xxxx|your[_-]")


@dataclass(frozen=True)
class Finding:
    """One secret-looking value: where it is (file, entry, field) and what it looks like."""

    path: Path | str  # a file, or a store's name (a URL without its password)
    entry: str
    field: str
    kind: str
    value: str

    def describe(self) -> str:
        """``file: entry: field: kind 'sk-pro…wxyz'`` (the value masked, so the report leaks nothing)."""
        shown = f" {_mask(self.value)!r}" if self.value else ""
        return f"{self.path}: {self.entry}: {self.field}: {self.kind}{shown}"


@dataclass
class Audit:
    """Scans files and keeps what it found and how much it read."""

    scrubber: Scrubber
    files: int = 0
    entries: int = 0
    bytes_scanned: int = 0

    def scan_text(self, text: str) -> Iterator[tuple[str, str]]:
        """(kind, value) of each secret in ``text``."""
        self.bytes_scanned += len(text)
        for match in _SHAPES.finditer(text):
            value = match.group(match.lastgroup or 0)
            if not _PLACEHOLDER_WORDS.search(value):
                yield SECRET_SHAPES[int(match.lastgroup[1:])][0], value  # type: ignore[index]
        for value, name in self.scrubber.env_secrets():
            if value in text:
                yield f"value of environment variable ${name}", value
        for pattern, value in self.scrubber.pattern_matches(text):
            yield f"match of secret pattern {pattern!r}", value

    def scan_path(self, path: Path | str) -> Iterator[Finding]:
        """Findings in one file or store, or in every cassette-like file under a folder."""
        if isinstance(path, str):  # a URL
            yield from self.scan_store(open_store(path, readonly=True))
            return
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                if child.is_file() and child.name.endswith(CASSETTE_SUFFIXES):
                    yield from self.scan_path(child)
            return
        with path.open("rb") as handle:
            head = handle.read(len(SQLITE_MAGIC))
        if head == SQLITE_MAGIC:
            yield from self.scan_store(open_store(path, readonly=True), path)
        else:
            self.files += 1
            yield from self.scan_text_file(path)

    def scan_store(self, cassette: Store, name: Path | str | None = None) -> Iterator[Finding]:
        """Each entry of a cassette, field by field; the cassette is closed at the end."""
        self.files += 1
        where = name if name is not None else cassette.describe()
        try:
            for interaction in cassette.interactions():
                self.entries += 1
                entry = _entry_name(interaction)
                for field, text in _fields(interaction):
                    for kind, value in self.scan_text(text):
                        yield Finding(where, entry, field, kind, value)
                for header in interaction.response.headers:
                    if header.lower() in SECRET_HEADERS:
                        yield Finding(where, entry, f"response.headers.{header}", "credential header stored", "")
        finally:
            cassette.close()

    def scan_text_file(self, path: Path) -> Iterator[Finding]:
        """Any other file (a YAML or JSON export, gzip'd or not) line by line."""
        data = path.read_bytes()
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        for number, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
            self.entries += 1
            for kind, value in self.scan_text(line):
                yield Finding(path, f"line {number}", "text", kind, value)


def _fields(interaction: Interaction) -> Iterator[tuple[str, str]]:
    """(field path, text) of everything an entry stores that could hold a secret."""
    for name, value in field_paths(json.loads(interaction.request_json)):
        yield f"request.{name}", _as_text(value)
    for name, values in interaction.response.headers.items():
        yield f"response.headers.{name}", " ".join(values)
    body = interaction.response.body.decode("utf-8", "replace")
    parsed = interaction.response.json()
    if isinstance(parsed, (dict, list)):
        for name, value in field_paths(parsed, "response.body"):
            yield name, _as_text(value)
    else:
        yield "response.body", body


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _entry_name(interaction: Interaction) -> str:
    request = interaction.request
    tests = f", recorded by {interaction.tests[0]}" if interaction.tests else ""
    return f"entry {interaction.fingerprint[:12]}#{interaction.occurrence} ({request.method} {request.host}{request.path}{tests})"


def _mask(value: str) -> str:
    """Enough to recognise the value by, never enough to use it."""
    return value[: min(6, len(value) // 4)] + "…" + value[len(value) - min(4, len(value) // 6):]


def _size(count: int) -> str:
    return f"{count / 1_000_000:.1f} MB" if count >= 1_000_000 else f"{count / 1000:.1f} kB"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The audit options, for ``llm-replay audit`` whichever parser hosts it."""
    parser.add_argument("paths", nargs="*", metavar="PATH|URL", help=f"cassette files or folders, or redis:// URLs (default: {' '.join(DEFAULT_PATHS)})")
    parser.add_argument("--secret-env", action="append", default=[], metavar="GLOB", help="also treat the values of these environment variables as secrets")
    parser.add_argument("--secret-pattern", action="append", default=[], metavar="REGEX", help="also report matches of this regular expression")


def run_audit(args: argparse.Namespace, out: Any = None) -> int:
    """Scan and print findings; 1 if any, 0 if clean, 2 if a path cannot be read."""
    out = out or sys.stdout
    try:
        scrubber = Scrubber(env_names=tuple(args.secret_env), patterns=tuple(args.secret_pattern))
    except ValueError as error:
        print(f"llm-replay audit: {error}", file=sys.stderr)
        return 2
    try:
        paths: list[Path | str] = [p if scheme(p) else Path(p) for p in args.paths] or [Path(p) for p in DEFAULT_PATHS if Path(p).exists()]
    except CassetteError as error:
        print(f"llm-replay audit: {error}", file=sys.stderr)
        return 2
    missing = [str(p) for p in paths if isinstance(p, Path) and not p.exists()]
    if missing:
        print(f"llm-replay audit: no such file or folder: {', '.join(missing)}", file=sys.stderr)
        return 2
    audit = Audit(scrubber)
    findings: list[Finding] = []
    try:
        for path in paths:
            for finding in audit.scan_path(path):
                findings.append(finding)
    except (CassetteError, OSError) as error:
        print(f"llm-replay audit: {error}", file=sys.stderr)
        return 2
    for finding in findings:
        print(finding.describe(), file=out)
    scanned = f"scanned {audit.files} files, {audit.entries} entries, {_size(audit.bytes_scanned)}"
    if findings:
        print(f"llm-replay audit: {len(findings)} secret-looking values ({scanned}). Remove them: re-record with the secret "
              "out of the request, or delete the entries; then rotate any real key that was committed.", file=out)
        return 1
    print(f"llm-replay audit: no secrets found ({scanned})", file=out)
    return 0

