"""`zoo dict train | ls | export | track`: sparse dictionaries beside a run's checkpoints."""
from __future__ import annotations

import argparse

from zoo.cli.common import SEED_HELP, add_store_argument, open_store, positive_int

EPILOG = """\
examples:
  zoo dict train superposition-n20m5s0.999 --seed 1 --step 10000 --site hidden --width 20 --k 1
  zoo dict train induction-attn2l --seed 1 --step all --site blocks.1.hook_resid_post \\
      --width 512 --k 16 --every 2 --warm-start      one per stored step, each from the last
  zoo dict ls induction-attn2l --seed 1
  zoo dict track induction-attn2l --seed 1 --site blocks.1.hook_resid_post \\
      --out lineage.parquet --plot lineage.png      features born and gone over training
  zoo dict export superposition-n20m5s0.999 --seed 1 --step 10000 --site hidden --to sae/

Sites: blocks.L.hook_resid_post, blocks.L.mlp.hook_post, blocks.L.hook_attn_out,
blocks.L.hook_mlp_out (TransformerLens' names), any module path of the model (PATH or
PATH:input), or `hidden` for the superposition model. Data: the 64 training steps that end at the
step, exactly as trained (the first 64 for an earlier step; default), --data A:B for training
steps A..B, or --data heldout.
The same command twice gives the same bits: a dictionary already stored is loaded, not retrained.
"""


def register(subparsers) -> None:
    group = subparsers.add_parser(
        "dict", help="sparse dictionaries (SAEs) trained on a run's activations, stored beside it",
        description="Train, list, follow over training and export sparse dictionaries.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = group.add_subparsers(dest="dict_command", metavar="ACTION", required=True)

    train = _action(commands, "train", "train a dictionary at a step (or every stored step)",
                    "Train a sparse dictionary (TopK or ReLU+L1) on a run's activations at one site, "
                    "at one step or every stored step; it is stored beside the checkpoint.")
    _run_arguments(train)
    train.add_argument("--step", required=True, help="a step, or `all` (every stored step)")
    train.add_argument("--site", required=True, help="where the activations are read (see below)")
    train.add_argument("--kind", choices=("topk", "relu"), default="topk")
    train.add_argument("--width", type=positive_int, default=1024, help="features (default 1024)")
    train.add_argument("--k", type=positive_int, default=32, help="topk: active features (32)")
    train.add_argument("--l1", type=float, default=1e-3, help="relu: L1 weight (1e-3)")
    train.add_argument("--lr", type=float, default=1e-3)
    train.add_argument("--steps", type=positive_int, default=2000, help="optimizer steps (2000)")
    train.add_argument("--batch", type=positive_int, default=1024, help="rows per step (1024)")
    train.add_argument("--dict-seed", type=int, default=0, help="the named stream 'dict' (0)")
    train.add_argument("--data", default=None, metavar="A:B|heldout",
                       help="training steps A..B, or heldout (default: the 64 steps up to --step)")
    train.add_argument("--every", type=positive_int, default=1,
                       help="with --step all: every k-th stored step")
    train.add_argument("--warm-start", action="store_true",
                       help="with --step all: start each dictionary from the previous step's")
    train.set_defaults(handler=_train)

    listing = _action(commands, "ls", "list the dictionaries stored beside a run",
                      "List every dictionary stored beside a run's checkpoints, with its site, "
                      "width and scores.")
    _run_arguments(listing)
    listing.set_defaults(handler=_ls)

    export = _action(commands, "export", "write a dictionary in SAELens' on-disk format",
                     "Write a stored dictionary as a folder SAELens opens with "
                     "SAE.load_from_disk, with no code of ours.")
    _run_arguments(export)
    _which(export)
    export.add_argument("--step", type=int, required=True)
    export.add_argument("--to", required=True, metavar="DIR",
                        help="a new folder; SAE.load_from_disk(DIR) opens it")
    export.set_defaults(handler=_export)

    follow = _action(commands, "track", "follow features across steps (optimal matching)",
                     "Match each step's features to the next step's by decoder cosine (optimal "
                     "matching) and say which live on, which are born and which are gone.")
    _run_arguments(follow)
    _which(follow)
    follow.add_argument("--threshold", type=float, default=0.7,
                        help="the smallest decoder cosine that continues a feature (0.7)")
    follow.add_argument("--out", default=None, metavar="PARQUET", help="the lineage table")
    follow.add_argument("--plot", default=None, metavar="PNG",
                        help="features alive, born and gone per step")
    follow.set_defaults(handler=_track)


def _action(commands, name: str, summary: str, description: str):
    return commands.add_parser(name, help=summary, description=description, epilog=EPILOG,
                               formatter_class=argparse.RawDescriptionHelpFormatter)


def _run_arguments(parser) -> None:
    parser.add_argument("name", help="model name, e.g. induction-attn2l (NAME@LABEL: a branch)")
    parser.add_argument("--seed", type=int, required=True, help=SEED_HELP)
    add_store_argument(parser)


def _which(parser) -> None:
    parser.add_argument("--site", required=True)
    parser.add_argument("--kind", choices=("topk", "relu"), default=None)
    parser.add_argument("--width", type=positive_int, default=None)


def _train(args) -> int:
    from zoo.dictionaries.dictionary_runs import train_dict
    from zoo.dictionaries.sweep import stored_steps

    store = open_store(args)
    options = dict(seed=args.seed, site=args.site, kind=args.kind, width=args.width, k=args.k,
                   l1=args.l1, lr=args.lr, steps=args.steps, batch=args.batch,
                   dict_seed=args.dict_seed, data=args.data, store=store)
    if args.step == "all":
        steps = stored_steps(args.name, seed=args.seed, store=store, every=args.every)
    else:
        steps = [_step(args.step)]
    previous = None
    for step in steps:
        d = train_dict(args.name, step=step, warm_start=previous if args.warm_start else None,
                       **options)
        previous = d
        print(_line(d))
    return 0


def _step(text: str) -> int:
    from zoo_common.errors import ArgumentError

    if not text.isdigit():
        raise ArgumentError(f"--step {text!r}: a step number, or `all` for every stored step")
    return int(text)


def _line(d) -> str:
    r, q = d.record, d.record["quality"]
    extra = f"  ground truth (mmcs) {q['ground_truth_mmcs']:.3f}" if "ground_truth_mmcs" in q else ""
    return (f"step {r['step']:>6}  {r['site']}  {r['config']['kind']}{r['config']['width']}  "
            f"variance explained {q['variance_explained']:.3f}  L0 {q['l0']:.2f}  dead "
            f"{q['dead_fraction']:.2f}  loss recovered {q['loss_recovered']:.3f}{extra}  "
            f"({r['training']['seconds']:.1f} s)  {r['name']}")


def _ls(args) -> int:
    from zoo.dictionaries.dictionary_runs import list_run_dicts
    from zoo.store.catalog import open_run

    run = open_run(args.name, seed=args.seed, store=open_store(args))
    records = list_run_dicts(run)
    if not records:
        print(f"{run.run_id}: no dictionaries (train one with `zoo dict train`)")
    for r in records:
        q = r["quality"]
        window = r["data"].get("steps")
        data = f"steps {window[0]}..{window[1]}" if window else r["data"]["source"]
        print(f"step {r['step']:>6}  {r['site']:<26} {r['config']['kind']}{r['config']['width']:<6} "
              f"VE {q['variance_explained']:.3f}  L0 {q['l0']:.2f}  data {data}  {r['name']}")
    return 0


def _export(args) -> int:
    from zoo.dictionaries.dictionary_runs import load_dict
    from zoo.dictionaries.sae_lens_format import export_sae_lens

    d = load_dict(args.name, seed=args.seed, step=args.step, site=args.site, kind=args.kind,
                  width=args.width, store=open_store(args))
    print(f"wrote {export_sae_lens(d, args.to)} (SAE.load_from_disk opens it)")
    return 0


def _track(args) -> int:
    import pyarrow.parquet as pq

    from zoo.dictionaries.lineage import per_step_counts, plot_counts
    from zoo.dictionaries.sweep import track_run

    table = track_run(args.name, seed=args.seed, site=args.site, kind=args.kind, width=args.width,
                      threshold=args.threshold, store=open_store(args))
    counts = per_step_counts(table)
    for c in counts:
        print(f"step {c['step']:>6}  alive {c['alive']:>5}  born {c['born']:>5}  gone {c['gone']:>5}")
    if args.out:
        pq.write_table(table, args.out)
        print(f"lineage table: {args.out}")
    if args.plot:
        plot_counts(counts, args.plot, title=f"{args.name} seed {args.seed} {args.site}: "
                                             f"dictionary features over training")
        print(f"plot: {args.plot}")
    return 0
