"""The package's imports point one way, and its modules stay readable.

Every module under ``src/rank_distillm`` is parsed (no import is run), and every import of a
package module is collected: at module level and inside functions and methods, absolute
(``rank_distillm.x``) and relative (``.x``, ``..x``). The resulting graph must have no circle: a
deferred import may keep a heavy library lazy, never hide a cycle. A circle is printed as the
chain of modules that forms it.

Modules stay under 500 lines. The few that are over today are listed in ``OVER_500``, and the
list is kept true both ways: a module not on it that grows past 500 lines fails, and so does a
listed module that has shrunk under 500 (take it off the list).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = "rank_distillm"
ROOT = Path(__file__).resolve().parents[1] / "src" / PACKAGE
MAX_LINES = 500

# Modules over MAX_LINES today; each must shrink (issue 25), and comes off this list when it has.
OVER_500 = {
    "rank_distillm.crossval",
    "rank_distillm.evaluation",
    "rank_distillm.training",
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(ROOT.rglob("*.py"))}


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The package module that ``name`` (a module or a name inside one) refers to."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> dict[str, int]:
    """``{imported package module: first line}`` for every import in ``path``, nested ones included."""
    is_package = path.name == "__init__.py"
    found: dict[str, int] = {}

    def add(target: str | None, line: int) -> None:
        if target is not None and target != module:
            found.setdefault(target, line)

    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == PACKAGE or alias.name.startswith(PACKAGE + "."):
                    add(_resolve(alias.name, modules), node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                # a package's __init__ is its own base; a module's base is its package
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
                if not (prefix == PACKAGE or prefix.startswith(PACKAGE + ".")):
                    continue
            for alias in node.names:
                # `from pkg import sub` imports the submodule `pkg.sub` when there is one
                target = _resolve(f"{prefix}.{alias.name}", modules)
                if target == f"{prefix}.{alias.name}":
                    add(target, node.lineno)
                else:
                    add(_resolve(prefix, modules), node.lineno)
    return found


def import_graph() -> dict[str, dict[str, int]]:
    modules = package_modules()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def circles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), sorted.

    An explicit import of a package (its ``__init__``) from one of its submodules is an edge like
    any other (the package's ``__init__`` importing that submodule closes a circle); the implicit
    step of Python running a submodule's parent package first is not an import and not counted.
    """
    edges = {m: list(ts) for m, ts in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        # iterative Tarjan: the package is small, but recursion limits are not worth the risk
        work = [(node, iter(edges[node]))]
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        while work:
            current, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(edges[child])))
                    break
                if child in on_stack:
                    low[current] = min(low[current], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[current])
                if low[current] == index[current]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == current:
                            break
                    if len(component) > 1:
                        components.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return components


def _one_cycle(component: list[str], graph: dict[str, dict[str, int]]) -> list[str]:
    """A shortest path from the component's first module back to itself, inside the component."""
    members = set(component)
    start = component[0]
    paths = {start: [start]}
    queue = [start]
    while queue:
        current = queue.pop(0)
        for child in graph[current]:
            if child == start:
                return paths[current] + [start]
            if child in members and child not in paths:
                paths[child] = paths[current] + [child]
                queue.append(child)
    return component


def describe(component: list[str], graph: dict[str, dict[str, int]]) -> str:
    cycle = _one_cycle(component, graph)
    steps = [f"{a} -> {b} (line {graph[a][b]})" for a, b in zip(cycle, cycle[1:])]
    return f"{len(component)} modules in a circle: {', '.join(component)}\n  e.g. " + "\n       ".join(steps)


def test_the_graph_sees_nested_and_relative_imports(tmp_path):
    """The parser finds what the test relies on: imports inside functions and methods, relative and absolute."""
    files = {
        "a.py": "import os\n\ndef f():\n    from .b import x\n\nclass C:\n    def m(self):\n        import rank_distillm.c\n",
        "b.py": "from rank_distillm.sub import d\n",
        "c.py": "",
        "sub/__init__.py": "from . import d\nfrom ..c import y\n",
        "sub/d.py": "def g():\n    from .. import a\n    from ..sub import e\n",
        "sub/e.py": "",
    }
    modules = {}
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        parts = [PACKAGE, *Path(name).with_suffix("").parts]
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {m: set(imports_of(m, p, modules)) for m, p in modules.items()}
    p = PACKAGE + "."
    assert graph == {p + "a": {p + "b", p + "c"}, p + "b": {p + "sub.d"}, p + "c": set(),
                     p + "sub": {p + "sub.d", p + "c"}, p + "sub.d": {p + "a", p + "sub.e"}, p + "sub.e": set()}
    assert circles({m: dict.fromkeys(t, 1) for m, t in graph.items()}) == [[p + "a", p + "b", p + "sub.d"]]
    assert circles({"a": {"b": 1}, "b": {"c": 2}, "c": {"a": 3}, "d": {"a": 1}}) == [["a", "b", "c"]]
    assert circles({"a": {"b": 1}, "b": {}}) == []
    # and on the package itself: an import inside a function is an edge (evaluation.untrained_sweep's)
    assert "rank_distillm.student" in import_graph()["rank_distillm.evaluation"]


def test_no_import_circle():
    graph = import_graph()
    found = circles(graph)
    assert not found, "import circles (imports inside functions included):\n" + "\n".join(
        describe(component, graph) for component in found
    )


def test_modules_stay_under_500_lines():
    lengths = {name: len(path.read_text(encoding="utf-8").splitlines()) for name, path in package_modules().items()}
    too_long = sorted(f"{name} ({n} lines)" for name, n in lengths.items() if n > MAX_LINES and name not in OVER_500)
    shrunk = sorted(f"{name} ({lengths.get(name, 0)} lines)" for name in OVER_500 if lengths.get(name, 0) <= MAX_LINES)
    assert not too_long, f"modules over {MAX_LINES} lines: split them, {too_long}"
    assert not shrunk, f"these modules are at most {MAX_LINES} lines now: take them off OVER_500, {shrunk}"
