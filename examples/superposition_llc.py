"""The local learning coefficient over training of Chen et al.'s 6-features-in-2-dimensions toy model:
does it jump at the k-gon transitions?

    pip install -e '.[devinterp]'                      # devinterp 2.x (2.0.0 when this was written)
    zoo train superposition --store S && zoo eval superposition --metric superposition --store S
    zoo card superposition --store S                   # the plateau-exit step this marks
    python examples/superposition_llc.py --store S --out docs/screenshots/superposition-llc.png

Chen et al. 2023 ("Dynamical versus Bayesian phase transitions in a toy model of superposition")
train the ReLU output model with 6 features in 2 hidden dimensions (sparsity 0.9, uniform
importance) and see SGD move from one k-gon plateau to the next, with the local learning
coefficient (LLC) of Lau et al. 2023 stepping up as the loss steps down. This script measures that
on the family's `n6m2s0.9` runs (5 seeds, 10,000 steps, checkpoints at 0, 1, 2, 4, ..., 64 and every
50 steps): the LLC at every stored step up to --max-step (3,000: where the transitions are) and at a
few later ones, per seed, beside the held-out loss and the k of the k-gon (`zoo eval --metric
superposition`: superposition.loss, .represented, .kgon_k), with the steps where k changes and
the card's plateau-exit step (`zoo card`: the largest speed-up of the held-out loss's descent).

The LLC is devinterp 2's own estimator (`devinterp.slt.llc.llc`: SGLD chains via `sample()`,
LLC = n_beta * (mean sampling loss - init loss)), unchanged. devinterp 2 samples a Hugging Face
dataset with an "input_ids" column and takes a `loss_fn(model, input_ids) -> per-position loss
[batch, seq - 1]`; this model takes float `features` instead of tokens, so the dataset's rows are
`[sample id, row]` (the run's own sample id, kept in devinterp's record of what it sampled, and
the row of that sample's features in the window) and `loss_fn` looks the features up and returns
each sample's training loss sum_i I_i (x_i - x'_i)^2 as a [batch, 1] "position" (its batch mean is
exactly `model(features=x).loss`, checked at start). The data is the run's own training samples:
the batches of the --window steps up to each checkpoint (`zoo.training_data(...,
format="datasets")`, 4 steps = 4,096 samples by default).

SGLD settings (printed; chosen on a few checkpoints of seeds 1-5 before the run): lr 1e-3,
n_beta = n / ln n of the window (n = 4,096: 492.4), localization 100, 4 chains x 400 draws, batch
512 (the window cycles in 8 batches; the init loss is on all 8, i.e. on the whole window), no
burn-in (devinterp 2 averages every step; with localization 100 the chains relax in ~20 steps).
At lr 3e-4 the estimates agreed within ~10%; n_beta = 148 (devinterp's batch_size / ln batch_size
for batch 1024) gave ~2 at every checkpoint (localization-dominated); n_beta ~ 900 gave larger
and noisier values and very negative ones where the checkpoint is not a minimum. Each estimate's
diagnostics are printed: "drift" is n_beta * (mean loss in the last quarter of the chains - mean
in the second quarter), in LLC units (a stable trace: |drift| small against the LLC); a negative
LLC means SGLD found lower loss than the checkpoint's: not a local minimum (the initial descent,
or a saddle it is about to leave). devinterp writes every sample to a zarr folder; this script
gives it a temporary one per estimate and removes it (devinterp's default temporary folder is
never removed: ~10 MB an estimate here).

The answer: for each k transition after --from-step, the change of the LLC across it (between
the two stored steps that bracket it: "adjacent"; that change beyond the trend, i.e. minus the
mean change of the two neighbouring pairs: "excess"; the mean of the --level estimates after
minus before: "level") against the same statistic over every window of the same seed with no
transition (the null): a z-score against the null's spread and p, the share of null windows at
least as far out; the verdict ("jump"/"dip" when p <= 0.05, else "no event") is on the excess,
because the LLC also climbs smoothly while the loss falls and most k changes come during that
climb. The same for the card's plateau exit; then the counts over seeds and the late LLC by final
k. `--from-output` redoes the answer and the plot from a saved output (no sampling).
docs/notes/superposition_llc_output.txt is a full run (10 minutes on 2 CPU cores shared with
other jobs; the time is printed) and docs/screenshots/superposition-llc.png its plot.
"""
from __future__ import annotations

import argparse
import gc
import math
import os
import time

os.environ.setdefault("TQDM_DISABLE", "1")  # devinterp's per-chain bars; this prints tables

import numpy as np
import torch

import zoo

FAMILY = "superposition"


# ----------------------------------------------------------------------------- the estimate


def window_data(name: str, seed: int, step: int, args):
    """The features of the training batches of steps max(1, step - window + 1) .. step, and the
    devinterp dataset over them: rows [sample id, row index]."""
    import datasets

    first = max(1, step - args.window + 1)
    rows = zoo.training_data(name, seed=seed, step=first, n_steps=step - first + 1,
                             store=args.store, format="datasets")
    features = torch.tensor(rows["features"], dtype=torch.float32)
    ids = [[sample, row] for row, sample in enumerate(rows["sample"])]
    return features, datasets.Dataset.from_dict({"input_ids": ids}).with_format("torch")


def per_sample_loss(features: torch.Tensor, importance: torch.Tensor):
    """devinterp 2's loss_fn: (model, input_ids [B, 2]) -> each sample's training loss [B, 1]."""

    def loss_fn(model, input_ids: torch.Tensor) -> torch.Tensor:
        x = features[input_ids[:, 1]]
        out = model(features=x, return_loss=False)
        return (importance * (x - out.reconstruction) ** 2).sum(dim=-1, keepdim=True)

    return loss_fn


def estimate(model, features: torch.Tensor, dataset, args) -> dict:
    """devinterp's LLC at this checkpoint; its samples go to a temporary zarr folder, read and
    removed here (devinterp's own default is a temporary folder that is never removed: ~10 MB an
    estimate at these settings)."""
    import tempfile

    from devinterp.slt.llc import llc

    n_batches = len(dataset) // args.batch_size
    with tempfile.TemporaryDirectory(prefix="superposition-llc-") as folder:
        result = llc(model, dataset, {}, lr=args.lr, n_beta=args.n_beta,
                     localization=args.localization, num_chains=args.chains, num_draws=args.draws,
                     batch_size=args.batch_size, num_init_loss_batches=max(1, n_batches),
                     init_seed=args.sgld_seed, device="cpu",
                     output_path=os.path.join(folder, "samples.zarr"),
                     loss_fn=per_sample_loss(features, model.config.importance_tensor()))
        trace = np.asarray(result.loss_trace.values, dtype=float)  # [chain, step]
        llc_mean, llc_std = float(result.llc_mean), float(result.llc_std)
        init_loss = float(result.init_loss)
    quarter = max(1, trace.shape[1] // 4)
    drift = args.n_beta * (trace[:, -quarter:].mean() - trace[:, quarter:2 * quarter].mean())
    return {"llc": llc_mean, "std": llc_std, "init_loss": init_loss, "drift": float(drift),
            "trace": trace}


def read_output(path: str, seeds: list[int] | None) -> dict:
    """The per-seed tables of a saved output of this script: {seed: [row, ...]} as `main` makes
    them (to the printed precision), for --from-output."""
    import re

    row = re.compile(r"^\s*(\d+)\s+(-?[\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+(\d+)/(\d+)\s+"
                     r"(-?[\d.]+)\s+[\d.]+")
    results: dict[int, list[dict]] = {}
    seed = None
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("== seed "):
                seed = int(line.split()[2].rstrip(":"))
                results[seed] = []
            elif line.startswith("== "):
                seed = None
            elif seed is not None and (match := row.match(line)):
                step, llc, std, init, held, rep, k, drift = match.groups()
                results[seed].append({"step": int(step), "llc": float(llc), "std": float(std),
                                      "init_loss": float(init), "held_out": float(held),
                                      "represented": int(rep), "k": int(k), "drift": float(drift)})
    if not results:
        raise SystemExit(f"{path}: no per-seed tables of this script in it")
    return {s: r for s, r in results.items() if seeds is None or s in seeds}


# ----------------------------------------------------------------------------- the question


def changes(grid, llc, k, from_step, level):
    """Per consecutive pair of estimated steps (i - 1, i) from `from_step` on: the LLC's change
    `delta`; its `excess` over the trend (delta minus the mean change of the two neighbouring
    pairs); the `shift` of the mean LLC over `level` estimates after vs before; whether k changed
    there, and whether no other k change lies within the level window (`quiet`)."""
    delta = np.diff(llc)  # delta[i - 1]: from grid[i - 1] to grid[i]
    rows = []
    for i in range(1, len(grid)):
        if grid[i - 1] < from_step:
            continue
        excess = (delta[i - 1] - (delta[i - 2] + delta[i]) / 2
                  if i >= 2 and i < len(delta) else math.nan)
        before, after = llc[max(0, i - level):i], llc[i:i + level]
        shift = (float(np.mean(after) - np.mean(before))
                 if len(after) == level and len(before) == level else math.nan)
        span = range(max(1, i - level + 1), min(len(grid), i + level))  # pairs inside the level window
        quiet = all(k[j] == k[j - 1] for j in span if j != i)
        rows.append({"i": i, "step": grid[i], "prev": grid[i - 1], "delta": float(delta[i - 1]),
                     "excess": float(excess), "shift": shift, "transition": k[i] != k[i - 1],
                     "quiet": quiet, "k_from": k[i - 1], "k_to": k[i],
                     "llc_from": float(llc[i - 1]), "llc_to": float(llc[i]),
                     "minimum": bool(llc[i - 1] >= 0 and llc[i] >= 0)})
    return rows


def against_null(value: float, null: np.ndarray) -> tuple[float, float]:
    """z against the null's spread, and the share of null values at least as large in size."""
    null = null[np.isfinite(null)]
    if not np.isfinite(value) or len(null) < 3:
        return math.nan, math.nan
    spread = null.std(ddof=1)
    z = (value - null.mean()) / spread if spread > 0 else math.nan
    return float(z), float(np.mean(np.abs(null - null.mean()) >= abs(value - null.mean())))


def verdict(p: float, alpha: float, sign: float = 1.0) -> str:
    if not np.isfinite(p):
        return "n/a"
    return ("jump" if p <= alpha else "no event") if sign >= 0 else ("dip" if p <= alpha else "no event")


# ----------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n", 1)[0].split()),
                                     epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", required=True, help="a store with the superposition family trained, evaluated (--metric superposition) and carded")
    parser.add_argument("--size", default="n6m2s0.9")
    parser.add_argument("--seeds", default=None, help="comma-separated seeds (default: all stored)")
    parser.add_argument("--max-step", type=int, default=3000, help="estimate at every stored step up to this one")
    parser.add_argument("--every", type=int, default=1, help="use every k-th stored step up to --max-step")
    parser.add_argument("--later", default="4000,6000,8000,10000", help="later stored steps to estimate too")
    parser.add_argument("--window", type=int, default=4, help="training steps of data per estimate (1,024 samples each)")
    parser.add_argument("--lr", type=float, default=1e-3, help="SGLD step size")
    parser.add_argument("--n-beta", type=float, default=None, help="SGLD inverse temperature (default: n / ln n of a full window)")
    parser.add_argument("--localization", type=float, default=100.0, help="SGLD pull to the checkpoint (gamma)")
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--draws", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--sgld-seed", type=int, default=100)
    parser.add_argument("--from-step", type=int, default=100, help="test transitions whose earlier bracketing step is at least this (before it: the initial descent)")
    parser.add_argument("--level", type=int, default=3, help="estimates on each side for the level shift")
    parser.add_argument("--alpha", type=float, default=0.05, help="a change 'stands out' when at most this share of null windows is as large")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (the model has 18 parameters)")
    parser.add_argument("--out", default=None, help="write the plot (LLC and loss against step, per seed) to this PNG")
    parser.add_argument("--from-output", default=None, metavar="TXT",
                        help="no sampling: redo the answer and the plot from a saved output of this script "
                             "(its printed tables; the SGLD options must be the ones it printed)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    from importlib.metadata import version

    import devinterp

    name = f"{FAMILY}-{args.size}"
    batch = len(zoo.batch_ids(name, seed=1, step=1, store=args.store))
    n = args.window * batch
    if args.n_beta is None:
        args.n_beta = n / math.log(n)
    table = zoo.metrics(FAMILY, store=args.store).to_pandas()
    table = table[(table["size"] == args.size)].dropna(subset=["superposition.kgon_k"])
    seeds = ([int(s) for s in args.seeds.split(",")] if args.seeds
             else sorted(int(s) for s in table.seed.unique()))
    exits, settled = card_events(args)
    if args.from_output:
        results = read_output(args.from_output, seeds if args.seeds else None)
        print(f"{name}: the answer and plot from {args.from_output} ({sum(map(len, results.values()))} "
              f"estimates of seeds {', '.join(map(str, results))}; no sampling)")
        answer(results, exits, args)
        if args.out:
            plot(results, exits, args)
            print(f"plot: {args.out}")
        return

    print(f"{name}: the local learning coefficient over training (devinterp {version('devinterp')}, "
          f"devinterp.slt.llc.llc at {os.path.dirname(devinterp.__file__)})")
    print(f"SGLD: lr {args.lr:g}, n_beta {args.n_beta:.1f} (n / ln n, n = {n}), localization "
          f"{args.localization:g}, {args.chains} chains x {args.draws} draws, batch {args.batch_size}, "
          f"no burn-in, init seed {args.sgld_seed}, noise level 1, {args.threads} torch thread(s)")
    print(f"data: the training batches of the {args.window} steps up to each checkpoint ({n} "
          f"samples; fewer before step {args.window}); init loss over all of them")
    print(f"steps: every {'' if args.every == 1 else f'{args.every}th '}stored step in 1..{args.max_step}, and "
          f"{args.later}; seeds {', '.join(map(str, seeds))}")
    check_loss_fn(name, seeds[0], args)
    gc.collect()
    gc.freeze()  # devinterp gc.collect()s twice per chain; don't rescan the imported libraries
    print("columns: LLC (mean over chains) +- std over chains; init loss: the window's training "
          "loss at the checkpoint (devinterp's); held-out: superposition.loss; rep/k: represented "
          "features / k of the k-gon; drift: trace drift in LLC units; s: seconds")

    later = {int(s) for s in args.later.split(",") if s}
    results = {}
    for seed in seeds:
        rows = table[table.seed == seed].set_index("step").sort_index()
        stored = [s for s in zoo.steps(name, seed=seed, store=args.store) if s > 0]
        early = [s for s in stored if s <= args.max_step][:: args.every]
        grid = early + [s for s in stored if s in later and s > args.max_step]
        k_all = rows["superposition.kgon_k"]
        print(f"\n== seed {seed}: {len(grid)} checkpoints; k changes at (stored steps): "
              + (", ".join(f"{b} ({int(k_all.iloc[i - 1])}->{int(k_all.iloc[i])})"
                           for i, b in enumerate(k_all.index) if i and k_all.iloc[i] != k_all.iloc[i - 1])
                 or "none")
              + f"; plateau exit (card): {exits.get(seed, 'not measured')}; settled (card): "
                f"{settled.get(seed, 'not measured')}")
        print(f"{'step':>6} {'LLC':>7} {'+-':>5} {'init loss':>9} {'held-out':>9} {'rep/k':>5} "
              f"{'drift':>6} {'s':>4}  marks")
        seed_rows = []
        previous_k = None
        for step in grid:
            tic = time.perf_counter()
            model, _ = zoo.load(name, seed=seed, step=step, store=args.store)
            features, dataset = window_data(name, seed, step, args)
            est = estimate(model.train(False), features, dataset, args)
            k = int(rows.at[step, "superposition.kgon_k"])
            represented = int(rows.at[step, "superposition.represented"])
            held_out = float(rows.at[step, "superposition.loss"])
            marks = []
            if previous_k is not None and k != previous_k:
                marks.append(f"k {previous_k}->{k}")
            if exits.get(seed) == step:
                marks.append("plateau exit (card)")
            if est["llc"] < 0:
                marks.append("LLC<0: not a minimum")
            if abs(est["drift"]) > max(1.0, 0.25 * abs(est["llc"])):
                marks.append("trace drifts")
            previous_k = k
            seed_rows.append({"step": step, "k": k, "represented": represented,
                              "held_out": held_out, **est})
            print(f"{step:>6} {est['llc']:>7.2f} {est['std']:>5.2f} {est['init_loss']:>9.4f} "
                  f"{held_out:>9.4f} {represented:>2}/{k:<2} {est['drift']:>6.2f} "
                  f"{time.perf_counter() - tic:>4.1f}  {'; '.join(marks)}", flush=True)
            if step in (grid[0], grid[len(grid) // 2], grid[-1]) and seed == seeds[0]:
                trace = est["trace"].mean(axis=0)
                eighths = np.array_split(trace, 8)
                print(f"       loss trace (mean over chains, 8 segments of {len(eighths[0])} draws): "
                      + " ".join(f"{e.mean():.4f}" for e in eighths)
                      + f"  (init {est['init_loss']:.4f})")
        results[seed] = seed_rows

    answer(results, exits, args)
    total = time.perf_counter() - started
    count = sum(len(r) for r in results.values())
    print(f"\ntotal {total:.0f} s ({total / 60:.1f} min; {total / count:.2f} s per checkpoint, "
          f"{count} checkpoints, {torch.get_num_threads()} torch thread(s), {os.cpu_count()} CPUs)")
    if args.out:
        plot(results, exits, args)
        print(f"plot: {args.out}")


def card_events(args) -> tuple[dict, dict]:
    """{seed: plateau-exit step} and {seed: settled step} for the size, from `zoo card`'s record
    in the store (absent: {}); a seed whose event is "none" is left out."""
    from zoo.store.cards import stored_card
    from zoo.store.catalog import open_store

    record = stored_card(FAMILY, open_store(args.store)) or {"results": []}
    found = {"plateau_exit": {}, "settled": {}}
    for result in record["results"]:
        if result.get("size") == args.size and result.get("name") in found:
            for seed, step in zip(result["seeds"], result.get("steps") or []):
                if step is not None:
                    found[result["name"]][int(seed)] = int(step)
    return found["plateau_exit"], found["settled"]


def check_loss_fn(name: str, seed: int, args) -> None:
    """The per-sample loss given to devinterp averages to the model's own training loss."""
    model, _ = zoo.load(name, seed=seed, step=args.max_step, store=args.store)
    features, dataset = window_data(name, seed, args.max_step, args)
    ids = dataset[: args.batch_size]["input_ids"]
    ours = per_sample_loss(features, model.config.importance_tensor())(model, ids).mean()
    theirs = model(features=features[ids[:, 1]]).loss
    assert torch.allclose(ours, theirs, rtol=1e-5), (ours, theirs)
    print(f"loss_fn check (seed {seed}, step {args.max_step}): per-sample loss mean {ours.item():.6f}"
          f" = model(features=x).loss {theirs.item():.6f}")


def answer(results: dict, exits: dict, args) -> None:
    print(f"\n== Does the LLC jump at the k transitions? From step {args.from_step} on, per seed, "
          f"against a null: the same statistic at every pair of consecutive estimated steps of that "
          f"seed with no k change.\n"
          f"  adjacent: LLC(step) - LLC(previous estimated step); excess: that change minus the mean "
          f"change of the two neighbouring pairs (a jump beyond the trend: the LLC also rises "
          f"smoothly while the loss falls);\n"
          f"  level: mean of {args.level} estimates after - mean of {args.level} before (null: "
          f"windows with no k change among their {2 * args.level} estimates); z: against the null's "
          f"mean and sd; p: share of null values at least as far from the null's mean;\n"
          f"  verdict on the excess: 'jump' (up) or 'dip' (down) when p <= {args.alpha}, else 'no event'; min: both "
          f"estimates >= 0 (else SGLD went below the checkpoint's loss: not at a minimum, the LLC "
          f"there is not a local posterior's)")
    print(f"{'seed':>4} {'event':>19} {'steps':>11} {'LLC':>13} {'min':>3} {'adjacent':>8} {'z':>5} "
          f"{'p':>4} {'excess':>7} {'z':>5} {'p':>4} {'verdict':>8} {'level':>6} {'z':>5} {'p':>4}  "
          f"null sd adjacent/excess/level (n)")
    pooled = []
    for seed, rows in results.items():
        grid = [r["step"] for r in rows if r["step"] <= args.max_step]
        llc = np.array([r["llc"] for r in rows[: len(grid)]])
        k = [r["k"] for r in rows[: len(grid)]]
        pairs = changes(grid, llc, k, args.from_step, args.level)
        null = {key: np.array([p[key] for p in pairs if not p["transition"]
                               and (key != "shift" or p["quiet"])]) for key in ("delta", "excess", "shift")}
        events = [(f"k {p['k_from']}->{p['k_to']}", p) for p in pairs if p["transition"]]
        if seed in exits:
            events += [("plateau exit (card)", p) for p in pairs if p["step"] == exits[seed]]
        if not events:
            print(f"{seed:>4} (no k change and no plateau exit from step {args.from_step} to {args.max_step})")
        sds = "/".join(f"{np.nanstd(null[key], ddof=1):.2f}" for key in ("delta", "excess", "shift"))
        counts = "/".join(str(int(np.isfinite(null[key]).sum())) for key in ("delta", "excess", "shift"))
        for label, p in events:
            stats = {f"{key}_{part}": value for key in ("delta", "excess", "shift")
                     for part, value in zip(("z", "p"), against_null(p[key], null[key]))}
            pooled.append({"seed": seed, "label": label, "up": p["k_to"] > p["k_from"], **p, **stats})
            print(f"{seed:>4} {label:>19} {p['prev']:>5}-{p['step']:<5} {p['llc_from']:>6.2f}>{p['llc_to']:<6.2f} "
                  f"{'yes' if p['minimum'] else 'no':>3} {p['delta']:>8.2f} {stats['delta_z']:>5.1f} "
                  f"{stats['delta_p']:>4.2f} {p['excess']:>7.2f} {stats['excess_z']:>5.1f} "
                  f"{stats['excess_p']:>4.2f} {verdict(stats['excess_p'], args.alpha, p['excess']):>8} "
                  f"{p['shift']:>6.2f} {stats['shift_z']:>5.1f} {stats['shift_p']:>4.2f}  {sds} ({counts})")
        early = [f"{grid[i]} ({k[i - 1]}->{k[i]})" for i in range(1, len(grid))
                 if k[i] != k[i - 1] and grid[i - 1] < args.from_step]
        if early:
            print(f"{'':>4} not tested (before step {args.from_step}, the initial descent): k changes at "
                  f"{', '.join(early)}")

    def share(chosen, key):
        finite = [e for e in chosen if np.isfinite(e[f"{key}_p"])]
        return (f"{sum(e[f'{key}_p'] <= args.alpha for e in finite)}/{len(finite)} stand out, mean p "
                f"{np.mean([e[f'{key}_p'] for e in finite]) if finite else math.nan:.2f}")

    transitions = [e for e in pooled if e["transition"]]
    print(f"\n== Over seeds (p is uniform under the null: mean p 0.5, {args.alpha:.0%} of events stand out by chance)")
    groups = (("k transitions", transitions),
              ("  k up", [e for e in transitions if e["up"]]),
              ("  k down", [e for e in transitions if not e["up"]]),
              ("  at a minimum (both LLC >= 0)", [e for e in transitions if e["minimum"]]),
              ("plateau exits (card)", [e for e in pooled if e["label"].startswith("plateau")]))
    for kind, chosen in groups:
        if not chosen:
            print(f"{kind}: none")
            continue
        print(f"{kind}: {len(chosen)} in {len({e['seed'] for e in chosen})} seed(s); adjacent mean "
              f"{np.mean([e['delta'] for e in chosen]):+.2f} (rises at {sum(e['delta'] > 0 for e in chosen)}; "
              f"{share(chosen, 'delta')}); excess mean {np.nanmean([e['excess'] for e in chosen]):+.2f} "
              f"({share(chosen, 'excess')}); level mean {np.nanmean([e['shift'] for e in chosen]):+.2f} "
              f"({share(chosen, 'shift')})")
    late = {seed: [r for r in rows if r["step"] > args.max_step] or rows[-1:] for seed, rows in results.items()}
    print(f"late LLC by final k (mean over the estimated steps after {args.max_step}): " + "; ".join(
        f"seed {seed} k={rows[-1]['k']}: {np.mean([r['llc'] for r in rows]):.2f}" for seed, rows in late.items()))
    by_k: dict[int, list[float]] = {}
    for rows in late.values():
        by_k.setdefault(rows[-1]["k"], []).append(float(np.mean([r["llc"] for r in rows])))
    print("  by k: " + "; ".join(f"k={k}: {np.mean(v):.2f} (sd {np.std(v, ddof=1) if len(v) > 1 else 0:.2f}, "
                                 f"{len(v)} seeds)" for k, v in sorted(by_k.items())))
    for seed, rows in results.items():
        negative = [r["step"] for r in rows if r["llc"] < 0]
        first_ok = next((r["step"] for r in rows if r["llc"] >= 0 and all(
            q["llc"] >= 0 for q in rows if q["step"] >= r["step"])), None)
        print(f"seed {seed}: LLC < 0 (not a minimum) at {len(negative)} of {len(rows)} checkpoints"
              + (f", last at step {negative[-1]}" if negative else "")
              + f"; >= 0 from step {first_ok} on")


def plot(results: dict, exits: dict, args) -> None:
    """One row per seed: the LLC (left axis) and held-out loss (right axis) against step, every
    stored step to --max-step on the left and the later steps in a narrow panel on the right;
    red lines where k changes, a dashed blue line at the card's plateau exit."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    late_steps = sorted({r["step"] for rows in results.values() for r in rows if r["step"] > args.max_step})
    columns = 2 if late_steps else 1
    fig, axes = plt.subplots(len(results), columns, figsize=(11, 2.3 * len(results) + 0.8),
                             sharex="col", squeeze=False,
                             gridspec_kw={"width_ratios": [7, 1][:columns], "wspace": 0.04})
    for row_axes, (seed, rows) in zip(axes, results.items()):
        steps = np.array([r["step"] for r in rows], dtype=float)
        llc = np.array([r["llc"] for r in rows])
        std = np.array([r["std"] for r in rows])
        loss = np.array([r["held_out"] for r in rows])
        shown = llc[steps >= args.from_step]
        low, high = (min(shown.min(), 0), shown.max()) if len(shown) else (llc.min(), llc.max())
        limits = (low - 0.15 * (high - low), high + 0.3 * (high - low))
        rights = []
        for column, ax in enumerate(row_axes):
            part = steps <= args.max_step if column == 0 else steps > args.max_step
            ax.plot(steps[part], llc[part], color="tab:purple", marker="o", markersize=2.5, linewidth=1.2)
            ax.fill_between(steps[part], (llc - std)[part], (llc + std)[part], color="tab:purple",
                            alpha=0.25, linewidth=0)
            ax.axhline(0, color="black", linewidth=0.5)
            ax.set_ylim(*limits)
            ax.tick_params(labelsize=7)
            right = ax.twinx()
            right.plot(steps[part], loss[part], color="tab:gray", linewidth=1)
            right.tick_params(labelsize=7, colors="tab:gray")
            rights.append(right)
        row_axes[0].set_ylabel(f"seed {seed}\nLLC", fontsize=9)
        low_loss, high_loss = loss.min(), loss[steps >= min(args.from_step, steps.max())].max()
        for right in rights:
            right.set_ylim(low_loss - 0.05 * (high_loss - low_loss), high_loss + 0.05 * (high_loss - low_loss))
        if columns == 2:
            rights[0].set_yticklabels([])
            row_axes[1].set_yticklabels([])
            rights[1].set_ylabel("held-out loss", fontsize=8, color="tab:gray")
        else:
            rights[0].set_ylabel("held-out loss", fontsize=8, color="tab:gray")
        last_label = -math.inf
        for i in range(1, len(rows)):
            if rows[i]["k"] != rows[i - 1]["k"]:
                ax = row_axes[0] if steps[i] <= args.max_step else row_axes[-1]
                ax.axvline(steps[i], color="tab:red", linewidth=1, alpha=0.7)
                close = steps[i] - last_label < 0.06 * args.max_step and steps[i] <= args.max_step
                ax.text(steps[i], 0.97 - (0.13 if close else 0), f" {rows[i - 1]['k']}\u2192{rows[i]['k']}",
                        color="tab:red", fontsize=7, va="top", transform=ax.get_xaxis_transform())
                last_label = -math.inf if close else steps[i]
        if seed in exits:
            ax = row_axes[0] if exits[seed] <= args.max_step else row_axes[-1]
            ax.axvline(exits[seed], color="tab:blue", linestyle="--", linewidth=1)
            ax.text(exits[seed], 0.05, " plateau exit", color="tab:blue", fontsize=7,
                    transform=ax.get_xaxis_transform())
    axes[-1, 0].set_xlim(0, args.max_step * 1.01)
    axes[-1, 0].set_xlabel(f"step (every stored step to {args.max_step:,}; LLC axis clipped below to "
                           f"the estimates from step {args.from_step} on)", fontsize=8)
    if columns == 2:
        span = late_steps[-1] - late_steps[0] or 1
        axes[-1, 1].set_xlim(late_steps[0] - 0.15 * span, late_steps[-1] + 0.15 * span)
        axes[-1, 1].set_xticks(late_steps)
        axes[-1, 1].set_xticklabels([f"{t / 1000:g}k" for t in late_steps], fontsize=7)
        axes[-1, 1].set_xlabel("later", fontsize=8)
    handles = [plt.Line2D([], [], color="tab:purple", marker="o", markersize=3, label="LLC (devinterp SGLD) \u00b1 chain std"),
               plt.Line2D([], [], color="tab:gray", label="held-out loss (right axis)"),
               plt.Line2D([], [], color="tab:red", label="k of the k-gon changes (a\u2192b)"),
               plt.Line2D([], [], color="tab:blue", linestyle="--", label="plateau exit (zoo card)")]
    height = fig.get_size_inches()[1]
    fig.suptitle(f"{FAMILY}-{args.size}: LLC over training (SGLD lr {args.lr:g}, n_beta {args.n_beta:.0f}, "
                 f"localization {args.localization:g}, {args.chains}x{args.draws}; data: {args.window} "
                 f"training steps up to each checkpoint)", fontsize=10, y=1 - 0.12 / height)
    fig.legend(handles=handles, loc="upper center", ncol=4, fontsize=8, frameon=False,
               bbox_to_anchor=(0.5, 1 - 0.36 / height))
    fig.subplots_adjust(left=0.07, right=0.94, bottom=0.6 / height, top=1 - 0.75 / height, hspace=0.12)
    fig.savefig(args.out, dpi=110)


if __name__ == "__main__":
    main()
