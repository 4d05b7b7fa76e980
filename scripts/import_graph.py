"""Print the import graph between the project's subpackages and any cycle in it.

A node is a subpackage one level below a top-level package (`flashipa_train.train`, `flashipa_kernels.flash_ipa`);
modules directly in a top-level package count as that package (`flashipa_train` for check_ipa.py).
Every import statement counts, also the ones inside functions: a lazy import is still a dependency.

    python scripts/import_graph.py            # edges "a -> b", then "cycle: a -> b -> a" lines
    python scripts/import_graph.py --check    # exit 1 when there is a cycle
"""

import argparse
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# the folder on disk -> its import name
TOP_LEVEL = {"flashipa_train": "flashipa_train", "kernels": "flashipa_kernels"}


def node_of(module: str, import_names: set[str]) -> str | None:
    """'flashipa_train.model.ipa' -> 'flashipa_train.model'; None for modules outside the project."""
    parts = module.split(".")
    if parts[0] not in import_names:
        return None
    return ".".join(parts[:2]) if len(parts) > 1 else parts[0]


def module_name(path: Path, folder: str, import_name: str) -> str:
    rel = path.relative_to(ROOT / folder).with_suffix("")
    parts = [import_name, *rel.parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path, module: str) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                found.append(".".join(base + ([node.module] if node.module else [])))
            elif node.module:
                found.append(node.module)
    return found


def edges() -> dict[str, set[str]]:
    names = TOP_LEVEL
    import_names = set(names.values())
    graph: dict[str, set[str]] = {}
    for folder, import_name in names.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            module = module_name(path, folder, import_name)
            source = node_of(module, import_names)
            graph.setdefault(source, set())
            for imported in imported_modules(path, module):
                target = node_of(imported, import_names)
                # a top-level package's own __init__ re-exports are not a layer edge
                if target and target != source and target not in import_names:
                    graph[source].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan), each as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when the graph has a cycle")
    args = parser.parse_args()
    graph = edges()
    for source in sorted(graph):
        for target in sorted(graph[source]):
            print(f"{source} -> {target}")
    found = cycles(graph)
    for component in found:
        print("cycle: " + " <-> ".join(component))
    if not found:
        print("no cycle")
    return 1 if (found and args.check) else 0


if __name__ == "__main__":
    sys.exit(main())
