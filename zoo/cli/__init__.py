"""`zoo`: the command line. Each command group lives in its own module and registers here."""
from __future__ import annotations

import argparse
import difflib
import importlib
import os
import sys

from zoo_common.errors import ZooError
from zoo.cli.common import fold_branch

DESCRIPTION = """\
Model Zoo: reproducible families of small transformers.

The store is taken from --store, else the ZOO_STORE environment variable, else ./zoo-store.
"""


# Each module adds its commands; `zoo train` reaches the training package lazily.
COMMAND_MODULES = (
    "zoo.cli.train",
    "zoo.cli.branch",
    "zoo.cli.store",
    "zoo.cli.replay",
    "zoo.cli.batches",
    "zoo.cli.registry",
    "zoo.cli.evaluation",
    "zoo.cli.cards",
    "zoo.cli.dictionaries",
    "zoo.cli.attribute",
    "zoo.cli.plot",
    "zoo.cli.serve",
    "data_index.cli",
)


class ZooArgumentParser(argparse.ArgumentParser):
    """argparse, except that a mistyped option is reported as such: plain argparse reports
    `--sed 1` as "the following arguments are required: --seed", hiding the typo."""

    def parse_known_args(self, args=None, namespace=None):
        self._given = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def error(self, message: str):
        if "required" in message:
            known = [o for o in self._option_string_actions if o.startswith("--")]
            # argparse takes a unique prefix (--se for --seed): only a token no option starts
            # with is a typo
            flags = [token.split("=", 1)[0] for token in getattr(self, "_given", [])
                     if token.startswith("--")]
            unknown = [flag for flag in flags if not any(o.startswith(flag) for o in known)]
            if unknown:
                close = difflib.get_close_matches(unknown[0], known, n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                message = f"unrecognized option {unknown[0]}{hint}; {message}"
        super().error(message)


def build_parser() -> argparse.ArgumentParser:
    parser = ZooArgumentParser(
        prog="zoo", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        fold_branch(args)
        code = int(args.handler(args) or 0)
        sys.stdout.flush()  # output into a closed pipe fails here (below), not at exit
        return code
    except ZooError as exc:
        print(f"zoo: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `zoo batch ... | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit's flush
        return 0
    except OSError as exc:  # a last resort: filesystem trouble outside the store's own checks
        where = f": {exc.filename}" if exc.filename else ""
        print(f"zoo: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as stop:
        said = str(stop) or ("interrupted; everything written is valid: the same command goes on "
                             "from the last keyframe")
        print(f"zoo: {said}", file=sys.stderr)
        return 130

