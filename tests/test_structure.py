"""The package's shape: stages import only earlier stages, no import circles, modules stay small."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "camserver"
MAX_LINES = 420  # "modules under ~400 lines" (STYLE.md)

# The data flows camera -> ingest -> detect -> events -> integrations / web; app wires them, cli starts
# them, sim drives them from outside. Modules at the top level below the stages are shared by all.
STAGES = ["ingest", "motion", "detect", "events", "record", "integrations", "board", "web", "app", "run", "cli", "sim",
          "infer"]
SHARED = {"config", "clock", "hub", "logsafe", "auth", "supervise", "storage", "__init__", "__main__"}


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def stage_of(module: str) -> str | None:
    """The stage a camserver module belongs to; None for the shared top-level modules."""
    parts = module.split(".")
    if len(parts) == 1:
        return None
    head = parts[1]
    return None if head in SHARED else head


def imports_of(path: Path) -> set[str]:
    """camserver modules imported by the file (absolute and relative), run-time imports included."""
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("camserver")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("camserver"):
                found.add(target)
                found |= {f"{target}.{a.name}" for a in node.names}
    modules = {module_name(p) for p in PACKAGE.rglob("*.py")}
    return {m for m in found if m in modules and m != module}


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) for p in PACKAGE.rglob("*.py")}


def test_no_stage_imports_a_later_stage():
    """A stage imports only shared modules, itself and earlier stages (the data flow, read from the imports)."""
    wrong = []
    for module, targets in graph().items():
        here = stage_of(module)
        for target in targets:
            there = stage_of(target)
            if here is None and there is not None and module != "camserver.__main__":
                wrong.append(f"shared {module} imports stage {target}")
            elif here and there and STAGES.index(there) > STAGES.index(here):
                wrong.append(f"{module} ({here}) imports {target} ({there})")
    assert not wrong, "\n".join(sorted(wrong))


def test_no_import_circles():
    """No module reaches itself through its imports."""
    edges = graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in edges.get(node, ()):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(path[path.index(nxt):] + [nxt]) if nxt in path else f"{node} -> {nxt}")
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for node in edges:
        if node not in state:
            visit(node, [node])
    # a package's __init__ importing its own modules is how packages re-export: not a circle
    real = [c for c in cycles if not all(part.startswith(c.split(" -> ")[0].rsplit(".", 1)[0]) for part in c.split(" -> "))]
    assert not real, "\n".join(real)


def test_modules_stay_small():
    """No module is much over 400 lines."""
    sizes = {module_name(p): len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py")}
    big = {m: n for m, n in sizes.items() if n > MAX_LINES}
    assert not big, big


def test_readme_layout_names_every_file_of_the_package():
    """The README's layout section names every file `git ls-files camserver` would list (by file name, or a
    data folder such as static/ as a whole)."""
    readme = (PACKAGE.parent / "README.md").read_text()
    layout = readme[readme.index("## Layout"):]
    layout = layout[: layout.index("```", layout.index("```") + 3)]
    files = [p for p in PACKAGE.rglob("*") if p.is_file() and "__pycache__" not in p.parts and p.name != "__init__.py"]
    def named(p: Path) -> bool:
        return p.name in layout or (p.suffix != ".py" and f"{p.parent.name}/" in layout)

    missing = sorted(str(p.relative_to(PACKAGE)) for p in files if not named(p))
    assert not missing, f"README layout does not mention: {missing}"
