"""`import zoo` and `zoo --help` do not pay for torch and transformers, and the zoo-toy
architecture is registered by an explicit call, not by an import hook."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, check=False)


def test_import_zoo_and_build_the_cli_without_torch_or_import_hooks():
    done = _python(
        "import sys\n"
        "finders = list(sys.meta_path)\n"
        "import zoo\n"
        "from zoo.cli import build_parser\n"
        "build_parser()\n"
        "heavy = [m for m in ('torch', 'transformers') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "assert sys.meta_path == finders, sys.meta_path\n"
        "print(zoo.load.__module__, zoo.stats.__name__, zoo.open_run.__module__)\n"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["zoo.registry.loading", "zoo.stats", "zoo.store.catalog"]


def test_register_toy_model_makes_the_auto_classes_know_zoo_toy_and_unknown_names_fail():
    done = _python(
        "import transformers, zoo\n"
        "from transformers import AutoConfig, AutoModelForCausalLM\n"
        "from zoo.models.toy import register_toy_model\n"
        "register_toy_model(); register_toy_model()  # idempotent\n"
        "config = AutoConfig.for_model('zoo-toy', num_hidden_layers=1, hidden_size=16, "
        "num_attention_heads=2, intermediate_size=32, vocab_size=32)\n"
        "print(type(AutoModelForCausalLM.from_config(config)).__name__)\n"
        "try:\n"
        "    zoo.no_such_function\n"
        "except AttributeError as exc:\n"
        "    print('AttributeError', exc)\n"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "ZooToyForCausalLM", "AttributeError module 'zoo' has no attribute 'no_such_function'"]
