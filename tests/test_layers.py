"""The layering rules of DESIGN.md, checked on the source: who may import Ray, and that no code outside
``tasks/kinds/`` asks which kind a task is."""
from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("benchmark", "tasks", "reports", "search_spaces")


def _modules():
    for package in PACKAGES:
        yield from sorted((ROOT / package).rglob("*.py"))


def _imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_only_the_ray_runner_imports_ray():
    importers = sorted(str(p.relative_to(ROOT)) for p in _modules() if "ray" in _imported_roots(p))
    assert importers == ["benchmark/ray_runner.py"]


def test_no_kind_checks_outside_the_task_kinds():
    """Segmentation vs classification is dispatched through ``task.kind``'s methods, never compared by name."""
    pattern = re.compile(r"""kind\s*[!=]=\s*["'](segmentation|classification|synthesis)["']|getattr\([^)]*["']kind["']""")
    offenders = [f"{p.relative_to(ROOT)}:{n}" for p in _modules() if "kinds" not in p.parts
                 for n, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert offenders == []
