"""`zoo data ...`: prepare a corpus, show a step's batch, find the steps that saw a sample.

`register(subparsers)` adds the `data` command group to the zoo CLI; every handler returns an exit
code and lets ZooError propagate (the main CLI prints `zoo: error: <message>` and exits 2).
"""
from __future__ import annotations

import argparse
import sys

from zoo_common.arguments import count_argument
from data_index.builtin_sources import BUILTIN_SOURCES
from data_index.corpus import Corpus, prepare_corpus
from zoo_common.errors import ZooError
from zoo_common.location import open_location
from data_index.queries import batch_tokens, check_pairing
from data_index.step_index import StepIndex

_RAW = argparse.RawDescriptionHelpFormatter
_BUILTINS = "\n".join(f"  builtin:{name:<10} {text}" for name, text in BUILTIN_SOURCES.items())

PREPARE_EPILOG = f"""\
SOURCE is one of
  PATH                       a .txt (one document per paragraph), .jsonl/.json or .parquet file
                             (column "text"; PATH#COLUMN picks another), or a folder of them
  hf:NAME[:CONFIG][@SPLIT][#COLUMN]
                             a Hugging Face hub dataset (needs network; fails at once offline)
{_BUILTINS}
Parameters of built-ins go after '?': builtin:induction?n_docs=500&length=16&seed=3

The corpus is packed as: each document, then <|endoftext|>; cut into samples of --seq-len tokens;
the last partial sample is dropped. The printed fingerprint is what runs record.

example:
  zoo data prepare builtin:pydoc --out corpora/pydoc --vocab-size 2048 --seq-len 128
  zoo data prepare my_texts/ --out corpora/mine --tokenizer corpora/pydoc/tokenizer --workers 2
"""

SHOW_EPILOG = """\
Prints every sample of the step's global batch (step N consumes global batch N-1; step 0 is the
initial weights and has none) as text, with its sample id and the document it starts in.

example:
  zoo data show --corpus zoo-store/corpora/<fingerprint> --index zoo-store/runs/tiny/2l128/seed-1/index --step 257
  (by model name: zoo batch tiny-2l128 --seed 1 --step 257)
"""

FIND_EPILOG = """\
Lists every (step, position) whose batch held the sample, from the run's recorded index.

example:
  zoo data find --corpus zoo-store/corpora/<fingerprint> --index zoo-store/runs/tiny/2l128/seed-1/index --sample 1234
  (by model name: zoo steps-of tiny-2l128 --seed 1 --sample 1234)
"""


def register(subparsers) -> argparse.ArgumentParser:
    """Add `data prepare | show | find` to the zoo CLI's subparsers."""
    data = subparsers.add_parser("data", help="prepare corpora and inspect what each step trained on",
                                 description="Prepare corpora; inspect the batches of a run's steps.",
                                 epilog="examples:\n"
                                        "  zoo data prepare builtin:pydoc --out corpus/\n"
                                        "  zoo data show --corpus corpus/ --index RUN/index --step 12\n"
                                        "  zoo data find --corpus corpus/ --index RUN/index --sample 1234\n"
                                        "Each subcommand's --help has more.", formatter_class=_RAW)
    commands = data.add_subparsers(dest="data_command", metavar="{prepare,show,find}", required=True)

    prepare = commands.add_parser("prepare", help="tokenize and pack a corpus into a folder",
                                  description="Tokenize and pack SOURCE into a corpus folder.",
                                  epilog=PREPARE_EPILOG, formatter_class=_RAW)
    prepare.add_argument("source", metavar="SOURCE", help="file/folder path, hf:NAME..., or builtin:NAME")
    prepare.add_argument("--out", required=True, metavar="DIR", help="corpus folder to create")
    prepare.add_argument("--tokenizer", metavar="PATH", help="existing tokenizer folder or tokenizer.json "
                         "(default: train a byte-level BPE on the source)")
    prepare.add_argument("--vocab-size", type=int, default=2048, metavar="N", help="BPE vocabulary size (default 2048)")
    prepare.add_argument("--seq-len", type=int, default=128, metavar="N", help="tokens per sample (default 128)")
    prepare.add_argument("--workers", type=int, default=1, metavar="N",
                         help="tokenizer processes; any N gives the same corpus (default 1)")
    prepare.set_defaults(handler=cmd_prepare)

    show = commands.add_parser("show", help="print a step's batch as text",
                               description="Print the batch a step trained on, as text.",
                               epilog=SHOW_EPILOG, formatter_class=_RAW)
    _corpus_and_index(show)
    show.add_argument("--step", type=int, required=True, metavar="N", help="training step (>= 1)")
    show.add_argument("--max-chars", type=count_argument(0), default=400, metavar="N",
                      help="cut each sample's text after N characters; 0 prints all (default 400)")
    show.set_defaults(handler=cmd_show)

    find = commands.add_parser("find", help="list the steps whose batch held a sample",
                               description="List the steps (and positions) whose batch held a sample.",
                               epilog=FIND_EPILOG, formatter_class=_RAW)
    _corpus_and_index(find)
    find.add_argument("--sample", type=int, required=True, metavar="ID", help="sample id in the corpus")
    find.set_defaults(handler=cmd_find)
    return data


def _corpus_and_index(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--corpus", required=True, metavar="DIR", help="prepared corpus folder")
    parser.add_argument("--index", required=True, metavar="DIR", help="a run's data index folder or URL")


def cmd_prepare(args: argparse.Namespace) -> int:
    if not args.source.strip():
        raise ZooError("SOURCE is empty: give a file or folder, hf:NAME or builtin:NAME")
    corpus = prepare_corpus(args.source, args.out, tokenizer=args.tokenizer, vocab_size=args.vocab_size,
                            seq_len=args.seq_len, workers=args.workers, progress=sys.stderr.isatty())
    meta = corpus.meta
    print(f"fingerprint {corpus.fingerprint}")
    print(f"corpus      {corpus.folder}")
    print(f"source      {meta['source']}")
    print(f"documents   {meta['n_documents']:,}")
    print(f"tokens      {meta['n_stream_tokens']:,} ({meta['dropped_tail_tokens']} dropped in the last partial sample)")
    print(f"samples     {corpus.n_samples:,} x {corpus.seq_len} tokens ({corpus.dtype.name})")
    print(f"vocab       {corpus.vocab_size:,} (eos id {corpus.eos_id})")
    return 0


def _open_pair(args: argparse.Namespace) -> tuple[Corpus, StepIndex]:
    corpus = Corpus.open(args.corpus)
    index = StepIndex.open(open_location(args.index))
    check_pairing(corpus, index)
    return corpus, index


def cmd_show(args: argparse.Namespace) -> int:
    corpus, index = _open_pair(args)
    tokens = batch_tokens(corpus, index, args.step)
    ids = index.batch_ids(args.step)
    print(f"step {args.step}: {len(ids)} samples x {corpus.seq_len} tokens (data_seed {index.data_seed})")
    for position, (sample, row) in enumerate(zip(ids.tolist(), tokens)):
        document, offset = corpus.provenance(sample)
        text = corpus.decode(row)
        if args.max_chars and len(text) > args.max_chars:
            text = text[: args.max_chars] + " [...]"
        print(f"\n--- position {position} · sample {sample} · starts in {document} at token {offset}")
        print(text)
    return 0


def cmd_find(args: argparse.Namespace) -> int:
    corpus, index = _open_pair(args)
    hits = index.steps_of(args.sample)
    document, offset = corpus.provenance(args.sample)
    print(f"sample {args.sample} (starts in {document} at token {offset}) was in {len(hits)} batch(es) "
          f"of steps {index.first_step}..{index.last_step}")
    for step, position in hits:
        print(f"step {step}\tposition {position}")
    return 0
