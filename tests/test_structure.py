"""The package's shape: stages import only earlier stages, no import circles, modules stay small."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "camserver"
MAX_LINES = 420  # "modules under ~400 lines" (STYLE.md)

# The data flows camera -> ingest -> detect -> events -> integrations / web; app wires them, cli starts
# them, sim drives them from outside. Modules at the top level below the stages are shared by all.
STAGES = ["ingest", "motion", "detect", "events", "record", "integrations", "board", "web", "app", "run", "cli", "sim",
          "infer", "docsgen"]  # docsgen reads every stage to write the docs' reference pages
SHARED = {"config", "clock", "hub", "logsafe", "jsonbody", "jsonsafe", "auth", "passwords", "supervise", "storage", "__init__",
          "__main__"}


def module_name(path: Path, package: Path = PACKAGE) -> str:
    rel = path.relative_to(package.parent).with_suffix("")
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


def imports_of(path: Path, package: Path = PACKAGE, modules: set[str] | None = None) -> set[str]:
    """The package's modules imported by the file (absolute and relative), run-time and TYPE_CHECKING imports included."""
    module = module_name(path, package)
    here = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    root = package.name
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name == root or a.name.startswith(root + ".")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")[: len(here.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target == root or target.startswith(root + "."):
                found.add(target)
                found |= {f"{target}.{a.name}" for a in node.names}
    if modules is None:
        modules = {module_name(p, package) for p in package.rglob("*.py")}
    return {m for m in found if m in modules and m != module}


def graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """module -> the package's modules it imports."""
    files = list(package.rglob("*.py"))
    modules = {module_name(p, package) for p in files}
    return {module_name(p, package): imports_of(p, package, modules) for p in files}


def import_circles(edges: dict[str, set[str]]) -> list[str]:
    """Every import circle, as "a -> b -> a", but a package's __init__ importing its own modules (how packages
    re-export: that edge never closes a circle). Any other circle counts, inside a package too."""
    def reexport(module: str, target: str) -> bool:
        return target.startswith(module + ".")  # only a package (its __init__) has modules below its name

    kept = {m: {t for t in targets if not reexport(m, t)} for m, targets in edges.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    circles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(kept.get(node, ())):
            if state.get(nxt) == 1:
                circles.append(" -> ".join(path[path.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for node in sorted(kept):
        if node not in state:
            visit(node, [node])
    return circles


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
    """No module reaches itself through its imports (inside a package too); only __init__ re-exports are excused."""
    circles = import_circles(graph())
    assert not circles, "\n".join(circles)


def _plant(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "pkg"


def test_a_circle_planted_inside_a_package_is_found(tmp_path):
    """The graph code finds a circle between two modules of one subpackage (one side under TYPE_CHECKING, as
    storage/database.py <-> storage/budget.py was), while __init__ re-exports alone are no circle."""
    reexports = {"pkg/__init__.py": "from .store import Store\nfrom . import sub\n",
                 "pkg/store.py": "from pkg.sub import helper\n",
                 "pkg/sub/__init__.py": "from .helper import help_me\n",
                 "pkg/sub/helper.py": "from .. import store_constants\n",
                 "pkg/store_constants.py": "X = 1\n"}
    clean = _plant(tmp_path / "clean", reexports)
    assert import_circles(graph(clean)) == []
    planted = _plant(tmp_path / "planted", {
        **reexports,
        "pkg/sub/budget.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .database import Database\n",
        "pkg/sub/database.py": "from .budget import Budget\n",
    })
    assert import_circles(graph(planted)) == ["pkg.sub.budget -> pkg.sub.database -> pkg.sub.budget"]


def test_modules_stay_small():
    """No module is much over 400 lines."""
    sizes = {module_name(p): len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py")}
    big = {m: n for m, n in sizes.items() if n > MAX_LINES}
    assert not big, big


def _layout_block(text: str, start: str) -> str:
    """The first code block after `start` in `text` ("" when `start` is not there)."""
    if start not in text:
        return ""
    text = text[text.index(start):]
    return text[: text.index("```", text.index("```") + 3)]


def test_docs_layout_names_every_file_of_the_package():
    """The docs' layout of the code (docs/explanation/code-layout.md) names every file
    `git ls-files camserver` would list (by file name, or a data folder such as static/ as a whole)."""
    layout = _layout_block((PACKAGE.parent / "docs" / "explanation" / "code-layout.md").read_text(),
                           "# The layout of the code")
    files = [p for p in PACKAGE.rglob("*") if p.is_file() and "__pycache__" not in p.parts and p.name != "__init__.py"]
    def named(p: Path) -> bool:
        return p.name in layout or (p.suffix != ".py" and f"{p.parent.name}/" in layout)

    missing = sorted(str(p.relative_to(PACKAGE)) for p in files if not named(p))
    assert not missing, f"docs/explanation/code-layout.md does not mention: {missing}"


DATABASE_INSIDES = {"conn", "_conn", "executor", "_executor"}


def database_reach_ins(source: str) -> list[str]:
    """`x.conn` / `x.executor` (or `_conn` / `_executor`) where x names a database (`database`, `db`, `_db`,
    `self.database`, ...): a module reaching past `Database.run` / `use` / `submit` / `connection()`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr in DATABASE_INSIDES:
            owner = node.value.attr if isinstance(node.value, ast.Attribute) else getattr(node.value, "id", "")
            if "database" in owner.lower() or owner.lower().strip("_") == "db":
                found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


def test_only_the_database_module_touches_its_connection_and_thread():
    """storage/database.py alone holds the connection and its executor; every other module (and test) goes
    through Database.run / use / submit, or connection() on the database's thread."""
    own = PACKAGE / "storage" / "database.py"
    files = [p for p in PACKAGE.rglob("*.py") if p != own] + sorted((PACKAGE.parent / "tests").glob("*.py"))
    offenders = {str(p.relative_to(PACKAGE.parent)): hits for p in files
                 if (hits := database_reach_ins(p.read_text(encoding="utf-8")))}
    assert not offenders, offenders
    planted = "async def f(database, db):\n    a = database.conn\n    db.executor.submit(g)\n    self._db._conn\n"
    assert len(database_reach_ins(planted)) == 3  # the check itself finds what it looks for


def patched_wiring(source: str) -> list[str]:
    """Assignments to another object's attribute (`self.x.y = ...`) and appends to another object's list
    (`self.x.y.append(...)`) in a module: wiring by patching, which the stages' constructors replace."""
    found = []
    for node in ast.walk(ast.parse(source)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AugAssign) else []
        for target in targets:
            if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Attribute):
                found.append(f"line {node.lineno}: {ast.unparse(target)} = ...")
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in ("append", "insert")
                and isinstance(node.func.value, ast.Attribute) and isinstance(node.func.value.value, ast.Attribute)):
            found.append(f"line {node.lineno}: {ast.unparse(node.func)}(...)")
    return found


def test_app_builds_stages_and_enters_them_without_patching_them():
    """app.py wires by constructor ports: no stage's attribute is set and no stage's list appended to from outside;
    the one exception is telling the supervisor, at stop, that its tasks' ends are expected."""
    found = patched_wiring((PACKAGE / "app.py").read_text())
    assert [f for f in found if "self.supervisor.stopping" not in f] == []
    planted = "class A:\n    def f(self):\n        self.hub.in_use = g\n        self.events.listeners.append(h)\n"
    assert len(patched_wiring(planted)) == 2
