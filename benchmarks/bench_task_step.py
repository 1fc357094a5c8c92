"""The grokking family's step: the masked, narrowed training step against the plain ones.

What a grokking researcher waits for is 12,000 full-batch steps per seed. Side by side in one
process (2 threads), interleaved A B C A B C so the machine's drift hits all alike, on the
family's model (manifests/grokking.yaml: 1 layer, width 128, ReLU MLP 512, no LayerNorm) and its
full batch of 3,831 pairs `a b = c`:

  plain      model(input_ids=[a b = c], labels=...) with every position but c's ignored (-100):
             the usual HF way to put the loss on the answer
  plain-3    the model on [a b =] (the answer is not an input), cross-entropy at "=" by hand
  zoo        zoo.engine.train_step.training_step with the task's loss mask: the input stops at
             "=", and the last block computes only the "=" position (logits_to_keep)

Each is AdamW(wd 1.0) forward + backward + update, medians over reps; ratios against `plain`.

    python benchmarks/bench_task_step.py --steps 30 --reps 3     # ~1 min on the 2-core machine
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from zoo.engine.train_step import training_step
from zoo.models.toy import ZooToyConfig, ZooToyForCausalLM

P, N_TRAIN = 113, 3831


def _setup(seed: int = 0):
    torch.manual_seed(seed)
    config = ZooToyConfig(vocab_size=P + 2, hidden_size=128, num_hidden_layers=1, num_attention_heads=4,
                          intermediate_size=512, hidden_act="relu", use_layer_norm=False,
                          max_position_embeddings=4, initializer_range=0.0707)
    model = ZooToyForCausalLM(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1.0, betas=(0.9, 0.98))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: 1.0)
    return model, optimizer, scheduler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(2)
    generator = torch.Generator().manual_seed(1)
    a, b = torch.randint(0, P, (N_TRAIN,), generator=generator), torch.randint(0, P, (N_TRAIN,), generator=generator)
    batch = torch.stack([a, b, torch.full_like(a, P), (a + b) % P], dim=1)
    mask = torch.zeros_like(batch, dtype=torch.bool)
    mask[:, 3] = True
    labels4 = batch.masked_fill(~mask, -100)

    def plain(state):
        model, optimizer, scheduler = state
        optimizer.zero_grad()
        model(input_ids=batch, labels=labels4).loss.backward()
        optimizer.step()
        scheduler.step()

    def plain3(state):
        model, optimizer, scheduler = state
        optimizer.zero_grad()
        logits = model(input_ids=batch[:, :3]).logits[:, 2]  # every position computed, "=" read
        torch.nn.functional.cross_entropy(logits, batch[:, 3]).backward()
        optimizer.step()
        scheduler.step()

    def zoo_step(state):
        model, optimizer, scheduler = state
        training_step(model, optimizer, scheduler, batch, loss_mask=mask, clip=0.0)

    variants = {"plain": plain, "plain-3": plain3, "zoo": zoo_step}
    times: dict[str, list[float]] = {name: [] for name in variants}
    states = {name: _setup() for name in variants}
    for fn, state in zip(variants.values(), states.values()):
        fn(state)  # warm-up
    for _ in range(args.reps):
        for name, fn in variants.items():
            tic = time.perf_counter()
            for _ in range(args.steps):
                fn(states[name])
            times[name].append((time.perf_counter() - tic) / args.steps)
    base = statistics.median(times["plain"])
    print(f"| step ({N_TRAIN} pairs, full batch) | ms/step (median of {args.reps}) | vs plain | 20,000 steps |")
    print("|---|---|---|---|")
    for name in variants:
        ms = statistics.median(times[name]) * 1000
        print(f"| {name} | {ms:.1f} | {ms / 1000 / base:.2f} | {ms * 20:.0f} s |")


if __name__ == "__main__":
    main()
