"""Layers point down only: training -> zoo -> data_index. Checked statically and by importing."""
import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {
    "data_index": {"torch", "transformers", "zoo", "training"},
    "zoo": {"training"},
}
# The CLI may start training lazily for `zoo train`, inside a function, never at import time.
LAZY_ALLOWED = {("zoo", "cli.py"), ("zoo", "cli_train.py")}


def _imports(tree: ast.AST, top_level_only: bool) -> set[str]:
    nodes = tree.body if top_level_only else ast.walk(tree)
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def test_static_imports_point_down():
    problems = []
    for package, forbidden in FORBIDDEN.items():
        for file in sorted((ROOT / package).rglob("*.py")):
            lazy_ok = (package, file.name) in LAZY_ALLOWED
            tree = ast.parse(file.read_text(), filename=str(file))
            bad = _imports(tree, top_level_only=lazy_ok) & forbidden
            if bad:
                problems.append(f"{file.relative_to(ROOT)} imports {sorted(bad)}")
    assert not problems, "layering broken:\n" + "\n".join(problems)


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
