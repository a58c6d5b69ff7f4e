"""The packages import only down the layering: mtl_ehrnet <- evaluation <- teachers <- distill (tools/ may
import any). Lazy imports inside functions count too."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {
    "mtl_ehrnet": {"evaluation", "teachers", "distill"},
    "evaluation": {"teachers", "distill"},
    "teachers": {"distill"},
}


def _imported_packages(path: Path) -> set:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_package_imports_upward(package: str) -> None:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"no sources under {ROOT / package}"
    upward = {
        str(path.relative_to(ROOT)): sorted(_imported_packages(path) & FORBIDDEN[package]) for path in files
    }
    assert not {name: found for name, found in upward.items() if found}


def _module_imports() -> dict:
    """Every module of the four packages -> the modules of theirs it imports (in functions too), leaving out a
    package's imports of its own submodules and theirs of it."""
    modules = {}
    for package in ("mtl_ehrnet", "evaluation", "teachers", "distill"):
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.update(f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                             for a in node.names)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
        graph[name] = {m for m in found & set(modules)
                       if m != name and not m.startswith(name + ".") and not name.startswith(m + ".")}
    return graph


def test_no_module_imports_itself_round_a_cycle() -> None:
    graph = _module_imports()
    assert "mtl_ehrnet.data.raw_dataset" in graph and graph["mtl_ehrnet.data.raw_dataset"]
    cycles = []
    for start in sorted(graph):  # a path from a module's imports back to the module
        seen, frontier = set(), list(graph[start])
        while frontier:
            module = frontier.pop()
            if module == start:
                cycles.append(start)
                break
            if module not in seen:
                seen.add(module)
                frontier.extend(graph[module])
    assert cycles == []
