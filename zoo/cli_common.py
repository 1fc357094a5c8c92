"""Arguments every command shares: where the store is."""
from __future__ import annotations

import argparse

STORE_HELP = ("store folder or fsspec URL (s3://bucket/prefix, hf://...); default: $ZOO_STORE, "
              "else ./zoo-store")


def add_store_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", metavar="URL", default=None, help=STORE_HELP)


def open_store(args: argparse.Namespace):
    from zoo.store import Store

    return Store.open(args.store)
