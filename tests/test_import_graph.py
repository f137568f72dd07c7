"""The kit's own modules (discriminator/, validator_sim/) import each other without a circle.

Every module is parsed with `ast` (nothing is imported) and an edge A → B is drawn for each
import of B that runs: at module level, or inside a function (a lazy import is still a
dependency, only a later one). Imports under `if TYPE_CHECKING:` are left out: they never run,
and annotations may name a type from a module that depends on this one.

`from package import name` is an edge to `package.name` when that is a module, else to
`package`; a module's own parent packages are not edges (Python imports them on the way in,
and a package's `__init__` re-exporting its submodules is not a circle). A format row's hooks
(discriminator/formats.py) are "module:attribute" strings resolved at call time, not imports;
tests/test_format_rows.py resolves each of them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("discriminator", "validator_sim")


def kit_modules() -> dict[str, Path]:
    """Every module of the kit's packages, by dotted name (a package by its own name)."""
    modules = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _runtime_imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement that can run: anywhere in the module but the body of an `if TYPE_CHECKING:`."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                for branch in child.orelse:
                    visit_node(branch)
                continue
            visit_node(child)

    def visit_node(node: ast.AST) -> None:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        visit(node)

    visit(tree)
    return found


def _owner(name: str, modules: dict[str, Path]) -> str | None:
    """The kit module that a dotted name lives in (the longest module prefix), or None for a third-party name."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module → the kit modules its runtime imports reach."""
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in _runtime_imports(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:  # relative: from the package holding this module
                    anchor = name.split(".") if is_package else name.split(".")[:-1]
                    anchor = anchor[:len(anchor) - (node.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
            for target in targets:
                owner = _owner(target, modules)
                if owner is not None and owner != name and not name.startswith(owner + "."):
                    graph[name].add(owner)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as [a, b, …, a], or None (depth-first search, in sorted order so the report is stable)."""
    state: dict[str, str] = {}  # "open" while on the current path, "done" after
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        path.pop()
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state:
            cycle = visit(start)
            if cycle:
                return cycle
    return None


def test_the_kit_has_no_import_circle() -> None:
    cycle = find_cycle(import_graph(kit_modules()))
    assert cycle is None, "import circle: " + " → ".join(cycle or [])


def test_the_graph_sees_lazy_imports_and_leaves_out_type_checking_ones(tmp_path: Path) -> None:
    """The walker on a made-up package: a function-level import is an edge, a TYPE_CHECKING one is not."""
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("from pkg.a import A\n")
    (package / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.c import C\n"
                                  "A = 1\ndef f():\n    from pkg import b\n    return b\n")
    (package / "b.py").write_text("from .c import C\n")
    (package / "c.py").write_text("import pkg.a\nC = 2\n")
    modules = {"pkg": package / "__init__.py", **{f"pkg.{n}": package / f"{n}.py" for n in "abc"}}
    graph = import_graph(modules)
    assert graph == {"pkg": {"pkg.a"}, "pkg.a": {"pkg.b"}, "pkg.b": {"pkg.c"}, "pkg.c": {"pkg.a"}}
    assert find_cycle(graph) == ["pkg.a", "pkg.b", "pkg.c", "pkg.a"]
    (package / "c.py").write_text("C = 2\n")
    assert find_cycle(import_graph(modules)) is None


@pytest.mark.parametrize("package", PACKAGES)
def test_every_kit_package_is_in_the_graph(package: str) -> None:
    modules = kit_modules()
    assert package in modules and sum(name.startswith(package + ".") for name in modules) > 5
