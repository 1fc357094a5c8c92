"""Arguments every command shares: where the store is."""
from __future__ import annotations

import argparse

STORE_HELP = ("store folder or fsspec URL (s3://bucket/prefix, hf://...); default: $ZOO_STORE, "
              "else ./zoo-store")


SEED_HELP = "the run's seed (zoo ls lists them)"


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1 (thread and process counts)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def device_name(text: str) -> str:
    """argparse type: a device this machine has (cpu, cuda, cuda:N)."""
    import torch

    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(
            f"unknown device {text!r}; use cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(
                f"{text}: no CUDA GPU is usable here (torch {torch.__version__}"
                f"{', a CPU-only build' if torch.version.cuda is None else ''}); use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise argparse.ArgumentTypeError(
                f"{text}: this machine has {torch.cuda.device_count()} GPU(s), "
                f"cuda:0..cuda:{torch.cuda.device_count() - 1}")
    elif device.type != "cpu":
        raise argparse.ArgumentTypeError(f"device {text!r} is not supported; use cpu or cuda[:N]")
    return text


def add_store_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", metavar="URL", default=None, help=STORE_HELP)


def open_store(args: argparse.Namespace, *, must_exist: bool = True):
    """The store of `--store`; for commands that only read it (`must_exist`), a folder or URL
    holding no store is an error, not an empty store: it is almost always a mistyped path."""
    return open_store_at(args.store, must_exist=must_exist)


def open_store_at(url, *, must_exist: bool = True, what: str = "--store"):
    from data_index.errors import ZooError
    from zoo.store import Store, reaching

    store = url if isinstance(url, Store) else Store.open(url)
    if not must_exist:  # a command that writes: find out now (naming the URL) if it cannot
        with reaching(store.url):
            store.ensure_created()
    if must_exist and not store.exists():
        raise ZooError(f"no Model Zoo store at {store.url} ({what}): nothing was ever trained or "
                       f"prepared there; check the path, or `zoo train` into it first")
    return store
