"""`zoo ls | show | verify | gc | push | pull`: look after a store from the command line."""

from __future__ import annotations

import argparse

from zoo_common.errors import ZooError
from zoo.cli.common import add_store_argument, open_store, open_store_at
from zoo.config.names import RunId, parse_model_name, split_branch

_S3_NOTE = (
    "S3 credentials come from the usual AWS variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, "
    "AWS_ENDPOINT_URL for S3-compatible servers); hf:// uses your `huggingface-cli login` token."
)


def register(subparsers: argparse._SubParsersAction) -> None:
    def command(name: str, handler, help_text: str, description: str) -> argparse.ArgumentParser:
        parser = subparsers.add_parser(
            name,
            help=help_text,
            description=description,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        add_store_argument(parser)
        parser.set_defaults(handler=handler)
        return parser

    command(
        "ls",
        _ls,
        "list the models, seeds and steps in the store",
        "List every model in the store: seeds, number of checkpoints, step range, keyframes.\n"
        "Example: zoo ls --store s3://bucket/zoo",
    )
    show = command(
        "show",
        _show,
        "show a family's card, or one model's runs: steps, keyframes, records",
        "Show a family's card (what it is for, its architecture and data, its phenomenon as\n"
        "measured over its seeds by `zoo card FAMILY`), or a model's runs: every stored\n"
        "step, keyframes, tokens seen and recorded files.\n"
        "Examples: zoo show grokking      zoo show tiny-2l128 --seed 1",
    )
    show.add_argument("name", metavar="NAME",
                      help="a family (grokking) or a model name <family>-<size> (tiny-2l128)")
    show.add_argument("--seed", type=int, default=None, help="only this seed (default: every seed)")

    verify = command(
        "verify",
        _verify,
        "re-hash every blob; flag duplicate or out-of-order steps",
        "Re-read and re-hash every tensor of every checkpoint and keyframe; report missing\n"
        "or corrupt blobs, two steps with byte-identical weights, steps whose tokens_seen\n"
        "does not increase. Exit status 1 when a problem is found, 0 when all is well.\n"
        "Example: zoo verify tiny-2l128 --seed 1",
    )
    verify.add_argument(
        "name", metavar="NAME", nargs="?", help="only this model (default: the whole store)"
    )
    verify.add_argument("--seed", type=int, default=None, help="only this seed of NAME")

    gc = command(
        "gc",
        _gc,
        "remove blobs no checkpoint references",
        "Remove blobs that no checkpoint or keyframe references (left by killed writers or by\n"
        "resumes), and the temporary files of writers killed before they committed. Anything\n"
        "younger than the grace period is kept, so a writer that is running right now loses\n"
        "nothing. Use --dry-run to see what would go.\n"
        "Example: zoo gc --dry-run --store s3://bucket/zoo; then zoo gc --store s3://bucket/zoo",
    )
    gc.add_argument("--dry-run", action="store_true", help="only report what would be removed")
    gc.add_argument(
        "--grace-hours",
        type=float,
        default=1.0,
        help="keep unreferenced blobs younger than this (default: 1)",
    )

    for name, handler, verb in (("push", _push, "to"), ("pull", _pull, "from")):
        other = "DEST" if name == "push" else "SOURCE"
        parser = command(
            name,
            handler,
            f"copy runs {verb} another store (only missing blobs, resumable)",
            f"Copy runs {verb} another store: only blobs the destination lacks, each re-hashed\n"
            f"on arrival; manifests last, so an interrupted copy can simply be run again.\n"
            f"{_S3_NOTE}\n"
            f"Example: zoo {name} s3://bucket/zoo tiny-2l128 --seed 1 --store ./zoo-store",
        )
        parser.add_argument(
            "other", metavar=other, help=f"the store to copy {verb} (folder or URL)"
        )
        parser.add_argument(
            "name", metavar="NAME", nargs="?", help="only this model (default: every run)"
        )
        parser.add_argument("--seed", type=int, default=None, help="only this seed of NAME")
        parser.add_argument(
            "--no-corpora", action="store_true", help="do not copy prepared corpora"
        )


def select_runs(store, name: str | None, seed: int | None) -> list[RunId]:
    """The runs NAME/--seed designate, or an error listing what the store holds."""
    runs = store.runs()
    if name is None:
        if seed is not None:
            raise ZooError("--seed needs a model NAME")
        return runs
    base, label = split_branch(name)
    family, size = parse_model_name(base)
    chosen = [r for r in runs if (r.family, r.size) == (family, size) and seed in (None, r.seed)
              and (not label or r.branch == label)]
    if not chosen and label:
        labels = sorted({r.branch for r in runs if (r.family, r.size) == (family, size) and r.branch})
        raise ZooError(f"no branch {label!r} of {base} in {store.url}; its branches: "
                       f"{', '.join(labels) or 'none (make one with `zoo branch`)'}")
    if not chosen:
        seeds = [r.seed for r in runs if (r.family, r.size) == (family, size)]
        if seeds:
            raise ZooError(
                f"no seed {seed} of {name} in {store.url}; seeds: {', '.join(map(str, seeds))}"
            )
        models = sorted({r.model_name for r in runs})
        raise ZooError(
            f"no model {name} in {store.url}; models: {', '.join(models) or 'none (empty store)'}"
        )
    return chosen


def _ls(args: argparse.Namespace) -> int:
    store = open_store(args)
    runs = store.runs()
    if not runs:
        print(f"{store.url}: no runs yet")
        return 0
    rows = [("MODEL", "SEEDS", "CHECKPOINTS PER SEED", "STEPS", "KEYFRAMES PER SEED", "STATE")]
    # the store's natural order, each model's branches (MODEL@LABEL) right under it
    arms = sorted(dict.fromkeys((r.model_name, r.branch) for r in runs),
                  key=lambda arm: (runs.index(next(r for r in runs if r.model_name == arm[0])), arm[1]))
    described = []
    for model, label in arms:
        mine = [store.run(r) for r in runs if (r.model_name, r.branch) == (model, label)]
        steps = [run.checkpoint_steps() for run in mine]
        frames = [len(run.keyframe_steps()) for run in mine]
        last = max((s[-1] for s in steps if s), default=-1)
        finished = sum(bool(run.status().get("finished")) for run in mine)
        if label and mine[0].location.exists("run.json"):
            from zoo.store.lineage import branch_record, describe

            described.append(f"  {model}@{label}: {describe(branch_record(mine[0]))}")
        rows.append((
            f"  @{label}" if label else model,
            ",".join(str(run.run_id.seed) for run in mine),
            _per_seed([len(s) for s in steps]),
            f"0..{last}" if last >= 0 else "-",
            _per_seed(frames),
            "finished" if finished == len(mine) else f"{finished}/{len(mine)} finished",
        ))
    _table(rows)
    if described:
        print("\nbranches (read with --branch LABEL or MODEL@LABEL):")
        print("\n".join(described))
    return 0


def _per_seed(counts: list[int]) -> str:
    """"12" when every seed has 12, else each seed's count ("12/12/8")."""
    return str(counts[0]) if len(set(counts)) == 1 else "/".join(map(str, counts))


def _show(args: argparse.Namespace) -> int:
    from zoo.store.cards import builtin_card_path, render_card

    builtin = builtin_card_path(args.name).is_file()
    try:
        store = open_store(args)
    except ZooError:
        if not builtin:
            raise
        store = None  # a built-in family's card reads well before anything is trained
    if builtin or any(r.family == args.name for r in store.runs()):
        print(render_card(args.name, store=store), end="")
        return 0
    for run_id in select_runs(store, args.name, args.seed):
        run = store.run(run_id)
        steps, frames = run.checkpoint_steps(), run.keyframe_steps()
        print(f"{run_id.key}  ({run.location.url})")
        if run_id.branch and run.location.exists("run.json"):
            from zoo.store.lineage import branch_record, describe

            print(f"  branch: {describe(branch_record(run))}")
        print(f"  checkpoints ({len(steps)}): {', '.join(map(str, steps)) or 'none'}")
        print(f"  keyframes   ({len(frames)}): {', '.join(map(str, frames)) or 'none'}")
        if steps:
            last = run.checkpoint_manifest(steps[-1])
            size = sum(ref["nbytes"] for ref in last["tensors"].values())
            record = run.read_json("run.json") if run.location.exists("run.json") else {}
            drawn = record.get("hf_config", {}).get("model_type") == "zoo-superposition"
            seen = "feature values" if drawn else "tokens"
            print(
                f"  last step {steps[-1]}: {last['tokens_seen']:,} {seen} seen, "
                f"{len(last['tensors'])} tensors, {size / 1e6:.1f} MB raw, config "
                f"{last['config_hash'][:12]}"
            )
        records = [n for n in run.location.list() if n.endswith(".json") and n != "lock.json"]
        print(f"  records: {', '.join(records) or 'none'}")
        if "lock.json" in run.location.list():
            print(f"  being written: {run.lock('').holder()}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from zoo.store.verify import verify_store

    store = open_store(args)
    report = verify_store(store, select_runs(store, args.name, args.seed), progress=True)
    for problem in report.problems:
        print(f"PROBLEM {problem}")
    verdict = "OK" if report.ok else f"{len(report.problems)} problem(s)"
    print(
        f"{verdict}: {report.runs} runs, {report.manifests} manifests, {report.blobs} blobs "
        f"({report.raw_bytes / 1e6:.1f} MB raw) and {report.inline_tensors} inline tensors "
        f"re-hashed in {store.url}"
    )
    return 0 if report.ok else 1


def _gc(args: argparse.Namespace) -> int:
    from zoo.store.gc import collect_garbage

    store = open_store(args)
    report = collect_garbage(store, grace_seconds=args.grace_hours * 3600, dry_run=args.dry_run)
    verb = "would remove" if report.dry_run else "removed"
    print(
        f"{verb} {len(report.removed)} unreferenced blobs ({report.removed_bytes / 1e6:.1f} MB); "
        f"kept {report.referenced} referenced and {report.kept_young} younger than the grace period"
        + (f"; {verb} {report.removed_temporary} temporary files of interrupted writers"
           if report.removed_temporary else "")
    )
    if report.missing:
        print(f"warning: {report.missing} referenced blobs are missing from the store; "
              f"`zoo verify` names them, `zoo pull` can restore them from another store")
    return 0


def _copy(source, destination, args: argparse.Namespace) -> int:
    from zoo.store.transfer import copy_runs

    report = copy_runs(
        source,
        destination,
        select_runs(source, args.name, args.seed),
        include_corpora=not args.no_corpora,
        progress=True,
    )
    print(
        f"copied {report.runs} runs from {source.url} to {destination.url}: {report.blobs_copied} blobs "
        f"({report.bytes_copied / 1e6:.1f} MB), {report.blobs_present} already there, "
        f"{report.manifests_copied} manifests, {report.files_copied} other files"
    )
    return 0


def _push(args: argparse.Namespace) -> int:
    return _copy(open_store(args), open_store_at(args.other, must_exist=False), args)


def _pull(args: argparse.Namespace) -> int:
    return _copy(open_store_at(args.other, what="SOURCE"), open_store(args, must_exist=False), args)


def _table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
