"""Register the zoo-toy architecture with transformers' Auto classes when transformers is imported.

Why not simply at `import zoo`: that would import torch and transformers (~4 s) for anything that
touches the package, `zoo --help` included. Every use of the Auto classes imports transformers
first, so registering right after that import (or at once, if it already happened) keeps the
promise "after `import zoo`, AutoModelForCausalLM knows zoo-toy" at no cost to anything else.
"""
from __future__ import annotations

import importlib.abc
import importlib.util
import sys


def register_when_transformers_loads() -> None:
    if "transformers" in sys.modules:
        _register()
    elif not any(isinstance(finder, _AfterTransformersLoads) for finder in sys.meta_path):
        sys.meta_path.insert(0, _AfterTransformersLoads())


def _register() -> None:
    from zoo.toy_model import register_toy_model

    register_toy_model()


class _AfterTransformersLoads(importlib.abc.MetaPathFinder):
    """Finds nothing itself: it lets the normal finders locate transformers, then has the module's
    own loader run `_register` once the package has executed. Removes itself on first use."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "transformers":
            return None
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        loader, execute = spec.loader, spec.loader.exec_module

        def exec_module(module) -> None:
            try:
                execute(module)
            finally:
                del loader.exec_module  # back to the loader's own method
            _register()

        loader.exec_module = exec_module  # this module's loader instance only
        return spec
