#!/usr/bin/env python3
"""Check the package's layering rules by reading imports (no module is imported).

    python scripts/check_layers.py        # prints each violation; exit 1 if any

The rules (README, "Architecture"): arrows never run backwards. A module's
imports are every `import` statement in it, at module level or inside a
function, followed transitively through mbdeploy's own modules, so a rule
cannot be dodged through a helper module.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "mbdeploy"
HEAVY = ("tensorflow", "keras", "coremltools", "onnx", "onnxruntime", "torch", "matplotlib", "ai_edge_litert")

# (modules the rule covers, forbidden prefixes, why)
RULES = [
    (("mbdeploy.devices",),
     ("mbdeploy.records", "mbdeploy.bench", "mbdeploy.runners", "mbdeploy.export", "mbdeploy.weights",
      "mbdeploy.evaluate", "tensorflow"),
     "a device moves bytes, runs commands and senses; it never imports records, the sweep, runners, "
     "exporters, weights, eval or TensorFlow"),
    (("mbdeploy.runners",), ("mbdeploy.export", "mbdeploy.weights", "tensorflow"),
     "runners never import exporters, weights or TensorFlow"),
    (("mbdeploy.report", "mbdeploy.compare", "mbdeploy.select"),
     ("mbdeploy.devices", "mbdeploy.runners", "mbdeploy.bench", "mbdeploy.export"),
     "the report, compare and select read records only; never devices, runners, the sweep or exporters"),
    (("mbdeploy.bench",), ("mbdeploy.export",), "the sweep never imports exporters"),
    (("mbdeploy.architecture",), HEAVY, "the family table imports nothing heavy"),
    (("mbdeploy.export",), ("mbdeploy.devices", "mbdeploy.runners", "mbdeploy.bench"),
     "exporters never import devices, runners or the sweep"),
]
LIBRARY_EXCEPT = ("mbdeploy.cli", "mbdeploy.__main__")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def imports_of(path: Path, name: str) -> tuple[set[str], list[str]]:
    """(modules imported, private names taken from other modules) of one file."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    private: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            if base == "__future__":
                continue
            found.add(base)
            for alias in node.names:
                found.add(f"{base}.{alias.name}")  # `from pkg import module` imports the module
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    private.append(f"{base}.{alias.name} (line {node.lineno})")
    return found, private


def main() -> int:
    files = {module_name(p): p for p in ROOT.rglob("*.py")}
    direct: dict[str, set[str]] = {}
    problems: list[str] = []
    for name, path in sorted(files.items()):
        found, private = imports_of(path, name)
        direct[name] = found
        problems += [f"{name}: takes the private name {item} from another module" for item in private]

    def closure(start: str) -> dict[str, str]:
        """Every module reachable from `start`, each with the chain that reaches it."""
        seen = {start: start}
        todo = [start]
        while todo:
            current = todo.pop()
            for target in direct.get(current, ()):
                if target in seen:
                    continue
                seen[target] = f"{seen[current]} -> {target}"
                if target in files:
                    todo.append(target)
        return seen

    for name in sorted(files):
        reach = closure(name)
        for covered, forbidden, why in RULES:
            if not under(name, covered):
                continue
            for target, chain in sorted(reach.items()):
                if target != name and under(target, forbidden) and not under(target, covered):
                    problems.append(f"{name}: {why}: {chain}")
                    break
        if not under(name, LIBRARY_EXCEPT):
            bad = [chain for target, chain in reach.items() if under(target, ("mbdeploy.cli",))]
            if bad:
                problems.append(f"{name}: the library never imports the CLI: {bad[0]}")
    for problem in problems:
        print(problem)
    print(f"{len(files)} modules, {len(problems)} layering problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
