"""Do the residual stream's dictionary features appear or reorganise at the induction phase change?

    zoo train induction --only attn2l --store S
    python examples/induction_dictionary_features.py --store S [--seeds 1 2 3 4 5] [--out lineage.png]

For every seed of induction-attn2l: a TopK dictionary on the residual stream after the last block
(blocks.1.hook_resid_post) at every stored step, each warm-started from the previous step's and
trained on the run's own 64 training steps up to that step (zoo.train_dict; stored beside the run,
so a second invocation only reads them). The features are followed across steps (`zoo dict
track`: optimal matching of decoder directions, cosine >= 0.7), which gives per step the features
born and gone. The induction phase change of each seed is the first stored step whose induction
stripe (`zoo eval --metric induction`: induction.max) is >= 0.1 and stays for 3 stored steps (the
family card's measure).

The question, with its null: is the turnover ((born + gone) / alive, per 100 steps) in the window
of stored steps from 300 steps before the phase change to 300 after it higher than at the other
stored steps after step 512 (the log-spaced start is left out: every early step changes a lot)?
Per seed the difference of the two means; over seeds its mean with a 95% t interval, and the
Multi-Bootstrap-free sign test in words. Also: the largest jump of the born count (event_timing,
against its own noise) per seed, beside the phase change. Prints the time it took.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

NAME, SITE = "induction-attn2l", "blocks.1.hook_resid_post"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--site", default=SITE, help=f"the activations read (default {SITE}; e.g. "
                        "blocks.1.hook_attn_out, where the induction head writes)")
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--steps", type=int, default=500, help="dictionary training steps")
    parser.add_argument("--every", type=int, default=2, help="every k-th stored step (and the last)")
    parser.add_argument("--window", type=int, default=300, help="steps each side of the phase change")
    parser.add_argument("--out", default=None, help="a PNG of features alive, born and gone")
    args = parser.parse_args()

    import zoo
    from zoo.dictionaries.lineage import per_step_counts
    from zoo.dictionaries.sweep import stored_steps, track_run
    from zoo.eval.evaluate import evaluate_family
    from zoo.stats import event_step, seed_interval

    started = time.perf_counter()
    evaluate_family("induction", ["induction"], store=args.store, sizes=["attn2l"],
                    seeds=args.seeds, progress=False)
    table = zoo.metrics("induction", store=args.store).to_pylist()
    rows, counts_by_seed, phases = [], {}, {}
    for seed in args.seeds:
        tic = time.perf_counter()
        previous = None
        for step in stored_steps(NAME, seed=seed, store=args.store, every=args.every):
            previous = zoo.train_dict(NAME, seed=seed, step=step, site=args.site, width=args.width,
                                      k=args.k, steps=args.steps, store=args.store,
                                      warm_start=previous)
        counts = per_step_counts(track_run(NAME, seed=seed, site=args.site, kind="topk",
                                           width=args.width, store=args.store))
        counts_by_seed[seed] = counts
        curve = sorted((r["step"], r["induction.max"]) for r in table if r["size"] == "attn2l"
                       and r["seed"] == seed and r.get("induction.max") is not None)
        phase = event_step([s for s, _ in curve], [v for _, v in curve], threshold=0.1, persist=3)
        phases[seed] = phase
        born = event_step([c["step"] for c in counts], [c["born"] for c in counts],
                          kind="largest_jump")
        turnover = {c["step"]: (c["born"] + c["gone"]) / max(c["alive"], 1) for c in counts}
        steps = sorted(turnover)
        gaps = dict(zip(steps[1:], np.diff(steps)))
        rate = {s: 100 * turnover[s] / gaps[s] for s in steps[1:]}  # per 100 steps
        near = [rate[s] for s in rate if phase is not None and abs(s - phase) <= args.window]
        far = [rate[s] for s in rate if s > 512 and (phase is None or abs(s - phase) > args.window)]
        difference = (np.mean(near) - np.mean(far)) if near and far else float("nan")
        rows.append((seed, phase, born, np.mean(near) if near else float("nan"),
                     np.mean(far) if far else float("nan"), difference,
                     time.perf_counter() - tic))
    print(f"{NAME}, {args.site}: TopK width {args.width}, k {args.k}, {args.steps} steps per dictionary, "
          f"warm-started step to step")
    print("| seed | phase change | largest born jump | turnover near (per 100 steps) | "
          "turnover elsewhere | near - elsewhere | seconds |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for seed, phase, born, near, far, diff, seconds in rows:
        print(f"| {seed} | {phase} | {born} | {near:.3f} | {far:.3f} | {diff:+.3f} | {seconds:.0f} |")
    differences = np.array([r[5] for r in rows if np.isfinite(r[5])])
    if len(differences) >= 2:
        interval = seed_interval(differences)
        higher = int((differences > 0).sum())
        print(f"\nnear - elsewhere over {len(differences)} seeds: {interval.mean:+.3f} "
              f"[{interval.low:+.3f}, {interval.high:+.3f}] (95% t); higher near the phase change "
              f"in {higher} of {len(differences)} seeds")
    print(f"total: {time.perf_counter() - started:.0f} s")
    if args.out:
        _plot(counts_by_seed, phases, args.out, args.site)
        print(f"plot: {args.out}")


def _plot(counts_by_seed: dict, phases: dict, path: str, site: str) -> None:
    from zoo.eval.seed_plot import pyplot

    plt = pyplot()
    figure, axes = plt.subplots(len(counts_by_seed), 1, figsize=(9, 2.2 * len(counts_by_seed)),
                                dpi=110, sharex=True)
    for axis, (seed, counts) in zip(np.atleast_1d(axes), counts_by_seed.items()):
        steps = [c["step"] for c in counts]
        axis.plot(steps, [c["born"] for c in counts], color="#2ca02c", label="born")
        axis.plot(steps, [c["gone"] for c in counts], color="#d62728", label="gone")
        if phases[seed] is not None:
            axis.axvline(phases[seed], color="black", ls="--", lw=1, label="phase change")
        axis.set_ylabel(f"seed {seed}")
        axis.set_xscale("symlog", linthresh=100)
        axis.grid(alpha=0.3)
    np.atleast_1d(axes)[0].legend(fontsize=7, loc="upper right", frameon=False)
    np.atleast_1d(axes)[0].set_title(f"{NAME} {site}: dictionary features born and gone per "
                                     f"stored step", fontsize=10)
    np.atleast_1d(axes)[-1].set_xlabel("training step")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


if __name__ == "__main__":
    main()
