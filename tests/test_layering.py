"""Layers point down only, and no module is part of an import cycle.

    training -> zoo -> data_index -> zoo_common
    inside zoo: cli -> serve -> interp -> eval -> registry -> engine -> models -> store -> config -> (flat modules,
    stats)

Checked statically (imports inside functions count too; `if TYPE_CHECKING:` blocks do not run and
do not count) and by importing every module.
"""
import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("training", "zoo", "data_index", "zoo_common", "manifests")
# package -> top-level names it must never import
FORBIDDEN = {
    "zoo_common": {"torch", "transformers", "zoo", "training", "data_index"},
    "data_index": {"torch", "transformers", "zoo", "training"},
    "zoo": {"training"},
}
# The CLI may start training lazily for `zoo train`, inside a function, never at import time.
LAZY_TRAINING_ALLOWED = {"zoo.cli", "zoo.cli.train", "zoo.cli.branch"}
# zoo's sub-packages, top first: a module may import its own level or any level below it. Flat
# modules of zoo (environment, cache) and zoo.stats are the bottom level.
ZOO_LEVELS = ("cli", "serve", "interp", "eval", "registry", "engine", "models", "store", "config")


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for file in sorted((ROOT / package).rglob("*.py")):
            parts = file.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = file
    return found


def _imports(file: Path, name: str, modules: dict, *, top_level_only: bool = False) -> set[str]:
    """The modules of ours (or, for other packages, their top-level names) that `file` imports."""
    tree = ast.parse(file.read_text(), filename=str(file))
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", None)) == "TYPE_CHECKING":
            skip |= {id(n) for part in node.body for n in ast.walk(part)}
    package = name if file.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    if top_level_only:  # what runs at import time: everything outside function bodies
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                skip |= {id(n) for part in node.body for n in ast.walk(part)}
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        targets = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        for target in targets:
            while target and target not in modules and "." in target:
                target = target.rpartition(".")[0]
            if target in modules or target.split(".")[0] not in PACKAGES:
                found.add(target if target in modules else target.split(".")[0])
    found.discard(name)
    return found


def _zoo_level(name: str) -> int:
    parts = name.split(".")
    if len(parts) > 2 and parts[1] in ZOO_LEVELS or len(parts) == 2 and parts[1] in ZOO_LEVELS:
        return len(ZOO_LEVELS) - ZOO_LEVELS.index(parts[1])
    return 0


def test_static_imports_point_down():
    modules, problems = _modules(), []
    for name, file in modules.items():
        top = name.split(".")[0]
        lazy_ok = name in LAZY_TRAINING_ALLOWED
        imported = _imports(file, name, modules)
        at_import = _imports(file, name, modules, top_level_only=True) if lazy_ok else imported
        for target in sorted(at_import if lazy_ok else imported):
            if target.split(".")[0] in FORBIDDEN.get(top, ()):
                problems.append(f"{name} imports {target}")
        if top == "zoo" and name != "zoo":
            for target in sorted(t for t in imported if t.startswith("zoo.")):
                if _zoo_level(target) > _zoo_level(name):
                    problems.append(f"{name} imports {target}, a layer above it inside zoo")
    assert not problems, "layering broken:\n" + "\n".join(problems)


def test_no_module_is_part_of_an_import_cycle():
    modules = _modules()
    graph = {name: {t for t in _imports(file, name, modules) if t in modules}
             for name, file in modules.items()}
    # a package's __init__ is imported before its modules: that edge is no cycle of ours
    for name in graph:
        graph[name] = {t for t in graph[name] if not name.startswith(t + ".")}
    index, low, stack, on_stack, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(node):  # Tarjan's strongly connected components
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for node in graph:
        if node not in index:
            visit(node)
    assert not cycles, f"import cycles: {cycles}"


def test_the_layering_check_sees_a_violation(tmp_path):
    """The checker itself: a store module importing the registry is reported."""
    file = tmp_path / "bad.py"
    file.write_text("def f():\n    from zoo.registry.snapshots import snapshot\n")
    modules = _modules()
    imported = _imports(file, "zoo.store.bad", modules)
    assert "zoo.registry.snapshots" in imported
    assert _zoo_level("zoo.registry.snapshots") > _zoo_level("zoo.store.bad")


def test_the_import_time_check_sees_imports_nested_in_if_and_try(tmp_path):
    file = tmp_path / "lazy.py"
    file.write_text("try:\n    import training.loop\nexcept ImportError:\n    pass\n"
                    "def f():\n    import training.sweep\n")
    at_import = _imports(file, "zoo.cli.lazy", _modules(), top_level_only=True)
    assert "training.loop" in at_import and "training.sweep" not in at_import


def test_no_source_file_is_over_500_lines():
    long = {str(f.relative_to(ROOT)): n for f in _modules().values()
            if (n := len(f.read_text().splitlines())) > 500}
    assert not long, long


def _loaded_after_import(package: str) -> set[str]:
    code = (
        "import importlib, pkgutil, sys\n"
        f"pkg = importlib.import_module({package!r})\n"
        "for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
        "    if m.name.endswith('__main__'): continue\n"
        "    importlib.import_module(m.name)\n"
        "print(' '.join(sorted({n.split('.')[0] for n in sys.modules})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return set(out.stdout.split())


def test_data_index_loads_no_torch_transformers_or_zoo():
    loaded = _loaded_after_import("data_index")
    assert not (loaded & FORBIDDEN["data_index"]), loaded & FORBIDDEN["data_index"]


def test_zoo_loads_no_training():
    loaded = _loaded_after_import("zoo")
    assert "training" not in loaded
