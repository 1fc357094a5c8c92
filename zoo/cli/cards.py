"""`zoo card FAMILY`: measure a family's card numbers over its seeds (zoo.eval.family_cards)."""

from __future__ import annotations

import argparse

from zoo.cli.common import add_store_argument, open_store


def register(subparsers: argparse._SubParsersAction) -> None:
    card = subparsers.add_parser(
        "card",
        help="measure a family's phenomenon over its seeds and store its card",
        description=(
            "Evaluate the metrics a family's card names at every stored step, measure the card's\n"
            "numbers over the seeds (event steps with their interval, values at the last step),\n"
            "store them in the store (cards/FAMILY.json) and print the card. `zoo show FAMILY`\n"
            "prints it afterwards; `zoo export` puts it in the model card.\n"
            "Example: zoo train grokking && zoo card grokking"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_store_argument(card)
    card.add_argument("family", metavar="FAMILY", help="a trained family, e.g. grokking")
    card.add_argument("--card", metavar="PATH", default=None,
                      help="the card file (default: the built-in manifests/FAMILY.card.md)")
    card.add_argument("--quiet", action="store_true", help="no progress display")
    card.set_defaults(handler=_card)


def _card(args) -> int:
    from zoo.eval.family_cards import measure_card
    from zoo.store.cards import render_card

    store = open_store(args)
    measure_card(args.family, store=store, card=args.card, progress=not args.quiet)
    print(render_card(args.family, store=store, card=args.card), end="")
    return 0
