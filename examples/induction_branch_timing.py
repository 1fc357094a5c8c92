"""Did the most repetitive documents cause the induction heads to form when they did? A branch
answers it: every seed's exact state before the phase change, retrained without them.

    zoo train induction --only attn2l --store S        # the family (about 3 min per seed)
    python examples/induction_branch_timing.py --store S

1. Score every document of the family's corpus by its longest repeated span (the longest run of
   tokens that occurs twice in it) and take the `--top` documents with the longest.
2. Branch every seed of induction-attn2l at `--from-step` (before the phase change) with those
   documents dropped until `--drop-until` (a window), then trained on as the order goes, to
   `--until-step` (`zoo.branch(..., seed="all")`).
3. A control branch drops as many random samples over the same window (dropping a third of the
   data could delay anything; the question is whether THESE documents matter).
4. Evaluate the induction stripe (`induction.max`) at every stored step of both branches, time
   its event per seed exactly as the family card does (first >= 0.1, staying for 3 stored steps),
   and report the shift against the parent, paired by seed, with a t interval over seeds.
Reports what comes out, including "no measurable effect".
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import zoo
from zoo.eval.evaluate import evaluate_family
from zoo.registry.batches import open_run_data
from zoo.stats import seed_interval
from zoo.stats.events import event_step

MODEL, FAMILY, SIZE = "induction-attn2l", "induction", "attn2l"
EVENT = {"kind": "threshold", "threshold": 0.1, "persist": 3}  # the card's phase_change


def longest_repeated_span(tokens: np.ndarray) -> int:
    """The longest run of tokens that occurs twice in `tokens` (at different offsets)."""
    best = 0
    for shift in range(1, len(tokens)):
        same = np.concatenate([[False], tokens[:-shift] == tokens[shift:], [False]])
        edges = np.flatnonzero(np.diff(same.astype(np.int8)))
        if len(edges):
            best = max(best, int((edges[1::2] - edges[::2]).max()))
        if best >= len(tokens) - shift:  # no longer run can fit at larger shifts
            break
    return best


def most_repetitive_documents(corpus, top: int) -> tuple[list[str], np.ndarray]:
    ids, starts = corpus._document_table()
    stream = corpus.samples(np.arange(corpus.n_samples)).reshape(-1)
    ends = np.append(starts[1:], len(stream))
    scores = np.array([longest_repeated_span(stream[a:b]) for a, b in zip(starts, ends)])
    chosen = np.argsort(-scores, kind="stable")[:top]
    return [ids[int(k)].as_py() for k in chosen], scores[chosen]


def curves(family: str, seeds, store) -> dict[int, dict[int, float]]:
    table = zoo.metrics(family, store=store).to_pandas()
    table = table[(table["size"] == SIZE) & table["induction.max"].notna()]
    return {seed: dict(zip(rows.step, rows["induction.max"])) for seed, rows in table.groupby("seed")
            if seed in seeds}


def event_of(parent: dict[int, float], branch: dict[int, float] | None, from_step: int,
             until_step: int) -> int | None:
    """The card's event on one seed's curve: the parent's steps before the branch point, then the
    branch's (a branch's history before its branch point is its parent's)."""
    merged = {s: v for s, v in parent.items() if s <= until_step}
    if branch is not None:
        merged = {**{s: v for s, v in merged.items() if s < from_step}, **branch}
    steps = sorted(merged)
    return event_step(steps, [merged[s] for s in steps], **EVENT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", required=True)
    parser.add_argument("--from-step", type=int, default=600)
    parser.add_argument("--drop-until", type=int, default=1200)
    parser.add_argument("--until-step", type=int, default=2000)
    parser.add_argument("--top", type=int, default=2000, help="how many documents to drop")
    parser.add_argument("--no-control", action="store_true", help="skip the random-drop control")
    args = parser.parse_args()
    started = time.perf_counter()
    seeds = zoo.list_models(store=args.store)
    seeds = next(m.seeds for m in seeds if m.name == MODEL)
    corpus = open_run_data(MODEL, seed=seeds[0], store=args.store)[0]
    documents, spans = most_repetitive_documents(corpus, args.top)
    samples = corpus.samples_of_documents(documents)
    print(f"{MODEL}, seeds {', '.join(map(str, seeds))}: the {len(documents)} documents with the "
          f"longest repeated spans ({spans.min()}-{spans.max()} tokens) touch {len(samples)} of "
          f"{corpus.n_samples} samples ({len(samples) / corpus.n_samples:.0%}); dropped in steps "
          f"{args.from_step + 1}..{args.drop_until}, branches trained to step {args.until_step}")
    arms = {"norepeats": {"drop_documents": documents}}
    if not args.no_control:
        rng = np.random.default_rng(0)  # the control's own named seed
        arms["control"] = {"drop_samples": rng.choice(corpus.n_samples, len(samples), replace=False).tolist()}
    seconds = {}
    for label, intervention in arms.items():
        tic = time.perf_counter()
        zoo.branch(MODEL, seed="all", from_step=args.from_step, until_step=args.until_step,
                   label=label, drop_until=args.drop_until, store=args.store, progress=False,
                   resume=True, **intervention)
        evaluate_family(f"{FAMILY}@{label}", ["induction"], sizes=[SIZE], store=args.store,
                        progress=False)
        seconds[label] = time.perf_counter() - tic
    evaluate_family(FAMILY, ["induction"], sizes=[SIZE], store=args.store, progress=False)
    parent = curves(FAMILY, seeds, args.store)
    base = {s: event_of(parent[s], None, args.from_step, args.until_step) for s in seeds}
    print(f"\nparent: induction stripe event (first >= 0.1 for 3 stored steps) at steps "
          f"{', '.join(f'seed {s}: {base[s]}' for s in seeds)}")
    for label in arms:
        branch = curves(f"{FAMILY}@{label}", seeds, args.store)
        moved = {s: event_of(parent[s], branch[s], args.from_step, args.until_step) for s in seeds}
        late = [s for s in seeds if moved[s] is None]
        shifts = [moved[s] - base[s] for s in seeds if moved[s] is not None and base[s] is not None]
        print(f"\n{label} ({seconds[label]:.0f} s for {len(seeds)} branches + evaluation): event at "
              f"{', '.join(f'seed {s}: {moved[s]}' for s in seeds)}")
        if late:
            print(f"  no event by step {args.until_step} in seed(s) {', '.join(map(str, late))}: "
                  f"delayed by more than {args.until_step - max(base[s] for s in late)} steps there")
        if len(shifts) >= 2:
            interval = seed_interval(shifts)
            print(f"  shift of the event, branch - parent, paired by seed: mean {interval.mean:+.0f} "
                  f"steps [{interval.low:+.0f}, {interval.high:+.0f}] (95% t interval over "
                  f"{len(shifts)} seeds; checkpoints every 100 steps, so +-100 is the resolution)")
            if interval.low <= 0 <= interval.high:
                print("  -> no measurable effect on the timing at this resolution")
        elif shifts:
            print(f"  shift in the one seed with an event: {shifts[0]:+d} steps")
        final = [branch[s][max(branch[s])] - parent[s][max(branch[s])] for s in seeds]
        interval = seed_interval(final)
        print(f"  induction.max at step {args.until_step}, branch - parent: {interval.mean:+.3f} "
              f"[{interval.low:+.3f}, {interval.high:+.3f}]")
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
