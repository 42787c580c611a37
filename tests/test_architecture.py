"""The package's dependencies point one way: no import cycles, and no module imports a higher layer.

Every ``import`` statement counts, at module level or inside a function (a lazy import is still a dependency).
``python tests/test_architecture.py`` prints the layers, the modules of each and any cycle.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "zoo"

#: the layers, lowest first; a module may import its own layer and the ones below. The first matching prefix wins.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("base", ("zoo._version", "zoo.errors", "zoo.options", "zoo._lazy", "zoo.json_file", "zoo.state_dict",
              "zoo.io", "zoo.transforms", "zoo.adapt.kernels")),
    ("registry", ("zoo.entry", "zoo.entries", "zoo.registry", "zoo.data_config")),
    ("archs", ("zoo.archs",)),
    ("hub/convert", ("zoo.hub", "zoo.convert", "zoo.model_dir", "zoo.model_config")),
    ("weights", ("zoo.weights", "zoo.mirror")),
    ("adapt", ("zoo.adapt",)),
    ("loading", ("zoo.loading", "zoo")),  # "zoo" itself only, not its submodules
    ("nnunet", ("zoo.nnunet",)),
    ("apps", ("zoo.viz", "zoo.cards", "zoo.publish", "zoo.saving", "zoo.hosted", "zoo.monai_bundle", "zoo.demo",
              "zoo.cli", "zoo.__main__")),
]


def module_files(root: Path = ROOT) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.with_suffix("").relative_to(root.parent).parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def imports_of(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The package modules ``name`` imports (the longest known prefix of each imported name)."""
    found: set[str] = set()
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[: len(package) - node.level + 1]) if node.level else ""
            prefix = ".".join(p for p in (base, node.module or "") if p)
            targets = [f"{prefix}.{a.name}" if f"{prefix}.{a.name}" in known else prefix for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    known = module_files()
    return {name: imports_of(name, path, known) for name, path in known.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def layer_of(name: str) -> int:
    for rank, (_, prefixes) in enumerate(LAYERS):
        if any(name == p or (name.startswith(p + ".") and p != "zoo") for p in prefixes):
            return rank
    raise AssertionError(f"{name} is in no layer: add it to LAYERS in tests/test_architecture.py")


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{src} ({LAYERS[layer_of(src)][0]}) imports {dst} ({LAYERS[layer_of(dst)][0]})"
                  for src, targets in graph.items() for dst in targets
                  if layer_of(dst) > layer_of(src) and not dst == "zoo")


def test_every_module_has_a_layer():
    for name in import_graph():
        layer_of(name)


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_dependencies_point_one_way():
    assert upward_imports(import_graph()) == []


if __name__ == "__main__":  # pragma: no cover
    graph = import_graph()
    print(f"{len(graph)} modules")
    placed: dict[str, int] = {}
    for name in graph:
        try:
            placed[name] = layer_of(name)
        except AssertionError as err:
            print("unplaced:", err)
            placed[name] = -1
    for rank, (label, _) in enumerate(LAYERS):
        print(f"{label}: {', '.join(sorted(n for n in graph if placed[n] == rank))}")
    graph = {n: {d for d in t if placed[d] >= 0} for n, t in graph.items() if placed[n] >= 0}
    for component in cycles(graph):
        print("cycle:", " <-> ".join(component))
    for line in upward_imports(graph):
        print("upward:", line)
    sys.exit(0)
