"""README.md and docs/ cannot rot: the README stays short, every link lands, every public name quoted imports,
and docs/architecture.md has a line for every folder and module of the package."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")
FROM_IMPORT = re.compile(r"\bfrom (llm_replay(?:\.\w+)*) import ([\w, ]+)")
DOTTED = re.compile(r"(?<![\w/.-])(llm_replay(?:\.[A-Za-z_]\w*)+)")


def _prose_and_code(page: Path) -> tuple[list[str], list[str]]:
    """The page's lines outside fenced blocks, and inside them; untagged blocks (quoted program output) left out."""
    prose: list[str] = []
    code: list[str] = []
    fence: str | None = None
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            fence = None if fence is not None else line[3:].strip()
            continue
        if fence is None:
            prose.append(line)
        elif fence:
            code.append(line)
    return prose, code


def _anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as hyphens."""
    prose, _ = _prose_and_code(page)
    headings = (line.lstrip("#").strip() for line in prose if line.startswith("#"))
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


def test_readme_is_short_enough_to_finish() -> None:
    assert len(README.read_text()) <= 15_000, f"README.md has {len(README.read_text())} characters; move detail into docs/"


def test_readme_links_into_every_docs_page() -> None:
    linked = {(README.parent / target.split("#")[0]).resolve() for target in LINK.findall(README.read_text())}
    unlinked = [page.name for page in PAGES[1:] if page.resolve() not in linked]
    assert not unlinked, f"docs pages the README does not link to: {unlinked}"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.relative_to(ROOT).as_posix())
def test_every_relative_link_lands(page: Path) -> None:
    prose, _ = _prose_and_code(page)
    broken = []
    for target in LINK.findall("\n".join(prose)):
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:: outside the repository
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.is_file():
            broken.append(f"{target}: no file {file}")
        elif anchor and file.suffix == ".md" and anchor not in _anchors(file):
            broken.append(f"{target}: no heading #{anchor} in {file.name}")
    assert not broken, f"{page.name}: " + "; ".join(broken)


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.relative_to(ROOT).as_posix())
def test_every_public_name_quoted_imports(page: Path) -> None:
    prose, code = _prose_and_code(page)
    text = "\n".join(prose + code)
    names = {f"{module}.{name.strip()}" for module, names in FROM_IMPORT.findall(text) for name in names.split(",") if name.strip()}
    names |= {name.rstrip(".") for name in DOTTED.findall(text)}
    unresolved = [name for name in sorted(names) if not _resolves(name)]
    assert not unresolved, f"{page.name} quotes names that do not import: {unresolved}"


def _resolves(dotted: str) -> bool:
    """Whether ``a.b.C`` is a module, or an attribute of the longest importable module prefix."""
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        try:
            target = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        try:
            for attribute in parts[split:]:
                target = getattr(target, attribute)
        except AttributeError:
            return False
        return True
    return False


def test_architecture_page_names_every_folder_and_module() -> None:
    page = (ROOT / "docs" / "architecture.md").read_text()
    package = ROOT / "llm_replay"
    folders = [f"llm_replay/{path.name}/" for path in package.iterdir() if (path / "__init__.py").is_file()]
    modules = [path.name for path in package.rglob("*.py") if path.name != "__init__.py"]
    missing = [name for name in folders if f"`{name}`" not in page] + [name for name in modules if f"`{name}`" not in page]
    assert not missing, f"add a line for each to docs/architecture.md: {missing}"
