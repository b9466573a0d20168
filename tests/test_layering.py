"""The packages' imports point one way: labctl/ uses the others; protocols/ uses at most
instruments/; instruments/ and simulators/ stand alone; and no module imports itself back
through a cycle. Read from the source with ast, so a lazy import inside a function counts."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("labctl", "instruments", "protocols", "simulators")
#: What each package may import from the others.
ALLOWED = {
    "labctl": {"instruments", "protocols", "simulators"},
    "protocols": {"instruments"},
    "instruments": set(),
    "simulators": set(),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, name: str) -> set[str]:
    """Project modules that ``path`` (module ``name``) imports, as absolute names, wherever
    the import stands (a lazy import inside a function counts)."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            out.add(name)
            out |= {f"{name}.{alias.name}" for alias in node.names}
    return {n for n in out if n.split(".")[0] in PACKAGES}


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((REPO / pkg).rglob("*.py"))}


MODULES = project_modules()


def test_every_package_is_found():
    assert {name.split(".")[0] for name in MODULES} == set(PACKAGES)
    assert len(MODULES) > 40


def violations(name: str, imported: set[str]) -> list[str]:
    own = name.split(".")[0]
    return sorted(i for i in imported
                  if i.split(".")[0] != own and i.split(".")[0] not in ALLOWED[own])


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_point_one_way(name):
    bad = violations(name, imports_of(MODULES[name], name))
    own = name.split(".")[0]
    assert not bad, f"{name} imports {bad}: {own}/ may use only {sorted(ALLOWED[own])}"


def test_no_import_cycles():
    graph = {}
    for name, path in MODULES.items():
        targets = set()
        for imported in imports_of(path, name):
            # "a.b.c" may name module a.b.c or a symbol c of module a.b: take the longest
            # prefix that is a module.
            parts = imported.split(".")
            for k in range(len(parts), 0, -1):
                if ".".join(parts[:k]) in MODULES:
                    targets.add(".".join(parts[:k]))
                    break
        graph[name] = targets - {name}
    # A package's __init__ importing its own submodules is not a cycle worth failing on.
    for name in graph:
        graph[name] = {t for t in graph[name] if not name.startswith(t + ".")}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_the_checker_sees_forbidden_and_relative_imports(tmp_path):
    """The checks can fail: a lazy labctl import in protocols/, and a relative one."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from labctl.station.file import load_station\n"
                   "from ..simulators import world\n")
    found = imports_of(bad, "protocols.sub.bad")
    assert violations("protocols.sub.bad", found) == [
        "labctl.station.file", "labctl.station.file.load_station"]
    assert "protocols.simulators.world" in found  # resolved against its package
