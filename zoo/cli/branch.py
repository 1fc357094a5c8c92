"""`zoo branch`: a counterfactual branch of a run (training/branching.py), reached lazily."""
from __future__ import annotations

import argparse

from zoo.cli.common import SEED_HELP, add_store_argument, device_name

EPILOG = """\
examples:
  zoo branch tiny-2l128 --seed 1 --from-step 200 --label null
      a null branch: no intervention, so it reproduces its parent bit for bit
  zoo branch tiny-2l128 --seed all --from-step 200 --until-step 400 --label nodup \\
      --drop-documents dup_docs.txt
      every seed alike: the documents in the file are never trained on after step 200
  zoo branch tiny-2l128 --seed 1 --from-step 300 --label slow --lr-scale 0.5
  zoo branch tiny-2l128 --seed 1 --from-step 300 --label nowd --set optimizer.weight_decay=0
  zoo branch tiny-2l128 --seed 1 --from-step 300 --label reL0 --reinit 'gpt_neox.layers.0.attention.*'
  zoo branch tiny-2l128 --seed 1 --from-step 300 --label code --replace-data builtin:pydoc

Then every read takes the branch: `zoo replay tiny-2l128 --seed 1 --step 400 --branch nodup`,
`zoo batch ... --branch nodup`, `zoo ls`, `zoo eval tiny@nodup`, and
`zoo compare tiny-2l128 tiny-2l128 --branch nodup --metric loss` (paired by seed).

A branch starts from its parent's exact state at --from-step (the keyframe before it, replayed
to it), trains to --until-step (default: the parent's last step) with the parent's schedule and
checkpoint steps, and is stored beside the parent; what equals the parent's is stored once. An
interrupted branch goes on with the same command plus --resume.
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "branch", help="branch a run at any step, change what it trains on, and train on",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train a counterfactual branch of a run from its exact state at a step.")
    parser.add_argument("name", help="model name, e.g. tiny-2l128 (name@LABEL: branch a branch)")
    parser.add_argument("--seed", required=True, help=SEED_HELP + "; `all`: every seed alike")
    parser.add_argument("--from-step", type=int, required=True, metavar="N",
                        help="the branch point: any step the parent trained (0 = its init)")
    parser.add_argument("--until-step", type=int, default=None, metavar="M",
                        help="train to step M (default: the parent's last step)")
    parser.add_argument("--label", required=True,
                        help="the branch's name (lower-case letters, digits, '_', '.', '-')")
    what = parser.add_argument_group("interventions (none: a null branch)")
    what.add_argument("--drop-samples", metavar="FILE",
                      help="sample ids, one per line: never trained on after N")
    what.add_argument("--drop-documents", metavar="FILE",
                      help="document ids, one per line: their samples are never trained on after N")
    what.add_argument("--mask-samples", metavar="FILE",
                      help="sample ids, one per line: kept in their batches with no loss after N "
                           "(the same batches without them; what zoo attribute's check does)")
    what.add_argument("--drop-until", type=int, default=None, metavar="W",
                      help="drop (or mask) them in steps N+1..W only (a window), then train on as "
                           "the order goes")
    what.add_argument("--replace-data", metavar="SOURCE",
                      help="train from N on another source or mix:[...] (with the parent's tokenizer)")
    what.add_argument("--lr-scale", type=float, default=None, metavar="X",
                      help="multiply the learning rate (and its schedule) by X from N")
    what.add_argument("--set", action="append", default=None, metavar="FIELD=VALUE",
                      help="optimizer.weight_decay=..., optimizer.lr=..., optimizer.clip=... from N")
    what.add_argument("--reinit", action="append", default=None, metavar="GLOB",
                      help="re-initialise the parameters whose names match (repeatable)")
    what.add_argument("--reinit-seed", type=int, default=0, metavar="S",
                      help="the seed of the re-initialised values (stream 'reinit'; default 0)")
    parser.add_argument("--resume", action="store_true",
                        help="go on with an interrupted branch of this label (same arguments)")
    parser.add_argument("--device", type=device_name, default="cpu")
    parser.add_argument("--stop-after-step", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--hold-after-step", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--quiet", action="store_true", help="no progress display")
    add_store_argument(parser)
    parser.set_defaults(handler=_branch)


def _branch(args) -> int:
    from zoo.config.names import split_branch

    seed = args.seed if args.seed == "all" else _seed(args.seed)
    name, parent = split_branch(args.name)
    settings = dict(_setting(text) for text in args.set) if args.set is not None else None
    samples = _sample_ids(args.drop_samples) if args.drop_samples else None
    masked = _sample_ids(args.mask_samples) if args.mask_samples else None
    documents = _ids(args.drop_documents, "document id") if args.drop_documents else None
    interventions = {key: value for key, value in (
        ("drop_samples", samples), ("drop_documents", documents), ("mask_samples", masked),
        ("replace_data", args.replace_data), ("lr_scale", args.lr_scale), ("settings", settings),
        ("reinit", args.reinit), ("drop_until", args.drop_until)) if value is not None}
    if args.reinit_seed:
        interventions["reinit_seed"] = args.reinit_seed
    from zoo.write_side import reach

    return reach("branch_command")(args, seed=seed, name=name, parent=parent,
                                   interventions=interventions)


def _seed(text: str) -> int:
    from zoo_common.errors import ZooError

    if not text.isdigit():
        raise ZooError(f"--seed {text!r}: a seed is a whole number >= 0, or `all`")
    return int(text)


def _setting(text: str) -> tuple[str, float]:
    from zoo_common.errors import ZooError

    key, sep, value = text.partition("=")
    try:
        if not sep:
            raise ValueError
        return key.strip(), float(value)
    except ValueError:
        raise ZooError(f"--set {text!r}: expected FIELD=NUMBER, e.g. optimizer.weight_decay=0") from None


def _ids(path: str, what: str) -> list[str]:
    """Ids, one per line ('#' starts a comment, blank lines are skipped)."""
    from zoo_common.errors import ZooError

    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except OSError as exc:
        raise ZooError(f"cannot read the {what} file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ZooError(f"the {what} file {path} is not text (one id per line)") from None
    ids = [line.split("#", 1)[0].strip() for line in lines]
    ids = [i for i in ids if i]
    if not ids:
        raise ZooError(f"the {what} file {path} holds no ids: an intervention needs at least one "
                       f"(one per line); leave the option out for a null branch")
    return ids


def _sample_ids(path: str) -> list[int]:
    from zoo_common.errors import ZooError

    out = []
    for text in _ids(path, "sample id"):
        if not text.isdigit():
            raise ZooError(f"{path}: {text!r} is not a sample id (a whole number >= 0, one per line)")
        out.append(int(text))
    return out
