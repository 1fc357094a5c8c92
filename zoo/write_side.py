"""The one table of routes from zoo up to the write side (training/, the layer above zoo).

training/ (the loop, sweeps, branching, distributed launch) imports zoo; zoo reaches up only at
call time, through the routes below, so that reading the zoo never imports training. Each route
names the zoo modules allowed to take it. tests/test_layering.py fails on any other route up,
however it is spelled (an import statement, a string, import_module, a lazy table), and on any
module not named here that imports this one.
"""
from __future__ import annotations

from importlib import import_module

# route -> (module in training, attribute, the zoo modules that may take the route)
ROUTES = {
    "train": ("training.sweep", "train", ("zoo",)),  # zoo.train
    "branch": ("training.branching", "branch", ("zoo", "zoo.attribution.check")),  # zoo.branch,
    # and the attribution check's retraining of a window
    "train_command": ("training.commands", "train_command", ("zoo.cli.train",)),  # zoo train
    "branch_command": ("training.commands", "branch_command", ("zoo.cli.branch",)),  # zoo branch
}


def reach(route: str):
    """The training function behind `route`, imported now (not before it is needed)."""
    module, attribute, _ = ROUTES[route]
    return getattr(import_module(module), attribute)
