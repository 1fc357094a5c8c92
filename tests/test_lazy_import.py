"""`import zoo` and `zoo --help` do not pay for torch and transformers, and the zoo-toy
architecture is still known to transformers' Auto classes once transformers is imported."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, check=False)


def test_import_zoo_and_build_the_cli_without_torch_then_auto_classes_know_zoo_toy():
    done = _python(
        "import sys, zoo\n"
        "from zoo.cli import build_parser\n"
        "build_parser()\n"
        "heavy = [m for m in ('torch', 'transformers') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "from transformers import AutoConfig, AutoModelForCausalLM\n"
        "config = AutoConfig.for_model('zoo-toy', num_hidden_layers=1, hidden_size=16, num_attention_heads=2, intermediate_size=32, vocab_size=32)\n"
        "model = AutoModelForCausalLM.from_config(config)\n"
        "print(type(model).__name__, zoo.load.__module__, zoo.stats.__name__)\n"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["ZooToyForCausalLM", "zoo.registry", "zoo.stats"]


def test_transformers_imported_first_still_gets_zoo_toy_and_unknown_names_fail():
    done = _python(
        "import transformers, zoo\n"
        "from transformers import AutoConfig\n"
        "print(type(AutoConfig.for_model('zoo-toy')).__name__)\n"
        "try:\n"
        "    zoo.no_such_function\n"
        "except AttributeError as exc:\n"
        "    print('AttributeError', exc)\n"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "ZooToyConfig", "AttributeError module 'zoo' has no attribute 'no_such_function'"]
