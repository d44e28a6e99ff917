"""The stack package's shape: one module per service around a shared base, and no import cycles
(a cycle between airflow.py and services.py used to be hidden behind function-level imports)."""

import ast
from pathlib import Path

from tidemark.config import PROJECT_ROOT

STACK = PROJECT_ROOT / "tidemark" / "stack"


def _imports(path: Path) -> set[str]:
    """Every tidemark.stack module a file imports, at module level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found |= {n.split(".")[2] for n in names if n.startswith("tidemark.stack.")}
    return found


def test_no_import_cycles_in_the_stack_package():
    modules = {p.stem for p in STACK.glob("*.py")} - {"__init__"}
    graph = {m: _imports(STACK / f"{m}.py") & modules - {m} for m in modules}

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(n == goal or (n not in seen and reaches(n, goal, seen | {n})) for n in graph[start])

    cycles = sorted(m for m in modules if reaches(m, m, {m}))
    assert cycles == [], {m: sorted(graph[m]) for m in cycles}


def test_the_base_class_imports_no_service_and_every_service_builds_on_it():
    from tidemark.stack import services
    from tidemark.stack.service_base import Service

    assert _imports(STACK / "service_base.py") <= {"process"}
    assert all(issubclass(cls, Service) for cls in (*services.SERVICE_TYPES, services.Airflow))


def test_stack_modules_stay_small():
    sizes = {p.name: len(p.read_text().splitlines()) for p in STACK.glob("*.py")}
    assert max(sizes.values()) <= 420, sizes
