"""`zoo snapshot`, `zoo history`, `zoo export`: the registry from the command line."""
from __future__ import annotations

import argparse

from zoo_common.errors import ZooError
from zoo.cli.common import SEED_HELP, add_branch_argument, add_store_argument, open_store

SNAPSHOT_EPILOG = """\
examples:
  zoo snapshot tiny-2l128 --seed 1 --step 256
      prints the folder: AutoModelForCausalLM.from_pretrained(path), and any tool that reads a
      Hugging Face folder, opens it
  zoo snapshot tiny-2l128 --seed 1 --step 257
      a step that is not stored: replayed bit-exactly from keyframe 250, then cached
"""

HISTORY_EPILOG = """\
examples:
  zoo history tiny-2l128 --seed 1 --tensor gpt_neox.layers.0.attention.dense.weight
      the tensor's norm at every stored step and how far it moved since the previous one
  zoo history tiny-2l128 --seed 1 --tensor gpt_neox.embed_in.weight --steps 0 64 128 256 --out e.safetensors
      four steps only, values saved as one [4, vocab, width] tensor beside the steps
"""

EXPORT_EPILOG = """\
examples:
  zoo export tiny-2l128 --seed 1 --to exports/
      writes exports/tiny-2l128-seed1/{step0,step1,...,main}/ and README.md (Pythia's layout)
  zoo export tiny-2l128 --seed 1 --to exports/ --push my-org/tiny-2l128-seed1
      also uploads: branch main + one branch per stepN (needs network and `huggingface-cli login`)
"""


def register(subparsers) -> None:
    snap = subparsers.add_parser(
        "snapshot", help="materialize a step as a Hugging Face folder and print its path",
        description="Write (or reuse) the cached HF folder for a step: config.json, "
                    "model.safetensors, tokenizer files. A step that is not stored is replayed.",
        epilog=SNAPSHOT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _run_arguments(snap)
    snap.add_argument("--step", type=int, required=True)
    snap.add_argument("--stock", action="store_true",
                      help="a toy model as the stock class computing the same (GELU, ReLU, "
                           "attention-only: GPT2LMHeadModel), opened with no remote code")
    snap.set_defaults(handler=_snapshot)

    history = subparsers.add_parser(
        "history", help="one tensor across steps: norm per step and change between steps",
        description="Read one tensor at every stored step (only that tensor's blobs are read).",
        epilog=HISTORY_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _run_arguments(history)
    history.add_argument("--tensor", required=True, help="tensor name, e.g. "
                         "gpt_neox.layers.0.attention.query_key_value.weight")
    history.add_argument("--steps", type=int, nargs="+", metavar="N",
                         help="stored steps to read (default: all stored)")
    history.add_argument("--out", metavar="FILE.safetensors",
                         help="also save the values ([n_steps, *shape]) and steps to this file")
    history.set_defaults(handler=_history)

    export = subparsers.add_parser(
        "export", help="export a run in Pythia's Hugging Face layout (a folder/branch per step)",
        description="Write a run's stored steps as Hugging Face folders in Pythia's layout: one "
                    "folder (a branch on the Hub) per stepN, the final step as main, and a model "
                    "card naming family, seed, step and data fingerprint.",
        epilog=EXPORT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _run_arguments(export)
    export.add_argument("--to", required=True, metavar="DIR", help="destination folder")
    export.add_argument("--steps", type=int, nargs="+", metavar="N",
                        help="steps to export (default: every stored step; the final is main)")
    export.add_argument("--push", metavar="REPO_ID", help="then upload to this Hub repo")
    export.add_argument("--private", action="store_true", help="create the Hub repo private")
    export.set_defaults(handler=_export)


def _run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="model name, e.g. tiny-2l128")
    parser.add_argument("--seed", type=int, required=True, help=SEED_HELP)
    add_branch_argument(parser)
    add_store_argument(parser)


def _snapshot(args) -> int:
    from zoo.registry.snapshots import snapshot

    print(snapshot(args.name, seed=args.seed, step=args.step, store=open_store(args),
                   progress=True, stock=args.stock))
    return 0


def _history(args) -> int:
    from zoo.registry.history import tensor_history

    if args.out is not None:
        _check_writable_file(args.out, "--out")

    history = tensor_history(args.name, seed=args.seed, tensor=args.tensor, steps=args.steps,
                             store=open_store(args), progress=True)
    norms, changes = history.norms().tolist(), [None, *history.changes().tolist()]
    print(f"{args.name} seed {args.seed} {args.tensor} {list(history.values.shape[1:])}")
    print(f"{'step':>8}  {'norm':>12}  {'change from previous':>20}")
    for step, norm, change in zip(history.steps, norms, changes):
        print(f"{step:>8}  {norm:>12.6g}  {'-' if change is None else f'{change:.6g}':>20}")
    if args.out:
        import torch

        from safetensors.torch import save_file

        from zoo_common.atomic_files import atomic_path

        try:
            with atomic_path(args.out) as partial:
                save_file({"values": history.values.contiguous(),
                           "steps": torch.tensor(history.steps, dtype=torch.int64)}, partial,
                          metadata={"model": args.name, "seed": str(args.seed),
                                    "tensor": args.tensor})
        except OSError as exc:
            raise ZooError(f"cannot write --out {args.out}: {exc.strerror or exc}") from None
        print(f"saved {args.out}")
    return 0


def _export(args) -> int:
    from zoo.registry.hf_export import export_run, push_run

    if args.to is not None and not str(args.to).strip():
        raise ZooError("--to is empty: give the folder to export into")
    if args.private and not args.push:
        raise ZooError("--private applies to the Hub repo --push creates; add --push REPO_ID")
    store = open_store(args)
    if args.push:
        try:
            url = push_run(args.name, seed=args.seed, repo_id=args.push, to=args.to,
                           steps=args.steps, store=store, private=args.private or None)
        except Exception as exc:
            from zoo_common.location import IO_ERROR_MODULES

            if type(exc).__module__.split(".")[0] not in IO_ERROR_MODULES:
                raise
            raise ZooError(
                f"could not upload to the Hugging Face Hub repo {args.push} (offline, not logged in "
                f"with `huggingface-cli login`, or no permission?): {type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}; the export itself is complete"
                + (f" in {args.to}" if args.to else "")) from None
        print(f"pushed to {url}")
        return 0
    folder = export_run(args.name, seed=args.seed, to=args.to, steps=args.steps, store=store)
    print(folder)
    return 0


def _check_writable_file(path: str, flag: str) -> None:
    """Fail before the work, not after it: the folder must exist and take new files."""
    import os

    folder = os.path.dirname(os.path.abspath(path))
    if not str(path).strip() or os.path.isdir(path):
        raise ZooError(f"{flag} {path!r} is not a file name")
    if not os.path.isdir(folder):
        raise ZooError(f"{flag} {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise ZooError(f"{flag} {path}: the folder {folder} is not writable")
