"""Which code measured a stored evaluation result, so that results of changed code are not kept.

A user metric is identified by its function's own source text, a built-in one by the source of
the module that defines the built-ins (`zoo/eval_metrics.py`: any change there re-measures them
all). What a function calls is not followed: after changing a helper it uses, evaluate with
`recompute=True` / `zoo eval --force`. Where the source cannot be read (a lambda typed at a
prompt, a functools.partial, a C function), the id is "" (unknown), which never triggers a
re-evaluation, as before this id existed.
"""
from __future__ import annotations

import functools
import hashlib
import inspect
from collections.abc import Callable

from zoo import eval_metrics


def metric_code_id(metric: str | Callable) -> str:
    """16 hex digits of sha256 over the metric's source; "" when the source cannot be read."""
    if isinstance(metric, str):  # a built-in metric's name
        target = eval_metrics
    elif inspect.isfunction(metric) or inspect.ismethod(metric):
        target = metric
    elif isinstance(metric, functools.partial):
        return ""  # its class is functools', and its arguments need not have a stable repr
    elif callable(metric) and not inspect.isbuiltin(metric):
        target = type(metric)  # an object with __call__: its class's source
    else:
        return ""
    try:
        source = inspect.getsource(target)
    except (OSError, TypeError):
        return ""
    return hashlib.sha256(source.encode()).hexdigest()[:16]
