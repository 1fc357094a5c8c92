"""Family cards as files and store records: what a family is for, with its measured numbers.

A card is a Markdown file beside the family's manifest (`manifests/FAMILY.card.md`) whose YAML
front matter says how to measure it (zoo/eval/family_cards.py measures; see there for the
measure keys). The measured numbers live in the store at `cards/FAMILY.json`, with the text they
were measured with, so `zoo show FAMILY` and the Hugging Face export print the card with numbers
that came from `zoo card FAMILY` on that store, never typed by hand.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from zoo_common.errors import ZooError

CARD_FOLDER = "cards"
MEASURE_KEYS = {"name", "label", "column", "event", "threshold", "direction", "persist", "at",
                "at_event", "sizes", "tolerance", "from_step", "curve"}
CURVES = ("descent_rate",)  # what a measure may read instead of the column itself
COMPARISON_KEYS = {"name", "label", "a", "b", "metric", "alternative", "paired", "hypothesis"}
ALTERNATIVES = ("two-sided", "less", "greater")


@dataclass(frozen=True)
class CardSource:
    """A card file: its front matter (how to measure) and its Markdown text."""

    path: Path
    evaluate: list[str]
    measures: list[dict]
    text: str
    heldout: str | None = None  # the held-out source of loss / icl / neurons (None: derived)
    comparisons: tuple = ()  # size against size, tested over seeds and examples


def builtin_card_path(family: str) -> Path:
    from zoo.config.manifest import BUILTIN_FOLDER

    return BUILTIN_FOLDER / f"{family}.card.md"


def read_card(path: str | Path) -> CardSource:
    """Parse a card file; a bad front matter is one error naming the key."""
    path = Path(path)
    if not path.is_file():
        raise ZooError(f"no card at {path}: a family card is FAMILY.card.md beside its manifest")
    raw = path.read_text()
    if not raw.startswith("---\n") or "\n---\n" not in raw[4:]:
        raise ZooError(f"{path}: a card starts with YAML front matter between two '---' lines")
    head, text = raw[4:].split("\n---\n", 1)
    try:
        meta = yaml.safe_load(head) or {}
    except yaml.YAMLError as exc:
        raise ZooError(f"{path}: the front matter is not valid YAML: {exc}") from None
    evaluate, measures = meta.get("evaluate", []), meta.get("measures", [])
    if not isinstance(evaluate, list) or not all(isinstance(m, str) for m in evaluate):
        raise ZooError(f"{path}: evaluate must be a list of metric names")
    if not isinstance(measures, list) or not measures:
        raise ZooError(f"{path}: measures must be a non-empty list")
    names = set()
    for i, measure in enumerate(measures):
        where = f"{path}: measures[{i}]"
        if not isinstance(measure, dict):
            raise ZooError(f"{where} must be a mapping")
        unknown = set(measure) - MEASURE_KEYS
        if unknown:
            raise ZooError(f"{where}: unknown key(s) {sorted(unknown)}; valid: {sorted(MEASURE_KEYS)}")
        for key in ("name", "label", "column"):
            if not isinstance(measure.get(key), str):
                raise ZooError(f"{where}.{key} is required (text)")
        ways = [k for k in ("event", "at", "at_event") if k in measure]
        if len(ways) != 1:
            raise ZooError(f"{where}: give exactly one of event, at, at_event")
        if measure.get("event") not in (None, "threshold", "largest_jump", "settle"):
            raise ZooError(f"{where}.event must be threshold, largest_jump or settle")
        if measure.get("event") == "threshold" and not isinstance(measure.get("threshold"), (int, float)):
            raise ZooError(f"{where}.threshold is required for a threshold event")
        if measure.get("curve", "descent_rate") not in CURVES:
            raise ZooError(f"{where}.curve must be one of {', '.join(CURVES)}")
        if "at" in measure and measure["at"] != "last":
            raise ZooError(f"{where}.at must be 'last'")
        if "at_event" in measure and measure["at_event"] not in names:
            raise ZooError(f"{where}.at_event must name an earlier event measure, got {measure['at_event']!r}")
        names.add(measure["name"])
    heldout = meta.get("heldout")
    if heldout is not None and not (isinstance(heldout, str) and heldout):
        raise ZooError(f"{path}: heldout must be a source string, e.g. builtin:pydoc?min_chars=80")
    comparisons = meta.get("comparisons", [])
    if not isinstance(comparisons, list):
        raise ZooError(f"{path}: comparisons must be a list")
    for i, comparison in enumerate(comparisons):
        _check_comparison(comparison, f"{path}: comparisons[{i}]")
    return CardSource(path, evaluate, measures, text.strip() + "\n", heldout, tuple(comparisons))


def _check_comparison(comparison, where: str) -> None:
    """{name, label, a: SIZE, b: SIZE, metric, hypothesis: words written before measuring,
    alternative?: two-sided | less | greater (of B - A), paired?: bool}"""
    if not isinstance(comparison, dict):
        raise ZooError(f"{where} must be a mapping")
    unknown = set(comparison) - COMPARISON_KEYS
    if unknown:
        raise ZooError(f"{where}: unknown key(s) {sorted(unknown)}; valid: {sorted(COMPARISON_KEYS)}")
    for key in ("name", "label", "a", "b", "metric", "hypothesis"):
        if not isinstance(comparison.get(key), str):
            raise ZooError(f"{where}.{key} is required (text)")
    if comparison.get("alternative", "two-sided") not in ALTERNATIVES:
        raise ZooError(f"{where}.alternative must be one of {', '.join(ALTERNATIVES)}")
    if not isinstance(comparison.get("paired", False), bool):
        raise ZooError(f"{where}.paired must be true or false")


def stored_card(family: str, store) -> dict | None:
    """The measured numbers of `family` in `store`, or None when `zoo card` never ran there."""
    if not store.location.exists(CARD_FOLDER, f"{family}.json"):
        return None
    return json.loads(store.location.read_bytes(CARD_FOLDER, f"{family}.json"))


def render_card(family: str, *, store=None, card: str | Path | None = None) -> str:
    """The card's Markdown with its measured numbers (or how to measure them) appended."""
    path = Path(card) if card is not None else builtin_card_path(family)
    measured = stored_card(family, store) if store is not None else None
    if path.is_file():
        text = read_card(path).text
    elif measured is not None:
        text = measured["text"]  # the card it was measured with
    else:
        text = f"# {family}\n\n(no card for this family: write FAMILY.card.md, then `zoo card {family} --card PATH`)\n"
    if measured is None:
        return text + f"\n## Measured\n\nNot measured in this store yet: run `zoo card {family}`.\n"
    lines = ["", f"## Measured over its seeds (`{measured['command']}`, {measured['measured_at']})", "",
             "| size | measure | per seed | over seeds |", "|---|---|---|---|"]
    for row in measured["results"]:
        seeds = ", ".join(map(str, row["seeds"]))
        lines.append(f"| {row['size']} | {row['label']} | seeds {seeds}: {row['per_seed']} | {row['summary']} |")
    if measured.get("comparisons"):
        lines += ["", "### Size against size (hypotheses stated before measuring)", "",
                  "| comparison | hypothesis | A | B | B - A | test |", "|---|---|---|---|---|---|"]
        for row in measured["comparisons"]:
            lines.append(f"| {row['label']} | {row['hypothesis']} | {row['a']} {row['a_cell']} | "
                         f"{row['b']} {row['b_cell']} | {row['difference_cell']} | {row['test']} |")
    if measured.get("unfinished"):
        lines += ["", f"Still training when measured, left out: {', '.join(measured['unfinished'])}."]
    return text + "\n".join(lines) + "\n"


def write_card_record(store, family: str, record: dict) -> None:
    store.location.write_atomic(f"{CARD_FOLDER}/{family}.json", json.dumps(record, indent=2, sort_keys=True).encode())
