"""The shape of the code holds: layers import downwards only, and no module imports itself
back through others (docs/architecture.md, "Rooms and layers").

Read from the source with `ast`, lazy imports inside functions included, so a shortcut that
reaches upwards fails here before it becomes a habit.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Lowest first. A module may import its own layer and those below it. The longest prefix
# names a module's layer, so `deadlines.clock` sits with cases while `deadlines.calendar`
# sits at the base.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("foundation", ("config", "errors", "files", "logs", "probe", "spreadsheet", "terminal")),
    (
        "base",
        (
            "store",
            "mail",
            "mailbox",
            "deadlines.calendar",
            "deadlines.policy",
            "deadlines.plan",
            "deadlines.stages",  # each case's next stage moment, kept on every change
            "delivery.templating",
            "delivery.compose",
            "delivery.transports",
            "delivery.receipts",
            "privacy.audit",
            "cases.permissions",  # who may see what: read by console, cases, web and api
        ),
    ),
    ("services", ("services",)),
    ("delivery", ("delivery",)),
    ("console", ("console",)),
    ("cases", ("cases", "deadlines.clock")),
    ("deadlines", ("deadlines",)),
    ("privacy", ("privacy",)),
    ("pipeline", ("pipeline",)),
    ("service", ("service",)),
    ("signin", ("signin",)),
    ("doors", ("cli", "__main__", "web")),
]


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted((ROOT / "mailbridge").rglob("*.py")):
        if "migrations" in path.parts:
            continue
        parts = path.relative_to(ROOT / "mailbridge").with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    for path in sorted((ROOT / "cli").glob("*.py")):
        found["cli" if path.stem == "__init__" else f"cli.{path.stem}"] = path
    return found


MODULES = _modules()


def _imports(path: Path) -> Iterator[str]:
    """Every module of ours that `path` imports, as a key of MODULES."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [_ours(alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            # `from mailbridge.cases import records` imports the module, not only the package
            module = _ours(node.module)
            names = [
                f"{module}.{alias.name}" if f"{module}.{alias.name}" in MODULES else module
                for alias in node.names
            ]
        else:
            continue
        yield from (name for name in names if name in MODULES)


def _ours(name: str) -> str:
    """`mailbridge.cases.records` -> `cases.records`; anything else matches no module."""
    return name.removeprefix("mailbridge.") if name.startswith("mailbridge.") else "-" + name


GRAPH = {name: sorted(set(_imports(path)) - {name}) for name, path in MODULES.items()}


def layer_of(module: str) -> int:
    best: tuple[int, int] | None = None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            matches = module == prefix or module.startswith(prefix + ".")
            if matches and (best is None or len(prefix) > best[1]):
                best = (index, len(prefix))
    assert best is not None, f"{module} is in no layer: add it to LAYERS and to the docs"
    return best[0]


def test_every_module_has_a_layer() -> None:
    for module in MODULES:
        if module:  # the package itself holds only a docstring
            layer_of(module)


def test_layers_import_downwards_only() -> None:
    upward = [
        f"{module} ({LAYERS[layer_of(module)][0]}) imports {dep} ({LAYERS[layer_of(dep)][0]})"
        for module, deps in GRAPH.items()
        if module
        for dep in deps
        if dep and layer_of(dep) > layer_of(module)
    ]
    assert upward == []


def test_no_module_imports_itself_back() -> None:
    """Tarjan's strongly connected components: any with two or more modules is a circle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for dep in GRAPH.get(node, []):
            if dep not in index:
                visit(dep)
                low[node] = min(low[node], low[dep])
            elif dep in on_stack:
                low[node] = min(low[node], index[dep])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for node in GRAPH:
        if node not in index:
            visit(node)
    assert circles == []


def test_the_checks_can_fail() -> None:
    """The graph is really read: the pipeline imports cases, and the CLI the service."""
    assert "cases.inbound" in GRAPH["pipeline.apply"]
    assert layer_of("cases.inbound") < layer_of("pipeline.apply")
    assert layer_of("deadlines.calendar") < layer_of("deadlines.clock") < layer_of("deadlines.run")
    assert any(dep.startswith("service.") for dep in GRAPH["cli.run"])


def test_the_command_line_holds_no_transaction_boundary() -> None:
    """A command calls one function that opens and commits its own transaction (invariant 8):
    the web console will call the same ones, so no door may hold a boundary of its own."""
    writers = {"transaction", "action", "begin", "commit"}
    found = []
    for module, path in MODULES.items():
        if not module.startswith("cli"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            name = None
            if isinstance(node, ast.ImportFrom) and node.module == "mailbridge.store.db":
                name = next((a.name for a in node.names if a.name in writers), None)
            elif isinstance(node, ast.Attribute) and node.attr in writers:
                name = node.attr
            if name:
                found.append(f"{module}: {name}")
    assert found == []
