"""The built wheel is the whole program: it ships the built-in manifests as package data and
every package, so an installed Model Zoo runs `zoo train tiny --plan` from any folder, even one
with a `manifests/` folder of its own."""
from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_ships_the_manifests_and_plans_tiny_from_an_empty_folder(tmp_path):
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path / "dist"),
         str(ROOT)], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert built.returncode == 0, built.stderr[-3000:]
    wheel, = (tmp_path / "dist").glob("model_zoo-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        archive.extractall(tmp_path / "site")
    assert {"manifests/tiny.yaml", "manifests/toy-interp.yaml", "zoo_common/location.py",
            "zoo/cli/__init__.py", "data_index/order.py", "training/loop.py"} <= names
    empty = tmp_path / "empty"
    (empty / "manifests").mkdir(parents=True)  # a user's own folder of that name must not hide
    (empty / "manifests" / "__init__.py").write_text("")  # the built-ins ('' is on sys.path)
    (empty / "manifests" / "mine.yaml").write_text("family: mine\n")
    # only the unpacked wheel on the path (before site-packages, where an editable install of
    # this checkout may live): the installed code must find its manifests by itself
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    planned = subprocess.run(
        [sys.executable, "-c", "import sys, zoo; from zoo.cli import main; "
         "print(zoo.__file__, file=sys.stderr); sys.exit(main(['train', 'tiny', '--plan']))"],
        capture_output=True, text=True, timeout=300, cwd=empty, env=env)
    assert planned.returncode == 0, planned.stderr
    assert str(tmp_path / "site") in planned.stderr  # the wheel's code ran, not this checkout
    lines = planned.stdout.splitlines()
    assert len(lines) == 9 and lines[0].startswith("zoo train tiny --only 1l64/1 --store ")
