"""Architecture figures of a checkout (issue #14): the largest import cycle of
meshd, files over 800 lines and functions over 60 lines.

    python -m tools.arch_counts [ROOT]

The import graph is read with ``ast`` from every ``import``/``from`` statement
of meshd's modules, counted twice: all of them (top level, inside functions,
under ``if TYPE_CHECKING:``; the review's measure) and only the ones run at
import time (top level, not under ``TYPE_CHECKING``). The largest cycle is the
largest strongly connected component of that graph.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGES = ("raft", "registry", "connect", "meshd", "tests")
MAX_FILE_LINES = 800
MAX_FUNCTION_LINES = 60


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.Module, runtime_only: bool) -> list[ast.Import | ast.ImportFrom]:
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                found.append(node)
            elif isinstance(node, ast.If) and _is_type_checking(node.test):
                if not runtime_only:
                    visit(node.body)
                visit(node.orelse)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if not runtime_only:
                    visit(node.body)
            elif isinstance(node, ast.ClassDef):
                visit(node.body)
            elif isinstance(node, (ast.If, ast.Try, ast.With, ast.For, ast.While)):
                for field in ("body", "orelse", "finalbody", "handlers"):
                    for child in getattr(node, field, []):
                        visit(child.body if isinstance(child, ast.ExceptHandler) else [child])

    visit(tree.body)
    return found


def import_graph(root: Path, package: str, runtime_only: bool) -> dict[str, set[str]]:
    files = {_module_name(root, p): p for p in sorted((root / package).rglob("*.py"))}
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        is_pkg = path.name == "__init__.py"
        base = name.split(".") if is_pkg else name.split(".")[:-1]
        for node in _imports(ast.parse(path.read_text()), runtime_only):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                if node.level:
                    anchor = base[: len(base) - node.level + 1]
                    mod = ".".join(anchor + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                targets = [mod] + [f"{mod}.{a.name}" for a in node.names]
            for target in targets:
                while target and target not in files:
                    target = target.rpartition(".")[0]  # a name inside a module
                if target and target != name:
                    graph[name].add(target)
    return graph


def largest_cycle(graph: dict[str, set[str]]) -> list[str]:
    """The largest strongly connected component (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    best: list[str] = []
    counter = 0
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > len(best):
                    best = sorted(component)
    return best


def long_files(root: Path) -> list[tuple[int, str]]:
    out = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            n = len(path.read_text().splitlines())
            if n > MAX_FILE_LINES:
                out.append((n, str(path.relative_to(root))))
    return sorted(out, reverse=True)


def long_functions(root: Path) -> list[tuple[int, str]]:
    out = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    n = (node.end_lineno or node.lineno) - node.lineno + 1
                    if n > MAX_FUNCTION_LINES:
                        where = f"{path.relative_to(root)}:{node.lineno} {node.name}"
                        out.append((n, where))
    return sorted(out, reverse=True)


def main(argv: list[str]) -> None:
    root = Path(argv[1] if len(argv) > 1 else ".").resolve()
    for runtime_only, label in ((False, "all imports"), (True, "import-time imports")):
        cycle = largest_cycle(import_graph(root, "meshd", runtime_only))
        print(f"largest meshd import cycle ({label}): {len(cycle)} modules")
        if not runtime_only:
            print("  " + " ".join(cycle))
    files = long_files(root)
    print(f"files over {MAX_FILE_LINES} lines: {len(files)}")
    for n, where in files:
        print(f"  {n:5d} {where}")
    funcs = long_functions(root)
    print(f"functions over {MAX_FUNCTION_LINES} lines: {len(funcs)}")
    for n, where in funcs:
        print(f"  {n:5d} {where}")


if __name__ == "__main__":
    main(sys.argv)
