"""The layer rule of docs/architecture.md, checked on the source: imports point only down, and no module
imports itself back through others. Imports inside functions and under TYPE_CHECKING count too."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "llm_replay"
# Top to bottom; a module may import its own folder and any folder below it. The two faces are peers
# that never import each other. Modules directly in llm_replay/ (public names, errors) are placed by hand.
LAYERS = [("pytest_plugin", "cli"), ("layers",), ("engine",), ("stores",), ("model",), ("errors",)]
PUBLIC = {"llm_replay", "llm_replay.__main__", "llm_replay.langchain"}  # the public names: may import any layer


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every llm_replay module ``path`` imports, anywhere in the file."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("llm_replay")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("llm_replay"):
                for alias in node.names:  # ``from . import x`` imports the module x
                    candidate = f"{target}.{alias.name}"
                    found.add(candidate if _exists(candidate) else target)
    return found


def _exists(module: str) -> bool:
    path = PACKAGE.parent.joinpath(*module.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _layer(module: str) -> int | None:
    parts = module.split(".")
    if module in PUBLIC:
        return None
    name = parts[1] if len(parts) > 1 else ""
    for rank, folders in enumerate(LAYERS):
        if name in folders:
            return rank
    raise AssertionError(f"{module} is in no layer: put it in a layer folder or list it in PUBLIC")


GRAPH = {_module_name(path): _imports(path) for path in PACKAGE.rglob("*.py")}


def test_the_graph_was_read():
    assert len(GRAPH) > 25
    assert "llm_replay.model.fingerprint" in GRAPH["llm_replay.model.scrub"]
    assert "llm_replay.layers.http" in GRAPH["llm_replay.layers.activation"], "imports inside functions count"


def test_imports_point_only_down_the_layers():
    upward = []
    for module, imported in GRAPH.items():
        rank = _layer(module)
        for target in imported:
            target_rank = _layer(target)
            if rank is None or target_rank is None:
                assert target_rank is not None or module in PUBLIC, f"{module} imports the public module {target}"
                continue
            same_folder = module.split(".")[1] == target.split(".")[1]
            if target_rank < rank or (target_rank == rank and not same_folder):
                upward.append(f"{module} -> {target}")
    assert not upward, "imports against the layer order:\n" + "\n".join(sorted(upward))


def test_no_import_cycles():
    cycles = []
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    stack: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        stack.append(module)
        for target in sorted(GRAPH.get(module, ())):
            if state.get(target) == 1:
                cycles.append(" -> ".join(stack[stack.index(target):] + [target]))
            elif target not in state:
                visit(target)
        stack.pop()
        state[module] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)
