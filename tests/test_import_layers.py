"""The import structure of llm_core, read from its source with `ast` (imports at module level and inside functions
alike): no modules import each other in a loop, llm_core imports neither cli/, tasks/, flows/ nor Prefect, the base
modules import no stage, and only the planner's modules import the registry of stages."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "llm_core"
# The ground floor: configs' base models, the artifact store (the package and each of its modules) and the data
# contracts.
BASE = {"llm_core", "llm_core.config", "llm_core.store", "llm_core.manifest", "llm_core.schemas",
        "llm_core.data_files", *(f"llm_core.store.{p.stem}" for p in (PACKAGE / "store").glob("*.py")
                                 if p.stem != "__init__")}
# The top floor: the ordered declaration of stages, the config derived from it, and the planner.
TOP = {"llm_core.registry", "llm_core.pipeline_config", "llm_core.pipeline"}
UPPER_LAYERS = {"cli", "tasks", "flows", "prefect", "prefect_dask", "prefect_ray"}


def modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of llm_core (a package by its __init__.py)."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imported_names(name: str, path: Path) -> set[str]:
    """Every dotted name an import statement of the module names: `import a.b` gives a.b, `from a import b` gives
    a and a.b (b may be a submodule); relative imports are made absolute."""
    is_package = path.name == "__init__.py"
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = name.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def import_graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(module -> the llm_core modules importing it runs, module -> every dotted name it imports). Importing
    a.b.c runs a/__init__.py and a/b/__init__.py first: those are edges too, except the importer's own packages,
    which are already running when it is imported."""
    known = modules()
    graph, names = {}, {}
    for name, path in known.items():
        names[name] = imported_names(name, path)
        own_packages = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
        targets = set()
        for imported in names[name]:
            parts = imported.split(".")
            targets.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
        graph[name] = {t for t in targets if t in known and t != name and t not in own_packages}
    return graph, names


def closure(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in graph[todo.pop()] - seen:
            seen.add(nxt)
            todo.append(nxt)
    return seen


def test_the_graph_is_read_whole():
    graph, _ = import_graph()
    assert len(graph) > 50 and set(TOP | BASE) <= graph.keys()
    assert {"llm_core.report", "llm_core.report.stage"} <= graph["llm_core.registry"]  # package and module
    assert "llm_core.config" in graph["llm_core.crawl.config"]


def test_no_modules_of_llm_core_import_each_other_in_a_loop():
    graph, _ = import_graph()
    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as e:
        raise AssertionError(f"import cycle: {' -> '.join(e.args[1])}") from None


def test_llm_core_imports_no_prefect_tasks_or_flows():
    _, names = import_graph()
    upward = {m: sorted(n for n in ns if n.split(".")[0] in UPPER_LAYERS) for m, ns in names.items()}
    assert not {m: ns for m, ns in upward.items() if ns}


def test_the_base_modules_import_only_each_other():
    graph, _ = import_graph()
    assert {m: sorted(closure(graph, m) - BASE) for m in BASE} == {m: [] for m in BASE}


def test_only_the_planner_modules_import_the_registry_of_stages():
    graph, _ = import_graph()
    assert sorted(m for m, targets in graph.items() if targets & TOP and m not in TOP) == []
