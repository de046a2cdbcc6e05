"""Imports flow one way: pipelines -> components -> model (docs/style.md, rule 1).

Read from the source with `ast`, so imports inside functions count too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# package -> top-level modules it must never import
FORBIDDEN: dict[str, frozenset[str]] = {
    "model": frozenset({"kfp", "kserve", "components", "pipelines"}),
    "components": frozenset({"pipelines"}),
}


def imported_roots(path: Path) -> set[tuple[str, int]]:
    """(top-level module, line) of every absolute import in a file."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out |= {(alias.name.split(".")[0], node.lineno) for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add((node.module.split(".")[0], node.lineno))
    return out


def violations(package: str) -> list[str]:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"no Python files under {package}/"
    return [
        f"{path.relative_to(ROOT)}:{line} imports {root}"
        for path in files
        for root, line in sorted(imported_roots(path))
        if root in FORBIDDEN[package]
    ]


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_only_downward(package: str) -> None:
    assert violations(package) == []


def test_checker_sees_imports_inside_functions(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text("import os\n\ndef f():\n    from kfp import dsl\n    import kserve.model\n")
    assert imported_roots(source) == {("os", 1), ("kfp", 4), ("kserve", 5)}
