"""Arguments commands share: the store, seeds, counts, devices."""
from __future__ import annotations

import argparse

from zoo_common.arguments import count_argument

STORE_HELP = ("store folder or fsspec URL (s3://bucket/prefix, hf://...); default: $ZOO_STORE, "
              "else ./zoo-store")
SEED_HELP = "the run's seed (zoo ls lists them)"
positive_int = count_argument(1)  # argparse type for thread and process counts


def device_name(text: str) -> str:
    """argparse type: a device this machine has (cpu, cuda, cuda:N). "cpu" is taken as it is, so
    that parsing the default does not load torch."""
    if text == "cpu":
        return text
    from zoo_common.errors import ZooError
    from zoo.environment import check_device

    try:
        return check_device(text)
    except ZooError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


BRANCH_HELP = "read this branch of the run (zoo branch; the same as NAME@LABEL)"


def add_branch_argument(parser: argparse.ArgumentParser) -> None:
    """--branch LABEL: main() folds it into the command's model name as NAME@LABEL."""
    parser.add_argument("--branch", metavar="LABEL", default=None, help=BRANCH_HELP)


def fold_branch(args: argparse.Namespace) -> None:
    """`--branch L` with model name N -> name N@L (every read resolves that name)."""
    label = getattr(args, "branch", None)
    if label and getattr(args, "name", None) is not None and getattr(args, "command", "") != "compare":
        from zoo.config.names import split_branch

        base, label = split_branch(args.name, label)
        args.name = f"{base}@{label}"


def add_store_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", metavar="URL", default=None, help=STORE_HELP)


def open_store(args: argparse.Namespace, *, must_exist: bool = True):
    """The store of `--store`, else $ZOO_STORE, else the default; for commands that only read it
    (`must_exist`), a folder or URL holding no store is an error, not an empty store: it is almost
    always a mistyped path."""
    return open_store_at(args.store, must_exist=must_exist, what=store_source(args.store))


def store_source(flag_value) -> str:
    """Where the store's location came from, for error messages."""
    import os

    from zoo.store.store import STORE_ENV

    if flag_value is not None:
        return "--store"
    return f"${STORE_ENV}" if os.environ.get(STORE_ENV) else "the default store, no --store given"


def open_store_at(url, *, must_exist: bool = True, what: str = "--store"):
    from zoo_common.errors import ZooError
    from zoo.store.store import Store
    from zoo_common.location import reaching

    store = url if isinstance(url, Store) else Store.open(url)
    if not must_exist:  # a command that writes: find out now (naming the URL) if it cannot
        with reaching(store.url):
            store.ensure_created()
    if must_exist and not store.exists():
        raise ZooError(f"no Model Zoo store at {store.url} ({what}): nothing was ever trained or "
                       f"prepared there; check the path, or `zoo train` into it first")
    return store
