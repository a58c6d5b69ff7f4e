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
