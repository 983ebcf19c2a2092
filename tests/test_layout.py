"""The tree reads as the product: no import loop among the project's own modules (type-only and
function-level imports included), no module over 450 lines, at most a dozen modules loose at the top of
bot/, and docs/development.md names every package."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OWN = ("app", "bot", "handlers")
MAX_LINES = 450
MAX_LOOSE = 12


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources() -> dict[str, Path]:
    found = {"app": ROOT / "app.py"}
    for top in ("bot", "handlers"):
        for path in (ROOT / top).rglob("*.py"):
            found[_module_name(path)] = path
    return found


def _imports(path: Path, name: str, modules: set[str]) -> set[str]:
    """Every own module `name` imports, wherever the import stands (TYPE_CHECKING blocks, functions)."""
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{name}: the project uses absolute imports only"
            base = node.module or ""
            targets.add(base)
            targets.update(f"{base}.{alias.name}" for alias in node.names)
    return {target for target in targets if target in modules and target != name}


def _graph() -> dict[str, set[str]]:
    sources = _sources()
    return {name: _imports(path, name, set(sources)) for name, path in sources.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return [*stack[stack.index(target) :], target]
            if target not in state and (found := visit(target)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_graph_sees_every_kind_of_import():
    graph = _graph()
    # A type-only import, a function-level import and a `from package import module` each count.
    assert "bot.runtime" in graph["app"]
    assert "bot.doctor" in graph["bot.__main__"]  # imported inside main()
    assert "bot.create.messages" in graph["bot.create.flow"]  # from bot.create import messages
    assert "bot.runtime" in graph["handlers"]  # under TYPE_CHECKING


def test_a_loop_is_found_when_there_is_one():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_loop_among_the_projects_modules():
    assert _cycle(_graph()) is None


def test_no_module_is_over_450_lines():
    too_long = {
        str(path.relative_to(ROOT)): lines
        for path in _sources().values()
        if "migrations" not in path.parts and (lines := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert too_long == {}


def test_at_most_a_dozen_modules_are_loose_at_the_top_of_bot():
    entry_points = ("__init__.py", "__main__.py")
    loose = sorted(p.name for p in (ROOT / "bot").glob("*.py") if p.name not in entry_points)
    assert len(loose) <= MAX_LOOSE, loose


def test_the_development_guide_names_every_package_and_loose_module():
    guide = (ROOT / "docs" / "development.md").read_text()
    layout = guide[guide.index("```\napp.py") : guide.index("\nhandlers/")]
    packages = [p.name for p in (ROOT / "bot").iterdir() if (p / "__init__.py").exists()]
    loose = [p.stem for p in (ROOT / "bot").glob("*.py") if p.name != "__init__.py"]
    missing = [f"{name}/" for name in packages if f"\n  {name}/ " not in layout]
    missing += [stem for stem in loose if not re.search(rf"\b{stem}\b", layout)]
    assert packages and loose and missing == []
