"""The local learning coefficient (devinterp) at every stored step of one run, against its loss.

    pip install -e '.[devinterp]'                    # devinterp 2.x
    zoo train induction --only attn2l/1 --store S    # or any run
    python examples/llc_over_training.py --store S --model induction-attn2l --seed 1 --out llc.png

The LLC of Lau et al. (2023), estimated with SGLD by devinterp 2.x (`devinterp.slt.llc.llc`) at
each stored checkpoint, on the very samples the run trained on around that step
(`zoo.training_data(..., format="datasets")`: the batches of the `--window` steps before it), so
each estimate is local in weights and in data. Hoogland et al. (2024) saw the LLC of small
language models change at the induction-head phase change; the plot puts the LLC beside the
training loss and the induction stripe (where `zoo eval` / `zoo card` measured it). The SGLD settings are devinterp's usual small-model ones and are
printed; an LLC is only comparable across checkpoints under the same settings.
"""
from __future__ import annotations

import argparse
import os
import time
import warnings

os.environ.setdefault("TQDM_DISABLE", "1")  # devinterp's per-chain bars; this prints a table
warnings.filterwarnings("ignore", message="Sampling without output_path")

import numpy as np  # noqa: E402
import torch  # noqa: E402

import zoo  # noqa: E402


def estimate(model, dataset, *, args) -> tuple[float, float]:
    from devinterp.slt.llc import llc

    result = llc(model, dataset, {}, lr=args.lr, n_beta=args.n_beta, localization=args.localization,
                 num_chains=args.chains, num_draws=args.draws, batch_size=args.batch_size,
                 num_init_loss_batches=4, init_seed=args.sgld_seed, device="cpu")
    return float(result.llc_mean), float(result.llc_std)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", required=True)
    parser.add_argument("--model", default="induction-attn2l")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--branch", default=None, help="a branch of the run (zoo branch)")
    parser.add_argument("--window", type=int, default=8, help="training steps of data per estimate")
    parser.add_argument("--lr", type=float, default=3e-4, help="SGLD step size")
    parser.add_argument("--n-beta", type=float, default=30.0, help="SGLD inverse temperature")
    parser.add_argument("--localization", type=float, default=100.0)
    parser.add_argument("--chains", type=int, default=2)
    parser.add_argument("--draws", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--sgld-seed", type=int, default=100)
    parser.add_argument("--every", type=int, default=1, help="use every k-th stored step")
    parser.add_argument("--out", default=None, help="write the plot to this PNG")
    args = parser.parse_args()
    torch.set_num_threads(2)
    started = time.perf_counter()
    steps = [s for s in zoo.steps(args.model, seed=args.seed, store=args.store, branch=args.branch)
             if s > 0][:: args.every]
    table = zoo.metrics(args.model.rsplit("-", 1)[0], store=args.store).to_pandas()
    size = args.model.rsplit("-", 1)[1]
    table = table[(table["size"] == size) & (table.seed == args.seed)].set_index("step")
    batch = len(zoo.batch_ids(args.model, seed=args.seed, step=1, store=args.store, branch=args.branch))
    window = max(args.window, -(-4 * args.batch_size // batch))  # enough rows for 4 SGLD batches
    rows = []
    print(f"{args.model} seed {args.seed}: LLC at {len(steps)} stored steps; SGLD lr {args.lr}, "
          f"n_beta {args.n_beta}, localization {args.localization}, {args.chains} chains x "
          f"{args.draws} draws, batch {args.batch_size}; data: the {window} training steps "
          f"up to each checkpoint ({window * batch} samples)")
    print(f"{'step':>6} {'LLC':>9} {'(std)':>8} {'train loss':>11} {'induction.max':>14} {'s':>5}")
    for step in steps:
        tic = time.perf_counter()
        model, _ = zoo.load(args.model, seed=args.seed, step=step, store=args.store, branch=args.branch)
        first = max(1, step - window + 1)  # early steps: the run's first `window` steps
        data = zoo.training_data(args.model, seed=args.seed, step=first, n_steps=window,
                                 store=args.store, branch=args.branch,
                                 format="datasets").select_columns(["input_ids"]).with_format("torch")
        mean, std = estimate(model.train(False), data, args=args)
        loss = table["train_loss"].get(step, np.nan)
        stripe = table["induction.max"].get(step, np.nan) if "induction.max" in table else np.nan
        rows.append((step, mean, std, loss, stripe))
        print(f"{step:>6} {mean:>9.2f} {std:>8.2f} {loss:>11.4f} {stripe:>14.3f} "
              f"{time.perf_counter() - tic:>5.1f}")
    total = time.perf_counter() - started
    print(f"total {total:.0f} s ({total / len(steps):.1f} s per checkpoint, on "
          f"{torch.get_num_threads()} CPU threads)")
    if args.out:
        plot(rows, args, args.out)
        print(f"plot: {args.out}")


def plot(rows, args, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps, llc, std, loss, stripe = (np.array(c, dtype=float) for c in zip(*rows))
    fig, top = plt.subplots(figsize=(8, 4.5))
    top.plot(steps, llc, color="tab:purple", marker="o", markersize=3, label="LLC (devinterp SGLD)")
    top.fill_between(steps, llc - std, llc + std, color="tab:purple", alpha=0.2, linewidth=0)
    top.set_xscale("symlog", linthresh=10)
    top.set_xlabel("step")
    top.set_ylabel("local learning coefficient")
    right = top.twinx()
    right.plot(steps, loss, color="tab:gray", linewidth=1, label="training loss")
    if np.isfinite(stripe).any():
        right.plot(steps, stripe, color="tab:red", linewidth=1, label="induction.max")
    right.set_ylabel("training loss / induction stripe")
    lines = top.get_legend_handles_labels(), right.get_legend_handles_labels()
    top.legend(lines[0][0] + lines[1][0], lines[0][1] + lines[1][1], fontsize=8, loc="best")
    top.set_title(f"{args.model} seed {args.seed}: LLC over training", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
