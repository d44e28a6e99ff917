"""No import cycles between tidemark's modules, and no import up its layers.

Two graphs over every module under tidemark/, with an edge A -> B when A imports B:

* import time: the imports that run while A is being imported - top-level ``import`` /
  ``from ... import`` statements, also inside top-level ``if``/``try``/``with`` blocks and class
  bodies. A cycle here breaks or depends on import order. None is allowed.
* deferred: the same plus the imports inside functions. A function-level import is the usual way
  to hide a cycle that is still there in the design (quality's gates imported docs inside
  ``validate`` while docs imported gates). Neither may have one.

Imports under ``if TYPE_CHECKING:`` never run and are left out of both. ``from pkg import name``
points at ``pkg.name`` when that is a module, else at ``pkg``. Importing ``a.b.c`` also runs
``a/__init__`` and ``a/b/__init__``; those implicit edges are left out, or every package
re-exporting its submodules would be a cycle.

And no import points up the layers: ``LAYERS`` below is the one statement of the architecture's
order, and a module may import only from the layers under its own (and within its own package).
Every import counts there, inside functions and under ``if TYPE_CHECKING:`` too: a deferred or
type-only import of a higher layer is the same dependency, only hidden.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "tidemark"

# tidemark's layers, bottom first; each entry is a top-level module or package under tidemark/.
# A module imports only from layers below its own: peers in one layer do not know each other.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors",),  # the base of every error, raised in every layer
    ("config", "hours", "timing", "clickhouse_dialect"),  # settings and pure helpers
    ("object_store",),  # where the lake lives (local or s3a://): its clients' settings
    ("contract", "tables", "logs", "spark", "clickhouse_ddl"),  # schemas, facts both layers share, engine conf
    ("io", "transforms", "quality"),  # clients; the transforms and quality rules both layers apply
    ("stream", "migrations", "generator"),  # the speed layer; ClickHouse's schema; the traffic generator
    ("slo",),  # the SLOs: read the stream's figures; the API records its latency and serves them through it
    ("stack", "lambda_merge"),  # the embedded services and their processes; the one read rule over both layers
    ("anomalies",),  # anomaly detection on the merged rollups
    ("batch", "serving"),  # the batch layer; the API
    ("tiering",),  # moves the data of both layers between tiers
    ("orchestration", "cli"),  # entry points: the DAG tasks, the command line
)


def module_files() -> dict[str, Path]:
    """Dotted module name -> source file, for every module under tidemark/."""
    modules = {}
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(
    body: list[ast.stmt], deferred: bool, type_checking: bool = False
) -> Iterator[ast.Import | ast.ImportFrom]:
    """The import statements in ``body``; inside functions too when ``deferred``, under
    ``if TYPE_CHECKING:`` too when ``type_checking``."""
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            if deferred:
                yield from _imports(node.body, deferred, type_checking)
        elif isinstance(node, ast.If):
            if type_checking or not _is_type_checking(node.test):
                yield from _imports(node.body, deferred, type_checking)
            yield from _imports(node.orelse, deferred, type_checking)
        elif isinstance(node, (ast.Try, getattr(ast, "TryStar", ast.Try))):
            for block in (node.body, node.orelse, node.finalbody, *(h.body for h in node.handlers)):
                yield from _imports(block, deferred, type_checking)
        elif isinstance(node, (ast.With, ast.AsyncWith, ast.ClassDef, ast.For, ast.AsyncFor, ast.While)):
            yield from _imports(node.body, deferred, type_checking)
            yield from _imports(getattr(node, "orelse", []), deferred, type_checking)
        elif isinstance(node, ast.Match):
            for case in node.cases:
                yield from _imports(case.body, deferred, type_checking)


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph(deferred: bool = False, type_checking: bool = False) -> dict[str, set[str]]:
    """Module -> the tidemark modules it imports at import time (with ``deferred``: at all; with
    ``type_checking``: for the type checker too)."""
    files = module_files()
    graph: dict[str, set[str]] = {name: set() for name in files}
    for module, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in _imports(tree.body, deferred, type_checking):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                source = _resolve(module, path.name == "__init__.py", node)
                targets = [
                    f"{source}.{alias.name}" if f"{source}.{alias.name}" in files else source for alias in node.names
                ]
            graph[module].update(t for t in targets if t in files and t != module)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component with more than one module, as a cycle through it."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def connect(node: str) -> None:  # Tarjan; the graph is a few hundred nodes, recursion is fine
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return [_cycle_through(graph, component) for component in components]


def _cycle_through(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A concrete cycle inside a strongly connected component, for the failure message."""
    start = min(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:  # breadth first: the shortest way back to start
        nxt = []
        for node in frontier:
            for target in sorted(graph[node] & component):
                if target == start:
                    return paths[node] + [start]
                if target not in paths:
                    paths[target] = paths[node] + [target]
                    nxt.append(target)
        frontier = nxt
    raise AssertionError(f"not strongly connected: {component}")


def _show(found: list[list[str]]) -> str:
    return "\n".join(" -> ".join(cycle) for cycle in found)


def layer_of() -> dict[str, int]:
    """Top-level module or package under tidemark/ -> its index in LAYERS (0: the bottom)."""
    return {unit: i for i, layer in enumerate(LAYERS) for unit in layer}


def _unit(module: str) -> str:
    """The top-level module or package a dotted module belongs to (``tidemark`` for the root)."""
    return module.split(".")[1] if "." in module else module


def upward_imports(graph: dict[str, set[str]], layers: dict[str, int]) -> list[str]:
    """Every import of a module in the same layer or a higher one than the importer's, other
    than within one package (which the cycle tests cover)."""
    found = []
    for module in sorted(graph):
        for target in sorted(graph[module]):
            source_unit, target_unit = _unit(module), _unit(target)
            if source_unit != target_unit and layers[target_unit] >= layers[source_unit]:
                found.append(
                    f"{module} (layer {layers[source_unit]}: {source_unit}) imports {target} "
                    f"(layer {layers[target_unit]}: {target_unit})"
                )
    return found


def test_every_package_has_one_layer():
    units = {_unit(m) for m in module_files()} - {PACKAGE}
    listed = [unit for layer in LAYERS for unit in layer]
    assert sorted(listed) == sorted(set(listed)), "a unit is listed in two layers"
    assert units == set(listed), f"not in LAYERS: {sorted(units - set(listed))}; gone: {sorted(set(listed) - units)}"


def test_the_package_root_imports_nothing_of_its_own():
    # tidemark/__init__ runs before any of its modules, so it cannot sit in a layer: it stays empty.
    assert not import_graph(deferred=True, type_checking=True)[PACKAGE]


def test_imports_only_point_down_the_layers():
    graph = import_graph(deferred=True, type_checking=True)
    found = upward_imports({m: targets - {PACKAGE} for m, targets in graph.items() if m != PACKAGE}, layer_of())
    assert not found, "imports that do not point down the layers (tests/unit/test_import_graph.py LAYERS):\n" + (
        "\n".join(found)
    )


def test_no_import_cycles_at_import_time():
    found = cycles(import_graph())
    assert not found, "import cycles at import time:\n" + _show(found)


def test_no_import_cycles_through_deferred_imports():
    found = cycles(import_graph(deferred=True))
    assert not found, "import cycles (through imports inside functions):\n" + _show(found)


SAMPLE = """
import a
from typing import TYPE_CHECKING
if TYPE_CHECKING:
    import never
else:
    import b
try:
    from c import d
except ImportError:
    import e
class K:
    import f
def g():
    import h
    if TYPE_CHECKING:
        import never_either
"""


def test_the_graph_sees_imports_and_cycles():
    def names(deferred):
        return [alias.name for node in _imports(ast.parse(SAMPLE).body, deferred) for alias in node.names]

    assert names(False) == ["a", "TYPE_CHECKING", "b", "d", "e", "f"]
    assert names(True) == ["a", "TYPE_CHECKING", "b", "d", "e", "f", "h"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    assert [alias.name for node in _imports(ast.parse(SAMPLE).body, True, True) for alias in node.names] == [
        "a",
        "TYPE_CHECKING",
        "never",
        "b",
        "d",
        "e",
        "f",
        "h",
        "never_either",
    ]
    layers = {"low": 0, "mid": 1, "peer": 1, "high": 2}
    graph = {"t.mid.x": {"t.low", "t.mid.y", "t.peer.z", "t.high"}, "t.mid.y": set()}
    assert upward_imports(graph, layers) == [
        "t.mid.x (layer 1: mid) imports t.high (layer 2: high)",
        "t.mid.x (layer 1: mid) imports t.peer.z (layer 1: peer)",
    ]
