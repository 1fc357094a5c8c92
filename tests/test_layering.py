"""Layers point down only, by any route, and no module is part of an import cycle.

    training -> zoo -> data_index -> zoo_common
    inside zoo: cli -> serve -> interp -> dictionaries -> eval -> registry -> engine -> models
                -> store -> config
                -> (flat modules, stats)

A route is anything that can load a module of ours: an import statement (at module level or
inside a function; `if TYPE_CHECKING:` blocks do not run and do not count), a string that names
one of our modules (a lazy table, an argument to import_module, `-m PACKAGE` in a command), and
an import call whose target is computed. The only routes from zoo up to training are the ones
zoo/write_side.py declares, taken only by the modules it names for them.
"""
import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("training", "zoo", "data_index", "zoo_common", "manifests")
# package -> top-level names it must never reach
FORBIDDEN = {
    "zoo_common": {"torch", "transformers", "zoo", "training", "data_index"},
    "data_index": {"torch", "transformers", "zoo", "training"},
    "zoo": {"training"},
}
# zoo's sub-packages, top first: a module may import its own level or any level below it. Flat
# modules of zoo (environment, cache, write_side) and zoo.stats are the bottom level.
ZOO_LEVELS = ("cli", "serve", "interp", "attribution", "dictionaries", "eval", "registry", "engine", "models",
              "store", "config")
WRITE_SIDE = "zoo.write_side"
# Modules that import a module named by a variable: each holds its possible targets as strings
# of its own (a lazy table), which are routes in their own right and checked as such.
COMPUTED_IMPORTS_ALLOWED = {"zoo": "_PUBLIC", "zoo.cli": "COMMAND_MODULES", WRITE_SIDE: "ROUTES"}
_IMPORT_CALLS = {"import_module", "__import__", "find_spec", "run_module", "import_string"}
_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for file in sorted((ROOT / package).rglob("*.py")):
            parts = file.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = file
    return found


def _resolve(target: str, modules: dict) -> str | None:
    """Our module that `target` (a dotted name, maybe ending in an attribute) loads; the top-level
    name for other packages; None for a name that is no module path at all."""
    probe = target
    while probe and probe not in modules and "." in probe:
        probe = probe.rpartition(".")[0]
    if probe in modules:
        return probe
    return target.split(".")[0] if target.split(".")[0] not in PACKAGES else None


def _docstrings(tree: ast.AST) -> set[int]:
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                skip.add(id(body[0].value))
    return skip


def _call_name(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")


def routes(file: Path, name: str, modules: dict, *, top_level_only: bool = False) -> dict[str, str]:
    """Every module of ours (or, for other packages, the top-level name) that `file` can load,
    each with how: {target: "import" | "string" | "computed import"}. An import call whose target
    cannot be read off the source is reported as the target "?"."""
    tree = ast.parse(file.read_text(), filename=str(file))
    skip = _docstrings(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", None)) == "TYPE_CHECKING":
            skip |= {id(n) for part in node.body for n in ast.walk(part)}
    if top_level_only:  # what runs at import time: everything outside function bodies
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                skip |= {id(n) for part in node.body for n in ast.walk(part)}
    package = name if file.name == "__init__.py" else name.rpartition(".")[0]
    found: dict[str, str] = {}

    def add(target: str | None, how: str) -> None:
        if target and target != name:
            found.setdefault(target, how)

    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(_resolve(alias.name, modules), "import")
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for target in [f"{base}.{alias.name}" for alias in node.names] + [base]:
                add(_resolve(target, modules), "import")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
            if _DOTTED.fullmatch(text) and "." in text and text.split(".")[0] in PACKAGES:
                add(_resolve(text, modules), "string")
        elif isinstance(node, (ast.Tuple, ast.List)):  # ("training", "f") tables, ["-m", "training"]
            items = [e.value if isinstance(e, ast.Constant) else None for e in node.elts]
            for k, item in enumerate(items):
                if item in PACKAGES and (k == 0 or items[k - 1] == "-m"):
                    add(item, "string")
        elif isinstance(node, ast.Call) and _call_name(node) in _IMPORT_CALLS and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                add(_resolve(arg.value, modules) or arg.value, "computed import")
            elif isinstance(arg, ast.JoinedStr) and arg.values and isinstance(arg.values[0], ast.Constant):
                prefix = arg.values[0].value.rstrip(".")  # f"zoo.{name}": somewhere in zoo
                add(_resolve(prefix, modules) or prefix or "?", "computed import")
            else:
                add("?", "computed import")
    return found


def _zoo_level(name: str) -> int:
    parts = name.split(".")
    if len(parts) >= 2 and parts[1] in ZOO_LEVELS:
        return len(ZOO_LEVELS) - ZOO_LEVELS.index(parts[1])
    return 0


def declared_routes() -> dict[str, tuple[str, tuple[str, ...]]]:
    """zoo/write_side.py's ROUTES, read from its source: route -> (training module, users)."""
    tree = ast.parse((ROOT / "zoo" / "write_side.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "ROUTES":
            table = ast.literal_eval(node.value)
            return {route: (module, tuple(users)) for route, (module, _, users) in table.items()}
    raise AssertionError("zoo/write_side.py has no ROUTES table")


def layering_problems(name: str, found: dict[str, str]) -> list[str]:
    """What is wrong with module `name` reaching `found`: forbidden packages, levels inside zoo,
    routes up to training that zoo/write_side.py does not declare."""
    problems = []
    top = name.split(".")[0]
    declared = declared_routes()
    allowed_up = {module for module, _ in declared.values()}
    route_users = {user for _, users in declared.values() for user in users}
    for target, how in sorted(found.items()):
        if target == "?":
            if name not in COMPUTED_IMPORTS_ALLOWED:
                problems.append(f"{name} imports a module it computes at run time ({how}); "
                                f"name it in a table of strings, or go through {WRITE_SIDE}")
            continue
        if name == WRITE_SIDE and how == "string" and (target in allowed_up or target in route_users):
            continue  # the table itself: its routes (taken at call time) and their users
        reaches = target.split(".")[0]
        if reaches in FORBIDDEN.get(top, ()):
            problems.append(f"{name} reaches {target} ({how}), which its layer must never reach"
                            + (f"; routes up from zoo go through {WRITE_SIDE}" if top == "zoo" else ""))
        if target == WRITE_SIDE and name not in route_users:
            problems.append(f"{name} imports {WRITE_SIDE} but is no declared user of a route up "
                            f"(users: {', '.join(sorted(route_users))})")
        if top == "zoo" and name != "zoo" and target.startswith("zoo.") and _zoo_level(target) > _zoo_level(name):
            problems.append(f"{name} reaches {target} ({how}), a layer above it inside zoo")
    return problems


def test_every_route_points_down():
    modules, problems = _modules(), []
    for name, file in modules.items():
        problems += layering_problems(name, routes(file, name, modules))
    assert not problems, "layering broken:\n" + "\n".join(problems)


def test_declared_routes_exist_and_are_the_only_way_up():
    modules = _modules()
    declared = declared_routes()
    for route, (module, users) in declared.items():
        assert module in modules and module.startswith("training."), (route, module)
        for user in users:
            assert user in modules, (route, user)
            assert WRITE_SIDE in routes(modules[user], user, modules), f"{user} never takes {route}"
    import zoo.write_side

    for route in declared:
        assert callable(zoo.write_side.reach(route))


def _check_planted(tmp_path, source: str, name: str = "zoo.store.planted") -> list[str]:
    file = tmp_path / "planted.py"
    file.write_text(source)
    modules = _modules()
    return layering_problems(name, routes(file, name, modules))


def test_planted_routes_up_are_caught(tmp_path):
    """The checker itself: every spelling of a route up fails, in any zoo module."""
    planted = [
        "import training.loop\n",
        "def f():\n    from training.branching import branch\n",
        "import importlib\ndef f():\n    return importlib.import_module('training.loop')\n",
        "def f():\n    return __import__('training')\n",
        "_LAZY = {'train': ('training.sweep', 'train')}\n",
        "_LAZY = {'train': ('training', 'sweep')}\n",
        "import importlib\ndef f(x):\n    return importlib.import_module(x)\n",
        "import importlib\ndef f(x):\n    return importlib.import_module(f'training.{x}')\n",
        "import subprocess, sys\ndef f():\n    subprocess.run([sys.executable, '-m', 'training'])\n",
        "from zoo.write_side import reach\n",
        "def f():\n    from zoo.registry.snapshots import snapshot\n",
    ]
    for source in planted:
        assert _check_planted(tmp_path, source), f"not caught:\n{source}"
    # the table's own module may name its routes as strings, never import them
    assert _check_planted(tmp_path, "import training.sweep\n", name=WRITE_SIDE)
    assert _check_planted(tmp_path, "X = 'training.loop'\n", name=WRITE_SIDE)


def test_ordinary_code_is_not_flagged(tmp_path):
    fine = [
        "from zoo.store.run_store import RunStore\n",
        "STATUS = 'training'\n",
        '"""Docstring naming training.loop, the loop."""\n',
        "import importlib\ndef f():\n    return importlib.import_module('zoo.config.names')\n",
    ]
    for source in fine:
        assert not _check_planted(tmp_path, source), source


def test_the_import_time_check_sees_imports_nested_in_if_and_try(tmp_path):
    file = tmp_path / "lazy.py"
    file.write_text("try:\n    import training.loop\nexcept ImportError:\n    pass\n"
                    "def f():\n    import training.sweep\n")
    at_import = routes(file, "zoo.cli.lazy", _modules(), top_level_only=True)
    assert "training.loop" in at_import and "training.sweep" not in at_import


def test_no_module_is_part_of_an_import_cycle():
    modules = _modules()
    graph = {name: {t for t in routes(file, name, modules) if t in modules}
             for name, file in modules.items()}
    # a package's __init__ is imported before its modules: that edge is no cycle of ours; the
    # declared routes up run at call time, after both sides are imported (and the table names
    # its users as strings, which load nothing)
    table = {m for module, users in declared_routes().values() for m in (module, *users)}
    for name in graph:
        graph[name] = {t for t in graph[name] if not name.startswith(t + ".")
                       and not (name == WRITE_SIDE and t in table)}
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


def test_no_private_name_is_imported_across_modules():
    """`from x import _helper` couples two modules through what one of them calls private."""
    modules, problems = _modules(), []
    for name, file in modules.items():
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in PACKAGES:
                private = [a.name for a in node.names if a.name.startswith("_")]
                if private:
                    problems.append(f"{name} imports {', '.join(private)} from {node.module}")
    assert not problems, "\n".join(problems)


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
