"""A map of the code: lines per file, the longest functions, the import graph's floors and
circles, and any import that goes up the layers.

    python scripts/code_map.py [--top 10] [--check] [packages...]

Imports count wherever they stand (module level or inside a function), since both tie one module
to another, and so does a string that names a project module (``python -m app.cli``, ``runpy``).
A module's floor is 0 when it imports no project module, else one more than the highest floor it
imports; modules in a circle share one floor and are listed as a circle. ``--check`` exits 1
when a module imports one of a higher layer (:data:`LAYERS`) or a stage imports another stage.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PACKAGES = ("components", "pipelines", "app")
# The layers, lowest first: a module imports only from its own layer or those below. A module
# belongs to the layer of its longest matching prefix.
LAYERS = (
    ("components.outcomes", "components.params", "components.records", "components.data",
     "components.ml", "components.storage"),
    ("components.registry", "components.policies", "components.reports",
     "components.life_report"),
    ("components.stages", "components.serving", "components.runtime"),
    ("components.steps",),
    ("components.contracts", "components.runtime.inprocess", "components.kfp_components"),
    ("pipelines",),
    ("app",),
)


def modules(packages) -> dict[str, Path]:
    found = {}
    for package in packages:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def imports_of(path: Path, known: set[str], name: str) -> set[str]:
    tree = ast.parse(path.read_text())
    targets = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:  # a submodule when it is one, else the module itself
                targets.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and node.value in known:  # a module run or imported by its name
            targets.add(node.value)
    edges = set()
    for target in targets:
        while target and target not in known:
            target = target.rpartition(".")[0]
        if target and target != name:
            edges.add(target)
    return edges


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative enough for a small graph."""
    index, low, stack, on_stack, result, counter = {}, {}, [], set(), [], [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            result.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for node in graph:
        if node not in index:
            visit(node)
    return result


def floors(graph, components) -> dict[str, int]:
    owner = {member: tuple(c) for c in components for member in c}
    floor: dict[tuple, int] = {}

    def floor_of(component):
        if component not in floor:
            floor[component] = -1  # guards a revisit (cannot happen across SCCs)
            below = [floor_of(owner[t]) for m in component for t in graph[m]
                     if owner[t] != component]
            floor[component] = 1 + max(below, default=-1)
        return floor[component]

    return {member: floor_of(owner[member]) for member in graph}


def layer_of(module: str) -> int:
    """The index in :data:`LAYERS` of the longest prefix naming ``module``."""
    matches = [(len(prefix), index) for index, prefixes in enumerate(LAYERS)
               for prefix in prefixes if module == prefix or module.startswith(prefix + ".")]
    return max(matches)[1] if matches else len(LAYERS)


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Every import of a higher layer, and of one stage by another."""
    found = []
    for module, targets in sorted(graph.items()):
        for target in sorted(targets):
            if layer_of(target) > layer_of(module):
                found.append(f"{module} -> {target} (a higher layer)")
            elif module.startswith("components.stages.") and \
                    target.startswith("components.stages."):
                found.append(f"{module} -> {target} (a stage imports another)")
    return found


def functions(path: Path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node.name, node.lineno, node.end_lineno - node.lineno + 1


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("packages", nargs="*", default=list(DEFAULT_PACKAGES))
    parser.add_argument("--top", type=int, default=10)
    parser.add_argument("--check", action="store_true", help="exit 1 on an upward import")
    args = parser.parse_args(argv)
    found = modules([p for p in args.packages if (ROOT / p).is_dir()])
    graph = {name: imports_of(path, set(found), name) for name, path in found.items()}
    components = strongly_connected(graph)
    level = floors(graph, components)

    print("## Lines per file")
    for path in sorted(found.values(), key=lambda path: -len(path.read_text().splitlines())):
        print(f"{len(path.read_text().splitlines()):6d}  {path.relative_to(ROOT)}")
    print(f"\n## The {args.top} longest functions")
    longest = sorted(((length, f"{path.relative_to(ROOT)}:{line} {fn}()")
                      for path in found.values() for fn, line, length in functions(path)),
                     reverse=True)
    for length, where in longest[: args.top]:
        print(f"{length:6d}  {where}")
    print("\n## Import floors (0 imports no project module)")
    for floor in sorted(set(level.values())):
        members = sorted(name for name, value in level.items() if value == floor)
        print(f"{floor:3d}: {', '.join(members)}")
    circles = [c for c in components if len(c) > 1]
    print("\n## Circles")
    print("\n".join(" <-> ".join(c) for c in circles) if circles else "none")
    upward = upward_imports(graph)
    print("\n## Upward imports")
    print("\n".join(upward) if upward else "none")
    return 1 if args.check and (upward or circles) else 0


if __name__ == "__main__":
    sys.exit(main())
